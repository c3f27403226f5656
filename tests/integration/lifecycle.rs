//! The process around the API: data survives a graceful restart and a SIGKILL right after 2xx
//! answers; the admin token is generated and printed once; bad configuration and a data directory
//! in use are refused at start with a message naming the problem.

use std::time::Duration;

use svix::models::{ApplicationIn, EndpointIn, EventTypeIn};

use crate::support::{app_with_endpoint, command, Herald, Launch};

#[tokio::test]
async fn everything_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Herald::launch(&Launch::new(dir.path())).unwrap();
    let svix = h.svix();
    let app = svix
        .application()
        .create(
            ApplicationIn {
                uid: Some("u1".into()),
                ..ApplicationIn::new("A".into())
            },
            None,
        )
        .await
        .unwrap();
    let ep = svix
        .endpoint()
        .create(
            "u1".into(),
            EndpointIn::new("https://example.com/x".into()),
            None,
        )
        .await
        .unwrap();
    let secret = svix
        .endpoint()
        .get_secret("u1".into(), ep.id.clone())
        .await
        .unwrap()
        .key;
    svix.event_type()
        .create(EventTypeIn::new("a.b".into(), "d".into()), None)
        .await
        .unwrap();
    let status = h.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status}");

    let h = Herald::launch(&Launch::new(dir.path())).unwrap();
    let svix = h.svix();
    assert_eq!(
        svix.application().get("u1".into()).await.unwrap().id,
        app.id
    );
    assert_eq!(
        svix.endpoint()
            .get(app.id.clone(), ep.id.clone())
            .await
            .unwrap()
            .url,
        "https://example.com/x"
    );
    assert_eq!(
        svix.endpoint().get_secret(app.id, ep.id).await.unwrap().key,
        secret
    );
    assert_eq!(
        svix.event_type()
            .get("a.b".into())
            .await
            .unwrap()
            .description,
        "d"
    );
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_to_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut h = Herald::launch(&Launch::new(dir.path())).unwrap();
        let svix = h.svix();
        // Concurrent writers; the process dies right after the last acknowledgement.
        let mut tasks = Vec::new();
        for w in 0..8 {
            let svix = h.svix();
            tasks.push(tokio::spawn(async move {
                let mut made = Vec::new();
                for i in 0..15 {
                    let uid = format!("r{round}-w{w}-{i}");
                    let app = svix
                        .application()
                        .create(
                            ApplicationIn {
                                uid: Some(uid.clone()),
                                ..ApplicationIn::new(uid.clone())
                            },
                            None,
                        )
                        .await
                        .unwrap();
                    let ep = svix
                        .endpoint()
                        .create(
                            app.id.clone(),
                            EndpointIn::new(format!("https://example.com/{uid}")),
                            None,
                        )
                        .await
                        .unwrap();
                    made.push((app.id, ep.id));
                }
                made
            }));
        }
        let mut acknowledged = Vec::new();
        for t in tasks {
            acknowledged.extend(t.await.unwrap());
        }
        drop(svix);
        h.kill();

        let h = Herald::launch(&Launch::new(dir.path())).unwrap();
        let svix = h.svix();
        for (app, ep) in &acknowledged {
            svix.application()
                .get(app.clone())
                .await
                .unwrap_or_else(|e| panic!("round {round}: lost {app}: {e:?}"));
            svix.endpoint()
                .get(app.clone(), ep.clone())
                .await
                .unwrap_or_else(|e| panic!("round {round}: lost {ep}: {e:?}"));
        }
        assert_eq!(acknowledged.len(), 120);
    }
}

