//! `/metrics`: Prometheus counters move as messages are accepted and delivered; no token, no data.

use std::time::Duration;

use serde_json::json;
use svix::models::{ApplicationIn, EndpointIn, MessageIn};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{bearer, fast_delivery_env, http, Herald};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
}

#[tokio::test]
async fn counters_move_with_deliveries_and_need_a_token() {
    let h = Herald::start_with(fast_delivery_env());
    let ok = Receiver::start(Answer::Status(200)).await;
    let failing = Receiver::start(Answer::Status(500)).await;
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    svix.endpoint()
        .create(app.clone(), EndpointIn::new(ok.url.clone()), None)
        .await
        .unwrap();
    svix.endpoint()
        .create(app.clone(), EndpointIn::new(failing.url.clone()), None)
        .await
        .unwrap();

    let scrape = || async {
        let r = http()
            .get(format!("{}/metrics", h.url))
            .header("authorization", bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let before = scrape().await;
    assert_eq!(value(&before, "herald_messages_accepted_total"), 0.0);

    for i in 0..3 {
        svix.message()
            .create(
                app.clone(),
                MessageIn::new("a.b".into(), json!({"i": i})),
                None,
            )
            .await
            .unwrap();
    }
    ok.wait_for(3, Duration::from_secs(15)).await;
    failing.wait_for(9, Duration::from_secs(15)).await; // 3 messages, each tried 3 times
    let text = eventually("all tries counted", Duration::from_secs(15), || async {
        let t = scrape().await;
        (value(&t, "herald_deliveries_total{outcome=\"http_error\"}") >= 9.0).then_some(t)
    })
    .await;
    assert_eq!(value(&text, "herald_messages_accepted_total"), 3.0);
    assert_eq!(
        value(&text, "herald_deliveries_total{outcome=\"success\"}"),
        3.0
    );
    assert!(value(&text, "herald_attempt_duration_seconds_count") >= 12.0);
    assert!(value(&text, "herald_store_bytes") > 0.0);
    // The parts add up, and the accepted payloads are in the payload log.
    let (trees, payloads) = (
        value(&text, "herald_store_disk_bytes{part=\"trees\"}"),
        value(&text, "herald_store_disk_bytes{part=\"payloads\"}"),
    );
    assert!(trees > 0.0 && payloads > 0.0, "{text}");
    assert_eq!(trees + payloads, value(&text, "herald_store_bytes"));
    assert!(value(&text, "herald_store_write_bytes_total") > 0.0);
    assert!(text.contains("# TYPE herald_attempt_duration_seconds histogram"));
    assert!(text.contains("herald_queue_depth "));

    let anonymous = http()
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = http()
        .get(format!("{}/metrics", h.url))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}
