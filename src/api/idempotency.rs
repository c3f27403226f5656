//! The `idempotency-key` header on POSTs, as Svix has it: for 12 hours, a repeat of a POST with the
//! same key (per token and path) answers with the first 2xx answer and does nothing; the body of
//! the repeat is not compared. The Svix SDKs send a key on every POST, so every POST route goes
//! through `run` (a small answer is kept whole) or `run_recorded` (the handler writes its record
//! with its own effect: message create, whose answer is rebuilt from the message). Errors are not
//! kept: a repeat of a failed request runs again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use warp::http::StatusCode;
use warp::path::FullPath;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::error::ApiError;
use super::{respond, State};
use crate::domain::{token, Timestamp, ValidationError};
use crate::store::{Answer, IdempotencyRecord};

/// How long a repeated key answers with the first response.
const TTL_SECONDS: i64 = 12 * 3600;
const MAX_KEY_LEN: usize = 256;

/// What a POST came with to scope its `idempotency-key` (not checked yet).
pub struct Idempotency {
    path: String,
    auth: Option<String>,
    key: Option<String>,
}

/// A checked key, scoped by token and path: the store key of its record.
pub struct Key([u8; 32]);

impl Key {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The record that makes a repeat answer `answer`.
    pub fn record(&self, answer: Answer) -> IdempotencyRecord {
        IdempotencyRecord {
            answer,
            expires_at: Timestamp::now().plus_seconds(TTL_SECONDS),
        }
    }
}

/// The request's idempotency scope, for `Idempotency::run` or `run_recorded`.
pub fn key() -> impl Filter<Extract = (Idempotency,), Error = warp::Rejection> + Clone {
    warp::path::full()
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("idempotency-key"))
        .map(|path: FullPath, auth, key| Idempotency {
            path: path.as_str().to_string(),
            auth,
            key,
        })
}

impl Idempotency {
    /// The store key: per token and path, so clients cannot collide. An empty header is no key.
    fn scoped(&self) -> Result<Option<Key>, ApiError> {
        let key = match self.key.as_deref() {
            None | Some("") => return Ok(None),
            Some(k) if k.len() > MAX_KEY_LEN => {
                return Err(ValidationError::new(
                    "header.idempotency-key",
                    format!("must be at most {MAX_KEY_LEN} characters"),
                )
                .into())
            }
            Some(k) => k,
        };
        let token_hash = token::hash(self.auth.as_deref().unwrap_or_default());
        let mut h = Sha256::new();
        h.update(token_hash);
        h.update([0]);
        h.update(self.path.trim_end_matches('/').as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        Ok(Some(Key(h.finalize().into())))
    }

    /// Run a POST whose answer is small. It runs to the end even if the client goes away
    /// meanwhile (hyper then drops this future, not the spawned task), so an effect is never left
    /// without its record. With a key: at most once per key (a concurrent repeat waits for the
    /// first, then replays its answer), and a 2xx answer is kept whole.
    pub async fn run<H>(self, s: State, handler: H) -> Response
    where
        H: Future<Output = Result<Response, ApiError>> + Send + 'static,
    {
        let key = match self.scoped() {
            Ok(k) => k,
            Err(e) => return e.into_response(),
        };
        let task = tokio::spawn(async move {
            let Some(key) = key else {
                return handler.await;
            };
            let _turn = s.in_flight.enter(key.0).await;
            if let Some(r) = replay(&s, &key).await? {
                return Ok(r);
            }
            let answer = handler.await?;
            if !answer.status().is_success() {
                return Ok(answer);
            }
            keep(&s, &key, answer).await
        });
        respond(task.await.unwrap_or_else(|e| Err(e.into())))
    }

    /// Run a POST that writes its idempotency record itself, atomically with its effect (and sees
    /// a repeat there, concurrent or not): `handler` gets the checked key. The record is looked
    /// up here only when the handler fails, so a repeat whose body or target no longer passes
    /// still gets the first answer, while a first request (every Svix SDK create) does not pay a
    /// look-up its write makes anyway.
    pub async fn run_recorded<F, H>(self, s: State, handler: F) -> Response
    where
        F: FnOnce(Option<Key>) -> H,
        H: Future<Output = Result<Response, ApiError>>,
    {
        let answer = async {
            let key = self.scoped()?;
            let scope = key.as_ref().map(|k| Key(k.0));
            match (handler(key).await, scope) {
                (Err(e), Some(k)) => Ok(replay(&s, &k).await?.ok_or(e)?),
                (answer, _) => answer,
            }
        };
        respond(answer.await)
    }
}

/// The first answer under `key`, if there is one to replay.
async fn replay(s: &State, key: &Key) -> Result<Option<Response>, ApiError> {
    match s.store.idempotent_answer(key.bytes()).await? {
        Some(answer) => answer_of(s, answer),
        None => Ok(None),
    }
}

/// The response a kept answer stands for; `None` for a message that is gone (the key is stale).
pub fn answer_of(s: &State, answer: Answer) -> Result<Option<Response>, ApiError> {
    match answer {
        Answer::Response { status, body } => Ok(Some(json_bytes(status, body))),
        Answer::Message {
            app_id,
            msg_id,
            status,
            with_content,
        } => super::messages::replay(s, &app_id, &msg_id, status, with_content),
    }
}

/// Keep a 2xx answer for its key, and give it back.
async fn keep(s: &State, key: &Key, answer: Response) -> Result<Response, ApiError> {
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| ApiError::Internal(format!("reading an answer: {e}")))?
        .to_bytes();
    let record = key.record(Answer::Response {
        status: parts.status.as_u16(),
        body: body.to_vec(),
    });
    if let Err(e) = s.store.keep_idempotent_answer(key.bytes(), &record).await {
        // The effect is done and the client should hear so; only a repeat of this key, which
        // a client sends after a failure, would run it again.
        tracing::warn!(error = %e, "an idempotency record could not be written");
    }
    Ok(Response::from_parts(parts, body.into()))
}