#[tokio::test]
async fn a_generated_admin_token_is_printed_once_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        admin_token: None,
        ..Launch::new(dir.path())
    };
    let mut h = Herald::launch(&launch).unwrap();
    let token = {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let logs = h.logs();
            if let Some(t) = logs.split_whitespace().find(|w| w.starts_with("hrld_")) {
                break t.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no token printed:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let client = crate::support::http();
    let ok = client
        .get(h.api("/app"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    h.terminate();
    let raw = std::fs::read(dir.path().join("store-v1/db")).unwrap_or_default();
    assert!(
        !raw.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is stored only as a hash"
    );

    let h = Herald::launch(&launch).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !h.logs().contains("hrld_"),
        "printed only at first start:\n{}",
        h.logs()
    );
    let ok = client
        .get(h.api("/app"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the token survives restarts");
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Herald::launch(&Launch::new(dir.path())).unwrap();
    let err = Herald::launch(&Launch::new(dir.path()))
        .err()
        .expect("second start must fail");
    assert!(err.contains("in use by another Herald process"), "{err}");
}

#[test]
fn invalid_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "HERALD_DELIVERY__REQUEST_TIMEOUT",
            "99",
            "delivery.request_timeout",
        ),
        ("HERALD_SERVER__MAX_BODY_BYTES", "lots", "max_body_bytes"),
        ("HERALD_SERVER__NO_SUCH_KEY", "1", "no_such_key"),
    ];
    for (k, v, key) in cases {
        let launch = Launch {
            env: vec![(k, v.to_string())],
            ..Launch::new(dir.path())
        };
        let out = command(&launch).output().unwrap();
        assert!(!out.status.success(), "{k}={v} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{k}={v}: {stderr}");
    }
    let launch = Launch {
        env: vec![("HERALD_ADMIN_TOKEN", "short".into())],
        admin_token: None,
        ..Launch::new(dir.path())
    };
    let out = command(&launch).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_ADMIN_TOKEN"));

    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[server]\nmax_body_bytes = \"big\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_body_bytes"));
}

#[test]
fn plain_http_on_a_public_address_needs_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("HERALD_ADMIN_TOKEN", crate::support::TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-http"));
}

// Multi-threaded: the test blocks one thread waiting for the process while the receiver, on
// this runtime too, must still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_delivery_finish_and_exits_0() {
    use crate::support::receiver::{Answer, Receiver};
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut env = crate::support::fast_delivery_env();
    env.push(("NOTIFY_SOCKET", sock_path.to_string_lossy().into_owned()));
    let data = dir.path().join("data");
    let launch = Launch {
        env,
        ..Launch::new(&data)
    };
    let rx = Receiver::start(Answer::Status(200)).await;
    rx.script([Answer::Delay(Duration::from_millis(1500))]);

    let mut h = Herald::launch(&launch).unwrap();
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"READY=1",
        "systemd hears READY once Herald listens"
    );
    let svix = h.svix();
    let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let id = svix
        .message()
        .create(
            app.clone(),
            svix::models::MessageIn::new("a.b".into(), serde_json::json!({})),
            None,
        )
        .await
        .unwrap()
        .id;
    rx.wait_for(1, Duration::from_secs(10)).await; // the delivery is in flight, answer pending
    let status = h.terminate();
    assert!(status.success(), "exit 0 after SIGTERM, got {status}");
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");

    // The try finished before exit: it is recorded as a success and not made again.
    let h = Herald::launch(&launch).unwrap();
    let svix = h.svix();
    let list = crate::support::attempts(&svix, &app, &id, 1).await;
    assert_eq!(list.data[0].response_status_code, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rx.received().len(),
        1,
        "no second delivery after the restart"
    );
}

