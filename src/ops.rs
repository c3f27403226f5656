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
    let verdict = match ts.parse::<i64>() {
        Ok(ts) if signer::verify(key, &id, ts, &body, &sig, now) => "signature valid",
        Ok(_) => "signature INVALID",
        Err(_) => "signature INVALID (no timestamp)",
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
