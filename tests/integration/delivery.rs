//! Delivery through the real server to a real receiver, with the official svix SDK as the client
//! and the standardwebhooks crate as the verifier: signatures, exact payload bytes, filters,
//! retries, resend, idempotency, eventId, secret rotation, the SSRF guard.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use svix::api::MessageCreateOptions;
use svix::models::{ApplicationIn, EndpointIn, EndpointSecretRotateIn, MessageIn, MessageStatus};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{
    app_with_endpoint, attempts, bearer, fast_delivery_env, http, sdk_status, Herald,
};

const WAIT: Duration = Duration::from_secs(15);

fn msg(event_type: &str, payload: Value) -> MessageIn {
    MessageIn::new(event_type.to_string(), payload)
}

#[tokio::test]
async fn deliveries_are_signed_and_carry_the_exact_payload() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let headers = BTreeMap::from([
        ("X-Tenant".to_string(), "acme".to_string()),
        (
            "Authorization".to_string(),
            "Bearer for-the-receiver".to_string(),
        ),
    ]);
    let (app, _ep, secret) = app_with_endpoint(
        &h,
        &format!("{}/hook", rx.url),
        EndpointIn {
            headers: Some(headers),
            ..EndpointIn::new(String::new())
        },
    )
    .await;

    // Raw HTTP, so the payload's odd spacing and key order are ours to check.
    let body = r#"{"eventType":"order.created","payload":{ "z": 1,  "a" : [1, 2.50, "é"] }}"#;
    let resp = http()
        .post(h.api(&format!("/app/{app}/msg")))
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let out: Value = resp.json().await.unwrap();
    let msg_id = out["id"].as_str().unwrap().to_string();
    assert!(msg_id.starts_with("msg_"));
    assert_eq!(out["payload"], json!({"z": 1, "a": [1, 2.5, "é"]}));

    let got = rx.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(r.path, "/hook");
    assert_eq!(
        r.body,
        r#"{ "z": 1,  "a" : [1, 2.50, "é"] }"#.as_bytes(),
        "payload bytes as received"
    );
    assert_eq!(r.header("webhook-id"), msg_id);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(
        r.header("user-agent").starts_with("Herald/"),
        "{}",
        r.header("user-agent")
    );
    assert_eq!(r.header("x-tenant"), "acme");
    assert_eq!(r.header("authorization"), "Bearer for-the-receiver");
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    assert!((ts - chrono::Utc::now().timestamp()).abs() < 60);

    let wh = standardwebhooks::Webhook::new(&secret).unwrap();
    wh.verify(&r.body, &r.headers)
        .expect("signature verifies with the endpoint secret");
    let other = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert!(
        other.verify(&r.body, &r.headers).is_err(),
        "another secret does not verify"
    );
    let mut tampered = r.body.clone();
    tampered[2] = b'y';
    assert!(wh.verify(&tampered, &r.headers).is_err());
    // The svix SDK's own verifier agrees.
    svix::webhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&r.body, &r.headers)
        .unwrap();

    // The attempt is recorded as a success.
    let svix = h.svix();
    let attempts = eventually("a recorded attempt", WAIT, || async {
        let l = svix
            .message_attempt()
            .list_by_msg(app.clone(), msg_id.clone(), None)
            .await
            .unwrap();
        (!l.data.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(attempts.data.len(), 1);
    let a = &attempts.data[0];
    assert_eq!(a.status, MessageStatus::Success);
    assert_eq!(a.response_status_code, 200);
    assert_eq!(a.response, "ok");
    assert_eq!(a.url, format!("{}/hook", rx.url));
    let one = svix
        .message_attempt()
        .get(app.clone(), msg_id.clone(), a.id.clone(), None)
        .await
        .unwrap();
    assert_eq!(one.id, a.id);
    let dests = svix
        .message_attempt()
        .list_attempted_destinations(app.clone(), msg_id.clone(), None)
        .await
        .unwrap();
    assert_eq!(dests.data.len(), 1);
    assert_eq!(dests.data[0].status, MessageStatus::Success);

    // And the message reads back with its payload.
    let m = svix
        .message()
        .get(app.clone(), msg_id.clone(), None)
        .await
        .unwrap();
    assert_eq!(m.event_type, "order.created");
    let full = http()
        .get(h.api(&format!("/app/{app}/msg/{msg_id}")))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        full.contains(r#""payload":{ "z": 1,  "a" : [1, 2.50, "é"] }"#),
        "{full}"
    );
}

#[tokio::test]
async fn event_type_and_channel_filters_never_leak() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    let set = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    let eps = [
        ("all", EndpointIn::new(String::new())),
        (
            "orders",
            EndpointIn {
                event_types: set(&["order.created", "order.paid"]),
                ..EndpointIn::new(String::new())
            },
        ),
        (
            "eu",
            EndpointIn {
                channels: set(&["eu"]),
                ..EndpointIn::new(String::new())
            },
        ),
        (
            "eu-orders",
            EndpointIn {
                channels: set(&["eu"]),
                event_types: set(&["order.created"]),
                ..EndpointIn::new(String::new())
            },
        ),
        (
            "off",
            EndpointIn {
                disabled: Some(true),
                ..EndpointIn::new(String::new())
            },
        ),
    ];
    for (name, input) in eps {
        svix.endpoint()
            .create(
                app.clone(),
                EndpointIn {
                    url: format!("{}/{name}", rx.url),
                    ..input
                },
                None,
            )
            .await
            .unwrap();
    }
    let sends: [(&str, Option<&[&str]>); 5] = [
        ("order.created", None),
        ("order.paid", Some(&["eu"])),
        ("user.signup", Some(&["us"])),
        ("order.created", Some(&["us", "eu"])),
        ("user.signup", Some(&["eu"])),
    ];
    let mut ids = Vec::new();
    for (t, ch) in sends {
        let m = MessageIn {
            channels: ch.map(|c| c.iter().map(|s| s.to_string()).collect()),
            ..msg(t, json!({"t": t}))
        };
        ids.push(
            svix.message()
                .create(app.clone(), m, None)
                .await
                .unwrap()
                .id,
        );
    }
    let expected: BTreeMap<&str, Vec<usize>> = BTreeMap::from([
        ("/all", vec![0, 1, 2, 3, 4]),
        ("/orders", vec![0, 1, 3]),
        ("/eu", vec![1, 3, 4]),
        ("/eu-orders", vec![3]),
    ]);
    let total: usize = expected.values().map(Vec::len).sum();
    rx.wait_for(total, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // room for a leak to show up
    let got = rx.received();
    assert_eq!(got.len(), total, "no extra deliveries");
    for (path, want) in expected {
        let mut seen: Vec<String> = got
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.header("webhook-id").to_string())
            .collect();
        seen.sort();
        let mut want: Vec<String> = want.iter().map(|i| ids[*i].clone()).collect();
        want.sort();
        assert_eq!(seen, want, "{path}");
    }
}

#[tokio::test]
async fn failures_are_retried_with_the_same_webhook_id() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    rx.script([Answer::Body(500, "boom".into()), Answer::Status(503)]);
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let svix = h.svix();
    let id = svix
        .message()
        .create(app.clone(), msg("a.b", json!({"n": 1})), None)
        .await
        .unwrap()
        .id;
    let got = rx.wait_for(3, WAIT).await;
    assert!(
        got.iter().all(|r| r.header("webhook-id") == id),
        "one webhook-id on every try"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.received().len(), 3, "no try after the success");

    let attempts = attempts(&svix, &app, &id, 3).await;
    // Newest first.
    let codes: Vec<i16> = attempts
        .data
        .iter()
        .map(|a| a.response_status_code)
        .collect();
    assert_eq!(codes, [200, 503, 500]);
    assert_eq!(attempts.data[2].response, "boom", "failure bodies are kept");
    assert_eq!(attempts.data[2].status, MessageStatus::Fail);
    let by_ep = svix
        .message_attempt()
        .list_by_endpoint(app.clone(), ep.clone(), None)
        .await
        .unwrap();
    assert_eq!(by_ep.data.len(), 3);
    let dest = svix
        .message_attempt()
        .list_attempted_destinations(app.clone(), id.clone(), None)
        .await
        .unwrap();
    assert_eq!(dest.data[0].status, MessageStatus::Success);
}

