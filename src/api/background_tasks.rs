//! Background tasks over the API: `GET /background-task` and `/background-task/{id}` (Svix's
//! BackgroundTaskOut, with real status and progress, for every kind: those started here and
//! expunge-all's `application.purge_content`), and the endpoint routes that start one:
//! `recover` (failed messages), `replay-missing` (messages never sent there) and `bulk-replay`
//! (messages sent there, filtered). Starting answers 202 at once; the work is delivery's.

use std::collections::BTreeSet;

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
use super::pagination::{ksuid_key, list_response, ListParams};
use super::query::Query;
use super::{body, query, reply, respond, with, Seg, State};
use crate::domain::{validate, DeliveryStatus, TaskId, Timestamp, ValidationError};
use crate::store::{BackgroundTask, EndpointWindow, ReplayFilter, TaskParams, TaskStatus};

/// Svix's BackgroundTaskOut.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskOut {
    id: String,
    status: &'static str,
    task: &'static str,
    /// `messagesSent` as Svix shows it (for `application.purge_content`: `messagesExpunged`,
    /// payloads expunged), plus Herald's `messagesScanned` (progress) and, for a failed task,
    /// `error` (why).
    data: serde_json::Value,
    updated_at: String,
}

impl From<BackgroundTask> for TaskOut {
    fn from(t: BackgroundTask) -> Self {
        let done = match t.params {
            TaskParams::PurgeContent { .. } => "messagesExpunged",
            _ => "messagesSent",
        };
        let mut data = serde_json::json!({
            done: t.sent,
            "messagesScanned": t.scanned,
        });
        // The usage tasks' results, as Svix shows them (partial while running).
        match &t.params {
            TaskParams::AppStats { counts, .. } => {
                data = serde_json::json!({
                    "appStats": counts.iter().map(|c| serde_json::json!({
                        "messageDestinations": c.destinations,
                        "appId": c.app.to_string(),
                        "appUid": c.uid,
                    })).collect::<Vec<_>>(),
                    "messagesScanned": t.scanned,
                });
            }
            TaskParams::EventTypeUsage { usage } => {
                data = serde_json::json!({
                    "event_types": usage.iter().map(|u| serde_json::json!({
                        "appId": u.app.to_string(),
                        "explicitlySubscribedEventTypes": u.event_types,
                        "hasCatchAllEndpoint": u.catch_all,
                    })).collect::<Vec<_>>(),
                });
            }
            _ => {}
        }
        if let Some(e) = t.error {
            data["error"] = e.into();
        }
        TaskOut {
            id: t.id.to_string(),
            status: t.status.text(),
            task: t.params.kind(),
            data,
            updated_at: t.updated_at.to_rfc3339(),
        }
    }
}

/// The answer to a call that starts a task: Svix's RecoverOut and ReplayOut (the same fields),
/// and AppUsageStatsOut with `unresolvedAppIds` (`usage_stats`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartedOut {
    id: String,
    status: &'static str,
    task: &'static str,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unresolved_app_ids: Option<BTreeSet<String>>,
}

impl StartedOut {
    pub(super) fn of(t: &BackgroundTask, unresolved: Option<BTreeSet<String>>) -> Self {
        StartedOut {
            id: t.id.to_string(),
            status: t.status.text(),
            task: t.params.kind(),
            updated_at: t.updated_at.to_rfc3339(),
            unresolved_app_ids: unresolved,
        }
    }
}

/// Svix's RecoverIn and ReplayIn.
#[derive(Debug, Deserialize)]
struct WindowIn {
    since: String,
    until: Option<String>,
}

/// Svix's BulkReplayIn (`statusCodeClass` is not supported: see the README).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkReplayIn {
    since: String,
    until: Option<String>,
    event_types: Option<BTreeSet<String>>,
    channel: Option<String>,
    tag: Option<String>,
    status: Option<u8>,
    status_code_class: Option<u16>,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let list = warp::path!("background-task")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|s, q| async move { respond(super::blocking(move || list(s, q)).await) });
    let one = warp::path!("background-task" / Seg)
        .and(warp::get())
        .and(with(&state))
        .then(|t, s| async move { respond(get(s, t)) });
    let recover = warp::path!("app" / Seg / "endpoint" / Seg / "recover")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|a, e, s: State, b, idem: Idempotency| {
            idem.run(s.clone(), start(s, a, e, b, Kind::Recover))
        });
    let missing = warp::path!("app" / Seg / "endpoint" / Seg / "replay-missing")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|a, e, s: State, b, idem: Idempotency| {
            idem.run(s.clone(), start(s, a, e, b, Kind::ReplayMissing))
        });
    let bulk = warp::path!("app" / Seg / "endpoint" / Seg / "bulk-replay")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|a, e, s: State, b, idem: Idempotency| {
            idem.run(s.clone(), start(s, a, e, b, Kind::BulkReplay))
        });
    list.or(one)
        .unify()
        .or(recover)
        .unify()
        .or(missing)
        .unify()
        .or(bulk)
        .unify()
        .boxed()
}

