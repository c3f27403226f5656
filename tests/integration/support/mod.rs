//! Test harness: start the real binary, wait for its `listening on` line, talk to it, stop or kill it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use svix::api::{Svix, SvixOptions};
use svix::models::{ApplicationIn, EndpointIn};

pub mod receiver;

/// Settings that let deliveries reach loopback receivers quickly (retries after 0.2 s, 0.4 s).
pub fn fast_delivery_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "HERALD_DELIVERY__ALLOWED_CIDRS",
            "127.0.0.0/8,::1/128".to_string(),
        ),
        ("HERALD_DELIVERY__RETRY_SCHEDULE", "0.2,0.4".to_string()),
        ("HERALD_DELIVERY__REQUEST_TIMEOUT", "2".to_string()),
        ("HERALD_DELIVERY__TIMEOUT_RETRY_FLOOR", "0.2".to_string()),
    ]
}

/// The admin token every test server accepts (set through `HERALD_ADMIN_TOKEN`).
pub const TOKEN: &str = "test-admin-token-0123456789abcdefghijklmnopqrstuvwxyz";

pub struct Herald {
    child: Child,
    pub url: String,
    logs: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// How a server is started.
pub struct Launch<'a> {
    pub data_dir: &'a Path,
    pub env: Vec<(&'a str, String)>,
    pub args: Vec<&'a str>,
    pub admin_token: Option<&'a str>,
}

impl<'a> Launch<'a> {
    pub fn new(data_dir: &'a Path) -> Self {
        Launch {
            data_dir,
            env: Vec::new(),
            args: Vec::new(),
            admin_token: Some(TOKEN),
        }
    }
}

pub fn command(launch: &Launch) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(launch.data_dir)
        .args(&launch.args)
        .env_remove("RUST_LOG")
        .env("HERALD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match launch.admin_token {
        Some(t) => cmd.env("HERALD_ADMIN_TOKEN", t),
        None => cmd.env_remove("HERALD_ADMIN_TOKEN"),
    };
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    cmd
}

impl Herald {
    /// A server on a fresh temporary data directory.
    pub fn start() -> Herald {
        Herald::start_with(Vec::new())
    }

    /// A server on a fresh temporary data directory with these `HERALD_*` variables.
    pub fn start_with(env: Vec<(&str, String)>) -> Herald {
        let tmp = tempfile::tempdir().expect("tempdir");
        let launch = Launch {
            env,
            ..Launch::new(tmp.path())
        };
        let mut h = Herald::launch(&launch).expect("herald starts");
        h._tmp = Some(tmp);
        h
    }

    /// Start with these settings; `Err` carries the output of a process that exited instead.
    pub fn launch(launch: &Launch) -> Result<Herald, String> {
        let mut child = command(launch).spawn().expect("spawn herald");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let url = line
                    .find("listening on http")
                    .map(|i| line[i + "listening on ".len()..].trim().to_string());
                // Record the line before announcing the start, so `logs()` already holds it.
                sink.lock().unwrap().push(line);
                if let Some(url) = url {
                    let _ = tx.send(url);
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(url) => {
                    return Ok(Herald {
                        child,
                        url,
                        logs,
                        _tmp: None,
                    })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                let out = logs.lock().unwrap().join("\n");
                return Err(format!("herald exited with {status}:\n{out}"));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "herald did not start in 30 s"
            );
        }
    }

    pub fn svix(&self) -> Svix {
        self.svix_as(TOKEN)
    }

    /// An SDK client of this server that sends `token` (an app token, an expired one, ...).
    pub fn svix_as(&self, token: &str) -> Svix {
        Svix::new(
            token.to_string(),
            Some(SvixOptions {
                server_url: Some(self.url.clone()),
                ..Default::default()
            }),
        )
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.url, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.child.wait().expect("wait for herald")
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP client with the admin token.
pub fn http() -> reqwest::Client {
    // reqwest is built without a bundled crypto provider (Herald installs ring once at start).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// GET an API path with the admin token, as JSON (for fields the SDK models do not carry).
pub async fn get_json(h: &Herald, path: &str) -> serde_json::Value {
    http()
        .get(h.api(path))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Wait (bounded) until a message has exactly `n` attempts; newest first.
pub async fn attempts(
    svix: &Svix,
    app: &str,
    msg: &str,
    n: usize,
) -> svix::models::ListResponseMessageAttemptOut {
    receiver::eventually(
        &format!("{n} attempts"),
        std::time::Duration::from_secs(20),
        || async {
            let opts = svix::api::MessageAttemptListByMsgOptions {
                limit: Some(50),
                ..Default::default()
            };
            let l = svix
                .message_attempt()
                .list_by_msg(app.to_string(), msg.to_string(), Some(opts))
                .await
                .unwrap();
            (l.data.len() == n).then_some(l)
        },
    )
    .await
}

/// An application with one endpoint at `url` (other fields from `input`): app id, endpoint id,
/// signing secret.
pub async fn app_with_endpoint(
    h: &Herald,
    url: &str,
    input: EndpointIn,
) -> (String, String, String) {
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap();
    let ep = svix
        .endpoint()
        .create(
            app.id.clone(),
            EndpointIn {
                url: url.to_string(),
                ..input
            },
            None,
        )
        .await
        .unwrap();
    let secret = svix
        .endpoint()
        .get_secret(app.id.clone(), ep.id.clone())
        .await
        .unwrap()
        .key;
    (app.id, ep.id, secret)
}

/// The HTTP status of an SDK error.
pub fn sdk_status(e: &svix::error::Error) -> u16 {
    match e {
        svix::error::Error::Http(c) => c.status.as_u16(),
        svix::error::Error::Validation(c) => c.status.as_u16(),
        other => panic!("not an HTTP error: {other:?}"),
    }
}

/// An API call with the admin token and an optional JSON body: status and JSON answer (asserting
/// the answer is JSON; `Null` for a 204).
pub async fn call(h: &Herald, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut req = http()
        .request(method.parse().unwrap(), h.api(path))
        .header("authorization", bearer());
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    if status == 204 {
        return (status, Value::Null);
    }
    assert_eq!(
        ctype.as_deref(),
        Some("application/json"),
        "{method} {path}: {text}"
    );
    (
        status,
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}")),
    )
}

/// A value of `/metrics` (Prometheus text), read with the admin token.
pub async fn metric(h: &Herald, name: &str) -> f64 {
    let text = http()
        .get(format!("{}/metrics", h.url))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Everything the server sends until it closes the connection; panics if it is still open after
/// `within`.
pub async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    conn: &mut S,
    within: Duration,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "connection still open after {within:?}; received so far: {:?}",
        String::from_utf8_lossy(&out)
    );
    out
}

/// Start `herald listen --secret SECRET` on a free port: the process, its stdout lines as they
/// come, and the URL it listens on.
pub fn listen(secret: &str) -> (Child, mpsc::Receiver<String>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["listen", "--port", "0", "--secret", secret])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herald listen");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listen prints its address");
    let url = first
        .strip_prefix("listening on ")
        .expect("address printed")
        .to_string();
    (child, rx, url)
}

/// The files under `dir` that hold `needle` (all but the emergency ballast, which is zeros).
pub fn data_dir_holds(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "reserve.ballast") {
                continue;
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}