/// A JSON answer already serialised (a kept answer replays the same bytes).
pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if body.is_empty() {
        return status.into_response();
    }
    warp::reply::with_status(
        warp::reply::with_header(body, "content-type", "application/json"),
        status,
    )
    .into_response()
}

type Turns = Arc<Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>>;

/// Keys whose request is running now. A repeat with the same key waits for the first to end and
/// then replays its answer, so concurrent repeats never run a handler twice. It lives in memory:
/// the process holds its store alone, and an entry lasts only while a request with its key runs.
/// (A crash between a handler's effect and its record lets one repeat run it again.)
#[derive(Default)]
pub struct InFlight(Turns);

/// The one request with its key allowed to run; leaving drops the entry once nobody waits.
struct Turn {
    turns: Turns,
    key: [u8; 32],
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

fn lock(
    turns: &Turns,
) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>> {
    turns.lock().unwrap_or_else(|e| e.into_inner())
}

impl InFlight {
    async fn enter(&self, key: [u8; 32]) -> Turn {
        let lock_ = lock(&self.0).entry(key).or_default().clone();
        let guard = lock_.clone().lock_owned().await;
        Turn {
            turns: self.0.clone(),
            key,
            lock: lock_,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.guard.take();
        let mut turns = lock(&self.turns);
        // Held by the map and by us only: nobody waits (waiters clone under this same lock).
        if Arc::strong_count(&self.lock) == 2 {
            turns.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_turn_per_key_at_a_time_and_entries_go_when_done() {
        let in_flight = Arc::new(InFlight::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..16u8 {
            let (f, inside, most) = (in_flight.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = f.enter([i % 2; 32]).await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2, "two keys, one turn each");
        assert_eq!(in_flight.len(), 0, "no entry outlives its requests");
    }

    #[test]
    fn keys_are_scoped_by_token_and_path_and_checked() {
        let id = |auth: &str, path: &str, key: &str| {
            Idempotency {
                path: path.into(),
                auth: Some(auth.into()),
                key: Some(key.into()),
            }
            .scoped()
            .unwrap()
            .map(|k| k.0)
        };
        let a = id("Bearer t1", "/api/v1/app", "k");
        assert!(a.is_some());
        assert_eq!(
            a,
            id("Bearer t1", "/api/v1/app/", "k"),
            "a trailing slash is the same path"
        );
        assert_ne!(a, id("Bearer t2", "/api/v1/app", "k"));
        assert_ne!(a, id("Bearer t1", "/api/v1/event-type", "k"));
        assert_ne!(a, id("Bearer t1", "/api/v1/app", "k2"));
        assert_eq!(
            id("Bearer t1", "/api/v1/app", ""),
            None,
            "an empty key is no key"
        );
        let long = Idempotency {
            path: "/p".into(),
            auth: None,
            key: Some("x".repeat(MAX_KEY_LEN + 1)),
        };
        assert!(matches!(long.scoped(), Err(ApiError::Validation(_))));
    }
}
