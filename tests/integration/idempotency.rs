//! `idempotency-key` on every POST, with the real binary: a repeat (sequential, concurrent, after a
//! restart, through the svix SDK) answers with the first answer and creates nothing; a keyed
//! message's payload is stored once. And message create under hang-ups: a message stored for a
//! client that reset the connection before its 202 is delivered at once, without more traffic.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use svix::api::{
    ApplicationCreateOptions, EndpointCreateOptions, EventTypeCreateOptions, MessageCreateOptions,
};
use svix::models::{ApplicationIn, EndpointIn, EventTypeIn, MessageIn};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{app_with_endpoint, bearer, call, fast_delivery_env, http, Herald, Launch};

const WAIT: Duration = Duration::from_secs(15);

/// POST with the admin token and an optional `idempotency-key`: status and raw answer text.
async fn post(h: &Herald, path: &str, body: &str, key: Option<&str>) -> (u16, String) {
    let mut req = http()
        .post(h.api(path))
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The same POST twice with one key: both answers, asserted equal and 2xx.
async fn twice(h: &Herald, path: &str, first: &str, second: &str, key: &str) -> Value {
    let a = post(h, path, first, Some(key)).await;
    let b = post(h, path, second, Some(key)).await;
    assert!((200..300).contains(&a.0), "POST {path}: {a:?}");
    assert_eq!(a, b, "POST {path}: a repeat answers with the first answer");
    serde_json::from_str(&a.1).unwrap()
}

/// Every item of a list (one page of up to 250 is enough here).
async fn list(h: &Herald, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, body) = call(h, "GET", &format!("{path}{sep}limit=250"), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body["data"].as_array().unwrap().clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_repeated_post_answers_the_first_answer_and_creates_nothing() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;

    let app = twice(
        &h,
        "/app",
        r#"{"name":"Acme"}"#,
        r#"{"name":"Other"}"#,
        "k-app",
    )
    .await;
    assert_eq!(list(&h, "/app").await.len(), 1);
    let app = id(&app);

    twice(
        &h,
        "/event-type",
        r#"{"name":"order.created"}"#,
        r#"{"name":"order.created"}"#,
        "k-et",
    )
    .await;
    assert_eq!(list(&h, "/event-type").await.len(), 1);

    let ep_in = json!({"url": format!("{}/hook", rx.url)}).to_string();
    let ep_path = format!("/app/{app}/endpoint");
    let ep = id(&twice(&h, &ep_path, &ep_in, &ep_in, "k-ep").await);
    assert_eq!(list(&h, &ep_path).await.len(), 1);

    // A second rotation would leave another key current than the one answered.
    let rotate = format!("/app/{app}/endpoint/{ep}/secret/rotate");
    let rotated = twice(&h, &rotate, "{}", "{}", "k-rot").await;
    let (_, secret) = call(&h, "GET", &format!("/app/{app}/endpoint/{ep}/secret"), None).await;
    assert_eq!(secret["key"], rotated["key"]);

    let msgs = format!("/app/{app}/msg");
    let first = r#"{"eventType":"order.created","payload":{"n":1}}"#;
    let other = r#"{"eventType":"order.created","payload":{"n":2}}"#;
    let msg = id(&twice(&h, &msgs, first, other, "k-msg").await);
    assert_eq!(list(&h, &msgs).await.len(), 1);
    let lean = twice(
        &h,
        &format!("{msgs}?with_content=false"),
        first,
        first,
        "k-lean",
    )
    .await;
    assert_eq!(
        lean["payload"],
        json!({}),
        "the replay keeps with_content=false"
    );
    assert_eq!(list(&h, &msgs).await.len(), 2);

    let example = format!("/app/{app}/endpoint/{ep}/send-example");
    let et = r#"{"eventType":"order.created"}"#;
    twice(&h, &example, et, et, "k-ex").await;
    assert_eq!(list(&h, &msgs).await.len(), 3);

    rx.wait_for(3, WAIT).await;
    let resend = format!("/app/{app}/msg/{msg}/endpoint/{ep}/resend");
    twice(&h, &resend, "", "", "k-resend").await;
    rx.wait_for(4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.received().len(), 4, "one manual try for two resends");

    // The same key on another path, or from the same path without a key, is another request.
    let (status, _) = post(&h, "/app", r#"{"name":"B"}"#, Some("k-et")).await;
    assert_eq!(status, 201);
    let (status, _) = post(&h, "/app", r#"{"name":"C"}"#, None).await;
    assert_eq!(status, 201);
    assert_eq!(list(&h, "/app").await.len(), 3);
    // Errors are not kept: the repeat of a failed request runs again.
    let taken = r#"{"name":"order.created"}"#;
    let (status, _) = post(&h, "/event-type", taken, Some("k-409")).await;
    assert_eq!(status, 409);
    let (_, _) = call(&h, "DELETE", "/event-type/order.created?expunge=true", None).await;
    let (status, _) = post(&h, "/event-type", taken, Some("k-409")).await;
    assert_eq!(status, 201);
}

/// The message create looks its key up only when the request fails: a repeat whose body no
/// longer passes (not JSON, a field missing) or whose application is gone by uid still answers
/// with the first answer.
#[tokio::test]
async fn a_repeated_create_replays_even_when_the_repeat_would_fail() {
    let h = Herald::start();
    let (_, app) = call(&h, "POST", "/app", Some(r#"{"name":"A","uid":"the-app"}"#)).await;
    let first = r#"{"eventType":"order.created","payload":{"n":1}}"#;
    let msgs = "/app/the-app/msg";
    let a = post(&h, msgs, first, Some("k-bad")).await;
    assert_eq!(a.0, 202, "{a:?}");
    for repeat in ["not json", r#"{"eventType":"order.created"}"#] {
        let b = post(&h, msgs, repeat, Some("k-bad")).await;
        assert_eq!(
            a, b,
            "a repeat with {repeat:?} answers with the first answer"
        );
    }
    // Without the key the same bodies fail.
    let (status, _) = post(&h, msgs, "not json", None).await;
    assert_eq!(status, 400);
    assert_eq!(list(&h, &format!("/app/{}/msg", id(&app))).await.len(), 1);
}

#[tokio::test]
async fn a_repeated_recover_queues_one_try() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(500)).await;
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let (status, _) = post(
        &h,
        &format!("/app/{app}/msg"),
        r#"{"eventType":"a.b","payload":{}}"#,
        None,
    )
    .await;
    assert_eq!(status, 202);
    // Three failing tries (retries after 0.2 and 0.4 s), then the message has failed.
    rx.wait_for(3, WAIT).await;
    let path = format!("/app/{app}/msg");
    eventually("the message failed", WAIT, || async {
        (list(&h, &path).await[0]["status"] == json!(2)).then_some(())
    })
    .await;
    rx.set_default(Answer::Status(200));
    let since = json!({"since": "2000-01-01T00:00:00Z"}).to_string();
    let recover = format!("/app/{app}/endpoint/{ep}/recover");
    twice(&h, &recover, &since, &since, "k-recover").await;
    rx.wait_for(4, WAIT).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.received().len(), 4, "one manual try for two recovers");
}

#[tokio::test]
async fn concurrent_repeats_with_one_key_make_one_resource() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let h = &h;
    let client = http();
    let burst = |path: String, body: String, key: &'static str| {
        // Built first, so the eight requests leave together.
        let requests: Vec<_> = (0..8)
            .map(|_| {
                client
                    .post(h.api(&path))
                    .header("authorization", bearer())
                    .header("content-type", "application/json")
                    .header("idempotency-key", key)
                    .body(body.clone())
            })
            .collect();
        async move {
            let answers = futures_util::future::join_all(requests.into_iter().map(|r| async {
                let resp = r.send().await.unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            }))
            .await;
            assert!(answers[0].0 < 300, "{path}: {:?}", answers[0]);
            assert!(
                answers.iter().all(|a| a == &answers[0]),
                "{path}: every answer is the first: {answers:?}"
            );
        }
    };
    burst("/app".into(), r#"{"name":"X"}"#.into(), "k-apps").await;
    assert_eq!(
        list(h, "/app").await.len(),
        2,
        "the burst made one application"
    );

    let msgs = format!("/app/{app}/msg");
    let m = r#"{"eventType":"a.b","payload":{"burst":true}}"#;
    burst(msgs.clone(), m.into(), "k-msgs").await;
    assert_eq!(list(h, &msgs).await.len(), 1);
    rx.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.received().len(), 1, "one message, delivered once");
}

