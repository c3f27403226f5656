//! How delivery behaves when receivers misbehave: timeouts, Retry-After, 410 Gone, a hanging
//! endpoint beside a healthy one, recovery (fast recovery and the recover API), auto-disable.

use std::time::{Duration, Instant};

use serde_json::json;
use svix::models::{ApplicationIn, EndpointIn, MessageIn, MessageStatus, RecoverIn};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{app_with_endpoint, attempts, fast_delivery_env, get_json, Herald};

const WAIT: Duration = Duration::from_secs(20);

fn env(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut e = fast_delivery_env();
    for (k, v) in extra {
        e.retain(|(x, _)| x != k);
        e.push((k, v.to_string()));
    }
    e
}

async fn setup(h: &Herald, url: &str) -> (String, String) {
    let (app, ep, _) = app_with_endpoint(h, url, EndpointIn::new(String::new())).await;
    (app, ep)
}

fn message() -> MessageIn {
    MessageIn::new("a.b".into(), json!({"k": "v"}))
}

#[tokio::test]
async fn a_timeout_is_recorded_and_retried() {
    let h = Herald::start_with(env(&[
        ("HERALD_DELIVERY__REQUEST_TIMEOUT", "0.5"),
        ("HERALD_DELIVERY__TIMEOUT_RETRY_FLOOR", "1"),
    ]));
    let rx = Receiver::start(Answer::Status(200)).await;
    rx.script([Answer::Delay(Duration::from_secs(3))]);
    let (app, _) = setup(&h, &rx.url).await;
    let svix = h.svix();
    let id = svix
        .message()
        .create(app.clone(), message(), None)
        .await
        .unwrap()
        .id;
    let got = rx.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "a timed-out try waits at least the floor, waited {gap:?}"
    );
    let attempts = attempts(&svix, &app, &id, 2).await;
    let failed = &attempts.data[1];
    assert_eq!(failed.response_status_code, 0);
    assert!(failed.response.contains("timeout"), "{}", failed.response);
    assert_eq!(attempts.data[0].status, MessageStatus::Success);
}

#[tokio::test]
async fn retry_after_is_honoured_within_bounds() {
    let h = Herald::start_with(env(&[("HERALD_DELIVERY__RETRY_SCHEDULE", "1,1")]));
    let rx = Receiver::start(Answer::Status(200)).await;
    // Asks for 60 s (clamped to 2 × the 1 s base), then for 1 s (honoured: it is the base).
    rx.script([Answer::RetryAfter(503, 60), Answer::RetryAfter(429, 1)]);
    let (app, _) = setup(&h, &rx.url).await;
    h.svix()
        .message()
        .create(app, message(), None)
        .await
        .unwrap();
    let got = rx.wait_for(3, WAIT).await;
    let first = got[1].at - got[0].at;
    let second = got[2].at - got[1].at;
    assert!(
        first >= Duration::from_millis(1950) && first < Duration::from_secs(10),
        "clamped to 2 s, got {first:?}"
    );
    assert!(
        second >= Duration::from_millis(950),
        "at least the base delay, got {second:?}"
    );
}