#[tokio::test]
async fn each_request_is_logged_without_secrets() {
    let h = Herald::start_with(vec![("HERALD_SERVER__ACCESS_LOG", "all".into())]);
    let resp = crate::support::http()
        .post(h.api("/app?secret_query=hunter2"))
        .header("authorization", crate::support::bearer())
        .json(&serde_json::json!({"name": "payload-marker-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let line =
        crate::support::receiver::eventually("an access line", Duration::from_secs(5), || async {
            h.logs()
                .lines()
                .find(|l| l.contains("herald::access") && l.contains("POST"))
                .map(String::from)
        })
        .await;
    assert!(
        line.contains("path=/api/v1/app") && line.contains("status=201"),
        "{line}"
    );
    let logs = h.logs();
    for secret in [crate::support::TOKEN, "hunter2", "payload-marker-123"] {
        assert!(!logs.contains(secret), "{secret} reached the log:\n{logs}");
    }
}

/// The access lines of the log, waiting for one with `marker` in it.
async fn access_lines(h: &Herald, marker: &str) -> Vec<String> {
    crate::support::receiver::eventually("an access line", Duration::from_secs(5), || async {
        let lines: Vec<String> = h
            .logs()
            .lines()
            .filter(|l| l.contains("herald::access"))
            .map(String::from)
            .collect();
        lines.iter().any(|l| l.contains(marker)).then_some(lines)
    })
    .await
}

#[tokio::test]
async fn by_default_only_failed_requests_are_logged_in_whole_microseconds() {
    let h = Herald::start();
    assert_eq!(crate::support::call(&h, "GET", "/app", None).await.0, 200);
    let missing = crate::support::call(&h, "GET", "/app/app_no-such-app", None).await;
    assert_eq!(missing.0, 404);
    // Lines are written in request order: once the 404's is there, the 200's would be too.
    let lines = access_lines(&h, "status=404").await;
    assert_eq!(lines.len(), 1, "only the failed request: {lines:#?}");
    let us = lines[0]
        .split_whitespace()
        .find_map(|f| f.strip_prefix("us="))
        .unwrap_or_else(|| panic!("no us= field: {}", lines[0]));
    assert!(
        us.parse::<u64>().is_ok(),
        "whole microseconds: {}",
        lines[0]
    );
    assert!(lines[0].contains("path=/api/v1/app/app_no-such-app"));
}

#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    let h = Herald::start_with(vec![("HERALD_SERVER__ACCESS_LOG", "off".into())]);
    let missing = crate::support::call(&h, "GET", "/app/app_no-such-app", None).await;
    assert_eq!(missing.0, 404);
    // An absence: give a line the time it would take to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = h.logs();
    assert!(!logs.contains("herald::access"), "{logs}");
}

#[tokio::test]
async fn endpoint_secrets_are_sealed_at_rest_and_a_wrong_key_is_refused() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let raw = *b"PLAINTEXT-SIGNING-SECRET-0123456789abcdef";
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    let mut h = Herald::launch(&Launch::new(dir.path())).unwrap();
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    let ep = svix
        .endpoint()
        .create(
            app.clone(),
            EndpointIn {
                secret: Some(secret.clone()),
                ..EndpointIn::new("https://example.com/x".into())
            },
            None,
        )
        .await
        .unwrap()
        .id;
    let generated = svix
        .endpoint()
        .create(
            app.clone(),
            EndpointIn::new("https://example.com/y".into()),
            None,
        )
        .await
        .unwrap()
        .id;
    let generated_key = svix
        .endpoint()
        .get_secret(app.clone(), generated)
        .await
        .unwrap()
        .key;
    let generated_raw = base64::engine::general_purpose::STANDARD
        .decode(&generated_key[6..])
        .unwrap();
    assert!(h.terminate().success());

    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("store-v1")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            stored.extend(std::fs::read(p).unwrap());
        }
    }
    assert!(stored.len() > 1000);
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&raw), "a secret is stored in clear");
    assert!(
        !contains(&generated_raw),
        "a generated secret is stored in clear"
    );
    assert!(!contains(&secret.as_bytes()[6..]));

    let wrong = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    let launch = Launch {
        env: vec![("HERALD_MAIN_KEY", wrong)],
        ..Launch::new(dir.path())
    };
    let err = Herald::launch(&launch)
        .err()
        .expect("a wrong main key must be refused");
    assert!(err.contains("main key"), "{err}");

    let h = Herald::launch(&Launch::new(dir.path())).unwrap();
    assert_eq!(
        h.svix().endpoint().get_secret(app, ep).await.unwrap().key,
        secret,
        "the right key opens it"
    );
}
