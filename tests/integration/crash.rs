//! The durability promise with the real binary: messages posted by concurrent clients while the
//! receiver answers 503; Herald is SIGKILLed mid-stream and restarted on the same data directory;
//! once the receiver answers 200, every message that got a 202 arrives (at least once).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use svix::models::{EndpointIn, MessageIn};

use crate::support::receiver::{Answer, Receiver};
use crate::support::{app_with_endpoint, fast_delivery_env, Herald, Launch};

#[tokio::test]
async fn every_accepted_message_arrives_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = fast_delivery_env();
    env.retain(|(k, _)| *k != "HERALD_DELIVERY__RETRY_SCHEDULE");
    // Retries wait long enough that only the restart and fast recovery can deliver in time.
    env.push(("HERALD_DELIVERY__RETRY_SCHEDULE", "0.3,30,30".to_string()));
    let launch = Launch {
        env: env.clone(),
        ..Launch::new(dir.path())
    };
    let rx = Receiver::start(Answer::Status(503)).await;

    let mut h = Herald::launch(&launch).unwrap();
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;

    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let svix = h.svix();
        let app = app.clone();
        let accepted = accepted.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let m = MessageIn::new("crash.test".into(), json!({"writer": w, "i": i}));
                match svix.message().create(app.clone(), m, None).await {
                    Ok(out) => accepted.lock().unwrap().push(out.id),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Kill mid-stream, while writers are posting and deliveries are failing.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while accepted.lock().unwrap().len() < 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "writers made no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.kill();
    for w in writers {
        w.await.unwrap();
    }
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 300);

    rx.set_default(Answer::Status(200));
    let _h = Herald::launch(&launch).unwrap();
    let want: HashSet<String> = accepted.iter().cloned().collect();
    rx.wait_until(
        "every accepted message delivered after the restart",
        Duration::from_secs(60),
        |got| {
            let ok: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
            want.iter().all(|id| ok.contains(id.as_str()))
        },
    )
    .await;
}
