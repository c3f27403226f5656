//! `herald check DATA_DIR [--repair]` on a real store written by the server: consistent after a
//! normal run; a flipped payload byte and a torn tail are reported (exit 1), repaired, and the
//! server then serves every other message; a store in use is refused.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

use crate::support::{call, Herald, Launch};

fn check(dir: &Path, repair: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.arg("check").arg(dir);
    if repair {
        cmd.arg("--repair");
    }
    cmd.output().expect("run herald check")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn payload_file(data: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("store-v1/payloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().expect("a payload file")
}

#[tokio::test]
async fn check_reports_a_flipped_byte_and_a_torn_tail_and_repair_fixes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let launch = Launch::new(&data);
    let mut h = Herald::launch(&launch).expect("starts");
    let (s, _) = call(&h, "POST", "/app", Some(r#"{"name":"c","uid":"c"}"#)).await;
    assert_eq!(s, 201);
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = json!({"eventType": "a.b", "eventId": format!("e{n}"), "payload": {"n": n, "marker": format!("MARK{n}MARK")}});
        let (s, m) = call(&h, "POST", "/app/c/msg", Some(&body.to_string())).await;
        assert_eq!(s, 202, "{m}");
        ids.push(m["id"].as_str().unwrap().to_string());
    }

    let busy = check(&data, false);
    assert!(!busy.status.success());
    assert!(text(&busy).contains("in use"), "{}", text(&busy));

    h.terminate();
    let ok = check(&data, false);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("the store is consistent"),
        "{}",
        text(&ok)
    );

    // Flip a byte inside message 1's payload, and leave half a record at the end.
    let path = payload_file(&data);
    let bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"MARK1MARK")
        .expect("payload in the file");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"W", at as u64).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"HPL1\0\0\0\x40half")
        .unwrap();

    let bad = check(&data, false);
    let out = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("torn tail"), "{out}");
    assert!(out.contains("damaged"), "{out}");
    assert!(out.contains(&ids[1]), "{out}");

    let fixed = check(&data, true);
    assert!(fixed.status.success(), "{}", text(&fixed));
    assert!(text(&fixed).contains("repaired"), "{}", text(&fixed));
    let again = check(&data, false);
    assert!(again.status.success(), "{}", text(&again));

    let h = Herald::launch(&launch).expect("restarts");
    for (n, id) in ids.iter().enumerate() {
        let (s, m) = call(&h, "GET", &format!("/app/c/msg/{id}"), None).await;
        if n == 1 {
            assert_eq!(s, 404, "the damaged message is gone: {m}");
        } else {
            assert_eq!(s, 200, "{m}");
            assert_eq!(m["payload"]["n"], n);
        }
    }
}

#[test]
fn check_names_a_directory_without_a_store_and_makes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = check(&tmp.path().join("nothing"), false);
    assert!(!out.status.success());
    assert!(text(&out).contains("no Herald store"), "{}", text(&out));
    assert!(!tmp.path().join("nothing").exists());
}
