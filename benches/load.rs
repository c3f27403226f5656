//! Load benchmark (run on demand, not in CI): starts the real `herald` binary and a fast local
//! receiver, drives Herald through its HTTP API, and prints ingest msg/s, delivered msg/s,
//! accept-to-receipt latency percentiles and Herald's RSS.
//!
//!     cargo bench --bench load -- [all|ingest|accept|fanout|steady|backlog|isolation|million|soak|ordering] [--duration SECS] [--backlog N] [--prefill N] [--idempotency]
//!
//! Scenarios: `ingest` (concurrency 64, realistic JSON events of 0.3 to 8 KiB, mean about 2 KiB,
//! from `common/payloads.rs`; 1 endpoint), `accept` (the same, but the one endpoint subscribes to
//! another event type: fan-out runs, nothing is delivered, so the CPU figure is ingest alone),
//! `fanout` (10 endpoints),
//! `steady` (a fixed 1,000 msg/s, latency), `backlog` (N messages queued while the receiver answers
//! 503, then the time to drain once it answers 200), `isolation` (one application's 10 endpoints
//! hang with 80 messages each while another application gets 200 msg/s: its latency, and how many
//! connections the hanging ones hold), `million` (not in `all`: N messages left
//! queued, Herald's memory with them, then a restart on that backlog: time to serve and memory),
//! `soak` (not in `all`: 1,000 msg/s for `--duration`, RSS every 30 s, the worst request time,
//! duplicates, disk growth per delivered message, and when the slowest requests started;
//! `--prefill N` first sends N messages at full speed, so that the soak runs on a grown store).
//! `ordering` (not in `all`: `--backlog N` messages queued on one endpoint throttled to 1/s, then
//! drained unthrottled, once unordered and once FIFO).
//! `HERALD_BENCH_BIN=path` runs that herald binary instead of the one cargo built.
//! `--idempotency` sends a unique `idempotency-key` on every create, as the Svix SDKs do.
//! Herald runs at its default log level, as operators run it. Beside each throughput: Herald's CPU
//! time (all threads, user + system, from `/proc/<pid>/stat`) per accepted and per delivered
//! message. Everything runs on 127.0.0.1.

#[path = "common/payloads.rs"]
mod payloads;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

const TOKEN: &str = "bench-admin-token-0123456789abcdefghijklmnopqrstuvwxyz";
const CONCURRENCY: usize = 64;

/// Send a unique `idempotency-key` with every create (set once from the command line).
static IDEMPOTENCY: AtomicBool = AtomicBool::new(false);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The receiver: counts deliveries and notes when each message id first arrived.
#[derive(Default)]
struct Sink {
    count: AtomicU64,
    failing: AtomicBool,
    first_seen: Mutex<HashMap<String, i64>>,
}

async fn start_receiver(sink: Arc<Sink>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let id = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        // Drain the body so the connection stays reusable.
                        let _ = http_body_util_collect(req.into_body()).await;
                        let status = if sink.failing.load(Ordering::Relaxed) {
                            503
                        } else {
                            200
                        };
                        if status == 200 {
                            sink.count.fetch_add(1, Ordering::Relaxed);
                            sink.first_seen
                                .lock()
                                .unwrap()
                                .entry(id)
                                .or_insert_with(now_ms);
                        }
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(status)
                                .body(String::new())
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

async fn http_body_util_collect(mut body: Incoming) -> usize {
    use hyper::body::Body;
    let mut n = 0;
    let mut body = std::pin::Pin::new(&mut body);
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if let Ok(f) = frame {
            n += f.data_ref().map_or(0, |d| d.len());
        }
    }
    n
}

struct Server {
    child: Child,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn start(extra: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(dir.path(), extra);
        s._dir = Some(dir);
        s
    }

