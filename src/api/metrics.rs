//! `GET /metrics`: Prometheus text, behind the same bearer tokens as the API (configure
//! Prometheus with `authorization: {credentials: <token>}`). Store gauges are read per scrape,
//! off the async threads; the queue count is O(queue), cached briefly.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::error::ApiError;
use super::{respond, with, State};
use crate::domain::Timestamp;
use crate::metrics::StoreGauges;

/// Store gauges are reused for this long, so frequent scrapes do not walk a large queue each time.
const GAUGE_CACHE: Duration = Duration::from_secs(10);

static CACHE: Mutex<Option<(Instant, StoreGauges)>> = Mutex::new(None);

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .and(with(&state))
        .then(|s: State| async move { respond(scrape(s).await) })
        .boxed()
}

async fn scrape(s: State) -> Result<Response, ApiError> {
    let cached = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|(at, _)| at.elapsed() < GAUGE_CACHE)
        .map(|(_, g)| g);
    let gauges = match cached {
        Some(g) => g,
        None => {
            let store = s.store.clone();
            let g = tokio::task::spawn_blocking(move || {
                let now = Timestamp::now().millis();
                let oldest = store.queue_heads()?.into_iter().map(|(_, due)| due).min();
                Ok::<_, crate::store::StoreError>(StoreGauges {
                    queue_depth: store.queue_len() as u64,
                    oldest_due_age_seconds: oldest
                        .map_or(0.0, |d| ((now - d).max(0)) as f64 / 1000.0),
                    disabled_endpoints: store.disabled_endpoints()?,
                    store_bytes: store.size_on_disk()?,
                })
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), g.clone()));
            g
        }
    };
    Ok(warp::reply::with_header(
        s.metrics.render(&gauges),
        "content-type",
        "text/plain; version=0.0.4",
    )
    .into_response())
}
