//! The admin UI end to end in a real browser: runs every `tests/ui/*.test.mjs` (Node's test runner,
//! playwright-core, Debian's Chromium) against this build's `herald` binary, so that `cargo test`
//! runs them with everything else.
//!
//! Needs Node.js and `/usr/bin/chromium` (`apt-get install chromium`); installs the npm package
//! itself (`npm ci`) when `tests/ui/node_modules` is missing. Without Chromium the test fails and
//! says so; set `HERALD_SKIP_BROWSER_TESTS=1` to skip it on purpose.

use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

#[test]
fn admin_ui_in_chromium() {
    if std::env::var_os("HERALD_SKIP_BROWSER_TESTS").is_some_and(|v| v == "1") {
        eprintln!("browser tests skipped: HERALD_SKIP_BROWSER_TESTS=1");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    assert!(
        chromium().exists(),
        "the browser tests need Chromium at {}: `apt-get install chromium` \
         (or set HERALD_SKIP_BROWSER_TESTS=1 to skip them)",
        chromium().display()
    );
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm runs (the browser tests need Node.js and npm)");
        assert!(status.success(), "npm ci in tests/ui failed");
    }
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/ui is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs in {}", dir.display());
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(&files)
        .current_dir(&dir)
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .output()
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "browser tests failed:\n{text}");
    // The runner exits 0 when it finds no tests: make sure they ran.
    assert!(
        text.contains("# pass") || text.contains("ℹ pass"),
        "no browser test ran:\n{text}"
    );
    assert!(
        !text.contains("ℹ pass 0"),
        "no browser test passed:\n{text}"
    );
}
