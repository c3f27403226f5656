//! Payload filters (Herald extension): endpoints with different filters receive exactly the
//! messages whose payloads match, a bad filter is refused with its position, and the filter test
//! route answers whether a payload matches.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::receiver::{Answer, Receiver};
use crate::support::{call, Herald};

async fn endpoint(h: &Herald, app: &str, url: String, filter: Option<&str>) -> String {
    let mut body = json!({ "url": url });
    if let Some(f) = filter {
        body["filter"] = json!(f);
    }
    let (st, v) = call(
        h,
        "POST",
        &format!("/app/{app}/endpoint"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["filter"], json!(filter));
    v["id"].as_str().unwrap().to_string()
}

/// The `n` markers of the payloads a path of the receiver got.
fn markers(rx: &Receiver, path: &str) -> BTreeSet<u64> {
    rx.received()
        .iter()
        .filter(|r| r.path == path)
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v["n"].as_u64())
        .collect()
}

#[tokio::test]
async fn endpoints_get_exactly_the_payloads_their_filters_match() {
    let rx = Receiver::start(Answer::Status(200)).await;
    let h = Herald::start_with(crate::support::fast_delivery_env());
    let (st, app) = call(&h, "POST", "/app", Some(r#"{"name":"filters"}"#)).await;
    assert_eq!(st, 201, "{app}");
    let app = app["id"].as_str().unwrap().to_string();
    endpoint(&h, &app, format!("{}/a", rx.url), Some(r#"$.kind == "a""#)).await;
    endpoint(
        &h,
        &app,
        format!("{}/b", rx.url),
        Some(r#"$.n > 10 or $.tags[0] startsWith "vip""#),
    )
    .await;
    endpoint(&h, &app, format!("{}/all", rx.url), None).await;
    let payloads = [
        json!({"n": 1, "kind": "a"}),
        json!({"n": 2, "kind": "b", "big": 1}),
        json!({"n": 11, "kind": "a"}),
        json!({"n": 4, "kind": "c", "tags": ["vip-1"]}),
        json!({"n": 5, "kind": "c", "tags": ["x", "vip"]}),
    ];
    for p in &payloads {
        let body = json!({ "eventType": "order.paid", "payload": p }).to_string();
        let (st, v) = call(&h, "POST", &format!("/app/{app}/msg"), Some(&body)).await;
        assert_eq!(st, 202, "{v}");
    }
    crate::support::receiver::eventually("deliveries", Duration::from_secs(30), || async {
        (markers(&rx, "/all").len() == 5
            && markers(&rx, "/a").len() >= 2
            && markers(&rx, "/b").len() >= 2)
            .then_some(())
    })
    .await;
    // The unfiltered endpoint got everything, so every filtered delivery has been made too.
    assert_eq!(markers(&rx, "/a"), BTreeSet::from([1, 11]));
    assert_eq!(markers(&rx, "/b"), BTreeSet::from([11, 4]));
}

#[tokio::test]
async fn a_bad_filter_is_refused_with_where_and_the_test_route_answers() {
    let h = Herald::start();
    let (_, app) = call(&h, "POST", "/app", Some(r#"{"name":"filters"}"#)).await;
    let app = app["id"].as_str().unwrap().to_string();
    let (st, v) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint"),
        Some(r#"{"url":"https://example.com/h","filter":"$.kind == \"a\" and"}"#),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["detail"][0]["loc"], json!(["body", "filter"]), "{v}");
    let msg = v["detail"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("position 17: expected a path"), "{v}");

    let ep = endpoint(
        &h,
        &app,
        "https://example.com/h".into(),
        Some(r#"$.kind in ["a", "b"]"#),
    )
    .await;
    // Lists and gets show the stored filter.
    let (_, list) = call(&h, "GET", &format!("/app/{app}/endpoint"), None).await;
    assert_eq!(
        list["data"][0]["filter"], r#"$.kind in ["a", "b"]"#,
        "{list}"
    );
    let (_, got) = call(&h, "GET", &format!("/app/{app}/endpoint/{ep}"), None).await;
    assert_eq!(got["filter"], r#"$.kind in ["a", "b"]"#, "{got}");
    let (st, v) = call(
        &h,
        "PATCH",
        &format!("/app/{app}/endpoint/{ep}"),
        Some(r#"{"filter":"$.n =="}"#),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v.to_string().contains("position 6: expected a value"),
        "{v}"
    );

    let test = |body: Value| {
        let h = &h;
        let path = format!("/app/{app}/endpoint/{ep}/filter/test");
        async move { call(h, "POST", &path, Some(&body.to_string())).await }
    };
    let (st, v) = test(json!({"payload": {"kind": "b"}})).await;
    assert_eq!((st, v), (200, json!({"matches": true})));
    let (st, v) = test(json!({"payload": {"kind": "c"}})).await;
    assert_eq!((st, v), (200, json!({"matches": false})));
    let (st, v) = test(json!({"payload": [1, 2]})).await;
    assert_eq!((st, v), (200, json!({"matches": false})));
    let (st, v) = test(json!({"filter": "$.kind == \"c\"", "payload": {"kind": "c"}})).await;
    assert_eq!((st, v), (200, json!({"matches": true})));
    let (st, v) = test(json!({"filter": "$.kind ==", "payload": {}})).await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v.to_string().contains("position 9: expected a value"),
        "{v}"
    );

    // Clearing the filter: every payload matches.
    let (st, v) = call(
        &h,
        "PATCH",
        &format!("/app/{app}/endpoint/{ep}"),
        Some(r#"{"filter":null}"#),
    )
    .await;
    assert_eq!((st, v["filter"].clone()), (200, Value::Null), "{v}");
    let (st, v) = test(json!({"payload": {"kind": "c"}})).await;
    assert_eq!((st, v), (200, json!({"matches": true})));
    let (st, _) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint/ep_nope/filter/test"),
        Some(r#"{"payload":{}}"#),
    )
    .await;
    assert_eq!(st, 404);
}
