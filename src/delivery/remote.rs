//! A reading client for another server that speaks the Svix API (Svix's cloud, svix-server,
//! another Herald), for `herald migrate`: event types, applications, endpoints, their secrets and
//! headers, page by page as Svix paginates (`iterator` until `done`). It only reads, retries what
//! a busy server refuses for now (429, 502–504, network errors) a bounded number of times, and
//! never puts the token or a secret in an error or a log line.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{ACCEPT, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::client::error_chain;
use super::retry::parse_retry_after;

/// Items asked for per page: Svix's largest `limit`.
const PAGE: usize = 250;
/// Tries of one request before giving up on a busy or unreachable source.
const TRIES: u32 = 6;
/// The longest wait between two tries, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Pages read at most from one list: a source whose iterator never ends cannot keep us forever.
const MAX_PAGES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("--from must be an http:// or https:// URL: {0}")]
    BadUrl(String),
    #[error("the source refused the token ({status}) on GET {path}: check --token")]
    Unauthorized { status: u16, path: String },
    #[error("GET {path} answered {status}: {detail}")]
    Status {
        status: u16,
        path: String,
        detail: String,
    },
    #[error("GET {path} failed: {reason}")]
    Network { path: String, reason: String },
    #[error("GET {path}: the answer is not what the Svix API returns: {reason}")]
    Decode { path: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// `EventTypeOut`, with the schemas (asked for with `with_content`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteEventType {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub deprecated: bool,
    pub schemas: Option<serde_json::Value>,
    pub feature_flags: Option<Vec<String>>,
    pub group_name: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// `ApplicationOut`. Svix names the rate `rateLimit` (older servers `throttleRate`; Herald sends
/// both), so both are read and neither is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteApp {
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub rate_limit: Option<u16>,
    pub throttle_rate: Option<u16>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// `EndpointOut`: the event-type filter is `filterTypes` in Svix (`eventTypes` too in Herald).
/// `filter` and `ordering` are Herald's extensions: a Svix source has neither.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteEndpoint {
    pub id: String,
    pub uid: Option<String>,
    pub url: String,
    #[serde(default)]
    pub description: String,
    pub filter_types: Option<Vec<String>>,
    pub event_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub disabled: bool,
    pub rate_limit: Option<u16>,
    pub throttle_rate: Option<u16>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub version: Option<i32>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The payload filter expression.
    pub filter: Option<String>,
    /// "fifo" or "unordered"; kept as text, so a value this Herald does not know is told about
    /// (by migrate) rather than failing the whole list.
    pub ordering: Option<String>,
}

/// `EndpointHeadersOut`: values of sensitive headers are write-only, so only their names come.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RemoteHeaders {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub sensitive: Vec<String>,
}

#[derive(Deserialize)]
struct SecretOut {
    key: String,
}

#[derive(Deserialize)]
struct ListOut<T> {
    data: Vec<T>,
    iterator: Option<String>,
    #[serde(default)]
    done: bool,
}

/// A source server: its base URL and token.
pub struct SvixSource {
    http: reqwest::Client,
    base: reqwest::Url,
    token: String,
}

