//! Isolation under faults: one tenant's hanging endpoints do not delay another tenant's deliveries,
//! and a failing endpoint's circuit breaker drops it to one probe at a time, then closes and brings
//! its retries forward when it answers again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{call, fast_delivery_env, Herald};

fn env_with(overrides: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = fast_delivery_env();
    for (k, v) in overrides {
        env.retain(|(name, _)| name != k);
        env.push((k, v.to_string()));
    }
    env
}

async fn create_app(h: &Herald, name: &str) -> String {
    let (status, app) = call(h, "POST", "/app", Some(&format!(r#"{{"name":"{name}"}}"#))).await;
    assert_eq!(status, 201, "{app}");
    app["id"].as_str().unwrap().to_string()
}

async fn create_endpoint(h: &Herald, app: &str, url: &str) -> String {
    let (status, ep) = call(
        h,
        "POST",
        &format!("/app/{app}/endpoint"),
        Some(&format!(r#"{{"url":"{url}"}}"#)),
    )
    .await;
    assert_eq!(status, 201, "{ep}");
    ep["id"].as_str().unwrap().to_string()
}

async fn send(h: &Herald, app: &str, i: usize) -> String {
    let body = format!(r#"{{"eventType":"t.x","payload":{{"i":{i}}}}}"#);
    let (status, msg) = call(h, "POST", &format!("/app/{app}/msg"), Some(&body)).await;
    assert_eq!(status, 202, "{msg}");
    msg["id"].as_str().unwrap().to_string()
}

/// Ten endpoints of one application hang (accept, never answer) with 80 messages each; another
/// application's healthy endpoint still gets every message at once, and the hanging ones hold no
/// more than their breakers allow (4 tries each before they have answered once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hanging_endpoints_of_one_app_do_not_delay_another_app() {
    let h = Herald::start_with(env_with(&[("HERALD_DELIVERY__REQUEST_TIMEOUT", "20")]));
    let hanging = Receiver::start(Answer::Delay(Duration::from_secs(60))).await;
    let healthy = Receiver::start(Answer::Status(200)).await;

    let noisy = create_app(&h, "noisy").await;
    for i in 0..10 {
        create_endpoint(&h, &noisy, &format!("{}/hang{i}", hanging.url)).await;
    }
    let mut sends = Vec::new();
    for chunk in 0..8 {
        let (h, noisy) = (&h, &noisy);
        sends.push(async move {
            for i in 0..10 {
                send(h, noisy, chunk * 10 + i).await;
            }
        });
    }
    futures_util::future::join_all(sends).await;
    // Let the dispatcher start what it will for the hanging endpoints.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let quiet = create_app(&h, "quiet").await;
    create_endpoint(&h, &quiet, &format!("{}/ok", healthy.url)).await;
    let mut sent_at = HashMap::new();
    for i in 0..20 {
        let id = send(&h, &quiet, i).await;
        sent_at.insert(id, Instant::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = healthy.wait_for(20, Duration::from_secs(10)).await;
    let mut latencies: Vec<Duration> = got
        .iter()
        .map(|r| r.at.duration_since(sent_at[r.header("webhook-id")]))
        .collect();
    latencies.sort();
    let worst = latencies.last().copied().unwrap_or_default();
    assert!(
        worst < Duration::from_secs(2),
        "the quiet app waited behind the hanging one: latencies {latencies:?}"
    );
    let held = hanging.received().len();
    assert!(
        (10..=40).contains(&held),
        "hanging endpoints started {held} tries; their breakers allow 10 x 4"
    );
}

/// An endpoint that times out trips its breaker: the health API shows it open and tries go one at
/// a time. When it answers again the breaker closes and its waiting retries come forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_endpoint_is_probed_one_at_a_time_then_recovers() {
    let h = Herald::start_with(env_with(&[
        ("HERALD_DELIVERY__REQUEST_TIMEOUT", "1"),
        ("HERALD_DELIVERY__RETRY_SCHEDULE", "0.2,60,60"),
    ]));
    let upstream = Receiver::start(Answer::Delay(Duration::from_secs(3))).await;
    let app = create_app(&h, "flaky").await;
    let ep = create_endpoint(&h, &app, &upstream.url).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(send(&h, &app, i).await);
    }
    let health_path = format!("/app/{app}/endpoint/{ep}/health");
    let circuit = eventually("the breaker opens", Duration::from_secs(15), || async {
        let (_, health) = call(&h, "GET", &health_path, None).await;
        (health["circuit"]["state"] == "open").then_some(health["circuit"].clone())
    })
    .await;
    assert_eq!(circuit["concurrencyLimit"], 1, "{circuit}");
    assert!(circuit["openSince"].is_string(), "{circuit}");

    // Open: one probe at a time, each ending at the 1 s timeout.
    let before = upstream.received().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probes = upstream.received().len() - before;
    assert!(
        probes <= 5,
        "{probes} tries in 3 s while open (closed, it would run 4 at a time)"
    );

    upstream.set_default(Answer::Status(200));
    // Every message arrives with a 2xx well before its 60 s retry: fast recovery.
    eventually("all delivered", Duration::from_secs(20), || async {
        let mut done = 0;
        for id in &ids {
            let (_, d) = call(&h, "GET", &format!("/app/{app}/msg/{id}/endpoint"), None).await;
            done += usize::from(d["data"][0]["status"] == 0);
        }
        (done == ids.len()).then_some(())
    })
    .await;
    let (_, health) = call(&h, "GET", &health_path, None).await;
    assert_eq!(health["circuit"]["state"], "closed", "{health}");
    assert!(h.logs().contains("circuit breaker open"));
    assert!(h.logs().contains("circuit breaker closed"));
}
