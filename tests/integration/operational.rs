//! Operational webhooks: the official `svix` crate manages the operational endpoints; real
//! receivers get every event type, signed (checked with the `standardwebhooks` crate), filtered by
//! each endpoint's event types, durably (across a SIGKILL), and never about operational endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use svix::models::{
    ApplicationIn, EndpointIn, EndpointPatch, MessageIn, OperationalWebhookEndpointHeadersIn,
    OperationalWebhookEndpointIn, OperationalWebhookEndpointSecretIn,
    OperationalWebhookEndpointUpsertIn,
};

use crate::support::receiver::{Answer, Received, Receiver};
use crate::support::{call, fast_delivery_env, sdk_status, Herald, Launch};

const WAIT: Duration = Duration::from_secs(30);
/// The reserved application that holds the operational endpoints.
const OPS_APP: &str = "app_000000000000000000000000000";

fn env(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut e = fast_delivery_env();
    for (k, v) in extra {
        e.retain(|(x, _)| x != k);
        e.push((k, v.to_string()));
    }
    e
}

fn types(list: &[&str]) -> Option<BTreeSet<String>> {
    Some(list.iter().map(|s| s.to_string()).collect())
}

/// An operational endpoint at `url` taking `filter` (all types when `None`): id and secret.
async fn subscribe(h: &Herald, url: &str, filter: Option<&[&str]>) -> (String, String) {
    let api = h.svix();
    let ops = api.operational_webhook();
    let ep = ops
        .endpoint()
        .create(
            OperationalWebhookEndpointIn {
                event_types: filter.and_then(types),
                ..OperationalWebhookEndpointIn::new(url.to_string())
            },
            None,
        )
        .await
        .unwrap();
    let secret = ops.endpoint().get_secret(ep.id.clone()).await.unwrap().key;
    (ep.id, secret)
}

/// The events received, each checked to be signed with `secret` (and not with another key).
fn events(got: &[Received], secret: &str) -> Vec<Value> {
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    let other = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    got.iter()
        .map(|r| {
            wh.verify(&r.body, &r.headers)
                .expect("signed with the operational endpoint's secret");
            assert!(other.verify(&r.body, &r.headers).is_err());
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert!(v["timestamp"].as_str().is_some(), "{v}");
            assert_ne!(
                v["data"]["appId"], OPS_APP,
                "an event about an operational endpoint: {v}"
            );
            v
        })
        .collect()
}

fn count(got: &[Received], event: &str) -> usize {
    got.iter()
        .filter(|r| serde_json::from_slice::<Value>(&r.body).is_ok_and(|v| v["type"] == event))
        .count()
}

fn of_type<'a>(events: &'a [Value], event: &str) -> Vec<&'a Value> {
    events.iter().filter(|v| v["type"] == event).collect()
}

