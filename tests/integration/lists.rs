//! Lists are bounded: a page with content stops at its byte budget, a filtered page stops at its
//! scan budget, and either way says so (`done: false`) with an iterator that continues where it
//! stopped. Also strict parsing: trailing data after a JSON body, uids shaped like ids.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::support::receiver::{Answer, Receiver};
use crate::support::{bearer, call, http, Herald};

/// GET a list page: its status, its size in bytes, and its JSON.
async fn page(h: &Herald, path: &str) -> (u16, usize, Value) {
    let resp = http()
        .get(h.api(path))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let v: Value = serde_json::from_slice(&bytes).expect("a JSON answer");
    (status, bytes.len(), v)
}

/// Follow `iterator` from the first page of `path` to the end (at most `max_pages` pages); every
/// page's JSON.
async fn follow(h: &Herald, path: &str, max_pages: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut pages = Vec::new();
    let mut next = path.to_string();
    for _ in 0..max_pages {
        let (status, _, v) = page(h, &next).await;
        assert_eq!(status, 200, "{next}: {v}");
        let done = v["done"].as_bool().expect("done");
        let it = v["iterator"].clone();
        pages.push(v);
        if done {
            return pages;
        }
        let it = it
            .as_str()
            .expect("a page that is not done has an iterator");
        next = format!("{path}{sep}iterator={it}");
    }
    panic!("{path}: not done after {max_pages} pages");
}

fn ids(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["data"].as_array().expect("data").clone())
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

async fn new_app(h: &Herald) -> String {
    let (s, app) = call(h, "POST", "/app", Some(r#"{"name":"lists"}"#)).await;
    assert_eq!(s, 201, "{app}");
    app["id"].as_str().unwrap().to_string()
}

/// Post `n` messages (`event_type(i)` for the i-th), 64 at a time; their ids in order of `i`.
async fn post_messages(
    h: &Herald,
    app: &str,
    n: usize,
    payload: &str,
    event_type: impl Fn(usize) -> &'static str,
) -> Vec<String> {
    let path = format!("/app/{app}/msg?with_content=false");
    let bodies: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"eventType":"{}","payload":{payload}}}"#, event_type(i)))
        .collect();
    stream::iter(bodies)
        .map(|b| {
            let path = path.clone();
            async move {
                let (s, m) = call(h, "POST", &path, Some(&b)).await;
                assert_eq!(s, 202, "{m}");
                m["id"].as_str().unwrap().to_string()
            }
        })
        .buffered(64)
        .collect()
        .await
}

/// A page of messages with content holds at most `limits.max_list_bytes` of payload, then ends
/// early with `done: false`; following its iterators yields every message once. Without content
/// the same list is one page.
#[tokio::test]
async fn message_pages_with_content_stop_at_the_byte_budget() {
    const BUDGET: usize = 65_536;
    let h = Herald::start_with(vec![("HERALD_LIMITS__MAX_LIST_BYTES", BUDGET.to_string())]);
    let app = new_app(&h).await;
    let payload = json!({ "pad": "x".repeat(20_000) }).to_string();
    let mut posted = post_messages(&h, &app, 12, &payload, |_| "big.one").await;
    // Ids are time-ordered: newest first is descending id order.
    posted.sort_by(|a, b| b.cmp(a));

    let path = format!("/app/{app}/msg?limit=250&with_content=true");
    let (_, size, first) = page(&h, &path).await;
    assert_eq!(first["done"], false, "12 × 20 KB do not fit in 64 KiB");
    assert_eq!(first["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        first["data"][0]["payload"]["pad"].as_str().unwrap().len(),
        20_000
    );
    // The budget counts payload; the rest of each message is a few hundred bytes.
    assert!(size <= BUDGET + 3 * 512 + 256, "page of {size} bytes");

    let pages = follow(&h, &path, 10).await;
    assert_eq!(ids(&pages), posted, "every message once, newest first");
    assert_eq!(pages.len(), 4);
    for p in &pages {
        let n = p["data"].as_array().unwrap().len();
        assert!(n <= 3, "{n} messages of 20 KB in a page");
    }

    let (_, _, all) = page(&h, &format!("/app/{app}/msg?limit=250&with_content=false")).await;
    assert_eq!(all["done"], true);
    assert_eq!(all["data"].as_array().unwrap().len(), 12);
    assert_eq!(all["data"][0]["payload"], json!({}));
}

/// A filter that matches nothing over more messages than one page may read answers at once with
/// `done: false` and an iterator; following the iterators finds every match, once. (The scan
/// budget is lowered to 100 records, so a few hundred messages show what 10,000 would.)
#[tokio::test]
async fn filtered_message_lists_stop_on_their_scan_budget_and_continue() {
    const N: usize = 350;
    let h = Herald::start_with(vec![("HERALD_LIMITS__MAX_LIST_SCAN", "100".to_string())]);
    let app = new_app(&h).await;
    let rare_one = |i: usize| i % 50 == 25;
    let posted = post_messages(&h, &app, N, "{}", |i| {
        if rare_one(i) {
            "rare.one"
        } else {
            "common.one"
        }
    })
    .await;
    let mut rare: Vec<String> = posted
        .iter()
        .enumerate()
        .filter(|(i, _)| rare_one(*i))
        .map(|(_, id)| id.clone())
        .collect();
    rare.sort_by(|a, b| b.cmp(a));

    let started = Instant::now();
    let (status, _, v) = page(&h, &format!("/app/{app}/msg?event_types=none.such&limit=1")).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], json!([]));
    assert_eq!(
        v["done"], false,
        "the page stopped on its budget, not at the end"
    );
    assert!(v["iterator"].is_string(), "{v}");
    eprintln!("first page of a filter matching nothing: {took:?}");

    // Following the iterators reads on from where each page stopped, to the end.
    let nothing = follow(
        &h,
        &format!("/app/{app}/msg?event_types=none.such&limit=1"),
        50,
    )
    .await;
    assert!(ids(&nothing).is_empty());
    assert!(
        nothing.len() >= 4,
        "350 records, at most 100 a page: {} pages",
        nothing.len()
    );

    let found = follow(
        &h,
        &format!("/app/{app}/msg?event_types=rare.one&limit=2"),
        50,
    )
    .await;
    let found = ids(&found);
    assert_eq!(found, rare, "every match once, newest first");
    assert_eq!(found.iter().collect::<HashSet<_>>().len(), found.len());

    // A time window is a seek: messages created before all of them are found without a scan.
    let (_, _, v) = page(
        &h,
        &format!("/app/{app}/msg?before=2020-01-01T00:00:00Z&limit=1"),
    )
    .await;
    assert_eq!(
        (v["data"].clone(), v["done"].clone()),
        (json!([]), json!(true))
    );
}

