//! The filters and extra fields the admin UI's messages and attempts pages rely on, through the
//! real server: test events (tagged, filtered, counted apart), an attempt's `errorKind` when no
//! response came, attempts `with_msg`, attempt filters by status and HTTP class, and the
//! messages' date window.

use std::time::Duration;

use serde_json::{json, Value};
use svix::models::{EndpointIn, MessageIn};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{app_with_endpoint, call, fast_delivery_env, get_json, Herald};

const WAIT: Duration = Duration::from_secs(20);

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn test_events_are_tagged_filtered_and_counted_apart() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let real = h
        .svix()
        .message()
        .create(
            app.clone(),
            MessageIn::new("a.b".into(), json!({"x": 1})),
            None,
        )
        .await
        .unwrap();
    let (status, test) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint/{ep}/send-example"),
        Some(&json!({"eventType": "a.b"}).to_string()),
    )
    .await;
    assert_eq!(status, 202, "{test}");
    assert_eq!(test["tags"], json!(["herald.test"]));
    let test_id = test["id"].as_str().unwrap().to_string();

    let all = get_json(&h, &format!("/app/{app}/msg?with_content=false")).await;
    assert_eq!(ids(&all), vec![test_id.clone(), real.id.clone()]);
    let only_test = get_json(&h, &format!("/app/{app}/msg?test=true")).await;
    assert_eq!(ids(&only_test), vec![test_id]);
    let no_test = get_json(&h, &format!("/app/{app}/msg?test=false")).await;
    assert_eq!(ids(&no_test), vec![real.id]);
    let (status, _) = call(&h, "GET", &format!("/app/{app}/msg?test=maybe"), None).await;
    assert_eq!(status, 422);

    let stats = get_json(&h, "/admin/stats").await;
    assert_eq!(stats["lastHour"]["accepted"], 2, "{stats}");
    assert_eq!(stats["lastHour"]["test"], 1, "{stats}");
    let minutes = stats["perMinute"].as_array().unwrap();
    let per_minute: u64 = minutes.iter().map(|m| m["test"].as_u64().unwrap()).sum();
    assert_eq!(per_minute, 1, "{stats}");
}

#[tokio::test]
async fn attempts_say_why_no_response_came_carry_their_message_and_filter() {
    let h = Herald::start_with(fast_delivery_env());
    // A loopback port nobody listens on: connection refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (app, refused, _) = app_with_endpoint(
        &h,
        &format!("http://127.0.0.1:{closed}/hook"),
        EndpointIn {
            event_types: Some(["a.b".to_string()].into()),
            ..EndpointIn::new(String::new())
        },
    )
    .await;
    let svix = h.svix();
    // Outside the allowed CIDRs: refused by the address policy, nothing sent.
    let blocked = svix
        .endpoint()
        .create(
            app.clone(),
            EndpointIn {
                event_types: Some(["c.d".to_string()].into()),
                ..EndpointIn::new("http://10.255.255.1/hook".into())
            },
            None,
        )
        .await
        .unwrap()
        .id;
    let rx = Receiver::start(Answer::Status(204)).await;
    let fine = svix
        .endpoint()
        .create(
            app.clone(),
            EndpointIn {
                event_types: Some(["e.f".to_string()].into()),
                ..EndpointIn::new(rx.url.clone())
            },
            None,
        )
        .await
        .unwrap()
        .id;
    for (event_type, event_id) in [("a.b", "order-1"), ("c.d", "order-2"), ("e.f", "order-3")] {
        svix.message()
            .create(
                app.clone(),
                MessageIn {
                    event_id: Some(event_id.into()),
                    ..MessageIn::new(event_type.into(), json!({"big": "x".repeat(100)}))
                },
                None,
            )
            .await
            .unwrap();
    }
    let first = |ep: String| {
        let h = &h;
        let app = app.clone();
        async move {
            eventually("an attempt", WAIT, || async {
                let l = get_json(
                    h,
                    &format!("/app/{app}/attempt/endpoint/{ep}?with_msg=true"),
                )
                .await;
                let data = l["data"].as_array().unwrap();
                (!data.is_empty()).then(|| data.last().unwrap().clone())
            })
            .await
        }
    };

    let a = first(refused.clone()).await;
    assert_eq!(a["responseStatusCode"], 0, "{a}");
    assert_eq!(a["errorKind"], "connection_refused", "{a}");
    assert_eq!(a["msg"]["eventType"], "a.b", "{a}");
    assert_eq!(a["msg"]["eventId"], "order-1", "{a}");
    assert_eq!(a["msg"]["payload"], json!({}), "{a}");

    let a = first(blocked.clone()).await;
    assert_eq!(a["errorKind"], "blocked", "{a}");
    assert_eq!(a["msg"]["eventId"], "order-2", "{a}");

    let a = first(fine.clone()).await;
    assert_eq!(a["responseStatusCode"], 204, "{a}");
    assert!(a.get("errorKind").is_none(), "{a}");
    // Without with_msg, `msg` stays null as in Svix.
    let plain = get_json(&h, &format!("/app/{app}/attempt/endpoint/{fine}")).await;
    assert_eq!(plain["data"][0]["msg"], Value::Null, "{plain}");

    // Filters by status and HTTP class.
    let count = |path: String| {
        let h = &h;
        async move { get_json(h, &path).await["data"].as_array().unwrap().len() }
    };
    let by_ep = |ep: &str, q: &str| format!("/app/{app}/attempt/endpoint/{ep}?{q}");
    assert!(count(by_ep(&refused, "status_code_class=0")).await >= 1);
    assert_eq!(count(by_ep(&refused, "status_code_class=200")).await, 0);
    assert_eq!(count(by_ep(&refused, "status=0")).await, 0);
    assert!(count(by_ep(&refused, "status=2")).await >= 1);
    assert_eq!(
        count(by_ep(&fine, "status_code_class=200&status=0")).await,
        1
    );
    assert_eq!(count(by_ep(&fine, "status_code_class=0")).await, 0);
    assert_eq!(count(by_ep(&fine, "status=2")).await, 0);
    let (status, _) = call(&h, "GET", &by_ep(&fine, "status_code_class=250"), None).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn messages_resolve_an_event_id_and_filter_by_a_date_window() {
    let h = Herald::start_with(fast_delivery_env());
    let (app, _, _) =
        app_with_endpoint(&h, "http://127.0.0.1:9/", EndpointIn::new(String::new())).await;
    let m = h
        .svix()
        .message()
        .create(
            app.clone(),
            MessageIn {
                event_id: Some("evt-42".into()),
                ..MessageIn::new("a.b".into(), json!({}))
            },
            None,
        )
        .await
        .unwrap();
    let by_event_id = get_json(&h, &format!("/app/{app}/msg/evt-42")).await;
    assert_eq!(by_event_id["id"], m.id.as_str());

    let at = m.timestamp;
    let q = |t: chrono::DateTime<chrono::Utc>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .replace('+', "%2B")
    };
    let minute = chrono::Duration::minutes(1);
    let window = |after, before| format!("/app/{app}/msg?after={after}&before={before}");
    let inside = get_json(&h, &window(q(at - minute), q(at + minute))).await;
    assert_eq!(ids(&inside), vec![m.id.clone()]);
    let earlier = get_json(&h, &window(q(at - minute - minute), q(at - minute))).await;
    assert!(ids(&earlier).is_empty());
    let later = get_json(&h, &window(q(at + minute), q(at + minute + minute))).await;
    assert!(ids(&later).is_empty());
}
