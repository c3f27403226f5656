//! What the admin UI needs beyond the Svix API, through the real server: its static files (ETag,
//! 304, security headers, no token needed), dashboard stats, endpoint health, send-example,
//! message status and its filter, application search.

use std::time::Duration;

use serde_json::{json, Value};
use svix::models::{ApplicationIn, EndpointIn, EventTypeIn, MessageIn};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{app_with_endpoint, bearer, call, fast_delivery_env, get_json, http, Herald};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn the_ui_is_served_without_a_token_and_revalidated_by_etag() {
    let h = Herald::start();
    let resp = http().get(format!("{}/", h.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    let etag = headers["etag"].to_str().unwrap().to_string();
    let html = resp.text().await.unwrap();
    assert!(html.contains("<script type=\"module\""), "{html}");

    let again = http()
        .get(format!("{}/index.html", h.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    // Every file the page references is served with its type.
    for (path, kind) in [("/app.css", "text/css"), ("/js/main.js", "javascript")] {
        let r = http().get(format!("{}{path}", h.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.contains(kind), "{path}: {ct}");
    }
    let missing = http()
        .get(format!("{}/no-such-file.js", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
    // The API stays behind its token.
    let api = http().get(h.api("/app")).send().await.unwrap();
    assert_eq!(api.status(), 401);
}

#[tokio::test]
async fn dashboard_stats_count_the_last_hour() {
    let h = Herald::start_with(fast_delivery_env());
    let ok = Receiver::start(Answer::Status(200)).await;
    let (app, _, _) = app_with_endpoint(
        &h,
        &format!("{}/ok", ok.url),
        EndpointIn::new(String::new()),
    )
    .await;
    let svix = h.svix();
    for i in 0..3 {
        svix.message()
            .create(
                app.clone(),
                MessageIn::new("a.b".into(), json!({ "i": i })),
                None,
            )
            .await
            .unwrap();
    }
    ok.wait_for(3, WAIT).await;
    let stats = eventually("3 delivered in the stats", WAIT, || async {
        let s = get_json(&h, "/admin/stats").await;
        (s["lastHour"]["delivered"] == 3).then_some(s)
    })
    .await;
    assert_eq!(stats["lastHour"]["accepted"], 3);
    assert_eq!(stats["lastHour"]["failed"], 0);
    let minutes = stats["perMinute"].as_array().unwrap();
    assert!(!minutes.is_empty() && minutes.len() <= 60);
    let summed: u64 = minutes
        .iter()
        .map(|m| m["accepted"].as_u64().unwrap())
        .sum();
    assert_eq!(summed, 3);
    assert!(minutes.last().unwrap()["start"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    for key in [
        "uptimeSeconds",
        "queueDepth",
        "oldestDueAgeSeconds",
        "disabledEndpoints",
        "storeBytes",
    ] {
        assert!(stats[key].is_number(), "{key}: {stats}");
    }
    let anon = http().get(h.api("/admin/stats")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
}

#[tokio::test]
async fn health_follows_successes_and_failures() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, ep, _) = app_with_endpoint(
        &h,
        &format!("{}/hook", rx.url),
        EndpointIn::new(String::new()),
    )
    .await;
    let path = format!("/app/{app}/endpoint/{ep}/health");
    let fresh = get_json(&h, &path).await;
    assert_eq!(fresh["lastAttempt"], Value::Null);
    assert_eq!(fresh["successRate"], Value::Null);
    assert_eq!(fresh["failingSince"], Value::Null);
    assert_eq!(fresh["disabled"], false);

    let svix = h.svix();
    let send = || async {
        svix.message()
            .create(app.clone(), MessageIn::new("a.b".into(), json!({})), None)
            .await
            .unwrap()
    };
    send().await;
    rx.wait_for(1, WAIT).await;
    let healthy = eventually("a success", WAIT, || async {
        let v = get_json(&h, &path).await;
        (v["lastAttempt"]["status"] == 0).then_some(v)
    })
    .await;
    assert_eq!(healthy["successRate"], 1.0);
    assert!(healthy["lastSuccessAt"].is_string());
    assert_eq!(healthy["failingSince"], Value::Null);
    assert_eq!(healthy["lastAttempt"]["responseStatusCode"], 200);

    rx.set_default(Answer::Body(500, "boom".into()));
    send().await;
    let failing = eventually("a failure", WAIT, || async {
        let v = get_json(&h, &path).await;
        (v["lastAttempt"]["responseStatusCode"] == 500).then_some(v)
    })
    .await;
    assert_eq!(failing["lastAttempt"]["status"], 2);
    assert!(failing["failingSince"].is_string(), "{failing}");
    assert!(failing["successRate"].as_f64().unwrap() < 1.0);
    assert!(failing["counts"]["fail"].as_u64().unwrap() >= 1);
    assert_eq!(failing["counts"]["success"], 1);
}

#[tokio::test]
async fn send_example_reaches_one_endpoint_whatever_its_filters() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let svix = h.svix();
    svix.event_type()
        .create(
            EventTypeIn {
                schemas: Some(
                    [(
                        "1".to_string(),
                        json!({"type": "object", "examples": [{"order": 1}, {"order": 2}]}),
                    )]
                    .into_iter()
                    .collect(),
                ),
                ..EventTypeIn::new("order.created".into(), "An order".into())
            },
            None,
        )
        .await
        .unwrap();
    let (app, ep, _) = app_with_endpoint(
        &h,
        &format!("{}/filtered", rx.url),
        EndpointIn {
            event_types: Some(["other.type".to_string()].into()),
            ..EndpointIn::new(String::new())
        },
    )
    .await;
    // A second endpoint that would take any message: a test send must not reach it.
    svix.endpoint()
        .create(
            app.clone(),
            EndpointIn::new(format!("{}/bystander", rx.url)),
            None,
        )
        .await
        .unwrap();

    let (status, out) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint/{ep}/send-example"),
        Some(&json!({"eventType": "order.created", "exampleIndex": 1}).to_string()),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    assert_eq!(out["payload"], json!({"order": 2}));
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got[0].path, "/filtered");
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].body).unwrap(),
        json!({"order": 2})
    );

    // No schema example: a marked test payload.
    let (status, out) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint/{ep}/send-example"),
        Some(&json!({"eventType": "herald.test"}).to_string()),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    assert_eq!(out["payload"]["test"], true);
    assert_eq!(out["payload"]["type"], "herald.test");
    rx.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rx.received().iter().all(|r| r.path == "/filtered"),
        "a test send leaked to another endpoint"
    );

    let (status, out) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint/{ep}/send-example"),
        Some(&json!({"eventType": "bad type!"}).to_string()),
    )
    .await;
    assert_eq!(status, 422, "{out}");
    let (status, _) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint/ep_nope/send-example"),
        Some(&json!({"eventType": "a.b"}).to_string()),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn messages_carry_their_overall_status_and_filter_by_it() {
    let h = Herald::start_with(fast_delivery_env());
    let good = Receiver::start(Answer::Status(200)).await;
    let bad = Receiver::start(Answer::Status(400)).await;
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("S".into()), None)
        .await
        .unwrap()
        .id;
    for (url, types) in [
        (format!("{}/g", good.url), vec!["ok.one", "mixed"]),
        (format!("{}/b", bad.url), vec!["mixed"]),
    ] {
        svix.endpoint()
            .create(
                app.clone(),
                EndpointIn {
                    event_types: Some(types.into_iter().map(String::from).collect()),
                    ..EndpointIn::new(url)
                },
                None,
            )
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for t in ["ok.one", "mixed", "nobody"] {
        ids.push(
            svix.message()
                .create(app.clone(), MessageIn::new(t.into(), json!({})), None)
                .await
                .unwrap()
                .id,
        );
    }
    // With fast delivery settings a 400 is retried a few times, then fails for good.
    let failed = eventually(
        "the mixed message fails",
        Duration::from_secs(30),
        || async {
            let v = get_json(&h, &format!("/app/{app}/msg/{}", ids[1])).await;
            (v["status"] == 2).then_some(v)
        },
    )
    .await;
    assert_eq!(failed["eventType"], "mixed");
    let ok = get_json(&h, &format!("/app/{app}/msg/{}", ids[0])).await;
    assert_eq!(ok["status"], 0);
    let nobody = get_json(&h, &format!("/app/{app}/msg/{}", ids[2])).await;
    assert!(nobody.get("status").is_none(), "{nobody}");

    let list = |q: &'static str| {
        let (h, app) = (&h, &app);
        async move {
            get_json(h, &format!("/app/{app}/msg?{q}")).await["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("status=2").await, vec![ids[1].clone()]);
    assert_eq!(list("status=0").await, vec![ids[0].clone()]);
    assert!(list("status=1").await.is_empty());
    assert_eq!(
        list("status=2&event_types=ok.one").await,
        Vec::<String>::new()
    );
    let all = get_json(&h, &format!("/app/{app}/msg")).await;
    let statuses: Vec<&Value> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["status"])
        .collect();
    assert_eq!(statuses, vec![&Value::Null, &json!(2), &json!(0)]);
    let bad = http()
        .get(h.api(&format!("/app/{app}/msg?status=7")))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn applications_can_be_searched_by_name_uid_or_id() {
    let h = Herald::start();
    let svix = h.svix();
    let mut made = Vec::new();
    for (name, uid) in [
        ("Acme Shop", "acme"),
        ("Globex", "globex-eu"),
        ("Initech", "ini"),
    ] {
        made.push(
            svix.application()
                .create(
                    ApplicationIn {
                        uid: Some(uid.into()),
                        ..ApplicationIn::new(name.into())
                    },
                    None,
                )
                .await
                .unwrap(),
        );
    }
    let names = |q: String| {
        let h = &h;
        async move {
            get_json(h, &format!("/app?{q}")).await["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("search=SHOP".into()).await, vec!["Acme Shop"]);
    assert_eq!(names("search=-eu".into()).await, vec!["Globex"]);
    assert_eq!(
        names(format!("search={}", &made[2].id[4..])).await,
        vec!["Initech"]
    );
    assert!(names("search=nothing-like-it".into()).await.is_empty());
    // Search pages like any list.
    let first = get_json(&h, "/app?search=e&limit=2").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["done"], false);
    let it = first["iterator"].as_str().unwrap();
    let rest = get_json(&h, &format!("/app?search=e&limit=2&iterator={it}")).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["done"], true);
}