impl std::fmt::Debug for SvixSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvixSource")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl SvixSource {
    /// `base` is the server's URL, with or without `/api/v1`; `ca` (PEM) is trusted besides the
    /// system's roots.
    pub fn new(base: &str, token: &str, ca: Option<&[u8]>) -> Result<SvixSource, RemoteError> {
        let trimmed = base.trim().trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/api/v1").unwrap_or(trimmed);
        let base = reqwest::Url::parse(&format!("{trimmed}/"))
            .map_err(|e| RemoteError::BadUrl(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(RemoteError::BadUrl(base.to_string()));
        }
        // Redirects are not followed: the token must go only where the operator pointed it.
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Herald-migrate/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| RemoteError::Client(format!("bad CA file: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| RemoteError::Client(error_chain(&e)))?;
        Ok(SvixSource {
            http,
            base,
            token: token.to_string(),
        })
    }

    /// Every event type, archived ones included, with its schemas.
    pub async fn event_types(&self) -> Result<Vec<RemoteEventType>, RemoteError> {
        self.list(
            &["event-type"],
            &[("include_archived", "true"), ("with_content", "true")],
        )
        .await
    }

    pub async fn apps(&self) -> Result<Vec<RemoteApp>, RemoteError> {
        self.list(&["app"], &[]).await
    }

    pub async fn endpoints(&self, app: &str) -> Result<Vec<RemoteEndpoint>, RemoteError> {
        self.list(&["app", app, "endpoint"], &[]).await
    }

    /// The endpoint's current signing secret, `whsec_…`.
    pub async fn endpoint_secret(&self, app: &str, ep: &str) -> Result<String, RemoteError> {
        let s: SecretOut = self
            .get(&["app", app, "endpoint", ep, "secret"], &[])
            .await?;
        Ok(s.key)
    }

    pub async fn endpoint_headers(
        &self,
        app: &str,
        ep: &str,
    ) -> Result<RemoteHeaders, RemoteError> {
        self.get(&["app", app, "endpoint", ep, "headers"], &[])
            .await
    }

    /// All pages of a list, following `iterator` until `done` (or an empty page, or no iterator).
    async fn list<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Vec<T>, RemoteError> {
        let limit = PAGE.to_string();
        let mut out = Vec::new();
        let mut iterator: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", limit.as_str()));
            if let Some(it) = &iterator {
                q.push(("iterator", it.as_str()));
            }
            let page: ListOut<T> = self.get(path, &q).await?;
            let empty = page.data.is_empty();
            out.extend(page.data);
            match page.iterator {
                Some(next) if !page.done && !empty && iterator.as_ref() != Some(&next) => {
                    iterator = Some(next)
                }
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// One GET under `/api/v1/`, retried while the source is busy or unreachable.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, RemoteError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| RemoteError::BadUrl(self.base.to_string()))?
            .pop_if_empty()
            .extend(["api", "v1"])
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let shown = format!("/api/v1/{}", path.join("/"));
        let mut wait = Duration::from_millis(500);
        let mut tries = 0;
        loop {
            tries += 1;
            let sent = self
                .http
                .get(url.clone())
                .bearer_auth(&self.token)
                .header(ACCEPT, "application/json")
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) if tries < TRIES => {
                    tracing::debug!(path = %shown, error = %error_chain(&e), "source unreachable; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(e) => {
                    return Err(RemoteError::Network {
                        path: shown,
                        reason: error_chain(&e),
                    })
                }
            };
            let status = resp.status().as_u16();
            if matches!(status, 429 | 502 | 503 | 504) && tries < TRIES {
                let asked = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, chrono::Utc::now().timestamp()));
                tokio::time::sleep(asked.unwrap_or(wait).min(MAX_BACKOFF)).await;
                wait = (wait * 2).min(MAX_BACKOFF);
                continue;
            }
            let body = resp.bytes().await.map_err(|e| RemoteError::Network {
                path: shown.clone(),
                reason: error_chain(&e),
            })?;
            return match status {
                200..=299 => serde_json::from_slice(&body).map_err(|e| RemoteError::Decode {
                    path: shown,
                    reason: e.to_string(),
                }),
                401 | 403 => Err(RemoteError::Unauthorized {
                    status,
                    path: shown,
                }),
                _ => Err(RemoteError::Status {
                    status,
                    path: shown,
                    detail: detail_of(&body),
                }),
            };
        }
    }
}

/// The `detail` of a Svix error body, else the start of the body.
fn detail_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorOut {
        detail: serde_json::Value,
    }
    match serde_json::from_slice::<ErrorOut>(body) {
        Ok(e) => match e.detail {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        },
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_may_carry_the_api_prefix() {
        // reqwest is built without a crypto provider; `main` installs ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for given in [
            "http://127.0.0.1:9/",
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/api/v1",
            "http://127.0.0.1:9/api/v1/",
        ] {
            let s = SvixSource::new(given, "t", None).unwrap();
            assert_eq!(s.base.as_str(), "http://127.0.0.1:9/", "{given}");
        }
        assert!(matches!(
            SvixSource::new("ftp://x", "t", None),
            Err(RemoteError::BadUrl(_))
        ));
        assert!(!format!(
            "{:?}",
            SvixSource::new("http://h", "sk_secret", None).unwrap()
        )
        .contains("sk_secret"));
    }

    #[test]
    fn both_names_of_the_rate_and_the_filter_are_read() {
        let ep: RemoteEndpoint = serde_json::from_str(
            r#"{"id":"ep_1","url":"https://x","filterTypes":["a"],"eventTypes":["a"],
                "rateLimit":5,"throttleRate":5,"metadata":{},"unknown":1}"#,
        )
        .unwrap();
        assert_eq!(ep.filter_types.as_deref(), Some(&["a".to_string()][..]));
        assert_eq!(ep.rate_limit, Some(5));
        let app: RemoteApp =
            serde_json::from_str(r#"{"id":"app_1","name":"A","throttleRate":3}"#).unwrap();
        assert_eq!(app.throttle_rate, Some(3));
        assert_eq!(detail_of(br#"{"code":"x","detail":"nope"}"#), "nope");
    }
}
