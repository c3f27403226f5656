//! Operator commands beside `serve`: API tokens (on a stopped server's store), a health probe
//! for systemd and Docker, and `listen`, a local test receiver that prints each delivery and
//! whether its signature verifies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::delivery::signer;
use crate::domain::{token, SigningKey, Timestamp};
use crate::store::{Store, StoreError, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no token is named {0:?}")]
    NoSuchToken(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot generate a token: {0}")]
    Random(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the data directory {0} does not exist: pass --data-dir (or set server.data_dir) to the directory Herald serves from")]
    NoDataDir(String),
    #[error("the data directory {0} holds no Herald store: pass --data-dir (or set server.data_dir) to the directory Herald serves from")]
    NoStore(String),
}

/// Offline commands work on a data directory that exists (and, to read tokens, holds a store):
/// a forgotten or mistyped `--data-dir` must not quietly make a new store and main key.
pub fn require_data_dir(data_dir: &Path, may_create_store: bool) -> Result<(), OpsError> {
    let shown = match std::path::absolute(data_dir) {
        Ok(abs) if abs != data_dir => format!("{} ({})", data_dir.display(), abs.display()),
        _ => data_dir.display().to_string(),
    };
    if !data_dir.is_dir() {
        return Err(OpsError::NoDataDir(shown));
    }
    if !may_create_store && !data_dir.join(crate::store::FORMAT_DIR).is_dir() {
        return Err(OpsError::NoStore(shown));
    }
    Ok(())
}

fn open(data_dir: &Path, main_key: [u8; 32]) -> Result<Store, OpsError> {
    Ok(Store::open(data_dir, &StoreOptions::new(main_key))?)
}

/// Make a named token, stored hashed; returns the token (shown once).
pub async fn token_create(
    data_dir: &Path,
    main_key: [u8; 32],
    name: &str,
) -> Result<String, OpsError> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(OpsError::Invalid(
            "a token name is 1 to 128 characters".into(),
        ));
    }
    let store = open(data_dir, main_key)?;
    let (t, record) = token::generate(name).map_err(|e| OpsError::Random(e.to_string()))?;
    store.add_token(&record).await?;
    store.close()?;
    Ok(t)
}

/// Name, creation time and a short id (the hash's first bytes) of every token.
pub fn token_list(
    data_dir: &Path,
    main_key: [u8; 32],
) -> Result<Vec<(String, Timestamp, String)>, OpsError> {
    let store = open(data_dir, main_key)?;
    let out = store
        .tokens()?
        .into_iter()
        .map(|t| {
            (
                t.name,
                t.created_at,
                t.hash[..4].iter().map(|b| format!("{b:02x}")).collect(),
            )
        })
        .collect();
    store.close()?;
    Ok(out)
}

pub async fn token_revoke(
    data_dir: &Path,
    main_key: [u8; 32],
    name: &str,
) -> Result<usize, OpsError> {
    let store = open(data_dir, main_key)?;
    let n = store.revoke_token(name).await?;
    store.close()?;
    if n == 0 {
        return Err(OpsError::NoSuchToken(name.to_string()));
    }
    Ok(n)
}

