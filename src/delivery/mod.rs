//! Delivery: takes due tasks from the durable queue, signs and POSTs each message to its endpoint,
//! records every try and schedules retries. Isolation comes from a circuit breaker per endpoint,
//! a fair share of the capacity per application, and a dispatcher that never waits on a slot
//! (see `dispatcher`); memory holds only the running tasks and one entry per endpoint with queued
//! work. Only this module knows reqwest: `remote` is its reading client for another server that
//! speaks the Svix API (for `herald migrate`).

mod breaker;
mod client;
mod dispatcher;
pub mod operational;
pub mod remote;
pub mod retry;
pub mod signer;
pub mod ssrf;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{AppId, EndpointId, MessageId, Timestamp};
use crate::metrics::Metrics;
use crate::store::Store;

pub use breaker::State as BreakerState;
pub use client::{no_response_kind, post_json, probe, ClientError, ProxyOptions};
pub use dispatcher::EndpointLoad;

/// Failed destinations read per page by recover.
const RECOVER_PAGE: usize = 1000;

/// Delivery settings (from `[delivery]` in the configuration).
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Delays before each retry.
    pub retry_schedule: Vec<Duration>,
    pub request_timeout: Duration,
    /// The least wait before retrying after a timeout.
    pub timeout_retry_floor: Duration,
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// Send deliveries through this proxy (never the environment's); the guard still checks
    /// each target.
    pub proxy: Option<ProxyOptions>,
    /// Most tries running at once, in all.
    pub max_concurrency: usize,
    /// Most tries running at once to one endpoint.
    pub endpoint_concurrency: usize,
    /// Bring an endpoint's waiting retries forward when it answers 2xx again.
    pub fast_recovery: bool,
    /// Disable an endpoint whose messages have been exhausting for this long with no success.
    pub disable_after: Duration,
    /// Also send `svix-id`, `svix-timestamp` and `svix-signature`.
    pub svix_headers: bool,
    /// Send `message.attempt.failing` after this many failed tries of a message (Svix: 4).
    pub failing_event_after: u32,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            retry_schedule: [5, 300, 1800, 7200, 18000, 36000, 36000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            request_timeout: Duration::from_secs(15),
            timeout_retry_floor: Duration::from_secs(60),
            allowed_cidrs: Vec::new(),
            proxy: None,
            max_concurrency: 512,
            endpoint_concurrency: 64,
            fast_recovery: true,
            disable_after: Duration::from_secs(5 * 86400),
            svix_headers: false,
            failing_event_after: 4,
        }
    }
}

/// The handle the API uses: tell delivery about new work, ask what is running.
#[derive(Clone)]
pub struct Delivery {
    shared: Arc<dispatcher::Shared>,
}

impl Delivery {
    /// Start the dispatcher on the current runtime. It runs until [`Delivery::shutdown`].
    pub fn start(
        store: Store,
        opts: DeliveryOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Delivery, ClientError> {
        Ok(Delivery {
            shared: dispatcher::start(store, opts, metrics)?,
        })
    }

    /// Tasks of these endpoints are due now (a message was accepted, a resend was queued).
    pub fn enqueued(&self, app: &AppId, endpoints: &[EndpointId]) {
        self.shared.enqueued(app, endpoints);
    }

    /// Tries running now to one endpoint, its current cap and its circuit breaker.
    pub fn load_of(&self, app: &AppId, ep: &EndpointId) -> EndpointLoad {
        self.shared.load_of(app, ep)
    }

    /// Whether a try of `msg` to `ep` is running now (its destination shows "sending").
    pub fn in_flight(&self, app: &AppId, ep: &EndpointId, msg: &MessageId) -> bool {
        self.shared.in_flight(app, ep, msg)
    }

    /// Queue a manual try of every message created in `[since, until)` whose delivery to `ep`
    /// failed and has no manual try queued or running yet. Runs in the background, page by page (memory stays bounded whatever the history),
    /// until done or until shutdown.
    pub fn recover(&self, app: AppId, ep: EndpointId, since: Timestamp, until: Option<Timestamp>) {
        let shared = self.shared.clone();
        self.shared.spawn_job(async move {
            let mut after: Option<MessageId> = None;
            let mut queued = 0;
            loop {
                let (store, a, e, from) = (shared.store.clone(), app.clone(), ep.clone(), after);
                let page = tokio::task::spawn_blocking(move || {
                    store.failed_messages(&a, &e, since, until, from.as_ref(), RECOVER_PAGE)
                })
                .await;
                let (ids, next) = match page {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "recover: reading failed messages failed");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "recover: reading failed messages failed");
                        return;
                    }
                };
                if !ids.is_empty() {
                    // Messages with a manual try still queued or running are skipped, so calling
                    // recover again before the tries end does not send them twice.
                    match shared
                        .store
                        .enqueue_manual_unless_queued(&app, &ep, &ids)
                        .await
                    {
                        Ok(n) => queued += n,
                        Err(e) => {
                            tracing::error!(error = %e, "recover: queueing failed");
                            return;
                        }
                    }
                    shared.enqueued(&app, std::slice::from_ref(&ep));
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            tracing::info!(endpoint = %ep, messages = queued, "recover queued");
        });
    }

    /// Stop starting tries and wait up to `grace` for running ones to finish.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.shutdown(grace).await
    }
}
