//! The HTTP API (Svix v1 compatible subset): warp filters per resource, merged here. Every handler
//! returns `Result<Response, ApiError>`; errors become JSON in one place (`error`). Only this module
//! knows warp.

mod admin;
mod apps;
mod attempt_stats;
mod attempts;
pub mod auth;
pub mod authz;
mod background_tasks;
mod endpoints;
mod environment;
pub mod error;
mod event_types;
mod expunge;
mod health;
mod idempotency;
mod json;
mod message_events;
mod messages;
mod metrics;
mod openapi;
mod openapi_import;
mod operational;
mod overview;
mod pagination;
mod portal_access;
mod query;
mod ui;
mod usage_stats;
mod whoami;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::Filter;

use crate::delivery::Delivery;
use crate::domain::validate::Limits;
use crate::store::Store;
use auth::Auth;
use error::ApiError;
use query::Query;

/// What every handler may use.
pub struct ApiState {
    pub store: Store,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub delivery: Delivery,
    pub auth: Auth,
    pub limits: Limits,
    pub max_body_bytes: usize,
    /// POSTs running now, by idempotency key.
    pub in_flight: idempotency::InFlight,
    /// Messages being created now (so a poll of `events` never passes over one).
    pub creating: Arc<message_events::Creating>,
    /// How long a client may take to send a whole request body.
    pub body_read_timeout: std::time::Duration,
    /// Where backups are written (`store.backup_dir`).
    pub backup_dir: std::path::PathBuf,
    /// Served over TLS: portal links are `https://`.
    pub https: bool,
    /// The customer portal's framing policy and branding (`[portal]`).
    pub portal: crate::config::PortalConfig,
}

pub type State = Arc<ApiState>;

/// All routes, with every rejection turned into a JSON error and the headers every answer carries.
pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    warp::path::full()
        .and(resources(state))
        .map(|path: warp::path::FullPath, mut resp: Response| {
            common_headers(path.as_str(), resp.headers_mut());
            resp
        })
        .boxed()
}