/// Attempt lists filter through the same bounded pages: by status, following iterators.
#[tokio::test]
async fn filtered_attempt_lists_follow_iterators() {
    let rx = Receiver::start(Answer::Status(200)).await;
    let h = Herald::start_with(crate::support::fast_delivery_env());
    let (app, ep, _) = crate::support::app_with_endpoint(
        &h,
        &format!("{}/hook", rx.url),
        svix::models::EndpointIn::new(String::new()),
    )
    .await;
    let posted = post_messages(&h, &app, 5, "{}", |_| "a.b").await;
    let all =
        crate::support::receiver::eventually("5 attempts", Duration::from_secs(20), || async {
            let (_, _, v) = page(&h, &format!("/app/{app}/attempt/endpoint/{ep}?limit=250")).await;
            (v["data"].as_array().map(Vec::len) == Some(5)).then_some(v)
        })
        .await;
    assert_eq!(all["done"], true);
    let ok = follow(
        &h,
        &format!("/app/{app}/attempt/endpoint/{ep}?status=0&limit=2"),
        10,
    )
    .await;
    assert_eq!(ids(&ok).len(), 5, "{ok:?}");
    let failed = follow(
        &h,
        &format!("/app/{app}/attempt/endpoint/{ep}?status=2&limit=2"),
        10,
    )
    .await;
    assert!(ids(&failed).is_empty());
    let by_msg = follow(
        &h,
        &format!("/app/{app}/attempt/msg/{}?status=0&limit=1", posted[0]),
        10,
    )
    .await;
    assert_eq!(ids(&by_msg).len(), 1);
}

#[tokio::test]
async fn text_after_a_json_body_is_refused() {
    let h = Herald::start();
    for body in [
        r#"{"name":"a"} garbage"#,
        r#"{"name":"a"}{"name":"b"}"#,
        r#"{"name":"a"},"#,
    ] {
        let (s, v) = call(&h, "POST", "/app", Some(body)).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("bad_request")),
            "{body}: {v}"
        );
    }
    let (s, v) = call(&h, "POST", "/app", Some("{\"name\":\"a\"} \r\n\t")).await;
    assert_eq!(s, 201, "whitespace may follow: {v}");
    let (_, apps) = call(&h, "GET", "/app", None).await;
    assert_eq!(
        apps["data"].as_array().unwrap().len(),
        1,
        "nothing else was made"
    );
}

#[tokio::test]
async fn uids_shaped_like_ids_are_refused() {
    let h = Herald::start();
    let other = new_app(&h).await;
    for uid in [other.as_str(), "app_mine", "ep_1", "msg_x", "atmpt_y"] {
        let body = json!({ "name": "n", "uid": uid }).to_string();
        let (s, v) = call(&h, "POST", "/app", Some(&body)).await;
        assert_eq!(s, 422, "{uid}: {v}");
        assert_eq!(v["detail"][0]["loc"], json!(["body", "uid"]), "{v}");
    }
    // The application is still found by its own id, and only by it.
    let (s, v) = call(&h, "GET", &format!("/app/{other}"), None).await;
    assert_eq!((s, v["id"].as_str()), (200, Some(other.as_str())));

    let (s, v) = call(
        &h,
        "POST",
        "/app",
        Some(r#"{"name":"n","uid":"_app_mine"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let app = v["id"].as_str().unwrap().to_string();
    let body = r#"{"url":"https://example.com/h","uid":"ep_1"}"#;
    let (s, v) = call(&h, "POST", &format!("/app/{app}/endpoint"), Some(body)).await;
    assert_eq!(s, 422, "{v}");
    let body = r#"{"eventType":"a.b","payload":{},"eventId":"msg_1"}"#;
    let (s, v) = call(&h, "POST", &format!("/app/{app}/msg"), Some(body)).await;
    assert_eq!(s, 422, "{v}");
    // Tags are not uids: any of them may start like an id.
    let body = r#"{"eventType":"a.b","payload":{},"tags":["msg_1"]}"#;
    let (s, v) = call(&h, "POST", &format!("/app/{app}/msg"), Some(body)).await;
    assert_eq!(s, 202, "{v}");
}