#[tokio::test]
async fn gone_disables_the_endpoint() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(410)).await;
    let (app, ep) = setup(&h, &rx.url).await;
    let svix = h.svix();
    svix.message()
        .create(app.clone(), message(), None)
        .await
        .unwrap();
    rx.wait_for(1, WAIT).await;
    let disabled = eventually("the endpoint disabled", WAIT, || async {
        let e = svix.endpoint().get(app.clone(), ep.clone()).await.unwrap();
        (e.disabled == Some(true)).then_some(e)
    })
    .await;
    assert_eq!(disabled.id, ep);
    let raw = get_json(&h, &format!("/app/{app}/endpoint/{ep}")).await;
    assert!(
        raw["disabledReason"].as_str().unwrap_or("").contains("410"),
        "{raw}"
    );
    svix.message()
        .create(app.clone(), message(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rx.received().len(),
        1,
        "no retry, nothing more to a disabled endpoint"
    );
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_another() {
    let h = Herald::start_with(env(&[
        ("HERALD_DELIVERY__REQUEST_TIMEOUT", "10"),
        ("HERALD_DELIVERY__ENDPOINT_CONCURRENCY", "4"),
    ]));
    let slow = Receiver::start(Answer::Delay(Duration::from_secs(8))).await;
    let fast = Receiver::start(Answer::Status(200)).await;
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    let set = |t: &str| Some(std::iter::once(t.to_string()).collect());
    svix.endpoint()
        .create(
            app.clone(),
            EndpointIn {
                event_types: set("slow.thing"),
                ..EndpointIn::new(slow.url.clone())
            },
            None,
        )
        .await
        .unwrap();
    svix.endpoint()
        .create(
            app.clone(),
            EndpointIn {
                event_types: set("fast.thing"),
                ..EndpointIn::new(fast.url.clone())
            },
            None,
        )
        .await
        .unwrap();
    // Far more slow work than its cap allows at once, queued first.
    for _ in 0..30 {
        svix.message()
            .create(
                app.clone(),
                MessageIn::new("slow.thing".into(), json!({})),
                None,
            )
            .await
            .unwrap();
    }
    let started = Instant::now();
    for _ in 0..20 {
        svix.message()
            .create(
                app.clone(),
                MessageIn::new("fast.thing".into(), json!({})),
                None,
            )
            .await
            .unwrap();
    }
    fast.wait_for(20, WAIT).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "fast deliveries waited behind the hanging endpoint: {took:?}"
    );
    assert!(
        slow.received().len() <= 4,
        "the slow endpoint is held to its cap"
    );
    let slow_ep = svix.endpoint().list(app.clone(), None).await.unwrap().data[0]
        .id
        .clone();
    let stats = svix
        .endpoint()
        .get_stats(app.clone(), slow_ep.clone(), None)
        .await
        .unwrap();
    assert_eq!(stats.sending, 4, "{stats:?}");
    assert_eq!(stats.pending + stats.sending, 30, "{stats:?}");
    assert_eq!(stats.success + stats.fail, 0, "{stats:?}");
    let msgs = svix.message().list(app.clone(), None).await.unwrap();
    let last_slow = msgs
        .data
        .iter()
        .find(|m| m.event_type == "slow.thing")
        .unwrap()
        .id
        .clone();
    let dests = svix
        .message_attempt()
        .list_attempted_destinations(app.clone(), last_slow, None)
        .await
        .unwrap();
    assert_eq!(
        dests.data.len(),
        1,
        "only the endpoint whose filter matched"
    );
    assert!(matches!(
        dests.data[0].status,
        MessageStatus::Pending | MessageStatus::Sending
    ));
    assert!(dests.data[0].next_attempt.is_some());
}

#[tokio::test]
async fn waiting_retries_come_forward_when_the_endpoint_recovers() {
    // After the first retry, the next waits 60 s: only fast recovery can deliver sooner.
    let h = Herald::start_with(env(&[("HERALD_DELIVERY__RETRY_SCHEDULE", "0.2,60,60")]));
    let rx = Receiver::start(Answer::Status(503)).await;
    let (app, _) = setup(&h, &rx.url).await;
    let svix = h.svix();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            svix.message()
                .create(app.clone(), message(), None)
                .await
                .unwrap()
                .id,
        );
    }
    rx.wait_for(40, WAIT).await; // every message tried twice, now waiting 60 s
    rx.set_default(Answer::Status(200));
    let started = Instant::now();
    svix.message()
        .create(app.clone(), message(), None)
        .await
        .unwrap(); // its success triggers recovery
    let got = rx
        .wait_until("every backlogged message delivered", WAIT, |r| {
            let ok: std::collections::HashSet<&str> =
                r.iter().skip(40).map(|x| x.header("webhook-id")).collect();
            ids.iter().all(|i| ok.contains(i.as_str()))
        })
        .await;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(got.len() >= 61);
}

