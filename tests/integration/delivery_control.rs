//! Delivery control, through the `svix` SDK and a real receiver: throttling measured where the
//! requests arrive, scheduled messages across a restart, the inline application, per-message
//! retention, and expunging content (no payload byte left in the data directory, a pending
//! delivery canceled).

use std::time::{Duration, Instant};

use serde_json::json;
use svix::api::{MessageCreateOptions, MessageGetOptions};
use svix::models::{ApplicationIn, BulkExpungeContentsIn, EndpointIn, MessageIn};

use crate::support::receiver::{Answer, Receiver};
use crate::support::{
    app_with_endpoint, call, data_dir_holds, fast_delivery_env, sdk_status, Herald, Launch,
};

/// The most arrivals in any one-second window (half-open, as the throttle promises).
fn busiest_second(at: &[Instant]) -> usize {
    let mut at = at.to_vec();
    at.sort();
    let mut most = 0;
    let mut j = 0;
    for i in 0..at.len() {
        while at[i].duration_since(at[j]) >= Duration::from_secs(1) {
            j += 1;
        }
        most = most.max(i + 1 - j);
    }
    most
}

fn arrivals(r: &Receiver) -> Vec<Instant> {
    r.received().iter().map(|x| x.at).collect()
}

fn span(at: &[Instant]) -> Duration {
    let first = at.iter().min().unwrap();
    let last = at.iter().max().unwrap();
    last.duration_since(*first)
}

async fn send(h: &Herald, app: &str, n: usize, tag: &str) -> Vec<String> {
    let svix = h.svix();
    let mut ids = Vec::new();
    for i in 0..n {
        let m = svix
            .message()
            .create(
                app.to_string(),
                MessageIn::new("t.throttle".into(), json!({"n": i, "tag": tag})),
                None,
            )
            .await
            .unwrap();
        ids.push(m.id);
    }
    ids
}

/// The SDK asks for no content unless told.
fn content() -> Option<MessageGetOptions> {
    Some(MessageGetOptions {
        with_content: Some(true),
    })
}

/// Three rates at once (an endpoint at 5/s, one at 20/s, an application at 10/s over two
/// endpoints), each with a backlog of 30 seconds' worth sent at once, measured where the requests
/// arrive: no one-second window at any receiver holds more than the rate (plus a margin for the
/// loopback's jitter), the backlog takes as long as the rate says (a throttle that lets all
/// through fails both), and the sustained rate is not far under the configured one (a throttle
/// that holds back too much fails that). Then resends to the 5/s endpoint obey it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_rates_hold_at_the_receiver() {
    let h = Herald::start_with(fast_delivery_env());
    let svix = h.svix();
    let (slow_rx, fast_rx) = (
        Receiver::start(Answer::Status(200)).await,
        Receiver::start(Answer::Status(200)).await,
    );
    let throttled = |rate: u16| EndpointIn {
        throttle_rate: Some(rate),
        ..EndpointIn::new(String::new())
    };
    let (slow_app, slow_ep, _) = app_with_endpoint(&h, &slow_rx.url, throttled(5)).await;
    let (fast_app, _, _) = app_with_endpoint(&h, &fast_rx.url, throttled(20)).await;
    let app_rx = [
        Receiver::start(Answer::Status(200)).await,
        Receiver::start(Answer::Status(200)).await,
    ];
    let shared_app = svix
        .application()
        .create(
            ApplicationIn {
                throttle_rate: Some(10),
                ..ApplicationIn::new("shared".into())
            },
            None,
        )
        .await
        .unwrap();
    for r in &app_rx {
        svix.endpoint()
            .create(shared_app.id.clone(), EndpointIn::new(r.url.clone()), None)
            .await
            .unwrap();
    }

    // 30 s at each rate, plus the burst (the shared application's messages go to two endpoints).
    let (n_slow, n_fast, n_shared) = (151, 601, 151);
    let slow_ids = send(&h, &slow_app, n_slow, "slow").await;
    send(&h, &fast_app, n_fast, "fast").await;
    send(&h, &shared_app.id, n_shared, "shared").await;
    let wait = Duration::from_secs(90);
    slow_rx.wait_for(n_slow, wait).await;
    fast_rx.wait_for(n_fast, wait).await;
    for r in &app_rx {
        r.wait_for(n_shared, wait).await;
    }
    let shared: Vec<Instant> = app_rx.iter().flat_map(arrivals).collect();
    for (what, rate, at) in [
        ("endpoint at 5/s", 5usize, arrivals(&slow_rx)),
        ("endpoint at 20/s", 20, arrivals(&fast_rx)),
        ("application at 10/s", 10, shared),
    ] {
        let most = busiest_second(&at);
        let took = span(&at);
        eprintln!(
            "{what}: {} deliveries in {:.2} s ({:.2}/s), busiest second {most}",
            at.len(),
            took.as_secs_f64(),
            (at.len() - 1) as f64 / took.as_secs_f64()
        );
        assert!(
            most <= rate + rate / 5 + 1,
            "{what}: {most} deliveries in one second"
        );
        // n deliveries at `rate` need (n - burst) / rate seconds; allow a fifth less.
        let least = (at.len() - rate / 20 - 1) as f64 / rate as f64 * 0.8;
        assert!(
            took.as_secs_f64() >= least,
            "{what}: {} deliveries in {:.2} s",
            at.len(),
            took.as_secs_f64()
        );
        // Starts are spread to 1.05 s per `rate` (see `throttle`): ~5 % under it by design. Far
        // under it, the throttle holds back more than it was asked to.
        let sustained = (at.len() - 1) as f64 / took.as_secs_f64();
        assert!(
            sustained >= rate as f64 * 0.7,
            "{what}: {sustained:.2}/s sustained"
        );
    }

    // Resends queue manual tries at once: they go at the endpoint's rate as well.
    let before = slow_rx.received().len();
    for id in slow_ids.iter().take(11) {
        svix.message_attempt()
            .resend(slow_app.clone(), id.clone(), slow_ep.clone(), None)
            .await
            .unwrap();
    }
    let got = slow_rx.wait_for(before + 11, wait).await;
    let resent: Vec<Instant> = got[before..].iter().map(|r| r.at).collect();
    let most = busiest_second(&resent);
    eprintln!(
        "resends at 5/s: 11 in {:.2} s, busiest second {most}",
        span(&resent).as_secs_f64()
    );
    assert!(most <= 7, "resends: {most} in one second");
    assert!(span(&resent) >= Duration::from_millis(1600));
}

