//! The operator's first hour through the real binary: the admin token survives a failed first
//! start, offline commands refuse a missing data directory, `check-config` refuses what `serve`
//! refuses, configuration errors are in words, help and `print-config` are tidy, and `listen`
//! says why a signature does not verify.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{http, Herald, Launch};

/// `herald ARGS` in `cwd` with no Herald variables from the test's own environment but `vars`.
fn herald_in(cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(args).current_dir(cwd).stdin(Stdio::null());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HERALD_")) {
        cmd.env_remove(k);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    // Bounded: a `serve` that wrongly starts must fail the test, not hang it.
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run herald");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for herald").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("herald's output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_first_start_on_a_taken_port_loses_no_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = herald_in(
        dir.path(),
        &[
            "serve",
            "--listen",
            &addr,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("cannot listen on"),
        "{err}"
    );
    assert!(
        !err.contains("hrld_"),
        "no token is printed by a server that never listened: {err}"
    );
    drop(taken);

    let mut h = Herald::launch(&Launch {
        admin_token: None,
        ..Launch::new(&data)
    })
    .unwrap();
    let logs = h.logs();
    let token = logs
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("hrld_"))
        .unwrap_or_else(|| panic!("the first start that listens prints the token: {logs}"))
        .to_string();
    let ok = http()
        .get(h.api("/app"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(h.terminate().success());

    // Later starts cannot show it again, so they say how to get one.
    let h = Herald::launch(&Launch {
        admin_token: None,
        ..Launch::new(&data)
    })
    .unwrap();
    let logs = h.logs();
    assert!(!logs.contains("hrld_"), "{logs}");
    assert!(
        logs.contains("herald token create --name NAME") && logs.contains("HERALD_ADMIN_TOKEN"),
        "{logs}"
    );
}

#[test]
fn token_commands_refuse_a_missing_data_directory_and_make_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    for args in [
        &["token", "list"][..],
        &["token", "revoke", "deploy-bot"],
        &["token", "create", "--name", "deploy-bot"],
    ] {
        let out = herald_in(cwd.path(), args, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("data directory ./herald-data") && err.contains("does not exist"),
            "{args:?}: {err}"
        );
    }
    assert!(!cwd.path().join("herald-data").exists());

    // A directory that exists but holds no store: reading tokens from it is a mistake too.
    let empty = cwd.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for args in [&["token", "list"][..], &["token", "revoke", "deploy-bot"]] {
        let mut args = args.to_vec();
        args.extend(["--data-dir", empty.to_str().unwrap()]);
        let out = herald_in(cwd.path(), &args, &[]);
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains("holds no Herald store"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "no key, no store"
    );
}

#[test]
fn check_config_refuses_what_serve_refuses() {
    let cwd = tempfile::tempdir().unwrap();
    let missing_pem = cwd.path().join("missing.pem");
    let pem = missing_pem.to_str().unwrap();
    let long_token = "a".repeat(40);
    // Flags, variables, and what both commands must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &[],
            &[("HERALD_ADMIN_TOKEN", "short")],
            "HERALD_ADMIN_TOKEN must be at least 32 characters",
        ),
        (
            &[],
            &[("HERALD_MAIN_KEY", "abc")],
            "HERALD_MAIN_KEY must be base64 of exactly 32 bytes",
        ),
        (&["--listen", "0.0.0.0:8080"], &[], "refusing plain HTTP"),
        (&["--tls-cert", pem, "--tls-key", pem], &[], "missing.pem"),
    ];
    for (flags, vars, wanted) in cases {
        for command in ["check-config", "serve"] {
            let mut args = vec![command];
            args.extend_from_slice(flags);
            let out = herald_in(cwd.path(), &args, vars);
            let err = stderr(&out);
            assert!(
                !out.status.success() && err.contains(wanted),
                "{args:?} {vars:?}: {err}"
            );
        }
    }
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let out = herald_in(
        cwd.path(),
        &["check-config", "--listen", "127.0.0.1:9"],
        &[
            ("HERALD_ADMIN_TOKEN", &long_token),
            ("HERALD_MAIN_KEY", key),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "check-config writes nothing"
    );
}