    fn start_in(dir: &std::path::Path, extra: &[(&str, &str)]) -> Server {
        // HERALD_BENCH_BIN runs another build (to compare two in one sitting).
        let bin = std::env::var_os("HERALD_BENCH_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_herald").into());
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("HERALD_ADMIN_TOKEN", TOKEN)
            .env_remove("HERALD_LOG")
            .env_remove("RUST_LOG")
            .env("HERALD_DELIVERY__ALLOWED_CIDRS", "127.0.0.0/8")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start herald (cargo bench builds it)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on ") {
                    let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
                }
                // Herald's warnings (slow commit rounds, refusals) go with the figures.
                if line.contains(" WARN ") || line.contains(" ERROR ") {
                    eprintln!("herald: {line}");
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("herald did not start");
        Server {
            child,
            url,
            _dir: None,
        }
    }

    /// SIGTERM and wait.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Herald's CPU seconds so far, all threads, user + system.
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The command name may hold spaces: fields count from after its closing parenthesis,
        // where field 3 (state) comes first; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        ticks as f64 / clock_ticks()
    }

    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU milliseconds per message, or "-" when there were none.
fn per_msg(cpu_secs: f64, n: u64) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.3}", cpu_secs * 1000.0 / n as f64)
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .tcp_nodelay(true)
        .build()
        .unwrap()
}