#[tokio::test]
async fn exhausted_retries_end_failed_and_resend_tries_again() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(500)).await;
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let svix = h.svix();
    let id = svix
        .message()
        .create(app.clone(), msg("a.b", json!({})), None)
        .await
        .unwrap()
        .id;
    rx.wait_for(3, WAIT).await; // first try + 2 retries
    let dest = eventually("a failed destination", WAIT, || async {
        let d = svix
            .message_attempt()
            .list_attempted_destinations(app.clone(), id.clone(), None)
            .await
            .unwrap();
        (d.data[0].status == MessageStatus::Fail).then_some(d)
    })
    .await;
    assert!(dest.data[0].next_attempt.is_none());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.received().len(), 3, "no fourth try");

    rx.set_default(Answer::Status(200));
    svix.message_attempt()
        .resend(app.clone(), id.clone(), ep.clone(), None)
        .await
        .unwrap();
    let got = rx.wait_for(4, WAIT).await;
    assert_eq!(got[3].header("webhook-id"), id);
    let attempts = attempts(&svix, &app, &id, 4).await;
    assert_eq!(
        attempts.data[0].trigger_type,
        svix::models::MessageAttemptTriggerType::Manual
    );
    assert_eq!(attempts.data[0].status, MessageStatus::Success);
    let stats = svix
        .endpoint()
        .get_stats(app.clone(), ep.clone(), None)
        .await
        .unwrap();
    assert_eq!((stats.success, stats.fail, stats.pending), (1, 0, 0));
}

