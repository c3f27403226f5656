//! The HTTP accept loop: serves the API's warp filter through hyper (HTTP/1.1 and HTTP/2) on an
//! injected listener, so tests and `main` share one path, over TLS when given an acceptor. It owns
//! what a connection may cost: a cap on open connections (when it is full, connections idle for a
//! second or more are closed to make room for a new one), an idle timeout in every phase (before
//! the first byte, after the TLS handshake, between requests, HTTP/2 with no request in progress)
//! and HSTS over TLS. Trailing slashes are normalised away before routing. On shutdown it stops
//! accepting and lets open requests finish for a grace period.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};
use warp::http::uri::{PathAndQuery, Uri};
use warp::http::Request;
use warp::reply::Response;

use crate::metrics::Metrics;

/// How often an HTTP/2 connection is pinged, and how long the answer may take before the
/// connection is closed: a peer that vanished without a FIN does not hold its connection forever.
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests may run on after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// File descriptors kept out of the connection budget: the store's files, delivery sockets, logs.
const FD_RESERVE: u64 = 256;
/// Bounds of the connection cap derived from the file limit: at least a few, and not so many
/// that idle connections' buffers could exhaust memory on a host with a huge file limit.
const DERIVED_CAP_MIN: usize = 16;
const DERIVED_CAP_MAX: usize = 16384;
/// Bounds of the pause after a failed `accept` (out of file descriptors, mostly): it doubles
/// while failures go on, so a full table is not retried in a tight loop.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Repeated warnings (refused connections, failed accepts) are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// When the cap is full, a new connection waits this long for a slot while connections idle for
/// at least `EVICT_IDLE_AFTER` are closed to make room: silent connections cannot lock clients
/// out for a whole idle timeout. At most `WAITERS` new connections wait at once; more are refused.
const PRESSURE_WAIT: Duration = Duration::from_millis(200);
const EVICT_IDLE_AFTER: Duration = Duration::from_secs(1);
const WAITERS: usize = 64;
/// What a plain-HTTP client over the cap is told, written without reading its request.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Which requests get an access-log line (`server.access_log`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// Every request, at info.
    All,
    /// Requests answered 4xx or 5xx at info; the others at debug, so they cost a level check
    /// unless `HERALD_LOG` asks for them. A line per request costs a few percent of ingest CPU
    /// (about 3 % of the request threads, measured piped; the issue saw 10-15 %).
    #[default]
    Errors,
    /// None.
    Off,
}

/// Limits on clients (the request body's time limit is the API's, as hyper has none).
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// To send a request's headers; on HTTP/1 hyper also applies it to the idle wait for the
    /// next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Longest a connection may stay open with no request in progress, in any protocol and
    /// phase; then it is closed (gracefully first: HTTP/2 gets a GOAWAY).
    pub idle_timeout: Duration,
    /// Most connections open at once; 0 derives it from the file limit ([`connection_cap`]).
    pub max_connections: usize,
    /// `Strict-Transport-Security` max-age in seconds, sent over TLS; `None` sends none.
    pub hsts_max_age: Option<u64>,
    /// Which requests are logged.
    pub access_log: AccessLog,
}

/// Serve `routes` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    tls: Option<TlsAcceptor>,
    options: ServeOptions,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let cap = match options.max_connections {
        0 => connection_cap(raise_file_limit()),
        n => n,
    };
    tracing::info!(max_connections = cap, "connection cap");
    metrics.set_connections_max(cap as u64);
    let slots = Arc::new(Semaphore::new(cap));
    let hsts = tls
        .as_ref()
        .and(options.hsts_max_age)
        .and_then(|secs| HeaderValue::from_str(&format!("max-age={secs}")).ok());
    let (stop_tx, stop_rx) = watch::channel(());
    let (pressure_tx, pressure_rx) = watch::channel(());
    let waiters = Arc::new(Semaphore::new(WAITERS));
    let refusals = Arc::new(std::sync::Mutex::new(Throttled::default()));
    let mut accept_failed = Throttled::default();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    if let Some(n) = accept_failed.note() {
                        tracing::warn!(error = %e, failures = n, "accept failed; backing off");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        backoff = ACCEPT_BACKOFF_MIN;
        let conn = Conn {
            peer,
            routes: routes.clone(),
            options,
            hsts: hsts.clone(),
            stop: stop_rx.clone(),
            pressure: pressure_rx.clone(),
        };
        let tls = tls.clone();
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            let slot = Slot::open(permit, metrics.clone());
            tokio::spawn(async move {
                let _slot = slot;
                conn.run(stream, tls).await;
            });
            continue;
        }
        // Full: ask idle connections to make room, and wait a moment for a slot (off the accept
        // loop, a bounded number at a time).
        pressure_tx.send_replace(());
        let Ok(waiter) = waiters.clone().try_acquire_owned() else {
            refuse(stream, tls.is_some(), &metrics, &refusals, cap);
            continue;
        };
        let (slots, metrics, refusals) = (slots.clone(), metrics.clone(), refusals.clone());
        let is_tls = tls.is_some();
        tokio::spawn(async move {
            let got = tokio::time::timeout(PRESSURE_WAIT, slots.acquire_owned()).await;
            drop(waiter);
            match got {
                Ok(Ok(permit)) => {
                    let _slot = Slot::open(permit, metrics);
                    conn.run(stream, tls).await;
                }
                _ => refuse(stream, is_tls, &metrics, &refusals, cap),
            }
        });
    }
    drop(listener);
    // Every open connection holds a slot: all slots back means all connections closed.
    let _ = stop_tx.send(());
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within the shutdown grace period");
    }
}

