//! A full disk, with the real binary on a small tmpfs (needs root to mount it; without root these
//! tests fail with a clear message unless HERALD_SKIP_ROOT_TESTS=1). Under the reserve, new writes
//! answer 507 with Retry-After, readiness says why, reads go on, the log says it once and
//! /metrics counts it; once space is freed, writes resume without a restart and every
//! acknowledged message is delivered. Herald also starts on a completely full disk.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use svix::models::EndpointIn;

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{app_with_endpoint, call, fast_delivery_env, http, metric, Herald, Launch};

const MIB: u64 = 1024 * 1024;
/// The reserve the tests give Herald (store.min_free_mb), and its ballast.
const MIN_FREE_MB: u64 = 16;
const BALLAST_MB: u64 = 4;
/// The line Herald logs (at most once a minute) when it refuses writes.
const REFUSING: &str = "refusing writes for lack of disk space";

/// A tmpfs mounted on a temporary directory, unmounted on drop (also when a test panics).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` only when not root and HERALD_SKIP_ROOT_TESTS=1.
    fn mount(size_mib: u64) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().expect("run id -u");
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            if std::env::var("HERALD_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
                eprintln!("skipped: the disk-full tests need root to mount a tmpfs");
                return None;
            }
            panic!(
                "the disk-full tests need root (they mount a tmpfs): run as root, or set \
                 HERALD_SKIP_ROOT_TESTS=1 to skip them knowingly"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(self.path()).unwrap();
        s.f_bavail * s.f_frsize
    }

    /// Fill the file system with a file until only `leave` bytes are free (0: completely full).
    fn fill(&self, leave: u64) -> PathBuf {
        let path = self.path().join(format!("filler-{}", self.free()));
        let f = File::create(&path).unwrap();
        let len = self.free().saturating_sub(leave);
        rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, len).unwrap();
        if leave == 0 {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            while f.write_all(&[0u8; 4096]).is_ok() {}
            assert_eq!(self.free(), 0, "the file system is full");
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a process still holding a file cannot keep the mount.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn launch(data: &Path) -> Launch<'_> {
    let mut env = fast_delivery_env();
    env.retain(|(k, _)| *k != "HERALD_DELIVERY__RETRY_SCHEDULE");
    // Retries every second for a minute: messages stay queued while the receiver answers 503.
    env.push(("HERALD_DELIVERY__RETRY_SCHEDULE", vec!["1"; 60].join(",")));
    env.push(("HERALD_STORE__MIN_FREE_MB", MIN_FREE_MB.to_string()));
    env.push(("HERALD_STORE__BALLAST_MB", BALLAST_MB.to_string()));
    Launch {
        env,
        ..Launch::new(data)
    }
}

