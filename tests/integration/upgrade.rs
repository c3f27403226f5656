//! A store written by an earlier Herald (format 1: payloads inside sled's message records, made by
//! d1574d5 and kept as a fixture) is upgraded in place on first start: every message reads back
//! with its payload, and the store keeps working.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{http, Herald, Launch};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/store-v1-d1574d5.tar.gz"
);
/// The admin token the fixture was made with.
const FIXTURE_TOKEN: &str = "fixture-admin-token-0123456789abcdefghijklmnop";

fn unpack(dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let ok = Command::new("tar")
        .arg("xzf")
        .arg(FIXTURE)
        .arg("-C")
        .arg(dest)
        .status()
        .expect("run tar");
    assert!(ok.success());
}

async fn get(h: &Herald, path: &str) -> (u16, Value) {
    let r = http()
        .get(h.api(path))
        .bearer_auth(FIXTURE_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn payload_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("store-v1/payloads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_format_1_store_is_upgraded_in_place_and_every_payload_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    unpack(&data);
    assert_eq!(
        payload_files(&data),
        0,
        "the fixture predates the payload log"
    );
    let launch = Launch {
        admin_token: None,
        ..Launch::new(&data)
    };
    let mut h = Herald::launch(&launch).expect("starts on the old store");
    assert!(
        h.logs().contains("store upgraded to format 2"),
        "{}",
        h.logs()
    );
    assert!(payload_files(&data) >= 1);

    for round in 0..2 {
        let (status, list) = get(&h, "/app/fixture-app/msg/?limit=50").await;
        assert_eq!(status, 200, "{list}");
        let data = list["data"].as_array().unwrap();
        assert_eq!(data.len(), 6, "round {round}: {list}");
        for n in 1..=5 {
            let (status, m) = get(&h, &format!("/app/fixture-app/msg/evt-{n}")).await;
            assert_eq!(status, 200, "{m}");
            assert_eq!(m["payload"]["order"], n, "{m}");
            assert_eq!(m["payload"]["note"], "caf\u{e9} \u{2603}");
        }
        let (_, big) = get(&h, "/app/fixture-app/msg/evt-big").await;
        let lines = big["payload"]["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 1500);
        assert_eq!(lines[1499]["desc"], "line item 1499");
        let (_, eps) = get(&h, "/app/fixture-app/endpoint/").await;
        assert_eq!(eps["data"].as_array().unwrap().len(), 2);
        // Attempts written by the old binary (format 1 records) read back too.
        let (status, tries) = get(&h, "/app/fixture-app/attempt/endpoint/bad/").await;
        assert_eq!(status, 200, "{tries}");
        let tries = tries["data"].as_array().unwrap();
        assert!(!tries.is_empty());
        assert!(
            tries
                .iter()
                .all(|a| a["msgId"].as_str().unwrap().starts_with("msg_")),
            "{tries:?}"
        );

        // Restart: already upgraded, nothing to do again.
        h.terminate();
        h = Herald::launch(&launch).expect("restarts");
        assert!(!h.logs().contains("store upgraded"), "{}", h.logs());
    }

    // New messages go to the payload log and read back.
    let r = http()
        .post(h.api("/app/fixture-app/msg/"))
        .bearer_auth(FIXTURE_TOKEN)
        .json(&serde_json::json!({"eventType": "order.created", "eventId": "evt-new", "payload": {"fresh": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let (_, m) = get(&h, "/app/fixture-app/msg/evt-new").await;
    assert_eq!(m["payload"]["fresh"], true);
}