#[tokio::test]
async fn the_svix_sdk_keys_replay() {
    let h = Herald::start();
    let svix = h.svix();
    let key = |k: &str| Some(k.to_string());

    let a1 = svix
        .application()
        .create(
            ApplicationIn::new("A".into()),
            Some(ApplicationCreateOptions {
                idempotency_key: key("sdk-app"),
            }),
        )
        .await
        .unwrap();
    let a2 = svix
        .application()
        .create(
            ApplicationIn::new("A".into()),
            Some(ApplicationCreateOptions {
                idempotency_key: key("sdk-app"),
            }),
        )
        .await
        .unwrap();
    assert_eq!(a1.id, a2.id);
    // Without a key of ours the SDK sends a fresh one per call: two calls, two applications.
    let a3 = svix
        .application()
        .create(ApplicationIn::new("B".into()), None)
        .await
        .unwrap();
    assert_ne!(a3.id, a1.id);
    assert_eq!(list(&h, "/app").await.len(), 2);

    for _ in 0..2 {
        svix.event_type()
            .create(
                EventTypeIn::new("sdk.event".into(), "Sdk event".into()),
                Some(EventTypeCreateOptions {
                    idempotency_key: key("sdk-et"),
                }),
            )
            .await
            .unwrap();
    }
    let mut eps = HashSet::new();
    let mut msgs = HashSet::new();
    for _ in 0..2 {
        let ep = svix
            .endpoint()
            .create(
                a1.id.clone(),
                EndpointIn::new("https://example.com/hook".into()),
                Some(EndpointCreateOptions {
                    idempotency_key: key("sdk-ep"),
                }),
            )
            .await
            .unwrap();
        eps.insert(ep.id);
        let m = svix
            .message()
            .create(
                a1.id.clone(),
                MessageIn::new("sdk.event".into(), json!({"n": 1})),
                Some(MessageCreateOptions {
                    idempotency_key: key("sdk-msg"),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        msgs.insert((m.id, m.timestamp));
    }
    assert_eq!((eps.len(), msgs.len()), (1, 1));
    assert_eq!(list(&h, "/event-type").await.len(), 1);
    assert_eq!(list(&h, &format!("/app/{}/endpoint", a1.id)).await.len(), 1);
    assert_eq!(list(&h, &format!("/app/{}/msg", a1.id)).await.len(), 1);
}

#[tokio::test]
async fn a_replay_after_a_restart_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::new(dir.path());
    let mut h = Herald::launch(&launch).unwrap();
    let app_in = r#"{"name":"Acme"}"#;
    let app = post(&h, "/app", app_in, Some("r-app")).await;
    let app_id = id(&serde_json::from_str(&app.1).unwrap());
    let msgs = format!("/app/{app_id}/msg");
    let m_in = r#"{"eventType":"a.b","payload":{"x":[1,2,3]}}"#;
    let msg = post(&h, &msgs, m_in, Some("r-msg")).await;
    assert_eq!((app.0, msg.0), (201, 202));
    h.kill();

    let h = Herald::launch(&launch).unwrap();
    assert_eq!(post(&h, "/app", app_in, Some("r-app")).await, app);
    assert_eq!(post(&h, &msgs, m_in, Some("r-msg")).await, msg);
    assert_eq!(list(&h, "/app").await.len(), 1);
    assert_eq!(list(&h, &msgs).await.len(), 1);
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// How much the data directory grows for `n` messages of `payload`, each with its own key or
/// none.
async fn growth(n: usize, payload: &str, keyed: bool) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Herald::launch(&Launch::new(dir.path())).unwrap();
    let (_, app) = post(&h, "/app", r#"{"name":"A"}"#, None).await;
    let msgs = format!("/app/{}/msg", id(&serde_json::from_str(&app).unwrap()));
    let before = dir_bytes(dir.path());
    for i in 0..n {
        let key = format!("big-{i}");
        let body = format!(r#"{{"eventType":"a.b","payload":{{"blob":"{payload}"}}}}"#);
        let (status, _) = post(&h, &msgs, &body, keyed.then_some(key.as_str())).await;
        assert_eq!(status, 202);
    }
    h.terminate();
    dir_bytes(dir.path()) - before
}

/// The svix SDKs send a key on every POST, so a keyed message must not store its payload twice.
#[tokio::test]
async fn a_keyed_payload_is_stored_once() {
    let payload = "x".repeat(500 * 1024);
    let plain = growth(8, &payload, false).await;
    let keyed = growth(8, &payload, true).await;
    eprintln!(
        "data directory growth for 8 messages of 500 KiB: {plain} bytes without keys, {keyed} with"
    );
    assert!(plain >= 8 * 500 * 1000, "{plain}");
    assert!(
        keyed * 10 < plain * 13,
        "with keys {keyed} bytes vs {plain} without: the payload is stored twice"
    );
}

/// Send a message create over raw TCP and reset the connection (RST, SO_LINGER 0) `after` the
/// request is written, without reading any answer.
async fn post_and_hang_up(h: &Herald, path: &str, body: &str, key: Option<&str>, after: Duration) {
    let addr = h.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let key = key.map_or(String::new(), |k| format!("idempotency-key: {k}\r\n"));
    let req = format!(
        "POST /api/v1{path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n{key}\r\n{body}",
        bearer(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    s.set_zero_linger().unwrap();
    drop(s);
}

/// Wait until the receiver has a delivery of every message in `ids`, at most `within` after
/// `since` (the last hang-up).
async fn delivered_within(rx: &Receiver, ids: &HashSet<String>, since: Instant, within: Duration) {
    let got = rx
        .wait_until(
            &format!("{} stored messages delivered", ids.len()),
            within.saturating_sub(since.elapsed()),
            |got| {
                let seen: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
                ids.iter().all(|id| seen.contains(id.as_str()))
            },
        )
        .await;
    let last = got.iter().map(|r| r.at).max().unwrap_or(since);
    eprintln!(
        "{} stored messages, the last delivered {} ms after the last hang-up",
        ids.len(),
        last.saturating_duration_since(since).as_millis()
    );
}

/// Deliveries run from a wake-up at accept; nothing else looks for new work on disk (the
/// dispatcher's idle wake only looks at endpoints it knows have work). So a message stored for a
/// client that went away must still wake its endpoint, which the bound here checks.
const DELIVERED_WITHIN: Duration = Duration::from_secs(3);

#[tokio::test]
async fn messages_of_clients_that_hang_up_are_delivered_at_once() {
    const CLIENTS: usize = 50;
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    // One application per client: a message that did wake its endpoint cannot carry another
    // one's delivery along.
    let mut apps = Vec::new();
    for i in 0..CLIENTS {
        let url = format!("{}/c{i}", rx.url);
        let (app, _, _) = app_with_endpoint(&h, &url, EndpointIn::new(String::new())).await;
        apps.push(app);
    }
    // Hang up at spread moments (0 to 20 ms after the request), so that requests are cut at
    // different steps of their accept.
    let h = &h;
    futures_util::future::join_all(apps.iter().enumerate().map(|(i, app)| async move {
        let body = json!({"eventType": "a.b", "payload": {"client": i}}).to_string();
        let after = Duration::from_micros(400 * i as u64);
        post_and_hang_up(h, &format!("/app/{app}/msg"), &body, None, after).await;
    }))
    .await;
    let hung_up = Instant::now();
    // Let every request that survived its hang-up finish its write before listing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stored = HashSet::new();
    for app in &apps {
        stored.extend(list(h, &format!("/app/{app}/msg")).await.iter().map(id));
    }
    eprintln!("{} of {CLIENTS} messages were stored", stored.len());
    assert!(
        stored.len() >= 5,
        "too few requests got far enough to test anything"
    );
    delivered_within(&rx, &stored, hung_up, DELIVERED_WITHIN).await;
}

#[tokio::test]
async fn a_replay_after_a_hang_up_is_delivered() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let msgs = format!("/app/{app}/msg");
    let body = r#"{"eventType":"a.b","payload":{"replayed":true}}"#;
    // Hang up until one request got as far as storing its message (usually the first).
    let mut stored = Vec::new();
    let mut hung_up = Instant::now();
    for attempt in 0..20u64 {
        let key = format!("hang-{attempt}");
        let after = Duration::from_millis(attempt % 4);
        post_and_hang_up(&h, &msgs, body, Some(&key), after).await;
        hung_up = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stored = list(&h, &msgs).await;
        if !stored.is_empty() {
            let (status, answer) = post(&h, &msgs, body, Some(&key)).await;
            assert_eq!(status, 202);
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer["id"], stored[0]["id"], "the repeat is a replay");
            break;
        }
    }
    assert_eq!(stored.len(), 1, "no hung-up request stored its message");
    let ids = HashSet::from([id(&stored[0])]);
    delivered_within(&rx, &ids, hung_up, DELIVERED_WITHIN).await;
}