async fn post(c: &reqwest::Client, url: &str, body: serde_json::Value) -> serde_json::Value {
    let r = c
        .post(url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    r.json().await.unwrap()
}

/// An app with `n` endpoints at the receiver; returns the message URL.
async fn setup(c: &reqwest::Client, s: &Server, receiver: &str, n: usize) -> String {
    setup_filtered(c, s, receiver, n, None).await
}

/// `setup`, the endpoints subscribed only to `filter` event types when given.
async fn setup_filtered(
    c: &reqwest::Client,
    s: &Server,
    receiver: &str,
    n: usize,
    filter: Option<&str>,
) -> String {
    let app = post(
        c,
        &format!("{}/api/v1/app", s.url),
        serde_json::json!({"name": "bench"}),
    )
    .await;
    let app = app["id"].as_str().unwrap().to_string();
    for i in 0..n {
        post(
            c,
            &format!("{}/api/v1/app/{app}/endpoint", s.url),
            match filter {
                Some(f) => {
                    serde_json::json!({"url": format!("{receiver}/ep{i}"), "filterTypes": [f]})
                }
                None => serde_json::json!({"url": format!("{receiver}/ep{i}")}),
            },
        )
        .await;
    }
    format!("{}/api/v1/app/{app}/msg", s.url)
}

/// Request bodies: realistic events (`common/payloads.rs`: orders, invoices, customers, push
/// notifications of 0.3 to 8 KiB, varied values), all sent as `order.created`.
fn bodies() -> Vec<String> {
    payloads::payload_pool(BODIES)
        .into_iter()
        .map(|p| {
            format!(
                r#"{{"eventType":"order.created","payload":{}}}"#,
                String::from_utf8_lossy(&p)
            )
        })
        .collect()
}

/// Distinct request bodies, sent in turn.
const BODIES: usize = 1024;

/// Mean payload size of [`bodies`], for the report.
fn mean_body_bytes() -> usize {
    let b = bodies();
    b.iter().map(String::len).sum::<usize>() / b.len().max(1)
}

/// What `drive` saw.
struct Driven {
    accepted: u64,
    elapsed: Duration,
    /// Herald's accept time by message id.
    accepts: Vec<(String, i64)>,
    /// Each accepted create's request time, microseconds, sorted.
    request_us: Vec<u64>,
    /// Requests slower than 50 ms: (wall-clock start, Unix ms; microseconds), to line up with
    /// Herald's log and a `perf record -k CLOCK_REALTIME` profile.
    slow: Vec<(i64, u64)>,
}

impl Driven {
    /// Request time percentile `q`, in ms.
    fn request_ms(&self, q: f64) -> f64 {
        let l = &self.request_us;
        if l.is_empty() {
            return 0.0;
        }
        l[((l.len() as f64 * q) as usize).min(l.len() - 1)] as f64 / 1000.0
    }
}

/// Post for `duration` from `CONCURRENCY` tasks (or at `rate` msg/s).
async fn drive(
    c: &reqwest::Client,
    url: &str,
    duration: Duration,
    rate: Option<u64>,
    limit: Option<u64>,
) -> Driven {
    let bodies = Arc::new(bodies());
    let sent = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let request_us = Arc::new(Mutex::new(Vec::new()));
    let slow = Arc::new(Mutex::new(Vec::new()));
    let run = now_ms();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (c, url, bodies, sent, accepted, request_us, slow) = (
            c.clone(),
            url.to_string(),
            bodies.clone(),
            sent.clone(),
            accepted.clone(),
            request_us.clone(),
            slow.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if started.elapsed() >= duration || limit.is_some_and(|l| n >= l) {
                    return;
                }
                if let Some(r) = rate {
                    // Message n is due at n / rate seconds.
                    let due = started + Duration::from_micros(n * 1_000_000 / r);
                    tokio::time::sleep_until(due.into()).await;
                }
                let mut req = c
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(bodies[n as usize % bodies.len()].clone());
                if IDEMPOTENCY.load(Ordering::Relaxed) {
                    req = req.header("idempotency-key", format!("bench-{run}-{n}"));
                }
                let (t0, wall) = (Instant::now(), now_ms());
                let resp = req.send().await;
                let Ok(resp) = resp else { continue };
                if resp.status().as_u16() != 202 {
                    eprintln!("worker {w}: {}", resp.status());
                    continue;
                }
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                let us = t0.elapsed().as_micros() as u64;
                request_us.lock().unwrap().push(us);
                if us > 50_000 {
                    slow.lock().unwrap().push((wall, us));
                }
                let ts = v["timestamp"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(0);
                accepted
                    .lock()
                    .unwrap()
                    .push((v["id"].as_str().unwrap_or("").to_string(), ts));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let accepts = std::mem::take(&mut *accepted.lock().unwrap());
    let mut request_us = std::mem::take(&mut *request_us.lock().unwrap());
    request_us.sort_unstable();
    let slow = std::mem::take(&mut *slow.lock().unwrap());
    Driven {
        accepted: accepts.len() as u64,
        elapsed,
        accepts,
        request_us,
        slow,
    }
}

async fn wait_delivered(sink: &Sink, want: u64, timeout: Duration) -> Duration {
    let start = Instant::now();
    while sink.count.load(Ordering::Relaxed) < want && start.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn percentiles(sink: &Sink, accepted: &[(String, i64)]) -> (i64, i64, i64) {
    let seen = sink.first_seen.lock().unwrap();
    let mut lat: Vec<i64> = accepted
        .iter()
        .filter_map(|(id, t)| seen.get(id).map(|r| (r - t).max(0)))
        .collect();
    lat.sort_unstable();
    if lat.is_empty() {
        return (0, 0, 0);
    }
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    (p(0.5), p(0.99), *lat.last().unwrap())
}

/// `endpoints` endpoints take every message, or none when `deliver` is false (they subscribe to
/// another event type: fan-out still reads them).
async fn throughput(name: &str, endpoints: usize, deliver: bool, duration: Duration) {
    let sink = Arc::new(Sink::default());
    let receiver = start_receiver(sink.clone()).await;
    let s = Server::start(&[]);
    let c = client();
    let filter = (!deliver).then_some("never.sent");
    let url = setup_filtered(&c, &s, &receiver, endpoints, filter).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = s.rss_kib("VmRSS:");
    let d0 = Instant::now();
    let cpu0 = s.cpu_secs();
    let d = drive(&c, &url, duration, None, None).await;
    let cpu_ingest = s.cpu_secs() - cpu0;
    let (accepted, elapsed) = (d.accepted, d.elapsed);
    let want = if deliver {
        accepted * endpoints as u64
    } else {
        0
    };
    wait_delivered(&sink, want, Duration::from_secs(120)).await;
    let all = d0.elapsed();
    let cpu_all = s.cpu_secs() - cpu0;
    let delivered = sink.count.load(Ordering::Relaxed);
    let (p50, p99, max) = percentiles(&sink, &d.accepts);
    println!(
        "{name}: endpoints={endpoints} concurrency={CONCURRENCY} payload={}B duration={:.1}s idempotency-key={}\n  ingest {:.0} msg/s ({accepted} accepted), request p50 {:.2} ms, p99 {:.2} ms; herald CPU {:.1} s while sending = {} ms per accepted message\n  delivered {:.0} deliveries/s ({delivered} of {want}, all done after {:.1}s); herald CPU {:.1} s until then = {} ms per delivered message\n  accept-to-receipt p50 {p50} ms, p99 {p99} ms, max {max} ms\n  herald RSS idle {} KiB, peak {} KiB",
        mean_body_bytes(),
        elapsed.as_secs_f64(),
        IDEMPOTENCY.load(Ordering::Relaxed),
        accepted as f64 / elapsed.as_secs_f64(),
        d.request_ms(0.5),
        d.request_ms(0.99),
        cpu_ingest,
        per_msg(cpu_ingest, accepted),
        delivered as f64 / all.as_secs_f64(),
        all.as_secs_f64(),
        cpu_all,
        per_msg(cpu_all, delivered),
        idle,
        s.rss_kib("VmHWM:"),
    );
}

/// A server that accepts connections, reads what comes, and never answers: counts connections
/// open now and at most.
async fn start_hanging(open: Arc<AtomicU64>, peak: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (open, peak) = (open.clone(), peak.clone());
            tokio::spawn(async move {
                let now = open.fetch_add(1, Ordering::Relaxed) + 1;
                peak.fetch_max(now, Ordering::Relaxed);
                let mut buf = [0u8; 4096];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    url
}

async fn isolation(duration: Duration) {
    let (open, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hanging = start_hanging(open.clone(), peak.clone()).await;
    let sink = Arc::new(Sink::default());
    let receiver = start_receiver(sink.clone()).await;
    let s = Server::start(&[]);
    let c = client();
    let noisy = setup(&c, &s, &hanging, 10).await;
    let body: serde_json::Value = serde_json::from_str(&bodies()[0]).unwrap();
    for _ in 0..80 {
        post(&c, &noisy, body.clone()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = setup(&c, &s, &receiver, 1).await;
    let d = drive(&c, &url, duration, Some(200), None).await;
    let (accepted, elapsed, acc) = (d.accepted, d.elapsed, d.accepts);
    wait_delivered(&sink, accepted, Duration::from_secs(60)).await;
    let (p50, p99, max) = percentiles(&sink, &acc);
    println!(
        "isolation: 10 hanging endpoints x 80 messages (15 s timeout) in one app; another app at 200 msg/s for {:.1}s
  quiet app: {} of {accepted} delivered, accept-to-receipt p50 {p50} ms, p99 {p99} ms, max {max} ms
  hanging endpoints: {} connections open at the end, {} at most",
        elapsed.as_secs_f64(),
        sink.count.load(Ordering::Relaxed),
        open.load(Ordering::Relaxed),
        peak.load(Ordering::Relaxed),
    );
}

async fn steady(duration: Duration) {
    let sink = Arc::new(Sink::default());
    let receiver = start_receiver(sink.clone()).await;
    let s = Server::start(&[]);
    let c = client();
    let url = setup(&c, &s, &receiver, 1).await;
    let d = drive(&c, &url, duration, Some(1000), None).await;
    let (accepted, elapsed, acc) = (d.accepted, d.elapsed, d.accepts);
    wait_delivered(&sink, accepted, Duration::from_secs(60)).await;
    let (p50, p99, max) = percentiles(&sink, &acc);
    println!(
        "steady: 1000 msg/s target, {:.0} msg/s achieved over {:.1}s\n  accept-to-receipt p50 {p50} ms, p99 {p99} ms, max {max} ms\n  herald RSS peak {} KiB",
        accepted as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        s.rss_kib("VmHWM:")
    );
}

/// `soak`: a fixed 1,000 msg/s for `duration` (30 minutes in the issue's target), Herald's RSS
/// sampled every 30 s, the worst request time of each minute, and at the end: deliveries and
/// duplicates, and disk growth per delivered message.
async fn soak(duration: Duration, prefill: u64) {
    let sink = Arc::new(Sink::default());
    let receiver = start_receiver(sink.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &[]);
    let c = client();
    let url = setup(&c, &s, &receiver, 1).await;
    if prefill > 0 {
        // A store that has already taken `prefill` messages, as after a long run, at full speed.
        let d = drive(&c, &url, Duration::from_secs(7200), None, Some(prefill)).await;
        wait_delivered(&sink, d.accepted, Duration::from_secs(600)).await;
        println!(
            "soak: prefilled {} messages in {:.0}s, all delivered; RSS {} KiB",
            d.accepted,
            d.elapsed.as_secs_f64(),
            s.rss_kib("VmRSS:")
        );
    }
    let before = sink.count.load(Ordering::Relaxed);
    let seen_before = sink.first_seen.lock().unwrap().len() as u64;
    let disk_before = dir_size(dir.path());
    let pid = s.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (stop, samples) = (stop.clone(), samples.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let rss: u64 = status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                samples
                    .lock()
                    .unwrap()
                    .push((started.elapsed().as_secs(), rss));
            }
        })
    };
    let d = drive(&c, &url, duration, Some(1000), None).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    wait_delivered(&sink, before + d.accepted, Duration::from_secs(120)).await;
    let delivered = sink.count.load(Ordering::Relaxed) - before;
    let distinct = sink.first_seen.lock().unwrap().len() as u64 - seen_before;
    let (p50, p99, max) = percentiles(&sink, &d.accepts);
    let grown = dir_size(dir.path()).saturating_sub(disk_before);
    println!(
        "soak: 1000 msg/s target, {:.0} msg/s over {:.0}s; {} accepted, {delivered} deliveries of {distinct} distinct messages ({} duplicates)\n  request p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; accept-to-receipt p50 {p50} ms, p99 {p99} ms, max {max} ms\n  disk grew {} bytes per delivered message",
        d.accepted as f64 / d.elapsed.as_secs_f64(),
        d.elapsed.as_secs_f64(),
        d.accepted,
        delivered - distinct,
        d.request_ms(0.5),
        d.request_ms(0.99),
        d.request_ms(1.0),
        grown / distinct.max(1),
    );
    for (at, rss) in samples.lock().unwrap().iter() {
        println!("  at {at:>5} s: RSS {} KiB", rss);
    }
    let mut slow = d.slow.clone();
    slow.sort_by_key(|(_, us)| std::cmp::Reverse(*us));
    println!(
        "  {} requests over 50 ms; the slowest (start, Unix ms):",
        slow.len()
    );
    for (at, us) in slow.iter().take(10) {
        println!("    {at}: {:.1} ms", *us as f64 / 1000.0);
    }
}

async fn backlog(n: u64) {
    let sink = Arc::new(Sink::default());
    sink.failing.store(true, Ordering::Relaxed);
    let receiver = start_receiver(sink.clone()).await;
    let s = Server::start(&[]);
    let c = client();
    let url = setup(&c, &s, &receiver, 1).await;
    let d = drive(&c, &url, Duration::from_secs(3600), None, Some(n)).await;
    let (accepted, elapsed) = (d.accepted, d.elapsed);
    println!(
        "backlog: {accepted} messages accepted in {:.1}s while the receiver answers 503",
        elapsed.as_secs_f64()
    );
    // Let the first tries fail so the messages wait for their retries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let queued_rss = s.rss_kib("VmRSS:");
    sink.failing.store(false, Ordering::Relaxed);
    let took = wait_delivered(&sink, accepted, Duration::from_secs(600)).await;
    println!(
        "  drained {} of {accepted} within {:.1}s of the receiver answering 200\n  herald RSS with the backlog {} KiB, peak {} KiB",
        sink.count.load(Ordering::Relaxed),
        took.as_secs_f64(),
        queued_rss,
        s.rss_kib("VmHWM:")
    );
}

/// FIFO against unordered on one endpoint: N messages queued while the endpoint is throttled to
/// 1/s, then the throttle lifted; the time to drain, and Herald's CPU. A FIFO endpoint sends one
/// try at a time and waits for each try's record to be on disk before the next.
async fn ordering(n: u64) {
    for ordering in ["unordered", "fifo"] {
        let sink = Arc::new(Sink::default());
        let receiver = start_receiver(sink.clone()).await;
        let s = Server::start(&[]);
        let c = client();
        let app = post(
            &c,
            &format!("{}/api/v1/app", s.url),
            serde_json::json!({"name": "bench"}),
        )
        .await;
        let app = app["id"].as_str().unwrap().to_string();
        let ep = post(
            &c,
            &format!("{}/api/v1/app/{app}/endpoint", s.url),
            serde_json::json!({"url": format!("{receiver}/ep"), "ordering": ordering, "throttleRate": 1}),
        )
        .await;
        let ep = ep["id"].as_str().unwrap().to_string();
        let url = format!("{}/api/v1/app/{app}/msg", s.url);
        let d = drive(&c, &url, Duration::from_secs(3600), None, Some(n)).await;
        let r = c
            .patch(format!("{}/api/v1/app/{app}/endpoint/{ep}", s.url))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"throttleRate": null}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let (cpu0, before) = (s.cpu_secs(), sink.count.load(Ordering::Relaxed));
        let took = wait_delivered(&sink, d.accepted, Duration::from_secs(1200)).await;
        let delivered = sink.count.load(Ordering::Relaxed) - before;
        let cpu = s.cpu_secs() - cpu0;
        println!(
            "{ordering}: {} queued, {delivered} delivered in {:.1}s after the throttle was lifted: {:.0}/s, CPU {}",
            d.accepted,
            took.as_secs_f64(),
            delivered as f64 / took.as_secs_f64(),
            per_msg(cpu, delivered)
        );
    }
}

/// A large backlog: memory while it waits, and start-up time on top of it.
async fn million(n: u64) {
    let sink = Arc::new(Sink::default());
    sink.failing.store(true, Ordering::Relaxed);
    let receiver = start_receiver(sink.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    // After the first failed try, tasks wait an hour: the backlog stays queued.
    let env = [("HERALD_DELIVERY__RETRY_SCHEDULE", "3600")];
    let mut s = Server::start_in(dir.path(), &env);
    let c = client();
    let url = setup(&c, &s, &receiver, 1).await;
    let d = drive(&c, &url, Duration::from_secs(7200), None, Some(n)).await;
    let (accepted, elapsed) = (d.accepted, d.elapsed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "million: {accepted} messages queued in {:.0}s ({:.0} msg/s); herald RSS {} KiB, peak {} KiB; data dir {} MiB",
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64(),
        s.rss_kib("VmRSS:"),
        s.rss_kib("VmHWM:"),
        dir_size(dir.path()) / (1024 * 1024)
    );
    s.stop();
    let started = Instant::now();
    let s = Server::start_in(dir.path(), &env);
    let listening = started.elapsed();
    let ok = c
        .get(format!("{}/api/v1/app", s.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .map(|r| r.status().as_u16());
    let served = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "  restart on the backlog: listening after {:.2}s, first API answer ({ok:?}) after {:.2}s; RSS 5 s later {} KiB, peak {} KiB",
        listening.as_secs_f64(),
        served.as_secs_f64(),
        s.rss_kib("VmRSS:"),
        s.rss_kib("VmHWM:")
    );
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut scenario = "all".to_string();
    let mut duration = Duration::from_secs(10);
    let mut backlog_n = 100_000u64;
    let mut prefill = 0u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--duration" => {
                duration = Duration::from_secs(it.next().and_then(|v| v.parse().ok()).unwrap_or(10))
            }
            "--idempotency" => IDEMPOTENCY.store(true, Ordering::Relaxed),
            "--backlog" => backlog_n = it.next().and_then(|v| v.parse().ok()).unwrap_or(100_000),
            "--prefill" => prefill = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            s => scenario = s.to_string(),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "machine: {} cores, load average {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.trim()
        );
        if matches!(scenario.as_str(), "all" | "ingest") {
            throughput("ingest", 1, true, duration).await;
        }
        if matches!(scenario.as_str(), "all" | "accept") {
            throughput("accept", 1, false, duration).await;
        }
        if matches!(scenario.as_str(), "all" | "fanout") {
            throughput("fanout", 10, true, duration).await;
        }
        if matches!(scenario.as_str(), "all" | "steady") {
            steady(duration).await;
        }
        if matches!(scenario.as_str(), "all" | "backlog") {
            backlog(backlog_n).await;
        }
        if matches!(scenario.as_str(), "all" | "isolation") {
            isolation(duration).await;
        }
        if scenario == "million" {
            million(backlog_n).await;
        }
        if scenario == "ordering" {
            ordering(backlog_n).await;
        }
        if scenario == "soak" {
            soak(duration, prefill).await;
        }
    });
}
