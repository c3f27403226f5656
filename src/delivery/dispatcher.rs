//! The dispatcher: knows, for each endpoint with queued work, when its next task is due, and runs
//! due tasks endpoint by endpoint within the global and per-endpoint caps. A task being tried stays
//! in the queue under its due key and is marked running in memory only: the process holds the
//! store's lock alone, so a crash (which clears the marks) leaves it due again, and a restart
//! tries it at once instead of waiting out a lease.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::client::{Client, ClientError};
use super::ssrf::Guard;
use super::{worker, DeliveryOptions};
use crate::domain::{AppId, EndpointId, Timestamp};
use crate::metrics::Metrics;
use crate::store::{QueuedTask, Store};

pub use crate::domain::EndpointRef as EpRef;

/// Tasks moved per lock hold during fast recovery.
const RECOVERY_CHUNK: usize = 256;

/// Longest sleep between looks at the queue (a safety net; wake-ups normally come by notify).
const MAX_IDLE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Schedule {
    /// Endpoints with queued work that may be started, by next due time.
    heads: BTreeSet<(i64, EpRef)>,
    due_of: HashMap<EpRef, i64>,
    running: HashMap<EpRef, usize>,
    running_keys: HashSet<Vec<u8>>,
    /// Endpoints with retries waiting, for fast recovery.
    recovering: HashSet<EpRef>,
    /// Endpoints whose stored failure clock is known to be clear.
    healthy: HashSet<EpRef>,
    stopping: bool,
}

impl Schedule {
    fn set_due(&mut self, ep: EpRef, due: i64) {
        match self.due_of.get(&ep) {
            Some(&d) if d <= due => {}
            Some(&d) => {
                self.heads.remove(&(d, ep.clone()));
                self.heads.insert((due, ep.clone()));
                self.due_of.insert(ep, due);
            }
            None => {
                self.heads.insert((due, ep.clone()));
                self.due_of.insert(ep, due);
            }
        }
    }

    fn take_head(&mut self, now: i64) -> Option<EpRef> {
        let (due, ep) = self.heads.first()?.clone();
        if due > now {
            return None;
        }
        self.heads.remove(&(due, ep.clone()));
        self.due_of.remove(&ep);
        Some(ep)
    }

    fn next_wake(&self) -> Option<i64> {
        self.heads.first().map(|(d, _)| *d)
    }
}

pub struct Shared {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub opts: DeliveryOptions,
    pub client: Client,
    schedule: Mutex<Schedule>,
    wake: Notify,
    permits: Arc<Semaphore>,
}