/// Headers for every answer, set here once rather than per handler: no MIME sniffing anywhere;
/// nothing under `/api/` is cached (answers carry secrets, tokens' views and live state). A
/// header a route already set (the UI's) is kept.
fn common_headers(path: &str, h: &mut warp::http::HeaderMap) {
    use warp::http::header::{HeaderValue, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
    h.entry(X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if path == "/api" || path.starts_with("/api/") {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn resources(state: State) -> BoxedFilter<(Response,)> {
    let v1 = warp::path("api").and(warp::path("v1"));
    let protected = v1.and(authenticated(state.clone())).and(
        apps::routes(state.clone())
            .or(event_types::routes(state.clone()))
            .unify()
            .or(endpoints::routes(state.clone()))
            .unify()
            .or(messages::routes(state.clone()))
            .unify()
            .or(expunge::routes(state.clone()))
            .unify()
            .or(attempts::routes(state.clone()))
            .unify()
            .or(background_tasks::routes(state.clone()))
            .unify()
            .or(environment::routes(state.clone()))
            .unify()
            .or(admin::routes(state.clone()))
            .unify()
            .or(metrics::stats_routes(state.clone()))
            .unify()
            .or(operational::routes(state.clone()))
            .unify()
            .or(portal_access::routes(state.clone()))
            .unify()
            .or(whoami::routes(state.clone()))
            .unify()
            .or(message_events::routes(state.clone()))
            .unify()
            .or(attempt_stats::routes(state.clone()))
            .unify()
            .or(usage_stats::routes(state.clone()))
            .unify(),
    );
    v1.and(health::routes(state.clone()))
        .or(v1.and(openapi::routes()))
        .unify()
        .or(metrics::routes(state.clone()))
        .unify()
        .or(protected)
        .unify()
        .or(ui::routes(&state.portal))
        .unify()
        .recover(error::handle_rejection)
        .unify()
        .boxed()
}

/// Let the request through only if the one table (`authz`) allows its credential this route.
fn authenticated(state: State) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and_then(
            move |m: warp::http::Method, p: warp::path::FullPath, h: Option<String>| {
                let result = authorize(&state, m.as_str(), p.as_str(), h.as_deref())
                    .map_err(warp::reject::custom);
                async move { result }
            },
        )
        .untuple_one()
}

fn authorize(s: &State, method: &str, path: &str, header: Option<&str>) -> Result<(), ApiError> {
    let credential = s.auth.credential(&s.store, header)?;
    authz::authorize(method, path, credential.as_ref(), |t, seg| {
        let Ok(Seg(id_or_uid)) = seg.parse::<Seg>() else {
            return Ok(false);
        };
        if id_or_uid == t.app_id.as_str() {
            return Ok(true);
        }
        Ok(s.store
            .get_app(&id_or_uid)?
            .is_some_and(|a| a.id == t.app_id))
    })
}

/// The state, for handlers.
fn with(state: &State) -> impl Filter<Extract = (State,), Error = Infallible> + Clone {
    let s = state.clone();
    warp::any().map(move || s.clone())
}

/// The query string (absent or not).
fn query() -> impl Filter<Extract = (Query,), Error = Infallible> + Clone {
    warp::query::raw()
        .map(|q: String| Query::parse(Some(&q)))
        .or(warp::any().map(|| Query::parse(None)))
        .unify()
}

/// The request body, refused with 413 beyond the configured size (by its length header if it has
/// one, else while reading), and with 408 when it has not all arrived in time.
fn body(state: &State) -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    let (limit, timeout) = (state.max_body_bytes, state.body_read_timeout);
    warp::header::optional::<u64>("content-length")
        .and_then(move |len: Option<u64>| async move {
            match len {
                Some(n) if n > limit as u64 => {
                    Err(warp::reject::custom(ApiError::PayloadTooLarge(limit)))
                }
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |stream| collect_limited(stream, limit, timeout))
}

/// Read the whole body, within `limit` bytes and `timeout` in all: hyper bounds the time to send
/// headers but not a body, so a client that trickles or stops one would hold its connection and
/// task forever. After the 408 hyper closes the connection, as the body was not read to its end.
async fn collect_limited<S, B>(
    stream: S,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, warp::Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = std::pin::pin!(stream);
    let mut buf = Vec::new();
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, stream.next()).await else {
            return Err(warp::reject::custom(ApiError::RequestTimeout(timeout)));
        };
        let Some(chunk) = next else {
            break;
        };
        let mut chunk = chunk.map_err(|_| {
            warp::reject::custom(ApiError::BadRequest("could not read request body".into()))
        })?;
        if buf.len() + chunk.remaining() > limit {
            return Err(warp::reject::custom(ApiError::PayloadTooLarge(limit)));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(buf))
}

/// Run `f` (a handler's store work) on the blocking pool: a sled scan must not hold up a runtime
/// worker, and with it every other request on that worker.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Map a handler's result to a response.
fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

fn reply<T: Serialize>(status: StatusCode, value: &T) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A path segment, percent-decoded (clients encode ids and names per segment).
#[derive(Debug, Clone)]
struct Seg(String);

impl std::str::FromStr for Seg {
    type Err = std::str::Utf8Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Seg(percent_encoding::percent_decode_str(s)
            .decode_utf8()?
            .into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_answers_are_not_stored_and_nothing_is_sniffed() {
        let mut h = warp::http::HeaderMap::new();
        common_headers("/api/v1/app/app_1/endpoint/ep_1/secret", &mut h);
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");

        let mut h = warp::http::HeaderMap::new();
        h.insert("cache-control", "no-cache".parse().unwrap());
        common_headers("/js/main.js", &mut h);
        assert_eq!(h["cache-control"], "no-cache", "the UI's own caching stays");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h.get_all("x-content-type-options").iter().count(), 1);

        let mut h = warp::http::HeaderMap::new();
        common_headers("/apis", &mut h);
        assert!(h.get("cache-control").is_none());
    }
}
