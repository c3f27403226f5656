//! What the admin UI's forms and dashboard rely on: validation errors for every bad field at once,
//! in words, with a `loc` per field; recover refusing a future `since`; an event type's edited
//! description and schema example feeding `send-example`; the dashboard's failing endpoints and
//! per-application counts in `GET /admin/stats`.

use std::time::Duration;

use serde_json::{json, Value};
use svix::models::{ApplicationIn, EndpointIn};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{app_with_endpoint, call, fast_delivery_env, Herald};

const WAIT: Duration = Duration::from_secs(15);

fn locs(body: &Value) -> Vec<String> {
    body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("no detail list: {body}"))
        .iter()
        .map(|d| {
            d["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect()
}

#[tokio::test]
async fn endpoint_errors_come_all_at_once_and_in_words() {
    let h = Herald::start();
    let app = h
        .svix()
        .application()
        .create(ApplicationIn::new("Forms".into()), None)
        .await
        .unwrap()
        .id;
    let bad = json!({
        "url": "example.com/hook",
        "uid": "has space",
        "channels": ["ok", "bad channel"],
        "headers": {"Bad Header": "1"},
    });
    let (status, body) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint"),
        Some(&bad.to_string()),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        locs(&body),
        [
            "body.url",
            "body.uid",
            "body.channels.1",
            "body.headers.Bad Header"
        ],
        "{body}"
    );
    for d in body["detail"].as_array().unwrap() {
        let msg = d["msg"].as_str().unwrap();
        assert!(!msg.contains("^[") && !msg.contains("must match"), "{msg}");
    }
    assert!(body["detail"][1]["msg"]
        .as_str()
        .unwrap()
        .starts_with("use letters, digits, - _ . only"));
}

#[tokio::test]
async fn endpoint_patch_reports_every_bad_field() {
    let h = Herald::start();
    let (app, ep, _) =
        app_with_endpoint(&h, "https://example.com/ok", EndpointIn::new(String::new())).await;
    let patch = json!({"url": "ftp://example.com/", "description": "x".repeat(5000)});
    let (status, body) = call(
        &h,
        "PATCH",
        &format!("/app/{app}/endpoint/{ep}"),
        Some(&patch.to_string()),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(locs(&body), ["body.url", "body.description"], "{body}");
    assert_eq!(
        body["detail"][0]["msg"],
        "must start with http:// or https://"
    );
}

#[tokio::test]
async fn recover_refuses_a_future_since_and_an_empty_window() {
    let h = Herald::start();
    let (app, ep, _) =
        app_with_endpoint(&h, "https://example.com/ok", EndpointIn::new(String::new())).await;
    let path = format!("/app/{app}/endpoint/{ep}/recover");
    let future = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let (status, body) = call(
        &h,
        "POST",
        &path,
        Some(&json!({ "since": future }).to_string()),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(locs(&body), ["body.since"]);
    let msg = body["detail"][0]["msg"].as_str().unwrap();
    assert!(
        msg.contains("in the future") && msg.contains("nothing to recover"),
        "{msg}"
    );

    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let until = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let (status, body) = call(
        &h,
        "POST",
        &path,
        Some(&json!({ "since": since, "until": until }).to_string()),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(locs(&body), ["body.until"]);

    let (status, body) = call(
        &h,
        "POST",
        &path,
        Some(&json!({ "since": since }).to_string()),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn an_edited_schema_example_feeds_send_example() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let (status, body) = call(
        &h,
        "POST",
        "/event-type",
        Some(&json!({"name": "invoice.paid", "description": "old"}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // What the UI's edit dialog sends.
    let edit = json!({
        "description": "An invoice was paid",
        "schemas": {"1": {"type": "object", "properties": {"amount": {"type": "integer"}}, "examples": [{"amount": 42}]}},
    });
    let (status, body) = call(
        &h,
        "PATCH",
        "/event-type/invoice.paid",
        Some(&edit.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["description"], "An invoice was paid");
    assert_eq!(body["schemas"]["1"]["examples"][0]["amount"], 42);

    let (app, ep, _) = app_with_endpoint(
        &h,
        &format!("{}/hook", rx.url),
        EndpointIn::new(String::new()),
    )
    .await;
    let (status, out) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint/{ep}/send-example"),
        Some(&json!({"eventType": "invoice.paid"}).to_string()),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].body).unwrap(),
        json!({"amount": 42})
    );

    // Malformed schemas are refused where they are, in words.
    for (bad, loc) in [
        (json!({"schemas": {"1": "not a schema"}}), "body.schemas.1"),
        (
            json!({"schemas": {"1": {"examples": [1, 2]}}}),
            "body.schemas.1.examples",
        ),
        (json!({"schemas": [1]}), "body.schemas"),
    ] {
        let (status, body) = call(
            &h,
            "PATCH",
            "/event-type/invoice.paid",
            Some(&bad.to_string()),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(locs(&body), [loc], "{bad}");
    }
}

#[tokio::test]
async fn stats_list_failing_endpoints_and_per_application_counts() {
    let h = Herald::start_with(fast_delivery_env());
    let ok = Receiver::start(Answer::Status(200)).await;
    let broken = Receiver::start(Answer::Status(503)).await;
    let (app, good_ep, _) = app_with_endpoint(
        &h,
        &format!("{}/ok", ok.url),
        EndpointIn::new(String::new()),
    )
    .await;
    let bad_ep = h
        .svix()
        .endpoint()
        .create(
            app.clone(),
            EndpointIn::new(format!("{}/down", broken.url)),
            None,
        )
        .await
        .unwrap()
        .id;
    let quiet = h
        .svix()
        .application()
        .create(ApplicationIn::new("Quiet".into()), None)
        .await
        .unwrap()
        .id;
    let (status, body) = call(
        &h,
        "POST",
        &format!("/app/{app}/msg"),
        Some(&json!({"eventType": "a.b", "payload": {}}).to_string()),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let stats = eventually("the failing endpoint listed", WAIT, || async {
        let (_, s) = call(&h, "GET", "/admin/stats", None).await;
        (s["failingEndpoints"]
            .as_array()
            .is_some_and(|f| !f.is_empty()))
        .then_some(s)
    })
    .await;
    let failing = stats["failingEndpoints"].as_array().unwrap();
    assert_eq!(failing.len(), 1, "{stats}");
    assert_eq!(failing[0]["appId"], app.as_str());
    assert_eq!(failing[0]["endpointId"], bad_ep.as_str());
    assert_eq!(failing[0]["url"], format!("{}/down", broken.url));
    assert_eq!(failing[0]["lastStatusCode"], 503);
    assert!(failing[0]["lastAttemptAt"].is_string());
    assert_ne!(failing[0]["endpointId"], good_ep.as_str());

    let apps = stats["applications"].as_array().unwrap();
    let a = apps
        .iter()
        .find(|x| x["id"] == app.as_str())
        .expect("the app is summarised");
    assert_eq!(
        (
            a["endpoints"].as_u64(),
            a["failing"].as_u64(),
            a["disabled"].as_u64()
        ),
        (Some(2), Some(1), Some(0)),
        "{a}"
    );
    let q = apps
        .iter()
        .find(|x| x["id"] == quiet.as_str())
        .expect("the quiet app too");
    assert_eq!(
        (q["endpoints"].as_u64(), q["failing"].as_u64()),
        (Some(0), Some(0)),
        "{q}"
    );
    assert_eq!(stats["truncated"], false);
}