#[tokio::test]
async fn recover_resends_failed_messages_in_the_window() {
    let h = Herald::start_with(env(&[("HERALD_DELIVERY__RETRY_SCHEDULE", "0.1")]));
    let rx = Receiver::start(Answer::Status(500)).await;
    let (app, ep) = setup(&h, &rx.url).await;
    let svix = h.svix();
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            svix.message()
                .create(app.clone(), message(), None)
                .await
                .unwrap()
                .id,
        );
    }
    rx.wait_for(10, WAIT).await;
    eventually("all failed", WAIT, || async {
        let s = svix
            .endpoint()
            .get_stats(app.clone(), ep.clone(), None)
            .await
            .unwrap();
        (s.fail == 5).then_some(())
    })
    .await;
    rx.set_default(Answer::Status(200));
    let out = svix
        .endpoint()
        .recover(app.clone(), ep.clone(), RecoverIn::new(since), None)
        .await
        .unwrap();
    assert!(out.id.starts_with("qtask_"));
    let got = rx.wait_for(15, WAIT).await;
    let resent: std::collections::HashSet<&str> =
        got[10..].iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(resent.len(), 5);
    assert!(ids.iter().all(|i| resent.contains(i.as_str())));
    let stats = eventually("all succeeded", WAIT, || async {
        let s = svix
            .endpoint()
            .get_stats(app.clone(), ep.clone(), None)
            .await
            .unwrap();
        (s.success == 5).then_some(s)
    })
    .await;
    assert_eq!(stats.fail, 0);

    // A window in the future could recover nothing: it is refused (422) and nothing is sent.
    rx.set_default(Answer::Status(500));
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let refused = svix
        .endpoint()
        .recover(app, ep, RecoverIn::new(later), None)
        .await;
    assert!(refused.is_err(), "a future since was accepted");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 15);
}

#[tokio::test]
async fn endpoints_failing_past_the_limit_are_disabled_with_a_reason() {
    let h = Herald::start_with(env(&[
        ("HERALD_DELIVERY__RETRY_SCHEDULE", "0.1"),
        ("HERALD_DELIVERY__DISABLE_AFTER", "0"),
    ]));
    let rx = Receiver::start(Answer::Status(500)).await;
    let (app, ep) = setup(&h, &rx.url).await;
    let svix = h.svix();
    svix.message()
        .create(app.clone(), message(), None)
        .await
        .unwrap();
    eventually("auto-disabled", WAIT, || async {
        let e = svix.endpoint().get(app.clone(), ep.clone()).await.unwrap();
        (e.disabled == Some(true)).then_some(())
    })
    .await;
    let raw = get_json(&h, &format!("/app/{app}/endpoint/{ep}")).await;
    assert!(
        raw["disabledReason"]
            .as_str()
            .unwrap_or("")
            .contains("exhausted"),
        "{raw}"
    );
}

/// Recover called again before its manual tries end (here ten times in all, the first two back to
/// back) queues each failed message once: N failed messages get N manual tries, not 10 N.
#[tokio::test]
async fn recover_called_again_sends_each_failed_message_once() {
    const N: usize = 20;
    let h = Herald::start_with(env(&[
        ("HERALD_DELIVERY__RETRY_SCHEDULE", "0.1"),
        ("HERALD_DELIVERY__REQUEST_TIMEOUT", "10"),
    ]));
    let rx = Receiver::start(Answer::Status(500)).await;
    let (app, ep) = setup(&h, &rx.url).await;
    let svix = h.svix();
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    for _ in 0..N {
        svix.message()
            .create(app.clone(), message(), None)
            .await
            .unwrap();
    }
    eventually("all failed", WAIT, || async {
        let s = svix
            .endpoint()
            .get_stats(app.clone(), ep.clone(), None)
            .await
            .unwrap();
        (s.fail == N as i64).then_some(())
    })
    .await;
    let failed_tries = rx.received().len();
    assert_eq!(failed_tries, 2 * N);
    // The manual tries take 2 s each, so every recover below runs while they are queued or running.
    rx.set_default(Answer::Delay(Duration::from_secs(2)));
    for _ in 0..10 {
        svix.endpoint()
            .recover(app.clone(), ep.clone(), RecoverIn::new(since), None)
            .await
            .unwrap();
    }
    eventually("all succeeded", Duration::from_secs(60), || async {
        let s = svix
            .endpoint()
            .get_stats(app.clone(), ep.clone(), None)
            .await
            .unwrap();
        (s.success == N as i64).then_some(())
    })
    .await;
    // Room for any extra tries still queued to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = rx.received();
    let manual: std::collections::HashSet<&str> = got[failed_tries..]
        .iter()
        .map(|r| r.header("webhook-id"))
        .collect();
    assert_eq!(manual.len(), N, "every failed message is tried again");
    assert_eq!(got.len() - failed_tries, N, "one manual try per message");
}
