//! `PUT /api/v1/stats/usage/event-types` and `POST /api/v1/stats/usage/app` (Svix's
//! AggregateEventTypesOut and AppUsageStatsOut): start a background task that lists the event
//! types each application subscribes to, or counts each application's message destinations in a
//! window. Both answer 202 at once; `GET /background-task/{id}` shows the result in `data` when
//! the task has finished (the work is delivery's, see `delivery::usage`).

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::background_tasks::StartedOut;
use super::error::ApiError;
use super::idempotency::{self, Idempotency};
use super::json;
use super::{body, reply, with, State};
use crate::domain::{Timestamp, ValidationError};
use crate::store::TaskParams;

/// Most applications one `appIds` may name.
const MAX_APP_IDS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppUsageStatsIn {
    since: String,
    until: String,
    app_ids: Option<BTreeSet<String>>,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let event_types = warp::path!("stats" / "usage" / "event-types")
        .and(warp::put())
        .and(with(&state))
        .then(|s: State| async move {
            super::respond(
                async {
                    let params = TaskParams::EventTypeUsage { usage: Vec::new() };
                    let task = s.delivery.start_task(params).await?;
                    Ok(reply(StatusCode::ACCEPTED, &StartedOut::of(&task, None)))
                }
                .await,
            )
        });
    let app = warp::path!("stats" / "usage" / "app")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|s: State, b, idem: Idempotency| idem.run(s.clone(), app_stats(s, b)));
    event_types.or(app).unify().boxed()
}

fn time(field: &str, v: &str) -> Result<Timestamp, ValidationError> {
    Timestamp::parse_rfc3339(v)
        .ok_or_else(|| ValidationError::new(field, "must be an RFC 3339 date-time"))
}

async fn app_stats(s: State, body: Bytes) -> Result<Response, ApiError> {
    let input: AppUsageStatsIn = json::parse(&body)?;
    let since = time("since", &input.since)?;
    let until = time("until", &input.until)?;
    if until <= since {
        return Err(ValidationError::new("until", "must be later than since").into());
    }
    let (apps, unresolved) = match input.app_ids {
        None => (None, BTreeSet::new()),
        Some(ids) => {
            if ids.len() > MAX_APP_IDS {
                return Err(ValidationError::new(
                    "appIds",
                    format!("must name at most {MAX_APP_IDS} applications"),
                )
                .into());
            }
            let store = s.store.clone();
            super::blocking(move || {
                let mut found = Vec::new();
                let mut unresolved = BTreeSet::new();
                for id in ids {
                    match store.get_app(&id)? {
                        Some(a) if !found.contains(&a.id) => found.push(a.id),
                        Some(_) => {}
                        None => {
                            unresolved.insert(id);
                        }
                    }
                }
                if found.is_empty() {
                    return Err(ValidationError::new(
                        "appIds",
                        "none of the given ids or uids names an application",
                    )
                    .into());
                }
                Ok((Some(found), unresolved))
            })
            .await?
        }
    };
    let params = TaskParams::AppStats {
        since,
        until,
        apps,
        counts: Vec::new(),
    };
    let task = s.delivery.start_task(params).await?;
    Ok(reply(
        StatusCode::ACCEPTED,
        &StartedOut::of(&task, Some(unresolved)),
    ))
}
