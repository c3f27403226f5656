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
mod tasks;
mod throttle;
mod usage;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{AppId, EndpointId, MessageId};
use crate::metrics::Metrics;
use crate::store::{BackgroundTask, Store, StoreError, TaskParams};

pub use breaker::State as BreakerState;
pub use client::{no_response_kind, post_json, probe, ClientError, ProxyOptions};
pub use dispatcher::EndpointLoad;

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
    /// Records a background task (recover, replay) reads per step; its progress is written
    /// after each.
    pub task_page_size: usize,
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
            task_page_size: 1000,
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
        let shared = dispatcher::start(store, opts, metrics)?;
        tasks::resume_all(&shared);
        Ok(Delivery { shared })
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

    /// Run `job` in the background until it ends or delivery shuts down (then it is dropped:
    /// such jobs must be safe to run again).
    pub fn spawn_job(&self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        self.shared.spawn_job(job);
    }

    /// Start a background task (see `tasks`): its record is on disk when this returns, and it
    /// runs page by page until done, failed, or shutdown (then it resumes at the next start).
    /// Other kinds of work add a variant to [`TaskParams`] and a step in `tasks`.
    pub async fn start_task(&self, params: TaskParams) -> Result<BackgroundTask, StoreError> {
        tasks::start(&self.shared, params).await
    }

    /// Stop starting tries and wait up to `grace` for running ones to finish.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.shutdown(grace).await
    }
}
