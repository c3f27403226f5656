//! The outgoing HTTP client (the only code that knows reqwest): rustls, no redirects, a request
//! timeout, kept-alive connections per host, the SSRF guard as resolver, response bodies read up
//! to a cap. Each try ends in an [`Outcome`] with a reason a person can read.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use super::retry::{parse_retry_after, Failure};
use super::ssrf::Guard;

/// Response bodies are kept up to this many bytes per attempt.
pub const MAX_RESPONSE_BYTES: usize = 20 * 1024;

#[derive(Debug, Clone)]
pub struct Outcome {
    /// HTTP status, or 0 when no response came.
    pub status: u16,
    /// The response body (truncated), or why no response came.
    pub body: String,
    pub duration: Duration,
    pub retry_after: Option<Duration>,
    /// Set when the try failed.
    pub failure: Option<Failure>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    guard: Guard,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(String);

impl Client {
    pub fn new(
        guard: Guard,
        timeout: Duration,
        idle_per_host: usize,
    ) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(idle_per_host)
            .tcp_nodelay(true)
            .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(std::sync::Arc::new(guard.clone()))
            .build()
            .map_err(|e| ClientError(error_chain(&e)))?;
        Ok(Client { http, guard })
    }

    /// POST `body` to `url` with `headers`; never fails, the outcome says what happened.
    pub async fn post(&self, url: &str, headers: HeaderMap, body: Vec<u8>) -> Outcome {
        let started = Instant::now();
        let refused = |why: String| Outcome {
            status: 0,
            body: why,
            duration: started.elapsed(),
            retry_after: None,
            failure: Some(Failure::Network),
        };
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return refused(format!("invalid URL: {e}")),
        };
        // IP literals never reach the resolver, so they are checked here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if let Some(why) = self.guard.refusal(ip) {
                return refused(format!("SSRF guard refused {ip}: it is a {why} address"));
            }
        }
        let sent = self
            .http
            .post(parsed)
            .headers(headers)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let failure = if e.is_timeout() {
                    Failure::Timeout
                } else {
                    Failure::Network
                };
                let reason = if e.is_timeout() {
                    format!(
                        "timeout: no response within the request timeout ({})",
                        error_chain(&e)
                    )
                } else {
                    error_chain(&e)
                };
                return Outcome {
                    failure: Some(failure),
                    ..refused(reason)
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now().timestamp()));
        let mut body = Vec::new();
        let mut read_error = None;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= MAX_RESPONSE_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        let success = (200..300).contains(&status);
        let failure = match (&read_error, success) {
            (Some(e), _) if e.is_timeout() => Some(Failure::Timeout),
            (_, true) => None,
            (_, false) => Some(Failure::Status(status)),
        };
        Outcome {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            duration: started.elapsed(),
            retry_after,
            failure,
        }
    }
}

/// A client for operator commands: no redirects, `ca` (PEM) trusted besides the system's roots.
fn operator_client(timeout: Duration, ca: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| format!("bad CA file: {e}"))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| error_chain(&e))
}

/// One GET, for `herald healthcheck`: the status code, or why there was none.
pub async fn probe(url: &str, timeout: Duration, ca: Option<&[u8]>) -> Result<u16, String> {
    let resp = operator_client(timeout, ca)?.get(url).send().await;
    resp.map(|r| r.status().as_u16())
        .map_err(|e| error_chain(&e))
}

/// One POST of JSON with a bearer token, for operator commands: the status and body.
pub async fn post_json(
    url: &str,
    token: &str,
    body: String,
    timeout: Duration,
    ca: Option<&[u8]>,
) -> Result<(u16, String), String> {
    let resp = operator_client(timeout, ca)?
        .post(url)
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

/// Build a header map, skipping what is not valid HTTP (validated at input, so rare).
pub fn headers<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            if !map.contains_key(&name) {
                map.insert(name, value);
            }
        }
    }
    map
}

/// An error with its causes, as one line: "error sending request: connect error: refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