async fn post_msg(h: &Herald, app: &str, n: usize) -> (u16, Value, Option<String>) {
    let resp = http()
        .post(h.api(&format!("/app/{app}/msg")))
        .header("authorization", crate::support::bearer())
        .json(&json!({"eventType": "disk.test", "payload": {"n": n, "pad": "x".repeat(512)}}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.json().await.unwrap(), retry_after)
}

/// Status and JSON body (Null for 204) of an unauthenticated health probe.
async fn probe(h: &Herald, path: &str) -> (u16, Value) {
    let resp = http().get(h.api(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn wait_ready(h: &Herald, want: u16) -> Value {
    eventually(
        &format!("readiness {want}"),
        Duration::from_secs(10),
        || async {
            let (status, body) = probe(h, "/health/ready").await;
            (status == want).then_some(body)
        },
    )
    .await
}

fn reason_codes(body: &Value) -> Vec<String> {
    body["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x["code"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until the receiver has had a 2xx-bound request for every id (the receiver answers 200).
async fn all_delivered(rx: &Receiver, ids: &[String]) {
    rx.wait_until(
        &format!("deliveries of {} messages", ids.len()),
        Duration::from_secs(40),
        |got| {
            ids.iter()
                .all(|id| got.iter().any(|r| r.header("webhook-id") == id))
        },
    )
    .await;
}

#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_and_they_resume_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount(64) else { return };
    let data = fs.path().join("data");
    let rx = Receiver::start(Answer::Status(503)).await;
    let h = Herald::launch(&launch(&data)).expect("herald starts");
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    assert_eq!(probe(&h, "/health/ready").await.0, 204);
    eventually("the emergency ballast", Duration::from_secs(10), || async {
        data.join("reserve.ballast").exists().then_some(())
    })
    .await;

    let mut accepted = Vec::new();
    for n in 0..20 {
        let (status, body, _) = post_msg(&h, &app, n).await;
        assert_eq!(status, 202, "{body}");
        accepted.push(body["id"].as_str().unwrap().to_string());
    }

    // Under the reserve, yet above half of it: deliveries may still record their progress.
    let filler = fs.fill((MIN_FREE_MB - 4) * MIB);
    let body = wait_ready(&h, 503).await;
    assert_eq!(body["code"], "not_ready", "{body}");
    assert_eq!(reason_codes(&body), ["disk_below_reserve"], "{body}");
    assert_eq!(
        probe(&h, "/health").await.0,
        503,
        "Svix's route is readiness"
    );
    assert_eq!(probe(&h, "/health/live").await.0, 204, "alive all the same");

    let refused = 15;
    for n in 0..refused {
        let (status, body, retry_after) = post_msg(&h, &app, 100 + n).await;
        assert_eq!(status, 507, "{body}");
        assert_eq!(body["code"], "insufficient_storage", "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("storage"),
            "{body}"
        );
        assert_eq!(retry_after.as_deref(), Some("30"));
    }
    let (status, body) = call(&h, "POST", "/app", Some(r#"{"name":"B"}"#)).await;
    assert_eq!(
        (status, &body["code"]),
        (507, &json!("insufficient_storage"))
    );

    // Reads go on.
    assert_eq!(call(&h, "GET", &format!("/app/{app}"), None).await.0, 200);
    let (status, list) = call(&h, "GET", &format!("/app/{app}/msg?limit=100"), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), accepted.len());

    assert!(metric(&h, "herald_storage_full_rejections_total").await >= (refused + 1) as f64);
    assert_eq!(metric(&h, "herald_storage_degraded").await, 1.0);
    let logs = h.logs();
    assert_eq!(
        logs.matches(REFUSING).count(),
        1,
        "one line, not one per request:\n{logs}"
    );

    // Free the space: writes resume by themselves.
    std::fs::remove_file(&filler).unwrap();
    wait_ready(&h, 204).await;
    assert_eq!(metric(&h, "herald_storage_degraded").await, 0.0);
    for n in 0..10 {
        let (status, body, _) = post_msg(&h, &app, 200 + n).await;
        assert_eq!(status, 202, "{body}");
        accepted.push(body["id"].as_str().unwrap().to_string());
    }
    eventually(
        "the 'writes again' line",
        Duration::from_secs(10),
        || async { h.logs().contains("accepting writes again").then_some(()) },
    )
    .await;

    // Nothing acknowledged was lost: all stored, all delivered.
    for id in &accepted {
        assert_eq!(
            call(&h, "GET", &format!("/app/{app}/msg/{id}"), None)
                .await
                .0,
            200
        );
    }
    rx.set_default(Answer::Status(200));
    all_delivered(&rx, &accepted).await;
}

#[tokio::test]
async fn herald_starts_on_a_full_disk_serves_reads_and_says_why_it_is_not_ready() {
    let Some(fs) = Tmpfs::mount(64) else { return };
    let data = fs.path().join("data");
    let rx = Receiver::start(Answer::Status(200)).await;
    let mut h = Herald::launch(&launch(&data)).expect("herald starts");
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let mut accepted = Vec::new();
    for n in 0..5 {
        let (status, body, _) = post_msg(&h, &app, n).await;
        assert_eq!(status, 202, "{body}");
        accepted.push(body["id"].as_str().unwrap().to_string());
    }
    all_delivered(&rx, &accepted).await;
    eventually("the emergency ballast", Duration::from_secs(10), || async {
        data.join("reserve.ballast").exists().then_some(())
    })
    .await;
    assert!(h.terminate().success());

    let filler = fs.fill(0);
    let h = Herald::launch(&launch(&data)).expect("herald starts on a full disk");
    let logs = h.logs();
    assert!(
        logs.contains("released the emergency ballast"),
        "the ballast made room to open the store:\n{logs}"
    );
    let body = wait_ready(&h, 503).await;
    assert_eq!(reason_codes(&body), ["disk_below_reserve"], "{body}");
    assert_eq!(probe(&h, "/health/live").await.0, 204);
    assert_eq!(call(&h, "GET", &format!("/app/{app}"), None).await.0, 200);
    let (status, list) = call(&h, "GET", &format!("/app/{app}/msg"), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), accepted.len());
    let (status, body, _) = post_msg(&h, &app, 100).await;
    assert_eq!(status, 507, "{body}");

    std::fs::remove_file(&filler).unwrap();
    wait_ready(&h, 204).await;
    let (status, body, _) = post_msg(&h, &app, 101).await;
    assert_eq!(status, 202, "{body}");
    all_delivered(&rx, &[body["id"].as_str().unwrap().to_string()]).await;
}

/// With the reserve turned off, a write meets the real ENOSPC: still a 507 (not a 500), and
/// readiness says why: the disk is full (a payload append met it: nothing was written), or the
/// store cannot commit (sled met it: sled 0.34 refuses writes after that until reopened). A
/// restart on the same data directory brings writes back, and nothing acknowledged is lost.
#[tokio::test]
async fn a_write_that_meets_a_full_disk_answers_507_and_a_restart_recovers() {
    let Some(fs) = Tmpfs::mount(64) else { return };
    let data = fs.path().join("data");
    let rx = Receiver::start(Answer::Status(200)).await;
    let mut no_reserve = launch(&data);
    no_reserve
        .env
        .retain(|(k, _)| *k != "HERALD_STORE__MIN_FREE_MB");
    no_reserve
        .env
        .push(("HERALD_STORE__MIN_FREE_MB", "0".into()));
    let mut h = Herald::launch(&no_reserve).expect("herald starts");
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;

    let filler = fs.fill(0);
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..500 {
        let (status, body, retry_after) = post_msg(&h, &app, n).await;
        match status {
            202 => accepted.push(body["id"].as_str().unwrap().to_string()),
            _ => {
                refused = Some((status, body, retry_after));
                break;
            }
        }
    }
    let (status, body, retry_after) = refused.expect("the full disk refuses a write");
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "insufficient_storage", "{body}");
    assert_eq!(retry_after.as_deref(), Some("30"));
    let body = wait_ready(&h, 503).await;
    let reasons = reason_codes(&body);
    assert!(
        reasons.contains(&"store_cannot_commit".to_string())
            || reasons.contains(&"disk_full".to_string()),
        "{body}"
    );
    assert_eq!(probe(&h, "/health/live").await.0, 204);
    assert_eq!(call(&h, "GET", &format!("/app/{app}"), None).await.0, 200);
    for id in &accepted {
        let (status, m) = call(&h, "GET", &format!("/app/{app}/msg/{id}"), None).await;
        assert_eq!(
            status, 200,
            "an accepted message reads back on a full disk: {m}"
        );
    }

    std::fs::remove_file(&filler).unwrap();
    h.kill();
    let h = Herald::launch(&no_reserve).expect("herald restarts");
    wait_ready(&h, 204).await;
    let (status, body, _) = post_msg(&h, &app, 1000).await;
    assert_eq!(status, 202, "{body}");
    accepted.push(body["id"].as_str().unwrap().to_string());
    for id in &accepted {
        assert_eq!(
            call(&h, "GET", &format!("/app/{app}/msg/{id}"), None)
                .await
                .0,
            200
        );
    }
    all_delivered(&rx, &accepted).await;
}
