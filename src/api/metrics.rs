//! `GET /metrics`: Prometheus text, behind the same bearer tokens as the API (configure
//! Prometheus with `authorization: {credentials: <token>}`). `GET /api/v1/admin/stats`: the same
//! figures as JSON for the admin UI's dashboard, with the last hour per minute. Store gauges are
//! read off the async threads; the queue count is O(queue), cached briefly. The disk figures
//! (free space, refused writes) are read fresh: they come from memory and a cached statvfs.

use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::error::ApiError;
use super::{reply, respond, with, State};
use crate::domain::Timestamp;
use crate::metrics::{Counts, StorageGauges, StoreGauges};
use warp::http::StatusCode;

/// Store gauges are reused for this long, so frequent scrapes do not walk a large queue each time.
const GAUGE_CACHE: Duration = Duration::from_secs(10);

static CACHE: Mutex<Option<(Instant, StoreGauges)>> = Mutex::new(None);

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    // The path first: other paths must not be answered 401 by this route.
    warp::path!("metrics")
        .and(warp::get())
        .and(super::authenticated(state.clone()))
        .and(with(&state))
        .then(|s: State| async move { respond(scrape(s).await) })
        .boxed()
}

pub fn stats_routes(state: State) -> BoxedFilter<(Response,)> {
    warp::path!("admin" / "stats")
        .and(warp::get())
        .and(with(&state))
        .then(|s: State| async move { respond(stats(s).await) })
        .boxed()
}

async fn scrape(s: State) -> Result<Response, ApiError> {
    let gauges = store_gauges(&s).await?;
    Ok(warp::reply::with_header(
        s.metrics.render(&gauges),
        "content-type",
        "text/plain; version=0.0.4",
    )
    .into_response())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsOut {
    uptime_seconds: u64,
    last_hour: CountsOut,
    per_minute: Vec<MinuteOut>,
    queue_depth: u64,
    oldest_due_age_seconds: f64,
    disabled_endpoints: u64,
    store_bytes: u64,
    store_bytes_by_part: BytesByPart,
    /// Per-application counts and the endpoints failing now (see `overview`).
    #[serde(flatten)]
    overview: super::overview::Overview,
}

#[derive(Debug, Serialize)]
struct BytesByPart {
    trees: u64,
    payloads: u64,
}

#[derive(Debug, Serialize)]
struct CountsOut {
    accepted: u64,
    /// Of `accepted`, test events (`send-example`).
    test: u64,
    delivered: u64,
    failed: u64,
}

impl From<Counts> for CountsOut {
    fn from(c: Counts) -> Self {
        CountsOut {
            accepted: c.accepted,
            test: c.test,
            delivered: c.delivered,
            failed: c.failed,
        }
    }
}

#[derive(Debug, Serialize)]
struct MinuteOut {
    start: String,
    #[serde(flatten)]
    counts: CountsOut,
}

async fn stats(s: State) -> Result<Response, ApiError> {
    let g = store_gauges(&s).await?;
    let store = s.store.clone();
    let overview = super::blocking(move || Ok(super::overview::read(&store)?)).await?;
    let recent = s.metrics.recent(Timestamp::now().millis());
    Ok(reply(
        StatusCode::OK,
        &StatsOut {
            uptime_seconds: s.metrics.uptime().as_secs(),
            last_hour: recent.total.into(),
            per_minute: recent
                .per_minute
                .into_iter()
                .map(|(at, c)| MinuteOut {
                    start: Timestamp(at).to_rfc3339(),
                    counts: c.into(),
                })
                .collect(),
            queue_depth: g.queue_depth,
            oldest_due_age_seconds: g.oldest_due_age_seconds,
            disabled_endpoints: g.disabled_endpoints,
            store_bytes: g.store_bytes,
            store_bytes_by_part: BytesByPart {
                trees: g.store_tree_bytes,
                payloads: g.store_payload_bytes,
            },
            overview,
        },
    ))
}

/// The store's gauges, at most [`GAUGE_CACHE`] old.
async fn store_gauges(s: &State) -> Result<StoreGauges, ApiError> {
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
                    storage: StorageGauges::default(),
                    ..StoreGauges::default()
                })
            })
            .await??;
            *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), g.clone()));
            g
        }
    };
    let disk = s.store.storage_status();
    // Sizes are a few stat calls: always fresh, unlike the queue's figures.
    let store = s.store.clone();
    let parts = tokio::task::spawn_blocking(move || store.disk_usage()).await??;
    Ok(StoreGauges {
        store_bytes: parts.trees + parts.payloads,
        store_tree_bytes: parts.trees,
        store_payload_bytes: parts.payloads,
        write_bytes: crate::metrics::process_write_bytes(),
        storage: StorageGauges {
            free_bytes: disk.free_bytes,
            min_free_bytes: disk.min_free_bytes,
            degraded: disk.degraded(),
            refused_writes: disk.refused_writes,
        },
        ..gauges
    })
}