/// Close a connection over the cap at once, without reading from it, counted and logged at
/// most once a minute. A plain-HTTP client is told 503 if the socket takes the bytes now; over
/// TLS there is nothing cheap to say.
fn refuse(
    stream: TcpStream,
    tls: bool,
    metrics: &Metrics,
    refusals: &std::sync::Mutex<Throttled>,
    cap: usize,
) {
    metrics.connection_refused();
    let said = refusals.lock().unwrap_or_else(|e| e.into_inner()).note();
    if let Some(n) = said {
        tracing::warn!(
            max_connections = cap,
            refused = n,
            "connection cap reached: refusing new connections (server.max_connections)"
        );
    }
    if !tls {
        let _ = stream.try_write(OVER_CAPACITY);
    }
}

/// One accepted connection, between accept and close.
struct Conn {
    peer: std::net::SocketAddr,
    routes: BoxedFilter<(Response,)>,
    options: ServeOptions,
    hsts: Option<HeaderValue>,
    stop: watch::Receiver<()>,
    /// Signalled when the cap is full and a new connection waits: an idle connection closes.
    pressure: watch::Receiver<()>,
}

impl Conn {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        let (busy, requests) = watch::channel(0usize);
        let svc = service(
            self.routes,
            self.peer,
            self.hsts,
            self.options.access_log,
            busy,
        );
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.options.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_PING_EVERY)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        let (peer, idle, stop, pressure) = (
            self.peer,
            self.options.idle_timeout,
            self.stop,
            self.pressure,
        );
        let served = match tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                supervise(conn, requests, idle, stop, pressure).await
            }
            // The handshake runs here, in the connection's task, with a deadline: a slow or
            // garbled client costs only its own task.
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), svc);
                        supervise(conn, requests, idle, stop, pressure).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// The per-connection service: path normalisation, the access log, HSTS, and a count of the
/// requests in progress in `busy`. Only requests that reached it count: an HTTP/2 stream whose
/// headers never finish, or an HTTP/1 request still sending its head, leaves the connection idle.
fn service(
    routes: BoxedFilter<(Response,)>,
    peer: std::net::SocketAddr,
    hsts: Option<HeaderValue>,
    access_log: AccessLog,
    busy: watch::Sender<usize>,
) -> impl Service<
    Request<Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    let inner = TowerToHyperService::new(warp::service(routes));
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let working = Busy::start(&busy);
        normalize_path(&mut req);
        // The request's line, kept until the answer: `Uri` and `Method` clone without copying.
        let line = (access_log != AccessLog::Off)
            .then(|| (req.method().clone(), req.uri().clone(), Instant::now()));
        let answer = inner.call(req);
        let hsts = hsts.clone();
        async move {
            let _working = working;
            let mut resp = answer.await;
            if let Ok(r) = &mut resp {
                if let Some(v) = hsts {
                    r.headers_mut().insert(STRICT_TRANSPORT_SECURITY, v);
                }
                if let Some((method, uri, started)) = line {
                    log_access(access_log, peer, &method, &uri, r.status(), started);
                }
            }
            resp
        }
    })
}

/// One access line: method, path, status, whole microseconds. No query, headers or body, so
/// tokens and payloads never reach the log.
fn log_access(
    mode: AccessLog,
    peer: std::net::SocketAddr,
    method: &warp::http::Method,
    uri: &Uri,
    status: warp::http::StatusCode,
    started: Instant,
) {
    let us = started.elapsed().as_micros() as u64;
    let (path, status) = (uri.path(), status.as_u16());
    if mode == AccessLog::All || status >= 400 {
        tracing::info!(target: "herald::access", %peer, %method, path = %path, status, us);
    } else {
        tracing::debug!(target: "herald::access", %peer, %method, path = %path, status, us);
    }
}