impl Shared {
    pub fn new(
        store: Store,
        opts: DeliveryOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Shared>, ClientError> {
        let client = Client::new(
            Guard::new(opts.allowed_cidrs.clone()),
            opts.request_timeout,
            opts.endpoint_concurrency,
        )?;
        Ok(Arc::new(Shared {
            permits: Arc::new(Semaphore::new(opts.max_concurrency)),
            store,
            metrics,
            opts,
            client,
            schedule: Mutex::new(Schedule::default()),
            wake: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn enqueued(&self, app: &AppId, endpoints: &[EndpointId]) {
        let now = Timestamp::now().millis();
        {
            let mut s = self.lock();
            for ep in endpoints {
                let r = (app.clone(), ep.clone());
                // A saturated endpoint is re-listed when one of its tries ends.
                if s.running.get(&r).copied().unwrap_or(0) < self.opts.endpoint_concurrency {
                    s.set_due(r, now);
                }
            }
        }
        self.wake.notify_one();
    }

    pub fn running(&self, app: &AppId, ep: &EndpointId) -> usize {
        self.lock()
            .running
            .get(&(app.clone(), ep.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// A try of `key` to `ep` ended; `retrying` when it was rescheduled. Re-lists the endpoint.
    pub fn finished(&self, ep: &EpRef, key: &[u8], retrying: bool) {
        let next = {
            let mut s = self.lock();
            s.running_keys.remove(key);
            if let Some(n) = s.running.get_mut(ep) {
                *n -= 1;
                if *n == 0 {
                    s.running.remove(ep);
                }
            }
            if retrying && self.opts.fast_recovery {
                s.recovering.insert(ep.clone());
            }
            self.store.next_due(&ep.0, &ep.1, &s.running_keys)
        };
        match next {
            Ok(Some(due)) => {
                self.lock().set_due(ep.clone(), due);
                self.wake.notify_one();
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "reading the queue failed"),
        }
    }

    /// Note a success; true when the endpoint was not known healthy (its clock needs clearing).
    pub fn mark_healthy(&self, ep: &EpRef) -> bool {
        self.lock().healthy.insert(ep.clone())
    }

    /// Note an exhausted message: the failure clock runs.
    pub fn mark_failing(&self, ep: &EpRef) {
        self.lock().healthy.remove(ep);
    }

    /// The endpoint answered 2xx: if it had retries waiting, bring them forward.
    pub fn succeeded(self: &Arc<Self>, ep: &EpRef) {
        if !self.opts.fast_recovery || !self.lock().recovering.remove(ep) {
            return;
        }
        let shared = self.clone();
        let ep = ep.clone();
        // In chunks, each under the schedule lock, so no task is moved while it is being started.
        tokio::task::spawn_blocking(move || {
            let now = Timestamp::now().millis();
            let mut total = 0;
            loop {
                let moved = {
                    let mut s = shared.lock();
                    let moved = shared.store.bring_forward(
                        &ep.0,
                        &ep.1,
                        now,
                        &s.running_keys,
                        RECOVERY_CHUNK,
                    );
                    if matches!(moved, Ok(n) if n > 0) {
                        s.set_due(ep.clone(), now);
                    }
                    moved
                };
                shared.wake.notify_one();
                match moved {
                    Ok(n) => {
                        total += n;
                        if n < RECOVERY_CHUNK {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "fast recovery failed");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::info!(endpoint = %ep.1, moved = total, "endpoint recovered: retries brought forward");
            }
        });
    }

    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.lock().stopping = true;
        self.wake.notify_one();
        let all = self.opts.max_concurrency as u32;
        matches!(
            tokio::time::timeout(grace, self.permits.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }
}

/// List every endpoint with queued work (tasks left running by an earlier run are simply due).
async fn load(shared: &Arc<Shared>) {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.queue_heads()).await {
        Ok(Ok(heads)) => {
            let mut s = shared.lock();
            for (ep, due) in heads {
                s.recovering.insert(ep.clone());
                s.set_due(ep, due);
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "reading the queue at start failed"),
        Err(e) => tracing::error!(error = %e, "reading the queue at start failed"),
    }
}

pub async fn run(shared: Arc<Shared>) {
    load(&shared).await;
    loop {
        let now = Timestamp::now().millis();
        let (head, wake_at, stopping) = {
            let mut s = shared.lock();
            (s.take_head(now), s.next_wake(), s.stopping)
        };
        if stopping {
            return;
        }
        let Some(ep) = head else {
            let wait = wake_at
                .map(|t| {
                    Duration::from_millis((t - now).clamp(1, MAX_IDLE.as_millis() as i64) as u64)
                })
                .unwrap_or(MAX_IDLE);
            tokio::select! {
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        };
        dispatch_endpoint(&shared, ep, now).await;
    }
}

/// Start as many due tasks of `ep` as its cap allows, then re-list it if it has more.
async fn dispatch_endpoint(shared: &Arc<Shared>, ep: EpRef, now: i64) {
    let cap = shared.opts.endpoint_concurrency;
    // Fetch and mark running under one lock hold, so nothing (fast recovery) moves them meanwhile.
    let tasks: Vec<QueuedTask> = {
        let mut s = shared.lock();
        let free = cap.saturating_sub(s.running.get(&ep).copied().unwrap_or(0));
        if free == 0 {
            return; // re-listed by `finished` when a try ends
        }
        match shared
            .store
            .due_tasks(&ep.0, &ep.1, now, free, &s.running_keys)
        {
            Ok(t) => {
                for task in &t {
                    s.running_keys.insert(task.key.clone());
                }
                if !t.is_empty() {
                    *s.running.entry(ep.clone()).or_default() += t.len();
                }
                t
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed");
                return;
            }
        }
    };
    for task in tasks {
        let Ok(permit) = shared.permits.clone().acquire_owned().await else {
            shared.finished(&ep, &task.key, false);
            continue;
        };
        let shared = shared.clone();
        let ep = ep.clone();
        tokio::spawn(async move {
            let retrying = worker::try_task(&shared, &ep, &task).await;
            shared.finished(&ep, &task.key, retrying);
            drop(permit);
        });
    }
    // More due now? Re-list unless saturated (then `finished` re-lists it).
    let next = {
        let s = shared.lock();
        if s.running.get(&ep).copied().unwrap_or(0) >= cap {
            return;
        }
        shared.store.next_due(&ep.0, &ep.1, &s.running_keys)
    };
    if let Ok(Some(due)) = next {
        shared.lock().set_due(ep, due);
    }
}