#[tokio::test]
async fn idempotency_keys_and_event_ids_never_make_a_second_message() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let svix = h.svix();
    let opts = || {
        Some(MessageCreateOptions {
            idempotency_key: Some("key-1".into()),
            ..Default::default()
        })
    };
    let a = svix
        .message()
        .create(app.clone(), msg("a.b", json!({"n": 1})), opts())
        .await
        .unwrap();
    let b = svix
        .message()
        .create(app.clone(), msg("a.b", json!({"n": 2})), opts())
        .await
        .unwrap();
    assert_eq!(a.id, b.id, "the first answer is replayed");
    assert_eq!(a.timestamp, b.timestamp);

    let with_id = MessageIn {
        event_id: Some("evt-42".into()),
        ..msg("a.b", json!({"n": 3}))
    };
    let c = svix
        .message()
        .create(app.clone(), with_id.clone(), None)
        .await
        .unwrap();
    let err = svix
        .message()
        .create(app.clone(), with_id, None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 409);
    let by_event = svix
        .message()
        .get(app.clone(), "evt-42".into(), None)
        .await
        .unwrap();
    assert_eq!(by_event.id, c.id);

    rx.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: HashSet<String> = rx
        .received()
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert_eq!(rx.received().len(), 2);
    assert_eq!(ids, HashSet::from([a.id.clone(), c.id.clone()]));
    let listed = svix.message().list(app.clone(), None).await.unwrap();
    assert_eq!(
        listed.data.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        [c.id, a.id],
        "newest first"
    );
}

#[tokio::test]
async fn during_rotation_both_keys_sign() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, ep, old) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let svix = h.svix();
    let new = svix
        .endpoint()
        .rotate_secret(app.clone(), ep.clone(), EndpointSecretRotateIn::new(), None)
        .await
        .unwrap()
        .key;
    svix.message()
        .create(app.clone(), msg("a.b", json!({"x": true})), None)
        .await
        .unwrap();
    let r = &rx.wait_for(1, WAIT).await[0];
    assert_eq!(
        r.header("webhook-signature").split(' ').count(),
        2,
        "{}",
        r.header("webhook-signature")
    );
    standardwebhooks::Webhook::new(&old)
        .unwrap()
        .verify(&r.body, &r.headers)
        .expect("old key verifies");
    standardwebhooks::Webhook::new(&new)
        .unwrap()
        .verify(&r.body, &r.headers)
        .expect("new key verifies");

    // With no grace period the old key stops signing at once.
    let newest = svix
        .endpoint()
        .rotate_secret(
            app.clone(),
            ep.clone(),
            EndpointSecretRotateIn {
                grace_period_seconds: Some(0),
                key: None,
            },
            None,
        )
        .await
        .unwrap()
        .key;
    svix.message()
        .create(app.clone(), msg("a.b", json!({"x": false})), None)
        .await
        .unwrap();
    let r = &rx.wait_for(2, WAIT).await[1];
    let sigs = r.header("webhook-signature").split(' ').count();
    assert_eq!(
        sigs, 2,
        "the key rotated out first is still in its grace period"
    );
    standardwebhooks::Webhook::new(&newest)
        .unwrap()
        .verify(&r.body, &r.headers)
        .unwrap();
    standardwebhooks::Webhook::new(&old)
        .unwrap()
        .verify(&r.body, &r.headers)
        .unwrap();
    assert!(
        standardwebhooks::Webhook::new(&new)
            .unwrap()
            .verify(&r.body, &r.headers)
            .is_err(),
        "no grace: gone"
    );
}

