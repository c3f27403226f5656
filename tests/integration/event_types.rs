//! Event types through the svix SDK: create, get, list, upsert, patch, archive on delete, expunge.

use svix::api::{EventTypeDeleteOptions, EventTypeListOptions};
use svix::models::{EventTypeIn, EventTypePatch, EventTypeUpsertIn, ListResponseEventTypeOut};

use crate::support::{sdk_status, Herald};

#[tokio::test]
async fn event_type_lifecycle() {
    let h = Herald::start();
    let svix = h.svix();
    let et = svix.event_type();

    let schemas =
        serde_json::json!({"1": {"type": "object", "properties": {"id": {"type": "string"}}}});
    let created = et
        .create(
            EventTypeIn {
                schemas: Some(schemas.clone()),
                group_name: Some("orders".into()),
                ..EventTypeIn::new("order.created".into(), "An order was placed".into())
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(created.name, "order.created");
    assert_eq!(created.description, "An order was placed");
    assert_eq!(created.archived, Some(false));
    assert_eq!(created.schemas, Some(schemas.clone()));
    et.create(EventTypeIn::new("order.paid".into(), "Paid".into()), None)
        .await
        .unwrap();

    let err = et
        .create(
            EventTypeIn::new("order.created".into(), "again".into()),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 409);

    let with = et
        .list(Some(EventTypeListOptions {
            with_content: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(with.data[0].schemas, Some(schemas));
    let bare = et.list(None).await.unwrap();
    assert!(
        bare.data.iter().all(|e| e.schemas.is_none()),
        "no schemas without with_content"
    );

    let got = et.get("order.created".into()).await.unwrap();
    assert_eq!(got.group_name.as_deref(), Some("orders"));

    let up = et
        .upsert(
            "order.created".into(),
            EventTypeUpsertIn::new("Changed".into()),
        )
        .await
        .unwrap();
    assert_eq!(up.description, "Changed");
    assert_eq!(up.schemas, None, "PUT replaces every field");
    assert_eq!(up.created_at, created.created_at);
    let made = et
        .upsert(
            "order.refunded".into(),
            EventTypeUpsertIn::new("Made by PUT".into()),
        )
        .await
        .unwrap();
    assert_eq!(made.name, "order.refunded");

    let patched = et
        .patch(
            "order.paid".into(),
            EventTypePatch {
                deprecated: Some(true),
                ..EventTypePatch::new()
            },
        )
        .await
        .unwrap();
    assert!(patched.deprecated);
    assert_eq!(patched.description, "Paid");

    let names =
        |l: &ListResponseEventTypeOut| l.data.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    let listed = et.list(None).await.unwrap();
    assert_eq!(
        names(&listed),
        ["order.created", "order.paid", "order.refunded"]
    );

    // Delete archives: still readable, hidden from the default list.
    et.delete("order.paid".into(), None).await.unwrap();
    assert_eq!(
        et.get("order.paid".into()).await.unwrap().archived,
        Some(true)
    );
    assert_eq!(
        names(&et.list(None).await.unwrap()),
        ["order.created", "order.refunded"]
    );
    let all = et
        .list(Some(EventTypeListOptions {
            include_archived: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(names(&all).len(), 3);
    // Creating an archived type again revives it.
    let revived = et
        .create(EventTypeIn::new("order.paid".into(), "Back".into()), None)
        .await
        .unwrap();
    assert_eq!(revived.archived, Some(false));
    assert_eq!(revived.created_at, patched.created_at);

    et.delete(
        "order.paid".into(),
        Some(EventTypeDeleteOptions {
            expunge: Some(true),
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        sdk_status(&et.get("order.paid".into()).await.unwrap_err()),
        404
    );
    assert_eq!(
        sdk_status(&et.delete("nope".into(), None).await.unwrap_err()),
        404
    );
    let err = et
        .create(EventTypeIn::new("bad name!".into(), "x".into()), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 422);
}
