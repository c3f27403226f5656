//! Applications through the official svix SDK: CRUD, uid look-ups, get_if_exists, conflicts and
//! pagination.

use std::collections::{BTreeMap, HashSet};

use js_option::JsOption;
use svix::api::ApplicationListOptions;
use svix::models::{ApplicationIn, ApplicationPatch, Ordering};

use crate::support::{sdk_status, Herald};

fn app_in(name: &str, uid: Option<&str>) -> ApplicationIn {
    ApplicationIn {
        uid: uid.map(String::from),
        metadata: Some(BTreeMap::from([("plan".to_string(), "pro".to_string())])),
        throttle_rate: Some(100),
        ..ApplicationIn::new(name.to_string())
    }
}

#[tokio::test]
async fn application_crud_with_the_svix_sdk() {
    let h = Herald::start();
    let svix = h.svix();
    let apps = svix.application();

    let created = apps
        .create(app_in("Shop", Some("shop-1")), None)
        .await
        .unwrap();
    assert!(
        created.id.starts_with("app_") && created.id.len() == 31,
        "{}",
        created.id
    );
    assert_eq!(created.name, "Shop");
    assert_eq!(created.uid.as_deref(), Some("shop-1"));
    assert_eq!(
        created.metadata.get("plan").map(String::as_str),
        Some("pro")
    );
    assert_eq!(created.throttle_rate, Some(100));

    let by_id = apps.get(created.id.clone()).await.unwrap();
    let by_uid = apps.get("shop-1".to_string()).await.unwrap();
    assert_eq!(by_id.id, created.id);
    assert_eq!(by_uid.id, created.id);

    let upserted = apps
        .upsert("shop-1".into(), app_in("Shop Renamed", None))
        .await
        .unwrap();
    assert_eq!(upserted.id, created.id);
    assert_eq!(upserted.name, "Shop Renamed");
    assert_eq!(
        upserted.uid.as_deref(),
        Some("shop-1"),
        "PUT without uid keeps it"
    );
    assert!(upserted.updated_at >= created.updated_at);

    let patch = ApplicationPatch {
        name: Some("Patched".into()),
        uid: JsOption::Null,
        throttle_rate: JsOption::Some(5),
        ..ApplicationPatch::new()
    };
    let patched = apps.patch(created.id.clone(), patch).await.unwrap();
    assert_eq!(patched.name, "Patched");
    assert_eq!(patched.uid, None);
    assert_eq!(patched.throttle_rate, Some(5));
    assert_eq!(
        patched.metadata.get("plan").map(String::as_str),
        Some("pro"),
        "untouched"
    );
    let err = apps.get("shop-1".into()).await.unwrap_err();
    assert_eq!(sdk_status(&err), 404, "the removed uid no longer resolves");

    let listed = apps.list(None).await.unwrap();
    assert!(listed.done);
    assert_eq!(listed.data.len(), 1);
    assert_eq!(listed.data[0].id, created.id);

    apps.delete(created.id.clone()).await.unwrap();
    let err = apps.get(created.id.clone()).await.unwrap_err();
    assert_eq!(sdk_status(&err), 404);
    let err = apps.delete(created.id).await.unwrap_err();
    assert_eq!(sdk_status(&err), 404);
}

#[tokio::test]
async fn uids_are_unique_and_get_if_exists_returns_the_first() {
    let h = Herald::start();
    let svix = h.svix();
    let apps = svix.application();
    let first = apps
        .create(app_in("One", Some("tenant-9")), None)
        .await
        .unwrap();
    let err = apps
        .create(app_in("Two", Some("tenant-9")), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 409);
    match &err {
        svix::error::Error::Http(c) => {
            assert_eq!(
                c.payload.as_ref().map(|p| p.code.as_str()),
                Some("conflict")
            )
        }
        other => panic!("{other:?}"),
    }
    let again = apps
        .get_or_create(app_in("Three", Some("tenant-9")), None)
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(
        again.name, "One",
        "get_if_exists answers the stored application"
    );
    let fresh = apps
        .get_or_create(app_in("Four", Some("tenant-10")), None)
        .await
        .unwrap();
    assert_ne!(fresh.id, first.id);

    // A uid freed by a rename can be taken again.
    apps.patch(
        first.id.clone(),
        ApplicationPatch {
            uid: JsOption::Some("tenant-9b".into()),
            ..ApplicationPatch::new()
        },
    )
    .await
    .unwrap();
    let taken = apps
        .create(app_in("Five", Some("tenant-9")), None)
        .await
        .unwrap();
    assert_ne!(taken.id, first.id);
    assert_eq!(apps.get("tenant-9b".into()).await.unwrap().id, first.id);
}

#[tokio::test]
async fn put_on_an_unknown_uid_creates_the_application() {
    let h = Herald::start();
    let client = crate::support::http();
    let resp = client
        .put(h.api("/app/new-tenant"))
        .header("authorization", crate::support::bearer())
        .json(&serde_json::json!({"name": "New"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["uid"], "new-tenant");
    let again = h
        .svix()
        .application()
        .upsert("new-tenant".into(), ApplicationIn::new("Again".into()))
        .await
        .unwrap();
    assert_eq!(again.id, body["id"].as_str().unwrap());
}

#[tokio::test]
async fn pagination_sees_every_application_exactly_once() {
    let h = Herald::start();
    let svix = h.svix();
    let apps = svix.application();
    let mut created = Vec::new();
    for i in 0..123 {
        created.push(
            apps.create(ApplicationIn::new(format!("app {i}")), None)
                .await
                .unwrap()
                .id,
        );
    }

    let mut seen = Vec::new();
    let mut iterator = None;
    let mut pages = 0;
    loop {
        let opts = ApplicationListOptions {
            limit: Some(50),
            iterator: iterator.clone(),
            ..Default::default()
        };
        let page = apps.list(Some(opts)).await.unwrap();
        pages += 1;
        assert!(page.data.len() <= 50);
        seen.extend(page.data.iter().map(|a| a.id.clone()));
        if page.done {
            break;
        }
        iterator = page.iterator.clone();
        assert!(
            iterator.is_some(),
            "a page that is not done has an iterator"
        );
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every application once, in creation order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 123);

    // Newest first, and back again with prevIterator.
    let desc = ApplicationListOptions {
        limit: Some(10),
        order: Some(Ordering::Descending),
        ..Default::default()
    };
    let first = apps.list(Some(desc)).await.unwrap();
    let newest: Vec<_> = created.iter().rev().take(10).cloned().collect();
    assert_eq!(
        first.data.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        newest
    );
    let second = apps
        .list(Some(ApplicationListOptions {
            limit: Some(10),
            iterator: first.iterator.clone(),
            order: Some(Ordering::Descending),
            ..Default::default()
        }))
        .await
        .unwrap();
    let back = apps
        .list(Some(ApplicationListOptions {
            limit: Some(10),
            iterator: second.prev_iterator.clone(),
            order: Some(Ordering::Descending),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        back.data.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
        newest,
        "prevIterator returns to the first page"
    );
}
