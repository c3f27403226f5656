//! `/api/v1/environment/export` and `/import` (Svix's EnvironmentOut and EnvironmentIn): the
//! catalogue of event types, to copy between servers. Herald has no environment settings and no
//! connectors, so it exports none and ignores them on import. Import only adds and updates.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::event_types::{all_event_types, EventTypeIn, EventTypeOut};
use super::idempotency::{self, Idempotency};
use super::json;
use super::{body, no_content, reply, with, State};
use crate::domain::{validate, Timestamp, ValidationError};

/// The format of the export, as Svix numbers it.
const VERSION: i64 = 1;
/// Most event types one import may carry.
const MAX_IMPORT: usize = 10_000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvironmentOut {
    version: i64,
    created_at: String,
    event_types: Vec<EventTypeOut>,
    /// Always null, but present: Svix's SDKs (Python 2.9.1) refuse an export without the key.
    settings: Option<serde_json::Value>,
    connectors: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvironmentIn {
    #[serde(default)]
    event_types: Vec<EventTypeIn>,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let export = warp::path!("environment" / "export")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|s: State, _b: Bytes, idem: Idempotency| {
            idem.run(s.clone(), async move {
                super::blocking(move || export(s)).await
            })
        });
    let import = warp::path!("environment" / "import")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|s: State, b, idem: Idempotency| idem.run(s.clone(), import(s, b)));
    export.or(import).unify().boxed()
}

fn export(s: State) -> Result<Response, ApiError> {
    let event_types = all_event_types(&s, true)?
        .into_iter()
        .map(|e| EventTypeOut::new(e, true))
        .collect();
    Ok(reply(
        StatusCode::OK,
        &EnvironmentOut {
            version: VERSION,
            created_at: Timestamp::now().to_rfc3339(),
            event_types,
            settings: None,
            connectors: Vec::new(),
        },
    ))
}

/// Create or update each event type given (all validated before any is written).
async fn import(s: State, body: Bytes) -> Result<Response, ApiError> {
    let input: EnvironmentIn = json::parse(&body)?;
    if input.event_types.len() > MAX_IMPORT {
        return Err(ValidationError::new(
            "eventTypes",
            format!("must hold at most {MAX_IMPORT} event types"),
        )
        .into());
    }
    let now = Timestamp::now();
    let mut records = Vec::with_capacity(input.event_types.len());
    for (i, et) in input.event_types.into_iter().enumerate() {
        let field = format!("eventTypes.{i}.name");
        let name = et
            .name
            .clone()
            .ok_or_else(|| ValidationError::new(field.clone(), "field required"))?;
        validate::event_type_name(&field, &name)?;
        records.push(et.into_record(&name, now)?);
    }
    for r in records {
        s.store
            .upsert_event_type(&r.name, |old| {
                Ok(crate::domain::EventType {
                    created_at: old.map_or(r.created_at, |o| o.created_at),
                    ..r.clone()
                })
            })
            .await?;
    }
    Ok(no_content())
}
