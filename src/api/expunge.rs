//! Expunging content (Svix's routes): a message's payload, many messages' payloads, all of an
//! application's (a background task), and an attempt's response body. The bytes leave the store's
//! files before the answer, or before the task moves on (see `store::expunge`); queued deliveries
//! of an expunged message are canceled.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::apps::find_app;
use super::error::ApiError;
use super::idempotency::{self, Idempotency};
use super::json;
use super::{body, no_content, reply, respond, with, Seg, State};
use crate::domain::{AppId, AttemptId, ValidationError};
use crate::store::{ExpungeOutcome, TaskParams};

/// Most ids one bulk expunge takes (Svix's).
const BULK_MAX: usize = 250;

#[derive(Debug, Default, Deserialize)]
struct BulkExpungeContentsIn {
    #[serde(default)]
    ids: Vec<String>,
}

#[derive(Debug, Serialize)]
struct BulkExpungeContentsOut {
    results: BTreeMap<String, &'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExpungeAllContentsOut {
    id: String,
    status: &'static str,
    task: &'static str,
    updated_at: String,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let one = warp::path!("app" / Seg / "msg" / Seg / "content")
        .and(warp::delete())
        .and(with(&state))
        .then(|a, m, s| async move { respond(expunge_one(s, a, m).await) });
    let bulk = warp::path!("app" / Seg / "msg" / "bulk-expunge")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|a, s: State, b, idem: Idempotency| idem.run(s.clone(), bulk(s, a, b)));
    let all = warp::path!("app" / Seg / "msg" / "expunge-all-contents")
        .and(warp::post())
        .and(with(&state))
        .and(idempotency::key())
        .then(|a, s: State, idem: Idempotency| idem.run(s.clone(), expunge_all(s, a)));
    let attempt = warp::path!("app" / Seg / "msg" / Seg / "attempt" / Seg / "content")
        .and(warp::delete())
        .and(with(&state))
        .then(|a, m, t, s| async move { respond(expunge_attempt(s, a, m, t).await) });
    one.or(bulk)
        .unify()
        .or(all)
        .unify()
        .or(attempt)
        .unify()
        .boxed()
}

/// Expunge off the runtime (fsyncs and file I/O).
async fn expunge(s: &State, app: AppId, ids: Vec<String>) -> Result<Vec<ExpungeOutcome>, ApiError> {
    let store = s.store.clone();
    super::blocking(move || Ok(store.expunge_messages(&app, &ids)?)).await
}

/// `DELETE /app/{app}/msg/{msg}/content`: 204, also for a payload expunged before.
async fn expunge_one(s: State, app: Seg, msg: Seg) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    match expunge(&s, app.id, vec![msg.0]).await?.first() {
        Some(ExpungeOutcome::NotFound) | None => Err(ApiError::NotFound("message not found")),
        Some(_) => Ok(no_content()),
    }
}

/// `POST /app/{app}/msg/bulk-expunge` {ids}: each id (or eventId) "expunged" or "not-found"
/// (as Svix: also for a message whose payload was gone already).
async fn bulk(s: State, app: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: BulkExpungeContentsIn = json::parse(&body)?;
    if input.ids.len() > BULK_MAX {
        return Err(
            ValidationError::new("ids", format!("must hold at most {BULK_MAX} ids")).into(),
        );
    }
    let app = find_app(&s, &app.0)?;
    let mut ids = input.ids;
    ids.sort();
    ids.dedup();
    let outcomes = expunge(&s, app.id, ids.clone()).await?;
    let results = ids
        .into_iter()
        .zip(outcomes)
        .map(|(id, o)| {
            let word = match o {
                ExpungeOutcome::Expunged => "expunged",
                ExpungeOutcome::AlreadyGone | ExpungeOutcome::NotFound => "not-found",
            };
            (id, word)
        })
        .collect();
    Ok(reply(StatusCode::OK, &BulkExpungeContentsOut { results }))
}

/// `POST /app/{app}/msg/expunge-all-contents`: starts Svix's background task
/// (`application.purge_content`, run by delivery's tasks: durable, resumed after a restart) over
/// the messages the application has now, and answers 202 with it at once.
async fn expunge_all(s: State, app: Seg) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let until = s.store.newest_message_id(&app.id)?;
    let task = s
        .delivery
        .start_task(TaskParams::PurgeContent { app: app.id, until })
        .await?;
    Ok(reply(
        StatusCode::ACCEPTED,
        &ExpungeAllContentsOut {
            id: task.id.to_string(),
            status: task.status.text(),
            task: task.params.kind(),
            updated_at: task.updated_at.to_rfc3339(),
        },
    ))
}

/// `DELETE /app/{app}/msg/{msg}/attempt/{attempt}/content`: the attempt's response body.
async fn expunge_attempt(s: State, app: Seg, msg: Seg, attempt: Seg) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let msg = s
        .store
        .message_id_of(&app.id, &msg.0)?
        .ok_or(ApiError::NotFound("message not found"))?;
    let attempt: AttemptId = attempt
        .0
        .parse()
        .map_err(|_| ApiError::NotFound("attempt not found"))?;
    let store = s.store.clone();
    let found =
        super::blocking(move || Ok(store.expunge_attempt_content(&app.id, &msg, &attempt)?))
            .await?;
    if found {
        Ok(no_content())
    } else {
        Err(ApiError::NotFound("attempt not found"))
    }
}