/// A message with `deliverAt` a few seconds ahead is not sent before it, even across a SIGKILL
/// and restart, and arrives within moments after it. Out of range is a 422.
#[tokio::test]
async fn deliver_at_waits_for_its_time_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = fast_delivery_env();
    env.push(("HERALD_LIMITS__DELIVER_AT_MIN_LEAD", "2".to_string()));
    let launch = Launch {
        env: env.clone(),
        ..Launch::new(dir.path())
    };
    let mut h = Herald::launch(&launch).unwrap();
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let svix = h.svix();
    let at = |secs: i64| chrono::Utc::now() + chrono::Duration::milliseconds(secs * 1000);
    for (secs, why) in [
        (1, "too soon"),
        (-5, "in the past"),
        (90_000, "over 24 h ahead"),
    ] {
        let err = svix
            .message()
            .create(
                app.clone(),
                MessageIn {
                    deliver_at: Some(at(secs)),
                    ..MessageIn::new("t.later".into(), json!({}))
                },
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(sdk_status(&err), 422, "{why}");
    }
    let when = at(6);
    let due = Instant::now() + (when - chrono::Utc::now()).to_std().unwrap();
    let m = svix
        .message()
        .create(
            app.clone(),
            MessageIn {
                deliver_at: Some(when),
                ..MessageIn::new("t.later".into(), json!({"later": true}))
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        m.deliver_at.map(|t| t.timestamp_millis()),
        Some(when.timestamp_millis())
    );
    let (_, dests) = call(
        &h,
        "GET",
        &format!("/app/{app}/msg/{}/endpoint", m.id),
        None,
    )
    .await;
    assert_eq!(
        dests["data"][0]["nextAttempt"],
        when.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "{dests}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.kill();
    let h = Herald::launch(&launch).unwrap();
    let (_, got) = call(&h, "GET", &format!("/app/{app}/msg/{}", m.id), None).await;
    assert_eq!(got["status"], 1, "pending until its time: {got}");
    let arrived = rx.wait_for(1, Duration::from_secs(15)).await[0].at;
    let late = arrived.saturating_duration_since(due);
    eprintln!(
        "deliverAt: arrived {:.3} s after its time",
        late.as_secs_f64()
    );
    assert!(
        arrived + Duration::from_millis(20) >= due,
        "sent {:?} early",
        due - arrived
    );
    assert!(late <= Duration::from_millis(1500), "sent {late:?} late");
    assert_eq!(rx.received().len(), 1);
}

/// `application` on the message creates the application the path names, when there is none;
/// its uid must match the path.
#[tokio::test]
async fn the_inline_application_is_created_with_the_message() {
    let h = Herald::start();
    let svix = h.svix();
    let inline = |uid: Option<&str>| MessageIn {
        application: Some(ApplicationIn {
            uid: uid.map(String::from),
            throttle_rate: Some(7),
            ..ApplicationIn::new("Inline Co".into())
        }),
        ..MessageIn::new("t.inline".into(), json!({"hello": 1}))
    };
    let err = svix
        .message()
        .create(
            "tenant-9".into(),
            MessageIn::new("t.inline".into(), json!({})),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 404, "no application, none given");
    let err = svix
        .message()
        .create("tenant-9".into(), inline(Some("other")), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 422, "uid differs from the path");
    let m = svix
        .message()
        .create("tenant-9".into(), inline(Some("tenant-9")), None)
        .await
        .unwrap();
    let app = svix.application().get("tenant-9".into()).await.unwrap();
    assert_eq!(app.uid.as_deref(), Some("tenant-9"));
    assert_eq!(app.name, "Inline Co");
    assert_eq!(app.throttle_rate, Some(7));
    let got = svix
        .message()
        .get("tenant-9".into(), m.id.clone(), content())
        .await
        .unwrap();
    assert_eq!(got.payload, json!({"hello": 1}));
    // Given again, it is ignored: the existing application takes the message.
    svix.message()
        .create("tenant-9".into(), inline(None), None)
        .await
        .unwrap();
    let apps = svix.application().list(None).await.unwrap();
    assert_eq!(apps.data.len(), 1, "one application");
}

/// `payloadRetentionPeriod` and `payloadRetentionHours`: Svix's ranges, one or the other. (The
/// expiry itself runs on the store's clock: `store::expunge`'s unit test moves it.)
#[tokio::test]
async fn retention_per_message_is_checked() {
    let h = Herald::start();
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("r".into()), None)
        .await
        .unwrap()
        .id;
    let with = |days: Option<i64>, hours: Option<i64>| MessageIn {
        payload_retention_period: days,
        payload_retention_hours: hours,
        ..MessageIn::new("t.ret".into(), json!({"r": 1}))
    };
    for (days, hours) in [
        (Some(5), Some(1)),
        (Some(4), None),
        (Some(91), None),
        (None, Some(0)),
        (None, Some(2161)),
    ] {
        let err = svix
            .message()
            .create(app.clone(), with(days, hours), None)
            .await
            .unwrap_err();
        assert_eq!(sdk_status(&err), 422, "{days:?} days, {hours:?} hours");
    }
    for (days, hours) in [(Some(30), None), (None, Some(1)), (None, None)] {
        let m = svix
            .message()
            .create(
                app.clone(),
                with(days, hours),
                Some(MessageCreateOptions {
                    with_content: Some(true),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        assert_eq!(m.payload, json!({"r": 1}));
    }
}

/// Expunging: the payload's bytes leave every file of the data directory at once, the message
/// reads `{"expired": true}`, its pending (scheduled) delivery is canceled and never sent;
/// bulk and expunge-all answer Svix's shapes; an attempt's long response body leaves too.
#[tokio::test]
async fn expunged_content_leaves_the_data_dir_and_pending_delivery_is_canceled() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = fast_delivery_env();
    env.push(("HERALD_LIMITS__DELIVER_AT_MIN_LEAD", "1".to_string()));
    let h = Herald::launch(&Launch {
        env,
        ..Launch::new(dir.path())
    })
    .unwrap();
    let svix = h.svix();
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let marker = "expunge-me-3b9f27c1";
    let when = chrono::Utc::now() + chrono::Duration::seconds(4);
    let m = svix
        .message()
        .create(
            app.clone(),
            MessageIn {
                deliver_at: Some(when),
                event_id: Some("ev-secret".into()),
                ..MessageIn::new("t.secret".into(), json!({"card": marker}))
            },
            None,
        )
        .await
        .unwrap();
    assert!(!data_dir_holds(dir.path(), marker.as_bytes()).is_empty());
    svix.message()
        .expunge_content(app.clone(), "ev-secret".into())
        .await
        .unwrap();
    let left = data_dir_holds(dir.path(), marker.as_bytes());
    assert!(left.is_empty(), "payload bytes left in {left:?}");
    let got = svix
        .message()
        .get(app.clone(), m.id.clone(), content())
        .await
        .unwrap();
    assert_eq!(got.payload, json!({"expired": true}));
    let (_, dests) = call(
        &h,
        "GET",
        &format!("/app/{app}/msg/{}/endpoint", m.id),
        None,
    )
    .await;
    assert_eq!(dests["data"][0]["status"], 4, "canceled: {dests}");
    let (_, stats) = call(&h, "GET", &format!("/app/{app}/endpoint/{ep}/stats"), None).await;
    assert_eq!(stats["canceled"], 1, "{stats}");
    assert_eq!(stats["pending"], 0, "{stats}");
    // Again: still 204; an unknown one is 404.
    svix.message()
        .expunge_content(app.clone(), m.id.clone())
        .await
        .unwrap();
    let err = svix
        .message()
        .expunge_content(app.clone(), "no-such".into())
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 404);

    // Bulk and all.
    let sent: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..3 {
            let m = svix
                .message()
                .create(
                    app.clone(),
                    MessageIn::new("t.bulk".into(), json!({"bulk": format!("{marker}-{i}")})),
                    None,
                )
                .await
                .unwrap();
            ids.push(m.id);
        }
        ids
    };
    rx.wait_for(3, Duration::from_secs(10)).await;
    let out = svix
        .message()
        .bulk_expunge_content(
            app.clone(),
            BulkExpungeContentsIn {
                ids: Some([sent[0].clone(), "nope".to_string()].into_iter().collect()),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.results[&sent[0]].to_string(), "expunged");
    assert_eq!(out.results["nope"].to_string(), "not-found");
    let task = svix
        .message()
        .expunge_all_contents(app.clone(), None)
        .await
        .unwrap();
    assert_eq!(task.task.to_string(), "application.purge_content");
    crate::support::receiver::eventually("expunge-all to end", Duration::from_secs(20), || async {
        let t = svix.background_task().get(task.id.clone()).await.unwrap();
        (t.status.to_string() != "running").then_some(t)
    })
    .await;
    for id in &sent {
        let got = svix
            .message()
            .get(app.clone(), id.clone(), content())
            .await
            .unwrap();
        assert_eq!(got.payload, json!({"expired": true}));
    }
    let left = data_dir_holds(dir.path(), marker.as_bytes());
    assert!(left.is_empty(), "payload bytes left in {left:?}");

    // An attempt's long response body.
    let body_marker = "leaky-response-8e21d4";
    let long_body = format!("{body_marker} {}", "x".repeat(4000));
    rx.set_default(Answer::Body(200, long_body));
    let m = svix
        .message()
        .create(
            app.clone(),
            MessageIn::new("t.body".into(), json!({})),
            None,
        )
        .await
        .unwrap();
    rx.wait_for(4, Duration::from_secs(10)).await;
    let attempt = crate::support::receiver::eventually(
        "the attempt is recorded",
        Duration::from_secs(10),
        || {
            let (h, app, msg) = (&h, app.clone(), m.id.clone());
            async move {
                let (_, list) =
                    call(h, "GET", &format!("/app/{app}/attempt/msg/{msg}"), None).await;
                list["data"][0]["id"].as_str().map(String::from)
            }
        },
    )
    .await;
    assert!(!data_dir_holds(dir.path(), body_marker.as_bytes()).is_empty());
    svix.message_attempt()
        .expunge_content(app.clone(), m.id.clone(), attempt.clone())
        .await
        .unwrap();
    let left = data_dir_holds(dir.path(), body_marker.as_bytes());
    assert!(left.is_empty(), "response bytes left in {left:?}");
    let (_, a) = call(
        &h,
        "GET",
        &format!("/app/{app}/msg/{}/attempt/{attempt}", m.id),
        None,
    )
    .await;
    assert_eq!(a["response"], "EXPUNGED");

    // The canceled delivery never goes, after its time either.
    let due = (when - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(due + Duration::from_millis(1500)).await;
    let got = rx.received();
    assert_eq!(got.len(), 4, "only the other messages were sent");
    assert!(
        got.iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("card")),
        "the expunged message was sent"
    );
}
