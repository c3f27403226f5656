//! Operator subcommands through the real binary: token create/list/revoke, healthcheck, and
//! `listen` verifying a real delivery.

use std::process::Command;
use std::time::Duration;

use svix::models::{ApplicationIn, EndpointIn, MessageIn};

use crate::support::{fast_delivery_env, http, Herald, Launch};

fn herald(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env_remove("HERALD_ADMIN_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test]
async fn token_lifecycle_ends_in_401() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = herald(&["token", "create", "--name", "deploy-bot", "--data-dir", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("hrld_"));
    let list = herald(&["token", "list", "--data-dir", d]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("deploy-bot"));
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&token),
        "tokens are never shown again"
    );

    let mut h = Herald::launch(&Launch::new(dir.path())).unwrap();
    let ok = http()
        .get(h.api("/app"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let busy = herald(&["token", "create", "--name", "x", "--data-dir", d]);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    assert!(h.terminate().success());

    let out = herald(&["token", "revoke", "deploy-bot", "--data-dir", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = herald(&["token", "revoke", "deploy-bot", "--data-dir", d]);
    assert!(!missing.status.success());
    let h = Herald::launch(&Launch::new(dir.path())).unwrap();
    let denied = http()
        .get(h.api("/app"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401, "a revoked token is refused");
}

#[test]
fn healthcheck_exit_codes_follow_health() {
    let h = Herald::start();
    let out = herald(&["healthcheck", &format!("{}/api/v1/health", h.url)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = herald(&[
        "healthcheck",
        "--timeout",
        "2",
        &format!("http://127.0.0.1:{port}/api/v1/health"),
    ]);
    assert!(!out.status.success(), "nothing listens there");
    let out = herald(&["healthcheck", &format!("{}/api/v1/no-such-thing", h.url)]);
    assert!(!out.status.success(), "a 404 is unhealthy");
}

#[test]
fn healthcheck_trusts_a_given_ca_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let h = Herald::launch(&Launch {
        args: vec!["--tls-self-signed"],
        ..Launch::new(dir.path())
    })
    .unwrap();
    let url = format!("{}/api/v1/health", h.url.replace("127.0.0.1", "localhost"));
    assert!(
        !herald(&["healthcheck", &url]).status.success(),
        "untrusted certificate"
    );
    let ca = dir.path().join("tls/self-signed-cert.pem");
    let out = herald(&["healthcheck", "--ca", ca.to_str().unwrap(), &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn listen_prints_deliveries_and_checks_their_signatures() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (mut child, rx, url) = crate::support::listen(secret);

    let h = Herald::start_with(fast_delivery_env());
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    let good = EndpointIn {
        secret: Some(secret.into()),
        ..EndpointIn::new(format!("{url}/good"))
    };
    svix.endpoint()
        .create(app.clone(), good, None)
        .await
        .unwrap();
    svix.endpoint()
        .create(
            app.clone(),
            EndpointIn::new(format!("{url}/other-secret")),
            None,
        )
        .await
        .unwrap();
    svix.message()
        .create(
            app,
            MessageIn::new("a.b".into(), serde_json::json!({"hello": "world"})),
            None,
        )
        .await
        .unwrap();

    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lines
        .iter()
        .filter(|l: &&String| l.contains("webhook-id="))
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "listen printed: {lines:?}"
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let good = lines.iter().find(|l| l.contains("/good")).unwrap();
    assert!(good.contains("signature valid"), "{good}");
    let other = lines.iter().find(|l| l.contains("/other-secret")).unwrap();
    assert!(other.contains("signature INVALID"), "{other}");
    assert!(
        lines.iter().any(|l| l.contains(r#"{"hello":"world"}"#)),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut h = Herald::launch(&Launch::new(&data)).unwrap();
    let svix = h.svix();
    let app = svix
        .application()
        .create(
            ApplicationIn {
                uid: Some("shop".into()),
                ..ApplicationIn::new("Shop".into())
            },
            None,
        )
        .await
        .unwrap()
        .id;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(String, std::time::Instant)>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (svix, app, stop, acked) = (h.svix(), app.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 5000 {
                let m = MessageIn::new("load.test".into(), serde_json::json!({"w": w, "i": i}));
                let id = svix
                    .message()
                    .create(app.clone(), m, None)
                    .await
                    .unwrap()
                    .id;
                acked.lock().unwrap().push((id, std::time::Instant::now()));
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // By default backups go to `backups` beside the data directory.
    let backup_dir = dir.path().join("backups/under-load");
    let started = std::time::Instant::now();
    let url = h.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([
                "backup",
                "under-load",
                "--url",
                &url,
                "--token",
                crate::support::TOKEN,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("records"));
    // A name already taken, or a path, is refused.
    for (name, status) in [("under-load", "409"), ("../elsewhere", "422")] {
        let again = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([
                "backup",
                name,
                "--url",
                &h.url,
                "--token",
                crate::support::TOKEN,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(
            !again.status.success() && err.contains(status),
            "{name}: {err}"
        );
    }
    assert!(!dir.path().join("elsewhere").exists());
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(h.terminate().success());
    let before: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t)| *t < started)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        before.len() > 20,
        "load ran before the backup: {}",
        before.len()
    );

    let key = std::fs::read_to_string(data.join("main.key"))
        .unwrap()
        .trim()
        .to_string();
    let restored = Launch {
        env: vec![("HERALD_MAIN_KEY", key)],
        ..Launch::new(&backup_dir)
    };
    let r = Herald::launch(&restored).unwrap();
    let svix = r.svix();
    assert_eq!(svix.application().get("shop".into()).await.unwrap().id, app);
    for id in &before {
        svix.message()
            .get(app.clone(), id.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("{id} missing from the backup: {e:?}"));
    }
    // The restored server takes new writes.
    svix.message()
        .create(
            app,
            MessageIn::new("after.restore".into(), serde_json::json!({})),
            None,
        )
        .await
        .unwrap();
}

#[test]
fn print_config_shows_the_merged_result_and_json_logs_are_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("print-config")
        .env("HERALD_DELIVERY__RETRY_SCHEDULE", "1,2,3")
        .env("HERALD_SERVER__LISTEN", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(text.contains("retry_schedule = \"1,2,3\""), "{text}");
    // What it prints is a valid configuration file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &text).unwrap();
    let check = herald(&["check-config", "--config", file.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let launch = Launch {
        args: vec!["--log-format", "json"],
        ..Launch::new(dir.path())
    };
    let h = Herald::launch(&launch).unwrap();
    let logs = h.logs();
    let line = logs.lines().find(|l| l.contains("listening on")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert!(v["fields"]["message"]
        .as_str()
        .unwrap()
        .starts_with("listening on http://"));
}