#[tokio::test]
async fn the_ssrf_guard_keeps_deliveries_off_loopback() {
    // No allow-list: loopback is refused.
    let env = vec![("HERALD_DELIVERY__RETRY_SCHEDULE", "0.2".to_string())];
    let h = Herald::start_with(env);
    let rx = Receiver::start(Answer::Status(200)).await;
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    for url in [
        rx.url.clone(),
        format!("http://localhost:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ] {
        svix.endpoint()
            .create(app.clone(), EndpointIn::new(url), None)
            .await
            .unwrap();
    }
    let id = svix
        .message()
        .create(app.clone(), msg("a.b", json!({})), None)
        .await
        .unwrap()
        .id;
    let attempts = attempts(&svix, &app, &id, 6).await;
    for a in &attempts.data {
        assert_eq!(a.response_status_code, 0);
        assert_eq!(a.status, MessageStatus::Fail);
        assert!(
            a.response.starts_with("refused by the address policy"),
            "{}",
            a.response
        );
    }
    assert!(
        rx.received().is_empty(),
        "nothing reached the loopback receiver"
    );
}

#[tokio::test]
async fn redirects_are_failures_and_response_bodies_are_capped() {
    let mut env = fast_delivery_env();
    env.push(("HERALD_DELIVERY__SVIX_HEADERS", "true".to_string()));
    let h = Herald::start_with(env);
    let target = Receiver::start(Answer::Status(200)).await;
    let rx = Receiver::start(Answer::Status(200)).await;
    rx.script([
        Answer::Redirect(target.url.clone()),
        Answer::Body(500, "e".repeat(30_000)),
    ]);
    let (app, _, secret) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let svix = h.svix();
    let id = svix
        .message()
        .create(app.clone(), msg("a.b", json!({})), None)
        .await
        .unwrap()
        .id;
    let got = rx.wait_for(3, WAIT).await;
    assert!(
        target.received().is_empty(),
        "the redirect was not followed"
    );
    // The svix- names carry the same values, for older Svix receivers.
    assert_eq!(got[0].header("svix-id"), id);
    assert_eq!(
        got[0].header("svix-signature"),
        got[0].header("webhook-signature")
    );
    svix::webhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&got[0].body, &got[0].headers)
        .unwrap();
    let attempts = attempts(&svix, &app, &id, 3).await;
    let redirect = &attempts.data[2];
    assert_eq!(
        (redirect.response_status_code, redirect.status),
        (302, MessageStatus::Fail)
    );
    let big = &attempts.data[1];
    assert_eq!(big.response_status_code, 500);
    assert_eq!(
        big.response.len(),
        20 * 1024,
        "response bodies are kept up to 20 KB"
    );
    assert_eq!(attempts.data[0].status, MessageStatus::Success);
}

#[tokio::test]
async fn messages_list_newest_first_with_filters_and_pages() {
    use svix::api::MessageListOptions;
    let h = Herald::start();
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    let mut made = Vec::new();
    for (i, (t, ch)) in [
        ("a.one", "eu"),
        ("a.two", "us"),
        ("a.one", "us"),
        ("a.three", "eu"),
        ("a.two", "eu"),
    ]
    .into_iter()
    .enumerate()
    {
        let m = MessageIn {
            channels: Some([ch.to_string()].into()),
            ..msg(t, json!({"i": i}))
        };
        made.push(svix.message().create(app.clone(), m, None).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ids = |l: &svix::models::ListResponseMessageOut| {
        l.data.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    };
    let id = |i: usize| made[i].id.clone();
    let list = |o: MessageListOptions| {
        let svix = h.svix();
        let app = app.clone();
        async move { svix.message().list(app, Some(o)).await.unwrap() }
    };

    let all = list(MessageListOptions::default()).await;
    assert_eq!(
        ids(&all),
        [id(4), id(3), id(2), id(1), id(0)],
        "newest first"
    );
    let types = list(MessageListOptions {
        event_types: Some(["a.one".to_string(), "a.three".to_string()].into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&types), [id(3), id(2), id(0)]);
    let eu = list(MessageListOptions {
        channel: Some("eu".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&eu), [id(4), id(3), id(0)]);
    let before = list(MessageListOptions {
        before: Some(made[2].timestamp),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&before), [id(1), id(0)]);
    let after = list(MessageListOptions {
        after: Some(made[2].timestamp),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&after), [id(4), id(3)]);

    let first = list(MessageListOptions {
        limit: Some(2),
        ..Default::default()
    })
    .await;
    assert_eq!((ids(&first), first.done), (vec![id(4), id(3)], false));
    let second = list(MessageListOptions {
        limit: Some(2),
        iterator: first.iterator.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&second), [id(2), id(1)]);
    let third = list(MessageListOptions {
        limit: Some(2),
        iterator: second.iterator.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!((ids(&third), third.done), (vec![id(0)], true));
    let content = list(MessageListOptions {
        with_content: Some(true),
        limit: Some(1),
        ..Default::default()
    })
    .await;
    assert_eq!(content.data[0].payload, json!({"i": 4}));
}
