//! The HTTP accept loop: serves the API's warp filter through hyper (HTTP/1.1 and HTTP/2) on an
//! injected listener, so tests and `main` share one path, over TLS when given an acceptor. Trailing slashes are normalised away
//! before routing. On shutdown it stops accepting and lets open requests finish for a grace period.

use std::future::Future;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use warp::filters::BoxedFilter;
use warp::http::uri::{PathAndQuery, Uri};
use warp::http::Request;
use warp::reply::Response;

/// How often an HTTP/2 connection is pinged, and how long the answer may take before the
/// connection is closed: a peer that vanished without a FIN does not hold its connection forever.
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests may run on after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Time limits on clients (the request body's is the API's, as hyper has none).
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// To send a request's headers; on HTTP/1 hyper also applies it to the idle wait for the
    /// next request on a kept-alive connection.
    pub header_read_timeout: Duration,
}

/// Serve `routes` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    tls: Option<TlsAcceptor>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let inner = TowerToHyperService::new(warp::service(routes.clone()));
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            normalize_path(&mut req);
            // One access line per request: method, path, status, time. No query, headers or body,
            // so tokens and payloads never reach the log.
            let (method, path, started) = (
                req.method().clone(),
                req.uri().path().to_string(),
                Instant::now(),
            );
            let answer = inner.call(req);
            async move {
                let resp = answer.await;
                if let Ok(r) = &resp {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    tracing::info!(target: "herald::access", %peer, %method, %path, status = r.status().as_u16(), ms);
                }
                resp
            }
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(H2_PING_EVERY)
                .keep_alive_timeout(H2_PING_TIMEOUT);
            let served = match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    watcher.watch(conn).await
                }
                // The handshake runs here, in the connection's task, with a deadline: a slow or
                // garbled client costs only its own task.
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls_stream), svc);
                            watcher.watch(conn).await
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
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within the shutdown grace period");
    }
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
}
