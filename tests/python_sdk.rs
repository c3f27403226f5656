//! Herald driven by the official Python SDK: runs `tests/python/test_sdk.py` (stdlib `unittest`,
//! `svix` 2.9.1 from PyPI) against this build's `herald` binary, so that `cargo test` checks that
//! the Python SDK works unchanged, as the Rust tests do with the `svix` crate.
//!
//! Needs `python3` with the `venv` module; creates `tests/python/.venv` and installs the pinned
//! `tests/python/requirements.txt` into it when it is missing (which needs PyPI, as CI has). Set
//! `HERALD_SKIP_PYTHON_TESTS=1` to skip it on purpose.

use std::path::Path;
use std::process::Command;

#[test]
fn python_sdk_against_herald() {
    if std::env::var_os("HERALD_SKIP_PYTHON_TESTS").is_some_and(|v| v == "1") {
        eprintln!("Python SDK tests skipped: HERALD_SKIP_PYTHON_TESTS=1");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let python = dir.join(".venv/bin/python");
    if !python.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv", ".venv"])
            .current_dir(&dir)
            .status()
            .expect("python3 runs (the Python SDK tests need python3 with venv)");
        assert!(
            status.success(),
            "`python3 -m venv` failed in tests/python (on Debian: apt-get install python3-venv)"
        );
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r", "requirements.txt"])
            .current_dir(&dir)
            .status()
            .expect("the venv's python runs");
        if !status.success() {
            // A half-made venv would be taken for a good one next time.
            let _ = std::fs::remove_dir_all(dir.join(".venv"));
            panic!("pip install -r tests/python/requirements.txt failed");
        }
    }
    let out = Command::new(&python)
        .args(["-m", "unittest", "-v", "test_sdk"])
        .current_dir(&dir)
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .output()
        .expect("the venv's python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "Python SDK tests failed:\n{text}");
    // unittest exits 0 when it finds nothing to run (or skips everything): make sure tests ran.
    let ran = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split(' ')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    let skipped = text.matches("... skipped").count() as u32;
    assert!(ran > skipped, "no Python SDK test ran:\n{text}");
}