/// Drive `conn` to its end, closing it once no request has been in progress for `idle`, or when
/// the server stops. The close is graceful first (HTTP/1 closes when between requests, HTTP/2
/// sends GOAWAY and waits for its streams); a connection still idle one more `idle` later (a peer
/// that never answers the GOAWAY, streams that never reached the service) is dropped.
async fn supervise<C: GracefulConnection>(
    conn: C,
    mut requests: watch::Receiver<usize>,
    idle: Duration,
    mut stop: watch::Receiver<()>,
    mut pressure: watch::Receiver<()>,
) -> Result<(), C::Error> {
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let busy = requests.clone();
    // Every start and end of a request, to know how long the connection has been idle.
    let mut activity = requests.clone();
    let (mut watching, mut pressed) = (true, true);
    let mut idle_since = Instant::now();
    pressure.mark_unchanged();
    loop {
        tokio::select! {
            done = conn.as_mut() => return done,
            () = idle_for(&mut requests, idle) => {
                if closing {
                    return Ok(());
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            changed = activity.changed(), if watching => match changed {
                Ok(()) => idle_since = Instant::now(),
                // The service is gone: the connection is ending by itself.
                Err(_) => watching = false,
            },
            changed = pressure.changed(), if pressed => match changed {
                // Nothing in progress here for a while, and a new client waits for the slot:
                // close at once (between requests, so nothing is lost).
                Ok(()) if *busy.borrow() == 0 && idle_since.elapsed() >= EVICT_IDLE_AFTER => {
                    return Ok(());
                }
                Ok(()) => {}
                Err(_) => pressed = false,
            },
        }
    }
}

/// Completes once no request has been in progress for `idle` on end.
async fn idle_for(requests: &mut watch::Receiver<usize>, idle: Duration) {
    loop {
        if requests.wait_for(|n| *n == 0).await.is_err() {
            // The service is gone, so the connection is ending by itself.
            return std::future::pending().await;
        }
        match tokio::time::timeout(idle, requests.changed()).await {
            Err(_) => return,
            Ok(Ok(())) => {}
            Ok(Err(_)) => return std::future::pending().await,
        }
    }
}

/// A request in progress on its connection, counted until the response is handed to hyper (or
/// the request is dropped half-way, when the peer resets it).
struct Busy(watch::Sender<usize>);

impl Busy {
    fn start(count: &watch::Sender<usize>) -> Busy {
        count.send_modify(|n| *n += 1);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One of the connection cap's slots, held for as long as its connection is open.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Slot {
    fn open(permit: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Slot {
        metrics.connection_opened();
        Slot {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

/// A warning that may repeat on every connection: said at most once per [`WARN_EVERY`], with
/// how many times it happened since it was last said.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    /// Count one occurrence; `Some(count)` when it is time to log.
    fn note(&mut self) -> Option<u64> {
        self.note_at(Instant::now())
    }

    fn note_at(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// Raise the soft limit on open files to the hard limit (the kernel allows it unprivileged), and
/// return the soft limit now in force (`None`: unlimited or unknown).
fn raise_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => return Some(hard),
                Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
            }
        }
    }
    limit.current
}

/// The default connection cap for a soft file limit: half of what the reserve leaves (each
/// connection may need a second descriptor, e.g. for a delivery it triggers), within bounds.
fn connection_cap(file_limit: Option<u64>) -> usize {
    let Some(limit) = file_limit else {
        return DERIVED_CAP_MAX;
    };
    let half = limit.saturating_sub(FD_RESERVE) / 2;
    usize::try_from(half)
        .unwrap_or(usize::MAX)
        .clamp(DERIVED_CAP_MIN, DERIVED_CAP_MAX)
}

/// `/api/v1/app/` routes as `/api/v1/app`: Svix clients and people use both.
fn normalize_path<B>(req: &mut Request<B>) {
    let path = req.uri().path();
    if path.len() <= 1 || !path.ends_with('/') {
        return;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let pq = match req.uri().query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = pq.parse::<PathAndQuery>() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(uri: &str) -> String {
        let mut req = Request::builder().uri(uri).body(()).unwrap();
        normalize_path(&mut req);
        req.uri().to_string()
    }

    #[test]
    fn trailing_slashes_are_dropped_and_queries_kept() {
        assert_eq!(norm("/api/v1/app/"), "/api/v1/app");
        assert_eq!(norm("/api/v1/app/?limit=2"), "/api/v1/app?limit=2");
        assert_eq!(norm("/api/v1/app"), "/api/v1/app");
        assert_eq!(norm("/"), "/");
        assert_eq!(norm("//"), "/");
    }

    #[test]
    fn the_derived_cap_halves_what_the_reserve_leaves_within_bounds() {
        assert_eq!(connection_cap(Some(1024)), 384);
        assert_eq!(connection_cap(Some(256)), DERIVED_CAP_MIN);
        assert_eq!(connection_cap(Some(0)), DERIVED_CAP_MIN);
        assert_eq!(connection_cap(Some(1 << 20)), DERIVED_CAP_MAX);
        assert_eq!(connection_cap(None), DERIVED_CAP_MAX);
    }

    #[test]
    fn repeated_warnings_are_said_once_a_minute_with_a_count() {
        let mut t = Throttled::default();
        let t0 = Instant::now();
        assert_eq!(t.note_at(t0), Some(1));
        for s in 1..60 {
            assert_eq!(t.note_at(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(t.note_at(t0 + WARN_EVERY), Some(60));
        assert_eq!(t.note_at(t0 + WARN_EVERY), None);
    }
}
