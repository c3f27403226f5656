//! `GET /api/v1/app/{app}/endpoint/{ep}/attempt-stats` (Svix's EndpointAttemptStats): how many
//! attempts to one endpoint succeeded, failed or were canceled in a window. Unlike `…/stats`
//! (one status per message), this counts every try. The window is rounded out to whole hours,
//! as Svix's is; it is read from the endpoint's attempt index on the blocking pool, and one
//! request reads at most [`MAX_SCAN`] index entries: a busier window is refused, not guessed.

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::apps::find_app;
use super::error::ApiError;
use super::messages::time_param;
use super::query::Query;
use super::{query, reply, respond, with, Seg, State};
use crate::domain::{DeliveryStatus, Timestamp, ValidationError};

const HOUR_MS: i64 = 3_600_000;
/// The window when `since` is absent: this long before `until`.
const DEFAULT_SPAN_MS: i64 = 28 * 24 * HOUR_MS;
/// The longest window (Svix keeps attempts for at most 90 days).
const MAX_SPAN_MS: i64 = 90 * 24 * HOUR_MS;
/// Index entries one request reads at most.
pub const MAX_SCAN: usize = 200_000;

/// Svix's EndpointAttemptStats.
#[derive(Debug, Serialize)]
struct AttemptStatsOut {
    success: u64,
    fail: u64,
    canceled: u64,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    warp::path!("app" / Seg / "endpoint" / Seg / "attempt-stats")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|app, ep, s, q| async move {
            respond(super::blocking(move || attempt_stats(s, app, ep, q)).await)
        })
        .boxed()
}

/// `[since, until)` from the query: `until` defaults to now and `since` to
/// [`DEFAULT_SPAN_MS`] before it; `since` is rounded down and `until` up to the hour.
fn window(q: &Query, now: Timestamp) -> Result<(Timestamp, Timestamp), ApiError> {
    let until = time_param(q, "until")?.unwrap_or(now);
    let since = time_param(q, "since")?.unwrap_or(until.plus_millis(-DEFAULT_SPAN_MS));
    let since = Timestamp(since.millis().div_euclid(HOUR_MS) * HOUR_MS);
    let until = Timestamp(
        until
            .millis()
            .saturating_add(HOUR_MS - 1)
            .div_euclid(HOUR_MS)
            * HOUR_MS,
    );
    if since >= until {
        return Err(ValidationError::new("query.since", "must be before until").into());
    }
    if until.millis() - since.millis() > MAX_SPAN_MS {
        return Err(
            ValidationError::new("query.since", "the window may span at most 90 days").into(),
        );
    }
    Ok((since, until))
}

fn attempt_stats(s: State, app: Seg, ep: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let ep = s
        .store
        .get_endpoint(&app.id, &ep.0)?
        .ok_or(ApiError::NotFound("endpoint not found"))?;
    let (since, until) = window(&q, Timestamp::now())?;
    let counts = s
        .store
        .attempt_counts(&app.id, &ep.id, since, until, MAX_SCAN)?
        .ok_or_else(|| {
            ValidationError::new(
                "query.since",
                format!("the window holds more than {MAX_SCAN} attempts: narrow since and until"),
            )
        })?;
    let n = |st: DeliveryStatus| counts[st.code() as usize];
    Ok(reply(
        StatusCode::OK,
        &AttemptStatsOut {
            success: n(DeliveryStatus::Success),
            fail: n(DeliveryStatus::Fail),
            canceled: n(DeliveryStatus::Canceled),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn the_window_is_whole_hours_with_defaults_and_a_bound() {
        let now = Timestamp::parse_rfc3339("2026-03-10T12:34:56Z").unwrap();
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        assert_eq!(
            window(&q(""), now).unwrap(),
            (t("2026-02-10T12:00:00Z"), t("2026-03-10T13:00:00Z"))
        );
        assert_eq!(
            window(
                &q("since=2026-03-01T05:59:59Z&until=2026-03-02T06:00:00Z"),
                now
            )
            .unwrap(),
            (t("2026-03-01T05:00:00Z"), t("2026-03-02T06:00:00Z"))
        );
        assert!(window(&q("since=2026-03-10T13:00:00Z"), now).is_err());
        assert!(window(&q("since=2025-01-01T00:00:00Z"), now).is_err());
        assert!(window(&q("until=yesterday"), now).is_err());
    }
}
