//! What Herald leaves on disk: a private data directory whatever the umask (and one left wide by
//! an earlier run tightened at start), and backups confined to the backup directory, private,
//! refused for any name that is not a plain new directory name, with errors that name no path.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::{bearer, call, command, http, Herald, Launch};

/// Every entry under `root` (itself included) whose mode is not 0700 (directories) or 0600
/// (files), with its mode; links are not followed.
fn too_open(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            if mode != 0o700 {
                out.push((p, mode));
            }
        } else if meta.is_file() && mode != 0o600 {
            out.push((p, mode));
        }
    }
    out
}

fn files_under(root: &Path) -> usize {
    let mut n = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            n += 1;
        }
    }
    n
}

/// Run `herald serve` on `data` under umask 022 with a self-signed certificate (so the `tls`
/// folder is made too), store an endpoint with a custom `Authorization` header and a message,
/// then stop it with SIGTERM.
async fn run_under_umask_022(data: &Path) {
    let launch = Launch {
        args: vec!["--tls-self-signed"],
        ..Launch::new(data)
    };
    let mut cmd = command(&launch);
    // SAFETY: umask is async-signal-safe and touches nothing but the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening on https://") {
                let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("herald starts");
    let _ = http(); // installs the crypto provider reqwest needs
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{url}/api/v1{path}"))
            .header("authorization", bearer())
            .json(&body)
            .send()
    };
    let app: serde_json::Value = post("/app", json!({"name": "a"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = app["id"].as_str().unwrap().to_string();
    let ep = post(
        &format!("/app/{app}/endpoint"),
        json!({"url": "https://example.com/hook", "headers": {"Authorization": "Bearer receiver-secret"}}),
    )
    .await
    .unwrap();
    assert_eq!(ep.status().as_u16(), 201);
    let msg = post(
        &format!("/app/{app}/msg"),
        json!({"eventType": "a.b", "payload": {"k": "v"}}),
    )
    .await
    .unwrap();
    assert_eq!(msg.status().as_u16(), 202);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn the_data_directory_is_private_whatever_the_umask_and_is_tightened_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run_under_umask_022(&data).await;
    assert!(
        files_under(&data) >= 4,
        "the store, the main key and the certificate are there"
    );
    assert!(data.join("tls").is_dir());
    assert_eq!(too_open(&data), vec![], "modes under the data directory");

    // A data directory left wide (an older version, a copy) is tightened at the next start.
    let wide = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    wide(&data, 0o755).unwrap();
    wide(&data.join("main.key"), 0o644).unwrap();
    wide(&data.join("store-v1"), 0o755).unwrap();
    wide(&data.join("store-v1/conf"), 0o644).unwrap();
    let h = Herald::launch(&Launch::new(&data)).unwrap();
    assert_eq!(too_open(&data), vec![], "modes after a restart");
    assert!(
        h.logs().contains("made the data directory private"),
        "{}",
        h.logs()
    );
}

#[tokio::test]
async fn backups_stay_in_the_backup_directory_are_private_and_name_no_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("kept/backups");
    let h = Herald::launch(&Launch {
        env: vec![(
            "HERALD_STORE__BACKUP_DIR",
            backups.to_str().unwrap().to_string(),
        )],
        ..Launch::new(&data)
    })
    .unwrap();
    let (status, _) = call(&h, "POST", "/app", Some(r#"{"name":"shop","uid":"shop"}"#)).await;
    assert_eq!(status, 201);
    let outside = dir.path().join("outside");
    let url = h.api("/admin/backup");
    let backup = |body: serde_json::Value| {
        let url = url.clone();
        async move {
            let resp = http()
                .post(url)
                .header("authorization", bearer())
                .json(&body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let abs = outside.join(".ssh/id_rsa");
    for body in [
        json!({ "name": abs }),
        json!({ "destination": abs }),
        json!({ "name": "../../outside" }),
        json!({ "name": ".." }),
        json!({ "name": "a/../../../outside" }),
        json!({ "name": "sub/dir" }),
        json!({ "name": ".hidden" }),
        json!({ "name": "" }),
    ] {
        let (status, text) = backup(body.clone()).await;
        assert!(
            status == 400 || status == 422,
            "{body} answered {status}: {text}"
        );
        assert!(
            !text.contains('/'),
            "{body}: the error names a path: {text}"
        );
    }
    assert!(!outside.exists(), "nothing was written outside");
    assert!(!dir.path().join("kept/outside").exists());

    let (status, text) = backup(json!({ "name": "nightly-1" })).await;
    assert_eq!(status, 200, "{text}");
    let out: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(out["name"], "nightly-1");
    assert!(!text.contains('/'), "the answer names no path: {text}");
    let copy = backups.join("nightly-1");
    assert!(
        files_under(&copy) >= 2,
        "the copy is in the backup directory"
    );
    assert_eq!(too_open(&backups), vec![], "modes of the backup");

    // A taken name, whatever holds it (a link to elsewhere too), is refused and left alone.
    let (status, text) = backup(json!({ "name": "nightly-1" })).await;
    assert_eq!(status, 409, "{text}");
    assert!(!text.contains('/'), "{text}");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, backups.join("planted")).unwrap();
    let (status, text) = backup(json!({ "name": "planted" })).await;
    assert_eq!(status, 409, "{text}");
    assert!(!text.contains('/'), "{text}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    drop(h);

    // The copy restores.
    let key = std::fs::read_to_string(data.join("main.key")).unwrap();
    let r = Herald::launch(&Launch {
        env: vec![("HERALD_MAIN_KEY", key.trim().to_string())],
        ..Launch::new(&copy)
    })
    .unwrap();
    let (status, got) = call(&r, "GET", "/app/shop", None).await;
    assert_eq!(status, 200, "{got}");
}
