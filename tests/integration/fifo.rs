//! FIFO endpoints (`ordering: "fifo"`, a Herald extension): one try in flight at a time, in
//! acceptance order; a failing message holds back the ones after it until it succeeds or exhausts
//! its retries; the order survives a SIGKILL; the endpoint's health shows what blocks it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::receiver::{eventually, Answer, Received, Receiver};
use crate::support::{call, Herald, Launch};

/// Short retries, so a run of 1,000 messages with failures ends in seconds.
fn env(schedule: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "HERALD_DELIVERY__ALLOWED_CIDRS",
            "127.0.0.0/8,::1/128".to_string(),
        ),
        ("HERALD_DELIVERY__RETRY_SCHEDULE", schedule.to_string()),
        ("HERALD_DELIVERY__REQUEST_TIMEOUT", "5".to_string()),
    ]
}

/// Tries per message: the first and one per retry of `schedule`.
fn tries_of(schedule: &str) -> usize {
    schedule.split(',').count() + 1
}

/// 200s and ~20% 500s from a fixed seed (a small LCG: the test needs no random crate).
fn seeded_answers(n: usize, seed: u64) -> Vec<u16> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if (x >> 33) % 5 == 0 {
                500
            } else {
                200
            }
        })
        .collect()
}

/// A FIFO endpoint, throttled to `rate` per second if given.
async fn fifo_endpoint(h: &Herald, url: &str, rate: Option<u16>) -> (String, String) {
    let (status, app) = call(h, "POST", "/app", Some(r#"{"name":"fifo"}"#)).await;
    assert_eq!(status, 201, "{app}");
    let app = app["id"].as_str().unwrap().to_string();
    let body = json!({"url": url, "ordering": "fifo", "throttleRate": rate}).to_string();
    let (status, ep) = call(h, "POST", &format!("/app/{app}/endpoint"), Some(&body)).await;
    assert_eq!(status, 201, "{ep}");
    assert_eq!(ep["ordering"], "fifo");
    (app, ep["id"].as_str().unwrap().to_string())
}

async fn send(h: &Herald, app: &str, n: usize) -> String {
    let body = json!({"eventType": "seq", "payload": {"n": n}}).to_string();
    let (status, msg) = call(h, "POST", &format!("/app/{app}/msg"), Some(&body)).await;
    assert_eq!(status, 202, "{msg}");
    msg["id"].as_str().unwrap().to_string()
}

fn seq_of(r: &Received) -> u64 {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["n"].as_u64().unwrap()
}

/// Check the order: the message tried is never an earlier one than the message tried before it
/// (the head is retried until it succeeds or exhausts, then the next goes), and every message
/// ends with a 2xx or with all its tries failed. `answers[i]` is what request `i` got.
fn assert_fifo(received: &[Received], answers: &[u16], total: u64, tries: usize) {
    let seqs: Vec<u64> = received.iter().map(seq_of).collect();
    for (i, w) in seqs.windows(2).enumerate() {
        assert!(
            w[0] <= w[1],
            "message {} tried after message {} (request {}): out of order",
            w[1],
            w[0],
            i + 1
        );
    }
    let mut ok = vec![false; total as usize];
    let mut failed = vec![0usize; total as usize];
    for (i, &n) in seqs.iter().enumerate() {
        if answers.get(i).copied().unwrap_or(200) == 200 {
            ok[n as usize] = true;
        } else {
            failed[n as usize] += 1;
        }
    }
    for n in 0..total as usize {
        assert!(
            ok[n] || failed[n] >= tries,
            "message {n} neither succeeded nor exhausted ({} failed tries)",
            failed[n]
        );
    }
}

fn done(received: &[Received], answers: &[u16], total: u64, tries: usize) -> bool {
    let mut ok = vec![false; total as usize];
    let mut failed = vec![0usize; total as usize];
    for (i, r) in received.iter().enumerate() {
        let n = seq_of(r) as usize;
        if answers.get(i).copied().unwrap_or(200) == 200 {
            ok[n] = true;
        } else {
            failed[n] += 1;
        }
    }
    (0..total as usize).all(|n| ok[n] || failed[n] >= tries)
}

/// 1,000 messages under random 500s arrive in acceptance order, across a SIGKILL in the middle.
/// The kill is where order is easiest to lose: a try whose record is not yet on disk runs again
/// after the restart, and it must never be one older than a try that already went out (it was
/// ignored for a while after it once failed so in a loaded run; see `Store::finish_try`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_under_random_failures_arrive_in_order_across_a_kill() {
    const TOTAL: u64 = 1_000;
    let schedule = "0.05,0.05,0.05,0.05,0.05";
    let tries = tries_of(schedule);
    let answers = seeded_answers(3 * TOTAL as usize, 0x5eed_f1f0);
    let rx = Receiver::start(Answer::Status(200)).await;
    rx.script(answers.iter().map(|&c| Answer::Status(c)));

    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        env: env(schedule),
        ..Launch::new(dir.path())
    };
    let mut h = Herald::launch(&launch).unwrap();
    // Throttled to 1/s (which FIFO obeys) while the messages go in, so most of them are still
    // queued when the throttle is lifted and the kill comes.
    let (app, ep) = fifo_endpoint(&h, &rx.url, Some(1)).await;
    let started = std::time::Instant::now();
    for n in 0..TOTAL {
        send(&h, &app, n as usize).await;
    }
    let sent = started.elapsed();
    let (status, v) = call(
        &h,
        "PATCH",
        &format!("/app/{app}/endpoint/{ep}"),
        Some(r#"{"throttleRate": null}"#),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // Kill while the queue is being worked through.
    rx.wait_for(300, Duration::from_secs(60)).await;
    h.kill();
    let before = rx.received();
    assert!(
        !done(&before, &answers, TOTAL, tries),
        "the kill came after the last delivery: nothing to check across it"
    );
    let h = Herald::launch(&launch).unwrap();
    let got = rx
        .wait_until("every message done", Duration::from_secs(120), |r| {
            done(r, &answers, TOTAL, tries)
        })
        .await;
    assert_fifo(&got, &answers, TOTAL, tries);
    let failures = got
        .iter()
        .enumerate()
        .filter(|(i, _)| answers.get(*i).copied().unwrap_or(200) != 200)
        .count();
    eprintln!(
        "fifo: {TOTAL} messages sent in {sent:?}; {} tries ({failures} answered 500), {} before \
         the kill; all done {:?} after the first send",
        got.len(),
        before.len(),
        started.elapsed()
    );
    drop(h);
}

/// A head that exhausts its retries lets the next message go; meanwhile the health shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_head_lets_the_next_go_and_health_shows_the_block() {
    let schedule = "0.6,0.6";
    let tries = tries_of(schedule);
    let rx = Receiver::start(Answer::Status(200)).await;
    let answers = vec![500u16; tries];
    rx.script(answers.iter().map(|&c| Answer::Status(c)));
    let h = Herald::start_with(env(schedule));
    let (app, ep) = fifo_endpoint(&h, &rx.url, None).await;
    let head = send(&h, &app, 0).await;
    send(&h, &app, 1).await;
    send(&h, &app, 2).await;

    let path = format!("/app/{app}/endpoint/{ep}/health");
    let blocked = eventually(
        "health shows the blocked head",
        Duration::from_secs(10),
        || {
            let h = &h;
            let path = path.clone();
            async move {
                let (_, v) = call(h, "GET", &path, None).await;
                (!v["blockedBy"].is_null()).then_some(v)
            }
        },
    )
    .await;
    assert_eq!(blocked["ordering"], "fifo");
    assert_eq!(blocked["blockedBy"]["msgId"], head.as_str());
    assert!(blocked["blockedBy"]["detail"]
        .as_str()
        .unwrap()
        .starts_with(&format!("blocked by {head} since ")));
    // Nothing after the head was tried while it failed.
    assert!(rx.received().iter().all(|r| seq_of(r) == 0));

    let got = rx
        .wait_until("all three done", Duration::from_secs(30), |r| {
            done(r, &answers, 3, tries)
        })
        .await;
    assert_fifo(&got, &answers, 3, tries);
    let seqs: Vec<u64> = got.iter().map(seq_of).collect();
    assert_eq!(&seqs[..tries], vec![0; tries].as_slice());
    assert_eq!(&seqs[tries..], &[1, 2]);
    let (_, v) = call(&h, "GET", &path, None).await;
    assert!(v["blockedBy"].is_null(), "{v}");
}
