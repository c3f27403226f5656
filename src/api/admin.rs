//! `POST /api/v1/admin/backup`: a consistent copy of the store, written by the server itself to a
//! new directory on its machine while it goes on serving (writes pause only for moments). Start
//! Herald on that directory, with the same main key, to restore. Used by `herald backup`.

use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::{blocking, body, json, reply, respond, with, State};
use crate::domain::ValidationError;

#[derive(Debug, Deserialize)]
struct BackupIn {
    destination: PathBuf,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BackupOut {
    destination: PathBuf,
    records: u64,
    took_ms: u64,
    /// The longest moment writes waited for the backup.
    longest_write_pause_ms: f64,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    warp::path!("admin" / "backup")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .then(|s, b| async move { respond(backup(s, b).await) })
        .boxed()
}

async fn backup(s: State, body: Bytes) -> Result<Response, ApiError> {
    let input: BackupIn = json::parse(&body)?;
    let dest = input.destination;
    if !dest.is_absolute() {
        return Err(ValidationError::new("destination", "must be an absolute path").into());
    }
    if dest.exists() {
        return Err(ValidationError::new("destination", "must not exist yet").into());
    }
    if !dest.parent().is_some_and(|p| p.is_dir()) {
        return Err(ValidationError::new("destination", "its parent directory must exist").into());
    }
    let store = s.store.clone();
    let started = std::time::Instant::now();
    let target = dest.clone();
    // The store refuses a second backup while one runs (409).
    let report = blocking(move || Ok(store.backup_to(&target)?)).await?;
    let took_ms = started.elapsed().as_millis() as u64;
    let pause_ms = report.longest_write_pause.as_secs_f64() * 1000.0;
    tracing::info!(destination = %dest.display(), records = report.records, took_ms, longest_write_pause_ms = pause_ms, "backup written");
    Ok(reply(
        StatusCode::OK,
        &BackupOut {
            destination: dest,
            records: report.records,
            took_ms,
            longest_write_pause_ms: pause_ms,
        },
    ))
}
