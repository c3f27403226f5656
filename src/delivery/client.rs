//! The outgoing HTTP client (the only code that knows reqwest): rustls, no redirects, a request
//! timeout, kept-alive connections per host, the SSRF guard as resolver, response bodies read up
//! to a cap. Each try ends in an [`Outcome`] with a reason a person can read. The environment's
//! proxy variables are ignored: a proxy is used only when configured, and targets sent through it
//! are resolved and checked here first, since the guard never sees the proxy's own lookup.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use super::retry::{parse_retry_after, Failure};
use super::ssrf::{Guard, Refusal};

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

/// A forward proxy for deliveries (`delivery.proxy` and `delivery.no_proxy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// `http://` or `https://` URL of the proxy, credentials included if it needs them.
    pub url: String,
    /// Hosts, domains (with their subdomains), IP addresses or CIDRs reached directly.
    pub no_proxy: Vec<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    guard: Guard,
    /// A proxy is configured: named targets are checked before the request (see `post`).
    proxied: bool,
    /// Bounds the check's own DNS lookup.
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(String);

impl Client {
    pub fn new(
        guard: Guard,
        timeout: Duration,
        idle_per_host: usize,
        proxy: Option<&ProxyOptions>,
    ) -> Result<Client, ClientError> {
        let mut guard = guard;
        // Never the environment's HTTP_PROXY and friends: they would carry deliveries past the
        // guard, which only sees the proxy's address.
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(p) = proxy {
            let url = reqwest::Url::parse(&p.url)
                .map_err(|e| ClientError(format!("delivery.proxy: {e}")))?;
            // The proxy is the operator's: connecting to it is not a delivery, so the resolver
            // lets its name through (an IP literal never reaches the resolver).
            if let Some(url::Host::Domain(name)) = url.host() {
                guard = guard.exempting(name);
            }
            let no_proxy = (!p.no_proxy.is_empty())
                .then(|| reqwest::NoProxy::from_string(&p.no_proxy.join(",")))
                .flatten();
            let proxy = reqwest::Proxy::all(url.clone())
                .map_err(|e| ClientError(format!("delivery.proxy: {}", error_chain(&e))))?
                .no_proxy(no_proxy);
            builder = builder.proxy(proxy);
            tracing::info!(
                proxy = %format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or(""), url.port_or_known_default().unwrap_or(0)),
                bypass = p.no_proxy.len(),
                "deliveries go through a proxy"
            );
        }
        let http = builder
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
        Ok(Client {
            http,
            guard,
            proxied: proxy.is_some(),
            timeout,
        })
    }

    /// Refuse a target the address policy forbids, before anything is sent. IP literals never
    /// reach the resolver; through a proxy, names never do (the proxy resolves them), so they are
    /// resolved and checked here.
    async fn check_target(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        let host = url.host_str().unwrap_or("");
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.guard.check_literal(host, ip.into()),
            Some(url::Host::Ipv6(ip)) => self.guard.check_literal(host, ip.into()),
            Some(url::Host::Domain(name)) if self.proxied => {
                let port = url.port_or_known_default().unwrap_or(80);
                tokio::time::timeout(self.timeout, self.guard.check_name(name, port))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Refusal::Unresolvable {
                            host: host.to_string(),
                        })
                    })
            }
            _ => Ok(()),
        }
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
        if let Err(r) = self.check_target(&parsed).await {
            return refused(r.to_string());
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
                // The resolver's refusal, alone: the rest of the chain adds nothing for the user.
                let reason = if let Some(r) = refusal_in(&e) {
                    r.to_string()
                } else if e.is_timeout() {
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

/// What kind of failure left a try with no HTTP response, read from the reason [`Client::post`]
/// recorded (attempts keep only that text, so old attempts are classified too): "blocked" (the
/// address policy), "invalid_url", "timeout", "dns", "connection_refused", "tls",
/// "connection_reset", else "network".
pub fn no_response_kind(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| r.contains(w));
    if r.starts_with("refused by the address policy") {
        "blocked"
    } else if r.starts_with("invalid url") {
        "invalid_url"
    } else if r.starts_with("timeout") || has(&["timed out", "deadline has elapsed"]) {
        "timeout"
    } else if has(&["dns error", "failed to lookup address", "no address found"]) {
        "dns"
    } else if has(&["connection refused"]) {
        "connection_refused"
    } else if has(&["certificate", "tls", "handshake", "invalid peer"]) {
        "tls"
    } else if has(&[
        "connection reset",
        "connection closed",
        "broken pipe",
        "incompletemessage",
        "unexpected eof",
    ]) {
        "connection_reset"
    } else {
        "network"
    }
}

/// The guard's refusal, if that is what ended a request.
fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_without_a_response_are_classified() {
        let cases = [
            ("refused by the address policy: localhost", "blocked"),
            ("invalid URL: relative URL without a base", "invalid_url"),
            ("timeout: no response within the request timeout (error sending request for url (http://10.0.0.1/): operation timed out)", "timeout"),
            ("error sending request for url (http://nope.invalid/): client error (Connect): dns error: failed to lookup address information: Name or service not known", "dns"),
            ("error sending request for url (http://127.0.0.1:9/): client error (Connect): tcp connect error: Connection refused (os error 111)", "connection_refused"),
            ("error sending request for url (https://127.0.0.1:9/): client error (Connect): invalid peer certificate: UnknownIssuer", "tls"),
            ("error sending request for url (http://127.0.0.1:9/): client error (SendRequest): connection closed before message completed", "connection_reset"),
            ("something else entirely", "network"),
        ];
        for (reason, kind) in cases {
            assert_eq!(no_response_kind(reason), kind, "{reason}");
        }
    }

    fn client(proxy: Option<&ProxyOptions>) -> Client {
        // reqwest is built without a crypto provider; Herald installs ring at start.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::new(Guard::default(), Duration::from_secs(2), 1, proxy).unwrap()
    }

    async fn post(client: &Client, url: &str) -> Outcome {
        client.post(url, HeaderMap::new(), b"{}".to_vec()).await
    }

    #[tokio::test]
    async fn a_refusal_names_the_host_and_not_what_it_resolves_to() {
        let direct = client(None);
        let o = post(&direct, "http://localhost:9/").await;
        assert_eq!(o.status, 0);
        assert_eq!(o.body, "refused by the address policy: localhost");
        let o = post(&direct, "http://[::127.0.0.1]:9/").await;
        assert_eq!(o.body, "refused by the address policy: [::7f00:1]");
    }

    #[tokio::test]
    async fn through_a_proxy_named_targets_are_checked_before_sending() {
        // Nothing listens on the proxy's port: a refusal here comes before any connection.
        let proxy = ProxyOptions {
            url: "http://127.0.0.1:9".into(),
            no_proxy: Vec::new(),
        };
        let c = client(Some(&proxy));
        let o = post(&c, "http://localhost:9/").await;
        assert_eq!(o.body, "refused by the address policy: localhost");
        let o = post(&c, "https://herald-test.invalid/").await;
        assert!(
            o.body.starts_with(
                "refused by the address policy: herald-test.invalid cannot be resolved"
            ),
            "{}",
            o.body
        );
    }
}