fn list(s: State, q: Query) -> Result<Response, ApiError> {
    let params = ListParams::parse(&q, true)?.scanning(s.limits.max_list_scan);
    let status = match q.get("status") {
        None => None,
        Some(v) => Some(TaskStatus::parse(v).ok_or_else(|| {
            ValidationError::new("query.status", "must be running, finished or failed")
        })?),
    };
    let kind = q.get("task").map(String::from);
    let pq = params.to_page_query(|c| {
        c.parse::<TaskId>()
            .ok()
            .map(|id| id.ksuid().as_bytes().to_vec())
    })?;
    let page = s.store.list_tasks(&pq, |t| {
        status.is_none_or(|st| t.status == st)
            && kind.as_deref().is_none_or(|k| t.params.kind() == k)
    })?;
    let out = list_response(
        page,
        |t| t.id.to_string(),
        ksuid_key(TaskId::PREFIX),
        TaskOut::from,
    );
    Ok(reply(StatusCode::OK, &out))
}

fn get(s: State, id: Seg) -> Result<Response, ApiError> {
    let task =
        id.0.parse::<TaskId>()
            .ok()
            .map(|id| s.store.get_task(&id))
            .transpose()?
            .flatten()
            .ok_or(ApiError::NotFound("background task not found"))?;
    Ok(reply(StatusCode::OK, &TaskOut::from(task)))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Recover,
    ReplayMissing,
    BulkReplay,
}

fn time(field: &str, v: &str) -> Result<Timestamp, ValidationError> {
    Timestamp::parse_rfc3339(v)
        .ok_or_else(|| ValidationError::new(field, "must be an RFC 3339 date-time"))
}

/// The window `[since, until)`, refused when it cannot hold a message (`verb`: what the task
/// does, for the message).
fn window(
    since: &str,
    until: Option<&str>,
    verb: &str,
) -> Result<(Timestamp, Option<Timestamp>), ApiError> {
    let since = time("since", since)?;
    let until = until.map(|u| time("until", u)).transpose()?;
    // Accepted, a future `since` would start a task that can find nothing: say so instead.
    let now = Timestamp::now();
    let mut refused = Vec::new();
    if since > now {
        refused.push(ValidationError::new(
            "since",
            format!(
                "is in the future (Herald's clock says {}): no message was created after it, \
                 so there is nothing to {verb}",
                now.to_rfc3339()
            ),
        ));
    }
    if until.is_some_and(|u| u <= since) {
        refused.push(ValidationError::new("until", "must be later than since"));
    }
    if !refused.is_empty() {
        return Err(ApiError::Validation(refused));
    }
    Ok((since, until))
}

/// Start a task on the endpoint named by the path and answer 202 with it.
async fn start(s: State, app: Seg, ep: Seg, body: Bytes, kind: Kind) -> Result<Response, ApiError> {
    let (since, until, filter) = match kind {
        Kind::Recover | Kind::ReplayMissing => {
            let input: WindowIn = json::parse(&body)?;
            let verb = match kind {
                Kind::Recover => "recover",
                _ => "replay",
            };
            let (since, until) = window(&input.since, input.until.as_deref(), verb)?;
            (since, until, None)
        }
        Kind::BulkReplay => {
            let input: BulkReplayIn = json::parse(&body)?;
            let (since, until) = window(&input.since, input.until.as_deref(), "replay")?;
            let status = match input.status {
                None => None,
                Some(code) => Some(
                    DeliveryStatus::from_code(code)
                        .ok_or_else(|| ValidationError::new("status", "must be 0, 1, 2 or 3"))?,
                ),
            };
            if input.status_code_class.is_some() {
                return Err(ValidationError::new(
                    "statusCodeClass",
                    "is not supported by Herald's bulk replay (filter by status instead)",
                )
                .into());
            }
            if let Some(t) = &input.event_types {
                validate::filter_types("eventTypes", &t.iter().cloned().collect::<Vec<_>>())?;
            }
            let filter = ReplayFilter {
                event_types: input.event_types.map(|t| t.into_iter().collect()),
                channel: input.channel,
                tag: input.tag,
                status,
            };
            (since, until, Some(filter))
        }
    };
    let app = find_app(&s, &app.0)?;
    let ep = s
        .store
        .get_endpoint(&app.id, &ep.0)?
        .ok_or(ApiError::NotFound("endpoint not found"))?;
    let w = EndpointWindow {
        app: app.id,
        endpoint: ep.id,
        since,
        until,
    };
    let params = match (kind, filter) {
        (Kind::Recover, _) => TaskParams::Recover(w),
        (Kind::ReplayMissing, _) => TaskParams::ReplayMissing(w),
        (Kind::BulkReplay, f) => TaskParams::BulkReplay(w, f.unwrap_or_default()),
    };
    let task = s.delivery.start_task(params).await?;
    Ok(reply(StatusCode::ACCEPTED, &StartedOut::of(&task, None)))
}
