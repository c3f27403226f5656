//! Svix routes added for issue 13 (background tasks, recover and bulk replay as tasks, an
//! endpoint's messages, precheck, event types from OpenAPI, environment export and import), each
//! called through the `svix` crate 2.9.1, with a real receiver where something is delivered.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use svix::api::{
    BackgroundTaskListOptions, MessageAttemptListAttemptedMessagesOptions,
    MessageAttemptListByEndpointOptions, Svix,
};
use svix::models::{
    BackgroundTaskOut, BackgroundTaskStatus, BackgroundTaskType, BulkReplayIn, EndpointIn,
    EnvironmentIn, EventTypeImportOpenApiIn, EventTypeIn, MessageIn, MessagePrecheckIn,
    MessageStatus, RecoverIn,
};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{app_with_endpoint, fast_delivery_env, sdk_status, Herald};

async fn ended(svix: &Svix, id: &str) -> BackgroundTaskOut {
    eventually(
        "the background task to end",
        Duration::from_secs(20),
        || async {
            let t = svix.background_task().get(id.to_string()).await.unwrap();
            (t.status != BackgroundTaskStatus::Running).then_some(t)
        },
    )
    .await
}

fn a_minute_ago() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::minutes(1)
}

#[tokio::test]
async fn recover_and_bulk_replay_are_background_tasks_that_can_be_listed_and_read() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(500)).await;
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let svix = h.svix();
    let mut failed = BTreeSet::new();
    for i in 0..3 {
        let m = MessageIn {
            tags: Some([format!("t{}", i % 2)].into()),
            ..MessageIn::new("a.b".into(), json!({"i": i}))
        };
        failed.insert(
            svix.message()
                .create(app.clone(), m, None)
                .await
                .unwrap()
                .id,
        );
    }
    // 3 tries each (first + 2 retries), all failing.
    rx.wait_for(9, Duration::from_secs(20)).await;
    eventually("the messages to fail", Duration::from_secs(20), || async {
        let l = svix
            .message_attempt()
            .list_attempted_messages(
                app.clone(),
                ep.clone(),
                Some(MessageAttemptListAttemptedMessagesOptions {
                    status: Some(MessageStatus::Fail),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        (l.data.len() == 3).then_some(())
    })
    .await;
    rx.set_default(Answer::Status(200));

    let recovered = svix
        .endpoint()
        .recover(
            app.clone(),
            ep.clone(),
            RecoverIn::new(a_minute_ago()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(recovered.task, BackgroundTaskType::EndpointRecover);
    let done = ended(&svix, &recovered.id).await;
    assert_eq!(done.status, BackgroundTaskStatus::Finished);
    assert_eq!(done.data["messagesSent"], 3, "{done:?}");
    rx.wait_for(12, Duration::from_secs(20)).await;
    // The endpoint's messages, with their status there: all three, delivered now.
    let listed = eventually(
        "the recovered ones to succeed",
        Duration::from_secs(20),
        || async {
            let l = svix
                .message_attempt()
                .list_attempted_messages(app.clone(), ep.clone(), None)
                .await
                .unwrap();
            l.data
                .iter()
                .all(|m| m.status == MessageStatus::Success)
                .then_some(l)
        },
    )
    .await;
    let ids: BTreeSet<String> = listed.data.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, failed);

    // Bulk replay, filtered by tag: the two messages tagged t0, delivered or not.
    let bulk = svix
        .endpoint()
        .bulk_replay(
            app.clone(),
            ep.clone(),
            BulkReplayIn {
                tag: Some("t0".into()),
                ..BulkReplayIn::new(a_minute_ago())
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(bulk.task, BackgroundTaskType::EndpointBulkReplay);
    let done = ended(&svix, &bulk.id).await;
    assert_eq!(done.data["messagesSent"], 2, "{done:?}");
    rx.wait_for(14, Duration::from_secs(20)).await;

    // Attempts filtered by their message's tag: only those of the one message tagged t1.
    let t1 = svix
        .message_attempt()
        .list_by_endpoint(
            app.clone(),
            ep.clone(),
            Some(MessageAttemptListByEndpointOptions {
                tag: Some("t1".into()),
                limit: Some(100),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let of: BTreeSet<&str> = t1.data.iter().map(|a| a.msg_id.as_str()).collect();
    assert_eq!(of.len(), 1, "{of:?}");
    assert_eq!(t1.data.len(), 4, "3 scheduled tries and 1 recovered");

    // Listing with Svix's filters.
    let list = svix
        .background_task()
        .list(Some(BackgroundTaskListOptions {
            task: Some(BackgroundTaskType::EndpointBulkReplay),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        list.data.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        vec![bulk.id.clone()]
    );
    let all = svix
        .background_task()
        .list(Some(BackgroundTaskListOptions {
            status: Some(BackgroundTaskStatus::Finished),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(all.data.len(), 2, "{all:?}");
    let err = svix
        .background_task()
        .get("qtask_2yZwUhtgs5Ai8T9yRQJXAbcdefg".into())
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 404);
}

#[tokio::test]
async fn precheck_says_whether_anyone_listens() {
    let h = Herald::start();
    let input = EndpointIn {
        event_types: Some(["a.b".to_string()].into()),
        channels: Some(["c1".to_string()].into()),
        ..EndpointIn::new(String::new())
    };
    let (app, _, _) = app_with_endpoint(&h, "https://example.com/hook", input).await;
    let svix = h.svix();
    let check = |event: &str, channel: Option<&str>| {
        let (svix, app) = (&svix, app.clone());
        let input = MessagePrecheckIn {
            channels: channel.map(|c| [c.to_string()].into()),
            ..MessagePrecheckIn::new(event.to_string())
        };
        async move {
            svix.message()
                .precheck(app, input, None)
                .await
                .unwrap()
                .active
        }
    };
    assert!(check("a.b", Some("c1")).await);
    assert!(!check("a.b", None).await, "the endpoint wants channel c1");
    assert!(!check("x.y", Some("c1")).await);
}

/// Event types imported from an OpenAPI `webhooks` section keep their schema, description,
/// `deprecated`, group and feature flags; a dry run changes nothing; `replaceAll` archives the
/// others.
#[tokio::test]
async fn event_types_import_from_an_openapi_document() {
    let h = Herald::start();
    let svix = h.svix();
    svix.event_type()
        .create(EventTypeIn::new("old.one".into(), "d".into()), None)
        .await
        .unwrap();
    let spec = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "webhooks": {
            "invoice.paid": {"post": {
                "description": "An invoice was paid",
                "deprecated": true,
                "x-svix-group-name": "billing",
                "x-svix-feature-flags": ["beta"],
                "requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Invoice"}}}}
            }}
        },
        "components": {"schemas": {"Invoice": {
            "type": "object", "properties": {"id": {"type": "string"}}}}}
    });
    let dry = svix
        .event_type()
        .import_openapi(
            EventTypeImportOpenApiIn {
                spec: Some(spec.clone()),
                dry_run: Some(true),
                ..EventTypeImportOpenApiIn::new()
            },
            None,
        )
        .await
        .unwrap();
    assert!(dry.data.modified.is_empty());
    assert_eq!(dry.data.to_modify.unwrap()[0].name, "invoice.paid");
    assert_eq!(
        sdk_status(
            &svix
                .event_type()
                .get("invoice.paid".into())
                .await
                .unwrap_err()
        ),
        404,
        "a dry run writes nothing"
    );

    let out = svix
        .event_type()
        .import_openapi(
            EventTypeImportOpenApiIn {
                spec_raw: Some(spec.to_string()),
                replace_all: Some(true),
                ..EventTypeImportOpenApiIn::new()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.data.modified, vec!["invoice.paid".to_string()]);
    let et = svix.event_type().get("invoice.paid".into()).await.unwrap();
    assert_eq!(et.description, "An invoice was paid");
    assert!(et.deprecated);
    assert_eq!(et.group_name.as_deref(), Some("billing"));
    assert_eq!(et.feature_flags, Some(["beta".to_string()].into()));
    assert_eq!(
        et.schemas.unwrap()["1"]["properties"]["id"]["type"],
        "string"
    );
    let old = svix.event_type().get("old.one".into()).await.unwrap();
    assert_eq!(old.archived, Some(true), "replaceAll archives the others");
}

/// An export from one server imports into another: the event types arrive with every field.
#[tokio::test]
async fn an_environment_exported_from_one_server_imports_into_another() {
    let (a, b) = (Herald::start(), Herald::start());
    let (sa, sb) = (a.svix(), b.svix());
    let input = EventTypeIn {
        deprecated: Some(true),
        group_name: Some("users".into()),
        feature_flags: Some(["beta".to_string()].into()),
        schemas: Some(json!({"1": {"type": "object", "examples": [{"id": "u1"}]}})),
        ..EventTypeIn::new("user.created".into(), "A user".into())
    };
    sa.event_type().create(input, None).await.unwrap();
    let env = sa.environment().export(None).await.unwrap();
    assert_eq!(env.event_types.len(), 1);
    assert!(env.connectors.is_empty());

    let event_types = env
        .event_types
        .iter()
        .map(|e| EventTypeIn {
            archived: e.archived,
            deprecated: Some(e.deprecated),
            schemas: e.schemas.clone(),
            group_name: e.group_name.clone(),
            feature_flags: e.feature_flags.clone(),
            ..EventTypeIn::new(e.name.clone(), e.description.clone())
        })
        .collect();
    sb.environment()
        .import(
            EnvironmentIn {
                event_types: Some(event_types),
                ..EnvironmentIn::new()
            },
            None,
        )
        .await
        .unwrap();
    let got = sb.event_type().get("user.created".into()).await.unwrap();
    let want = sa.event_type().get("user.created".into()).await.unwrap();
    assert_eq!(
        (
            got.description,
            got.deprecated,
            got.group_name,
            got.feature_flags,
            got.schemas
        ),
        (
            want.description,
            want.deprecated,
            want.group_name,
            want.feature_flags,
            want.schemas
        )
    );
}
