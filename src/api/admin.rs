//! `POST /api/v1/admin/backup`: a consistent copy of the store, written by the server itself to a
//! new directory under the configured backup directory (`store.backup_dir`) while it goes on
//! serving (writes pause only for moments). Start Herald on that directory, with the same main
//! key, to restore. Used by `herald backup`. The request names the backup, never a path: nothing
//! outside the backup directory can be written, and no answer tells what exists elsewhere.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::{blocking, body, json, reply, respond, with, State};
use crate::domain::ValidationError;

/// Longest backup name.
const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Deserialize)]
struct BackupIn {
    /// Earlier clients sent a path as `destination`: it gets the same check (and a clear 422).
    #[serde(alias = "destination")]
    name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BackupOut {
    /// The backup's directory, relative to the backup directory.
    name: String,
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

/// A backup name is one plain directory name: no separator, no `..`, not hidden.
fn check_name(name: &str) -> Result<(), ValidationError> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !plain || name.starts_with('.') {
        return Err(ValidationError::new(
            "name",
            format!(
                "must be 1 to {MAX_NAME_LEN} of the characters A-Z a-z 0-9 . _ - and not start \
                 with a dot: the name of a new directory in the backup directory"
            ),
        ));
    }
    Ok(())
}

async fn backup(s: State, body: Bytes) -> Result<Response, ApiError> {
    let input: BackupIn = json::parse(&body)?;
    check_name(&input.name)?;
    let name = input.name;
    let dest = s.backup_dir.join(&name);
    let store = s.store.clone();
    let started = std::time::Instant::now();
    let target = dest.clone();
    // The store refuses a second backup while one runs, and a name already taken (409).
    let report = blocking(move || Ok(store.backup_to(&target)?)).await?;
    let took_ms = started.elapsed().as_millis() as u64;
    let pause_ms = report.longest_write_pause.as_secs_f64() * 1000.0;
    tracing::info!(destination = %dest.display(), records = report.records, took_ms, longest_write_pause_ms = pause_ms, "backup written");
    Ok(reply(
        StatusCode::OK,
        &BackupOut {
            name,
            records: report.records,
            took_ms,
            longest_write_pause_ms: pause_ms,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn only_plain_names_are_accepted() {
        for ok in ["nightly", "herald-2026-11-27", "a.b_c-1", "x"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "../x",
            "a/../../b",
            "/root/.ssh",
            "a/b",
            "a\\b",
            "a b",
            "é",
            "a\0b",
            long.as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