#[tokio::test]
async fn the_svix_sdk_manages_operational_endpoints() {
    let h = Herald::start();
    let api = h.svix();
    let ops = api.operational_webhook().endpoint();
    let created = ops
        .create(
            OperationalWebhookEndpointIn {
                uid: Some("ops-main".into()),
                description: Some("on-call".into()),
                event_types: types(&["endpoint.disabled", "message.attempt.exhausted"]),
                metadata: Some(BTreeMap::from([("team".to_string(), "sre".to_string())])),
                ..OperationalWebhookEndpointIn::new("https://ops.example.com/hook".into())
            },
            None,
        )
        .await
        .unwrap();
    assert!(created.id.starts_with("ep_"));
    assert_eq!(created.uid.as_deref(), Some("ops-main"));
    assert_eq!(created.description, "on-call");
    assert_eq!(
        created.event_types,
        types(&["endpoint.disabled", "message.attempt.exhausted"])
    );
    assert_eq!(created.disabled, Some(false));
    assert_eq!(created.metadata["team"], "sre");

    let list = ops.list(None).await.unwrap();
    assert_eq!(list.data.len(), 1);
    assert!(list.done);
    assert_eq!(ops.get("ops-main".into()).await.unwrap().id, created.id);

    // PUT replaces the settings; on a uid nobody holds it creates the endpoint.
    let updated = ops
        .upsert(
            created.id.clone(),
            OperationalWebhookEndpointUpsertIn {
                event_types: types(&["endpoint.deleted"]),
                disabled: Some(true),
                ..OperationalWebhookEndpointUpsertIn::new("https://ops.example.com/v2".into())
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.url, "https://ops.example.com/v2");
    assert_eq!(updated.event_types, types(&["endpoint.deleted"]));
    assert_eq!(updated.disabled, Some(true));
    let upserted = ops
        .upsert(
            "ops-second".into(),
            OperationalWebhookEndpointUpsertIn::new("https://ops.example.com/2".into()),
        )
        .await
        .unwrap();
    assert_eq!(upserted.uid.as_deref(), Some("ops-second"));
    assert_eq!(ops.list(None).await.unwrap().data.len(), 2);

    // Secret: read, rotate to a given key (Svix answers 204), rotate to a generated one.
    let first = ops.get_secret(created.id.clone()).await.unwrap().key;
    assert!(first.starts_with("whsec_"));
    let chosen = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string();
    ops.rotate_secret(
        created.id.clone(),
        OperationalWebhookEndpointSecretIn {
            key: Some(chosen.clone()),
            grace_period_seconds: None,
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        ops.get_secret(created.id.clone()).await.unwrap().key,
        chosen
    );
    let (status, _) = call(
        &h,
        "POST",
        &format!("/operational-webhook/endpoint/{}/secret/rotate", created.id),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_ne!(
        ops.get_secret(created.id.clone()).await.unwrap().key,
        chosen
    );

    // Headers: sensitive ones are shown by name only.
    ops.set_headers(
        created.id.clone(),
        OperationalWebhookEndpointHeadersIn::new(BTreeMap::from([
            ("x-team".to_string(), "sre".to_string()),
            ("authorization".to_string(), "Bearer s3cret".to_string()),
        ])),
    )
    .await
    .unwrap();
    let headers = ops.get_headers(created.id.clone()).await.unwrap();
    assert_eq!(
        headers.headers.get("x-team").map(String::as_str),
        Some("sre")
    );
    assert!(!headers.headers.contains_key("authorization"));
    assert!(headers.sensitive.contains("authorization"));

    // Validation as for any endpoint, and only operational event types.
    let bad_url = ops
        .create(OperationalWebhookEndpointIn::new("not a url".into()), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&bad_url), 422);
    let bad_type = ops
        .create(
            OperationalWebhookEndpointIn {
                event_types: types(&["order.created"]),
                ..OperationalWebhookEndpointIn::new("https://ops.example.com".into())
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&bad_type), 422);

    // The reserved application is invisible to the application API.
    let (_, apps) = call(&h, "GET", "/app", None).await;
    assert!(!apps.to_string().contains(OPS_APP), "{apps}");
    for (method, path) in [
        ("GET", format!("/app/{OPS_APP}")),
        ("GET", format!("/app/{OPS_APP}/endpoint")),
        ("GET", format!("/app/{OPS_APP}/endpoint/{}", created.id)),
    ] {
        assert_eq!(
            call(&h, method, &path, None).await.0,
            404,
            "{method} {path}"
        );
    }
    let (status, _) = call(
        &h,
        "POST",
        &format!("/app/{OPS_APP}/endpoint"),
        Some(r#"{"url": "https://x.example.com"}"#),
    )
    .await;
    assert_eq!(status, 404);

    ops.delete(created.id.clone()).await.unwrap();
    let gone = ops.get(created.id.clone()).await.unwrap_err();
    assert_eq!(sdk_status(&gone), 404);
    assert_eq!(
        sdk_status(&ops.delete(created.id.clone()).await.unwrap_err()),
        404
    );
}

#[tokio::test]
async fn endpoint_events_arrive_signed_and_filtered_and_never_about_operational_endpoints() {
    let h = Herald::start_with(fast_delivery_env());
    let all = Receiver::start(Answer::Status(200)).await;
    let deleted_only = Receiver::start(Answer::Status(200)).await;
    let (_, all_secret) = subscribe(&h, &all.url, None).await;
    let (del_id, del_secret) = subscribe(&h, &deleted_only.url, Some(&["endpoint.deleted"])).await;

    // Changes to operational endpoints send nothing.
    let ops = h.svix();
    ops.operational_webhook()
        .endpoint()
        .upsert(
            del_id.clone(),
            OperationalWebhookEndpointUpsertIn {
                event_types: types(&["endpoint.deleted"]),
                description: Some("changed".into()),
                ..OperationalWebhookEndpointUpsertIn::new(deleted_only.url.clone())
            },
        )
        .await
        .unwrap();
    let (spare, _) = subscribe(
        &h,
        "https://ops.example.com/spare",
        Some(&["endpoint.created"]),
    )
    .await;
    ops.operational_webhook()
        .endpoint()
        .delete(spare)
        .await
        .unwrap();

    // A customer's endpoint: created, updated, disabled, enabled, deleted.
    let api = h.svix();
    let app = api
        .application()
        .create(
            ApplicationIn {
                uid: Some("customer-1".into()),
                ..ApplicationIn::new("Customer".into())
            },
            None,
        )
        .await
        .unwrap();
    let ep = api
        .endpoint()
        .create(
            app.id.clone(),
            EndpointIn {
                uid: Some("their-hook".into()),
                ..EndpointIn::new("https://customer.example.com/hook".into())
            },
            None,
        )
        .await
        .unwrap();
    for disabled in [true, false] {
        api.endpoint()
            .patch(
                app.id.clone(),
                ep.id.clone(),
                EndpointPatch {
                    disabled: Some(disabled),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    api.endpoint()
        .delete(app.id.clone(), ep.id.clone())
        .await
        .unwrap();

    let wanted = [
        ("endpoint.created", 1),
        ("endpoint.updated", 2),
        ("endpoint.disabled", 1),
        ("endpoint.enabled", 1),
        ("endpoint.deleted", 1),
    ];
    let got = all
        .wait_until("six endpoint events", WAIT, |r| {
            wanted.iter().all(|(t, n)| count(r, t) >= *n)
        })
        .await;
    let del = deleted_only
        .wait_until("endpoint.deleted", WAIT, |r| {
            count(r, "endpoint.deleted") >= 1
        })
        .await;
    // Anything more (an event about an operational endpoint, a duplicate) would have come by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        all.received().len(),
        6,
        "{:?}",
        events(&all.received(), &all_secret)
    );
    assert_eq!(deleted_only.received().len(), 1, "the filter holds");

    let evs = events(&got, &all_secret);
    for v in &evs {
        let data = &v["data"];
        assert_eq!(data["appId"], app.id.as_str(), "{v}");
        assert_eq!(data["appUid"], "customer-1", "{v}");
        assert_eq!(data["endpointId"], ep.id.as_str(), "{v}");
        assert_eq!(data["endpointUid"], "their-hook", "{v}");
    }
    let disabled = of_type(&evs, "endpoint.disabled");
    assert_eq!(disabled[0]["data"]["trigger"], "manual", "{}", disabled[0]);
    let only = events(&del, &del_secret);
    assert_eq!(only[0]["type"], "endpoint.deleted");
}

#[tokio::test]
async fn attempt_events_follow_svix_thresholds_and_a_410_sends_endpoint_disabled() {
    // Six tries per message: failing after the 4th failed one.
    let h = Herald::start_with(env(&[(
        "HERALD_DELIVERY__RETRY_SCHEDULE",
        "0.1,0.1,0.1,0.1,0.1",
    )]));
    let ops_rx = Receiver::start(Answer::Status(200)).await;
    let (_, secret) = subscribe(
        &h,
        &ops_rx.url,
        Some(&[
            "message.attempt.failing",
            "message.attempt.recovered",
            "message.attempt.exhausted",
            "endpoint.disabled",
        ]),
    )
    .await;
    // An operational endpoint that always fails: its failures are never reported (no loops).
    let broken = Receiver::start(Answer::Status(500)).await;
    subscribe(&h, &broken.url, None).await;
    let customer = Receiver::start(Answer::Status(200)).await;
    let api = h.svix();
    let app = api
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap();
    let ep = api
        .endpoint()
        .create(app.id.clone(), EndpointIn::new(customer.url.clone()), None)
        .await
        .unwrap();
    let send = |event_id: &'static str| {
        let api = h.svix();
        let app = app.id.clone();
        async move {
            api.message()
                .create(
                    app,
                    MessageIn {
                        event_id: Some(event_id.into()),
                        ..MessageIn::new("order.created".into(), json!({"n": 1}))
                    },
                    None,
                )
                .await
                .unwrap()
                .id
        }
    };

    // Four failures, then a success: failing, then recovered.
    customer.script(vec![Answer::Status(500); 4]);
    let m1 = send("first").await;
    ops_rx
        .wait_until("failing and recovered", WAIT, |r| {
            count(r, "message.attempt.recovered") == 1
        })
        .await;
    assert_eq!(customer.received().len(), 5);

    // Every try fails: failing, then exhausted; no recovered.
    customer.set_default(Answer::Status(500));
    let m2 = send("second").await;
    ops_rx
        .wait_until("exhausted", WAIT, |r| {
            count(r, "message.attempt.exhausted") == 1
        })
        .await;

    // 410 Gone disables the endpoint.
    customer.set_default(Answer::Status(410));
    send("third").await;
    let got = ops_rx
        .wait_until("disabled", WAIT, |r| count(r, "endpoint.disabled") == 1)
        .await;
    // Enough for the broken endpoint to fail past the failing threshold.
    broken
        .wait_until("the broken endpoint's retries", WAIT, |r| r.len() >= 8)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ops_rx.received().len(), got.len(), "nothing more");

    let evs = events(&got, &secret);
    let failing = of_type(&evs, "message.attempt.failing");
    assert_eq!(failing.len(), 2, "{evs:?}");
    let recovered = of_type(&evs, "message.attempt.recovered");
    assert_eq!(recovered.len(), 1, "{evs:?}");
    let exhausted = of_type(&evs, "message.attempt.exhausted");
    assert_eq!(exhausted.len(), 1, "{evs:?}");
    for (v, msg, code) in [
        (failing[0], &m1, 500),
        (failing[1], &m2, 500),
        (recovered[0], &m1, 200),
        (exhausted[0], &m2, 500),
    ] {
        let d = &v["data"];
        assert_eq!(d["appId"], app.id.as_str(), "{v}");
        assert_eq!(d["msgId"], msg.as_str(), "{v}");
        assert_eq!(d["endpointId"], ep.id.as_str(), "{v}");
        assert_eq!(d["lastAttempt"]["responseStatusCode"], code, "{v}");
        assert!(d["lastAttempt"]["id"]
            .as_str()
            .unwrap()
            .starts_with("atmpt_"));
        assert!(d["lastAttempt"]["timestamp"].is_string());
    }
    assert_eq!(failing[0]["data"]["msgEventId"], "first");
    let disabled = of_type(&evs, "endpoint.disabled");
    let d = &disabled[0]["data"];
    assert_eq!(d["trigger"], "automatic", "{d}");
    assert_eq!(d["endpointId"], ep.id.as_str());
    assert!(d["reason"].as_str().unwrap().contains("410"), "{d}");
    assert!(d["failSince"].is_string(), "{d}");
}

#[tokio::test]
async fn auto_disable_sends_endpoint_disabled_with_fail_since() {
    let h = Herald::start_with(env(&[
        ("HERALD_DELIVERY__RETRY_SCHEDULE", "0.1"),
        ("HERALD_DELIVERY__DISABLE_AFTER", "0"),
    ]));
    let ops_rx = Receiver::start(Answer::Status(200)).await;
    let (_, secret) = subscribe(&h, &ops_rx.url, Some(&["endpoint.disabled"])).await;
    let customer = Receiver::start(Answer::Status(500)).await;
    let api = h.svix();
    let app = api
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap();
    let ep = api
        .endpoint()
        .create(app.id.clone(), EndpointIn::new(customer.url.clone()), None)
        .await
        .unwrap();
    api.message()
        .create(
            app.id.clone(),
            MessageIn::new("order.created".into(), json!({"n": 1})),
            None,
        )
        .await
        .unwrap();
    let got = ops_rx.wait_for(1, WAIT).await;
    let evs = events(&got, &secret);
    let d = &evs[0]["data"];
    assert_eq!(evs[0]["type"], "endpoint.disabled");
    assert_eq!(d["trigger"], "automatic", "{d}");
    assert_eq!(d["endpointId"], ep.id.as_str());
    assert!(d["failSince"].is_string(), "{d}");
    assert!(d["reason"].as_str().unwrap().contains("exhausted"), "{d}");
}

#[tokio::test]
async fn an_operational_event_survives_a_kill_and_is_retried_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        env: env(&[("HERALD_DELIVERY__RETRY_SCHEDULE", "2,2,2")]),
        ..Launch::new(dir.path())
    };
    let mut h = Herald::launch(&launch).unwrap();
    let ops_rx = Receiver::start(Answer::Status(503)).await;
    let (_, secret) = subscribe(&h, &ops_rx.url, Some(&["endpoint.created"])).await;
    let api = h.svix();
    let app = api
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap();
    api.endpoint()
        .create(
            app.id.clone(),
            EndpointIn::new("https://customer.example.com".into()),
            None,
        )
        .await
        .unwrap();
    let first = ops_rx.wait_for(1, WAIT).await;
    h.kill();
    ops_rx.set_default(Answer::Status(200));
    // A retry may have come before the kill on a slow machine: look only at what comes after.
    let before_restart = ops_rx.received().len();
    let _h = Herald::launch(&launch).unwrap();
    let got = ops_rx.wait_for(before_restart + 1, WAIT).await;
    let after = &got[before_restart..];
    assert_eq!(after[0].header("webhook-id"), first[0].header("webhook-id"));
    let evs = events(after, &secret);
    assert_eq!(evs[0]["type"], "endpoint.created");
    assert_eq!(evs[0]["data"]["appId"], app.id.as_str());
}