#[test]
fn configuration_errors_are_in_words() {
    let cwd = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "HERALD_SERVER__LISTN",
            "127.0.0.1:1",
            &["unknown setting server.listn (from HERALD_SERVER__LISTN) (did you mean server.listen?)"],
        ),
        (
            "HERALD_DELIVERY__RETRY_SCHEDULE",
            "5m,300",
            &["delivery.retry_schedule", "such as 5,300,1800"],
        ),
    ];
    for (k, v, wanted) in cases {
        let out = herald_in(cwd.path(), &["check-config"], &[(k, v)]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{k}");
        for w in *wanted {
            assert!(err.contains(w), "{k}={v}: {err}");
        }
        for internal in ["alloc::", "figment", "global.", "untagged"] {
            assert!(!err.contains(internal), "{k}={v}: {err}");
        }
    }
    let file = cwd.path().join("herald.toml");
    std::fs::write(&file, "[server]\nlistn = \"127.0.0.1:1\"\n").unwrap();
    let out = herald_in(
        cwd.path(),
        &["check-config", "--config", file.to_str().unwrap()],
        &[],
    );
    let wanted = format!("unknown setting server.listn in {}", file.display());
    assert!(stderr(&out).contains(&wanted), "{}", stderr(&out));
}

#[test]
fn help_shows_each_default_once_and_print_config_every_key() {
    let cwd = tempfile::tempdir().unwrap();
    for command in [
        "serve",
        "check-config",
        "print-config",
        "token",
        "healthcheck",
        "listen",
        "backup",
    ] {
        let out = herald_in(cwd.path(), &[command, "--help"], &[]);
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let defaults: Vec<&str> = help
            .match_indices("[default: ")
            .map(|(i, _)| &help[i..i + help[i..].find(']').unwrap_or(0)])
            .collect();
        for d in &defaults {
            assert_eq!(
                defaults.iter().filter(|x| *x == d).count(),
                1,
                "{command} --help shows {d} twice:\n{help}"
            );
        }
    }

    let out = herald_in(
        cwd.path(),
        &["print-config", "--data-dir", "/srv/herald"],
        &[("HERALD_DELIVERY__RETRY_SCHEDULE", "5,300,1800.5")],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "data_dir = \"/srv/herald\"\n",
        "shutdown_grace = 30\n",
        "request_timeout = 15\n",
        "retry_schedule = \"5,300,1800.5\"\n",
        "# cert_file =",
        "# main_key_file =",
        "# backup_dir =",
        "# proxy =",
        "HERALD_TOKEN",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn listen_says_why_a_signature_is_invalid() {
    use herald::delivery::signer::sign;
    use herald::domain::SigningKey;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (mut child, rx, url) = crate::support::listen(secret);

    let key = SigningKey::parse("secret", secret).unwrap();
    let other = SigningKey::parse("secret", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let body = r#"{"hello":"world"}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed = |k: &SigningKey, ts: i64| sign([k], "msg_1", ts, body.as_bytes());
    // Path, (webhook-timestamp, webhook-signature) if sent, and what listen must say.
    type Headers = Option<(String, String)>;
    let cases: Vec<(&str, Headers, &str)> = vec![
        (
            "/valid",
            Some((now.to_string(), signed(&key, now))),
            "signature valid",
        ),
        (
            "/none",
            None,
            "missing header webhook-id, webhook-timestamp, webhook-signature",
        ),
        (
            "/stale",
            Some(((now - 900).to_string(), signed(&key, now - 900))),
            "stale timestamp",
        ),
        (
            "/future",
            Some(((now + 900).to_string(), signed(&key, now + 900))),
            "in the future, more than the 300 s tolerance",
        ),
        (
            "/wrong-secret",
            Some((now.to_string(), signed(&other, now))),
            "no signature matches this secret",
        ),
        (
            "/malformed",
            Some((now.to_string(), "sha256=abc".to_string())),
            "malformed webhook-signature",
        ),
        (
            "/bad-timestamp",
            Some(("yesterday".to_string(), signed(&key, now))),
            "malformed webhook-timestamp",
        ),
    ];
    let client = http();
    for (path, headers, _) in &cases {
        let mut req = client.post(format!("{url}{path}")).body(body);
        if let Some((ts, sig)) = headers {
            req = req
                .header("webhook-id", "msg_1")
                .header("webhook-timestamp", ts)
                .header("webhook-signature", sig);
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.iter().filter(|l| l.contains("webhook-id=")).count() < cases.len() {
        assert!(Instant::now() < deadline, "listen printed: {lines:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    for (path, _, wanted) in &cases {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("POST {path} ")))
            .unwrap_or_else(|| panic!("{path}: {lines:?}"));
        assert!(line.contains(wanted), "{path}: {line}");
        if *path != "/valid" {
            assert!(line.contains("signature INVALID: "), "{line}");
        }
    }
}
