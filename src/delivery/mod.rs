//! Delivery: takes due tasks from the durable queue, signs and POSTs each message to its endpoint,
//! records every try and schedules retries. Isolation comes from per-endpoint concurrency caps and
//! a dispatcher that picks work endpoint by endpoint; memory holds only the running tasks and one
//! entry per endpoint with queued work. Only this module knows reqwest.

mod client;
mod dispatcher;
pub mod retry;
pub mod signer;
pub mod ssrf;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{AppId, EndpointId};
use crate::metrics::Metrics;
use crate::store::Store;

pub use client::{post_json, probe, ClientError};

/// Delivery settings (from `[delivery]` in the configuration).
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Delays before each retry.
    pub retry_schedule: Vec<Duration>,
    pub request_timeout: Duration,
    /// The least wait before retrying after a timeout.
    pub timeout_retry_floor: Duration,
    pub allowed_cidrs: Vec<ipnet::IpNet>,
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
            max_concurrency: 512,
            endpoint_concurrency: 64,
            fast_recovery: true,
            disable_after: Duration::from_secs(5 * 86400),
            svix_headers: false,
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
        let shared = dispatcher::Shared::new(store, opts, metrics)?;
        let d = Delivery { shared };
        tokio::spawn(dispatcher::run(d.shared.clone()));
        Ok(d)
    }

    /// Tasks of these endpoints are due now (a message was accepted, a resend was queued).
    pub fn enqueued(&self, app: &AppId, endpoints: &[EndpointId]) {
        self.shared.enqueued(app, endpoints);
    }

    /// Tries running now to one endpoint.
    pub fn running(&self, app: &AppId, ep: &EndpointId) -> usize {
        self.shared.running(app, ep)
    }

    /// Stop starting tries and wait up to `grace` for running ones to finish.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.shutdown(grace).await
    }
}