/// A receiver for trying deliveries out: answers `status` and prints each request, with the
/// result of checking its signature against `secret`.
pub async fn listen(addr: SocketAddr, secret: &str, status: u16) -> Result<(), OpsError> {
    let key = SigningKey::parse("secret", secret).map_err(|e| OpsError::Invalid(e.to_string()))?;
    if !(100..=599).contains(&status) {
        return Err(OpsError::Invalid(
            "--status must be an HTTP status code".into(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let key = key.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let key = key.clone();
                async move { Ok::<_, Infallible>(receive(req, &key, status).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn receive(req: Request<Incoming>, key: &SigningKey, status: u16) -> Response<String> {
    use http_body_util::BodyExt;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, ts, sig) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return plain(400, "unreadable body"),
    };
    let now = Timestamp::now().millis() / 1000;
    let verdict = match why_invalid(key, [id.as_str(), ts.as_str(), sig.as_str()], &body, now) {
        None => "signature valid".to_string(),
        Some(why) => format!("signature INVALID: {why}"),
    };
    let shown = String::from_utf8_lossy(&body[..body.len().min(2000)]).into_owned();
    println!(
        "{} POST {path} webhook-id={id} {verdict}\n{shown}",
        Timestamp::now().to_rfc3339()
    );
    plain(
        status,
        if status < 300 {
            "ok"
        } else {
            "refused by herald listen"
        },
    )
}

fn plain(status: u16, body: &str) -> Response<String> {
    let mut r = Response::new(body.to_string());
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r
}

/// Why a delivery's signature does not verify under `key` at `now`, or `None` when it does;
/// `headers` are webhook-id, webhook-timestamp and webhook-signature ("" when absent).
fn why_invalid(key: &SigningKey, headers: [&str; 3], body: &[u8], now: i64) -> Option<String> {
    let [id, ts, sig] = headers;
    let missing: Vec<&str> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .zip(headers)
        .filter(|(_, v)| v.trim().is_empty())
        .map(|(name, _)| name)
        .collect();
    if !missing.is_empty() {
        return Some(format!("missing header {}", missing.join(", ")));
    }
    let Ok(ts) = ts.trim().parse::<i64>() else {
        return Some(format!(
            "malformed webhook-timestamp {ts:?} (expected Unix seconds)"
        ));
    };
    if !sig.split(' ').any(|e| e.starts_with("v1,") && e.len() > 3) {
        return Some(format!(
            "malformed webhook-signature {sig:?} (expected space-separated v1,<base64> entries)"
        ));
    }
    // Checked at the message's own time first, so a stale delivery is not blamed on the secret.
    if !signer::verify(key, id, ts, body, sig, ts) {
        return Some(
            "no signature matches this secret (a different --secret, or the id, timestamp or body \
             changed on the way)"
                .to_string(),
        );
    }
    let skew = now - ts;
    let tolerance = signer::TOLERANCE_SECONDS;
    if skew > tolerance {
        return Some(format!(
            "stale timestamp: {skew} s old, more than the {tolerance} s tolerance (a replay, or a \
             slow clock here)"
        ));
    }
    if -skew > tolerance {
        return Some(format!(
            "timestamp {} s in the future, more than the {tolerance} s tolerance (a clock ahead \
             on the sender)",
            -skew
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_signature_says_why() {
        let key = SigningKey::parse("secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let other = SigningKey::parse("secret", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let (id, ts, body) = ("msg_1", 1_700_000_000_i64, br#"{"a":1}"#.as_slice());
        let good = signer::sign([&key], id, ts, body);
        let ts_s = ts.to_string();
        let why = |h: [&str; 3], now| why_invalid(&key, h, body, now);
        assert_eq!(why([id, &ts_s, &good], ts + 10), None);
        let multi = format!("v1,bm9wZQ== {good}");
        assert_eq!(why([id, &ts_s, &multi], ts), None, "any entry may match");
        assert!(why(["", &ts_s, ""], ts)
            .unwrap()
            .contains("missing header webhook-id, webhook-signature"));
        assert!(why([id, "yesterday", &good], ts)
            .unwrap()
            .contains("malformed webhook-timestamp"));
        assert!(why([id, &ts_s, "sha256=abc"], ts)
            .unwrap()
            .contains("malformed webhook-signature"));
        let wrong = signer::sign([&other], id, ts, body);
        assert!(why([id, &ts_s, &wrong], ts)
            .unwrap()
            .contains("no signature matches this secret"));
        assert!(why([id, &ts_s, &good], ts + 301)
            .unwrap()
            .contains("stale timestamp: 301 s old"));
        assert!(why([id, &ts_s, &good], ts - 400)
            .unwrap()
            .contains("400 s in the future"));
    }
}
