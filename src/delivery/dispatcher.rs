//! The dispatcher: the one task that decides which queued tries start, and when.
//!
//! It knows, for each endpoint with queued work, when its next task is due, and starts due tasks
//! within three caps, none of which it ever waits on:
//! - the endpoint's circuit breaker (`breaker`): a few tries at once for an endpoint that has not
//!   proven itself, more as it answers, one probe at a time while it fails;
//! - the application's fair share of the global capacity: `(max_concurrency - max_concurrency/4)`
//!   divided among the applications with work running or waiting, so one tenant's hanging
//!   endpoints cannot take the slots another tenant needs, and a newly busy application always
//!   finds free slots;
//! - the global capacity (`max_concurrency` permits).
//!
//! An endpoint at its cap waits for one of its tries to end; one over its application's share is
//! parked until the application has a free slot. Tries report back by message (`Event`), so the
//! worker never calls into the schedule. A task being tried stays in the queue under its due key
//! and is marked running in memory only: the process holds the store's lock alone, so a crash
//! (which clears the marks) leaves it due again, and a restart tries it at once.
//!
//! A fourth limit is a rate, not a cap: an endpoint's or application's `throttleRate`
//! (`throttle`). A throttled endpoint is listed again at the time its limiter opens; its tasks
//! wait in the queue meanwhile.
//!
//! A FIFO endpoint (`ordering: "fifo"`) has a cap of one and starts only the first task of its
//! queue: its retries keep their place there (`Store::record_try`), and the endpoint is held in
//! memory until the retry time (`hold_until`), so nothing after a failing message passes it. A
//! restart forgets the hold: the head is tried again at once, still first.
//!
//! The schedule's lock is held for memory updates only, never across a store call. The store
//! reads made here are short range reads, bounded by the endpoint's cap.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::breaker::{self, Breaker, Signal};
use super::client::{Client, ClientError};
use super::ssrf::Guard;
use super::throttle::{self, Limiter};
use super::{worker, DeliveryOptions};
use crate::domain::{AppId, DeliveryOrder, EndpointId, MessageId, Timestamp};
use crate::metrics::Metrics;
use crate::store::{QueuedTask, Store};

pub use crate::domain::EndpointRef as EpRef;

/// Tasks moved per store call during fast recovery.
const RECOVERY_CHUNK: usize = 256;
/// Longest sleep between looks at the queue (a safety net; wake-ups normally come by event).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// An idle endpoint whose breaker is open is remembered this long after its last try, so the
/// next message meets one probe (and the health API shows it failing), then forgotten.
const OPEN_MEMORY_MS: i64 = 3_600_000;
/// How often idle endpoints are looked at for forgetting.
const SWEEP_EVERY_MS: i64 = 60_000;
/// After the store failed to record a try, the endpoint waits this long before its next start, so
/// a store that refuses writes (disk full) does not turn into a loop of repeated deliveries.
const BOOKKEEPING_BACKOFF_MS: i64 = 5_000;
/// How long an endpoint's and its application's throttle rates are used before being read again,
/// so a changed `throttleRate` applies within this.
const RATES_FRESH_MS: i64 = 1_000;

/// What the dispatcher hears about.
enum Event {
    /// Tasks of this endpoint are due now (a message was accepted, a resend queued).
    Enqueued(EpRef),
    /// A try ended.
    Finished {
        ep: EpRef,
        key: Vec<u8>,
        report: worker::Report,
    },
    /// Fast recovery finished moving this endpoint's retries.
    Moved(EpRef),
    /// Look at the schedule (shutdown began).
    Wake,
}

/// One endpoint with work queued or running.
struct EpState {
    running: HashMap<Vec<u8>, MessageId>,
    breaker: Breaker,
    /// Some try was rescheduled: a success should bring the retries forward (fast recovery).
    retries_waiting: bool,
    /// Fast recovery is moving its tasks: start nothing meanwhile.
    moving: bool,
    parked: bool,
    /// Start nothing before this time (after a bookkeeping failure).
    hold_until: i64,
    /// When its last try ended.
    last_try: i64,
    /// FIFO endpoint (`ordering: "fifo"`): one try at a time, its queue's head first.
    fifo: bool,
    /// FIFO: the head message that failed and waits for its retry, and since when.
    blocked_by: Option<(MessageId, i64)>,
}

#[derive(Default)]
struct AppState {
    running: usize,
    parked: Vec<EpRef>,
}

#[derive(Default)]
struct Schedule {
    /// Endpoints with queued work that may be started, by next due time.
    heads: BTreeSet<(i64, EpRef)>,
    due_of: HashMap<EpRef, i64>,
    endpoints: HashMap<EpRef, EpState>,
    /// Applications with tries running or endpoints parked: the ones sharing the capacity.
    apps: HashMap<AppId, AppState>,
    /// Throttle rates last read for each endpoint with work: when, the endpoint's, the app's,
    /// and whether the endpoint is FIFO.
    rates: HashMap<EpRef, (i64, Option<u16>, Option<u16>, bool)>,
    /// Limiters of throttled endpoints and applications, kept until they are full again.
    ep_limits: HashMap<EpRef, Limiter>,
    app_limits: HashMap<AppId, Limiter>,
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

    fn take_head(&mut self, now: i64) -> Option<(i64, EpRef)> {
        let (due, ep) = self.heads.first()?.clone();
        if due > now {
            return None;
        }
        self.heads.remove(&(due, ep.clone()));
        self.due_of.remove(&ep);
        Some((due, ep))
    }

    fn next_wake(&self) -> Option<i64> {
        self.heads.first().map(|(d, _)| *d)
    }

    fn endpoint(&mut self, ep: &EpRef, cap: usize) -> &mut EpState {
        self.endpoints.entry(ep.clone()).or_insert_with(|| EpState {
            running: HashMap::new(),
            breaker: Breaker::new(cap),
            retries_waiting: false,
            moving: false,
            parked: false,
            hold_until: 0,
            last_try: 0,
            fifo: false,
            blocked_by: None,
        })
    }

    /// The slots one application may hold now, out of `total`.
    fn app_share(&self, app: &AppId, total: usize) -> usize {
        let usable = total - total / 4;
        let active = self.apps.len() + usize::from(!self.apps.contains_key(app));
        (usable / active.max(1)).max(1)
    }

    /// Forget an endpoint with nothing running, listed or parked (bounded memory: one entry per
    /// endpoint with work, not per endpoint ever seen), unless its breaker is open and it was
    /// tried within `OPEN_MEMORY_MS`.
    fn prune(&mut self, ep: &EpRef, now: i64) {
        let idle = self.endpoints.get(ep).is_some_and(|e| {
            e.running.is_empty()
                && !e.moving
                && !e.parked
                && !self.due_of.contains_key(ep)
                && (e.breaker.state() == breaker::State::Closed
                    || now - e.last_try >= OPEN_MEMORY_MS)
        });
        if idle {
            self.endpoints.remove(ep);
        }
    }

    /// Forget every endpoint `prune` would, and limiters that are full again.
    fn sweep(&mut self, now: i64) {
        let all: Vec<EpRef> = self.endpoints.keys().cloned().collect();
        for ep in all {
            self.prune(&ep, now);
        }
        self.ep_limits.retain(|_, l| !l.idle(now));
        self.app_limits.retain(|_, l| !l.idle(now));
        self.rates.retain(|_, r| now - r.0 < SWEEP_EVERY_MS);
    }

    /// How many of `want` tries of `ep` its throttles let start now, and else when one may.
    fn throttle_allowance(
        &mut self,
        ep: &EpRef,
        rates: (Option<u16>, Option<u16>),
        now: i64,
        want: usize,
    ) -> (usize, i64) {
        let ep_l = rates
            .0
            .map(|r| limiter(&mut self.ep_limits, ep.clone(), r).clone());
        let app_l = rates
            .1
            .map(|r| limiter(&mut self.app_limits, ep.0.clone(), r).clone());
        let all: Vec<&Limiter> = ep_l.iter().chain(app_l.iter()).collect();
        throttle::allowance(&all, now, want)
    }

    /// Count `n` tries of `ep` started now against its throttles.
    fn throttle_take(&mut self, ep: &EpRef, rates: (Option<u16>, Option<u16>), now: i64, n: usize) {
        if let Some(r) = rates.0 {
            limiter(&mut self.ep_limits, ep.clone(), r).take(now, n);
        }
        if let Some(r) = rates.1 {
            limiter(&mut self.app_limits, ep.0.clone(), r).take(now, n);
        }
    }

    fn prune_app(&mut self, app: &AppId) {
        if self
            .apps
            .get(app)
            .is_some_and(|a| a.running == 0 && a.parked.is_empty())
        {
            self.apps.remove(app);
        }
    }
}

/// The limiter of `key` at `rate`: a new one when the rate changed.
fn limiter<K: std::hash::Hash + Eq>(
    all: &mut HashMap<K, Limiter>,
    key: K,
    rate: u16,
) -> &mut Limiter {
    let l = all.entry(key).or_insert_with(|| Limiter::new(rate));
    if l.rate() != rate.max(1) {
        *l = Limiter::new(rate);
    }
    l
}

/// The tries running to one endpoint and its breaker, for the API.
#[derive(Debug, Clone)]
pub struct EndpointLoad {
    pub running: usize,
    pub limit: usize,
    pub breaker: breaker::State,
    pub open_since: Option<Timestamp>,
    /// FIFO endpoint: the message at the head of its queue that is failing, and since when.
    pub blocked_by: Option<(MessageId, Timestamp)>,
}

pub struct Shared {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub opts: DeliveryOptions,
    pub client: Client,
    schedule: Mutex<Schedule>,
    events: mpsc::UnboundedSender<Event>,
    permits: Arc<Semaphore>,
    /// Background jobs (recover), ended at shutdown.
    jobs: Mutex<JoinSet<()>>,
}

impl Shared {
    fn new(
        store: Store,
        opts: DeliveryOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Shared>, mpsc::UnboundedReceiver<Event>), ClientError> {
        // Idle connections kept per host: as many as tries may run at once in all, since several
        // endpoints often share a host (one receiver, many endpoints); keeping fewer closes the
        // rest after each try and opens a new connection for the next (measured: a fifth of the
        // CPU of a fan-out to 10 endpoints on one host went to connect and close).
        let client = Client::new(
            Guard::new(opts.allowed_cidrs.clone()),
            opts.request_timeout,
            opts.max_concurrency,
            opts.proxy.as_ref(),
        )?;
        let (events, rx) = mpsc::unbounded_channel();
        Ok((
            Arc::new(Shared {
                permits: Arc::new(Semaphore::new(opts.max_concurrency)),
                store,
                metrics,
                opts,
                client,
                schedule: Mutex::new(Schedule::default()),
                events,
                jobs: Mutex::new(JoinSet::new()),
            }),
            rx,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn enqueued(&self, app: &AppId, endpoints: &[EndpointId]) {
        for ep in endpoints {
            // Only fails once the dispatcher has stopped: the task waits on disk for the next run.
            let _ = self.events.send(Event::Enqueued((app.clone(), ep.clone())));
        }
    }

    pub fn load_of(&self, app: &AppId, ep: &EndpointId) -> EndpointLoad {
        let s = self.lock();
        match s.endpoints.get(&(app.clone(), ep.clone())) {
            Some(e) => EndpointLoad {
                running: e.running.len(),
                limit: e.breaker.limit(),
                breaker: e.breaker.state(),
                open_since: e.breaker.opened_at().map(Timestamp),
                blocked_by: e.blocked_by.clone().map(|(m, t)| (m, Timestamp(t))),
            },
            None => EndpointLoad {
                running: 0,
                limit: Breaker::new(self.opts.endpoint_concurrency).limit(),
                breaker: breaker::State::Closed,
                open_since: None,
                blocked_by: None,
            },
        }
    }

    pub fn in_flight(&self, app: &AppId, ep: &EndpointId, msg: &MessageId) -> bool {
        self.lock()
            .endpoints
            .get(&(app.clone(), ep.clone()))
            .is_some_and(|e| e.running.values().any(|m| m == msg))
    }

    /// Run `job` in the background until it ends or delivery shuts down.
    pub fn spawn_job(&self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        while jobs.try_join_next().is_some() {}
        jobs.spawn(job);
    }

    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.lock().stopping = true;
        let _ = self.events.send(Event::Wake);
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
        let all = self.opts.max_concurrency as u32;
        matches!(
            tokio::time::timeout(grace, self.permits.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }
}

/// Start the dispatcher on the current runtime.
pub fn start(
    store: Store,
    opts: DeliveryOptions,
    metrics: Arc<Metrics>,
) -> Result<Arc<Shared>, ClientError> {
    let (shared, rx) = Shared::new(store, opts, metrics)?;
    tokio::spawn(run(shared.clone(), rx));
    Ok(shared)
}

/// List every endpoint with queued work (tasks left running by an earlier run are simply due).
async fn load(shared: &Arc<Shared>) {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.queue_heads()).await {
        Ok(Ok(heads)) => {
            let cap = shared.opts.endpoint_concurrency;
            let mut s = shared.lock();
            for (ep, due) in heads {
                s.endpoint(&ep, cap).retries_waiting = true;
                s.set_due(ep, due);
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "reading the queue at start failed"),
        Err(e) => tracing::error!(error = %e, "reading the queue at start failed"),
    }
}

async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Event>) {
    load(&shared).await;
    // Set when every global slot is taken: then only a finished try (an event) can help.
    let mut out_of_permits = false;
    let mut swept = Timestamp::now().millis();
    loop {
        while let Ok(ev) = rx.try_recv() {
            out_of_permits &= !matches!(ev, Event::Finished { .. });
            handle(&shared, ev);
        }
        if shared.lock().stopping {
            return;
        }
        let now = Timestamp::now().millis();
        if now - swept >= SWEEP_EVERY_MS {
            shared.lock().sweep(now);
            swept = now;
        }
        if !out_of_permits {
            // A bounded round, so events (finished tries) are heard between rounds.
            for _ in 0..64 {
                let head = shared.lock().take_head(now);
                let Some((due, ep)) = head else { break };
                if !dispatch(&shared, ep, due, now) {
                    out_of_permits = true;
                    break;
                }
            }
        }
        let wake_at = shared.lock().next_wake();
        let wait = match wake_at {
            _ if out_of_permits => MAX_IDLE,
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => Duration::from_millis((t - now).min(MAX_IDLE.as_millis() as i64) as u64),
            None => MAX_IDLE,
        };
        if wait.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    out_of_permits &= !matches!(ev, Event::Finished { .. });
                    handle(&shared, ev);
                }
                None => return,
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

fn handle(shared: &Arc<Shared>, ev: Event) {
    let now = Timestamp::now().millis();
    let cap = shared.opts.endpoint_concurrency;
    match ev {
        Event::Wake => {}
        Event::Enqueued(ep) => shared.lock().set_due(ep, now),
        Event::Moved(ep) => {
            let mut s = shared.lock();
            if let Some(e) = s.endpoints.get_mut(&ep) {
                e.moving = false;
                s.set_due(ep, now);
            }
        }
        Event::Finished { ep, key, report } => {
            let mut s = shared.lock();
            let e = s.endpoint(&ep, cap);
            let msg = e.running.remove(&key);
            e.last_try = now;
            if e.fifo {
                // The head keeps its place in the queue (see `Store::record_try`): hold the
                // endpoint until its retry time, so nothing after it goes first.
                match (report.retry_at, msg) {
                    (Some(at), Some(msg)) => {
                        e.hold_until = e.hold_until.max(at);
                        if e.blocked_by.as_ref().map(|b| &b.0) != Some(&msg) {
                            e.blocked_by = Some((msg, now));
                        }
                    }
                    _ if !report.bookkeeping_failed => e.blocked_by = None,
                    _ => {}
                }
            }
            let closed = e.breaker.record(report.signal, now);
            if closed {
                tracing::info!(endpoint = %ep.1, "endpoint answers again: circuit breaker closed");
            } else if report.signal == Signal::Unhealthy
                && e.breaker.state() == breaker::State::Open
                && e.breaker.opened_at() == Some(now)
            {
                tracing::warn!(endpoint = %ep.1, "endpoint failing: circuit breaker open, one probe at a time");
            }
            if report.retrying {
                e.retries_waiting = true;
            }
            if report.bookkeeping_failed {
                e.hold_until = now + BOOKKEEPING_BACKOFF_MS;
            }
            // A FIFO endpoint has no retries waiting elsewhere in its queue: nothing to bring
            // forward (and moving later tasks would change their order).
            let recover = shared.opts.fast_recovery
                && !e.fifo
                && report.signal == Signal::Success
                && std::mem::take(&mut e.retries_waiting);
            if recover {
                e.moving = true;
            }
            let app = ep.0.clone();
            if let Some(a) = s.apps.get_mut(&app) {
                a.running = a.running.saturating_sub(1);
            }
            // The application has a free slot again: its parked endpoints may go.
            let total = shared.opts.max_concurrency;
            let share = s.app_share(&app, total);
            let parked = match s.apps.get_mut(&app) {
                Some(a) if a.running < share => std::mem::take(&mut a.parked),
                _ => Vec::new(),
            };
            for p in parked {
                if let Some(pe) = s.endpoints.get_mut(&p) {
                    pe.parked = false;
                }
                s.set_due(p, now);
            }
            s.prune_app(&app);
            // Look at the endpoint again: it may have more due, or be idle now.
            s.set_due(ep.clone(), now);
            drop(s);
            if recover {
                bring_forward(shared, ep);
            }
        }
    }
}

/// Start what may start of `ep`'s due tasks. False when the global capacity is used up (the
/// endpoint is listed again and the caller waits for a try to end).
fn dispatch(shared: &Arc<Shared>, ep: EpRef, due: i64, now: i64) -> bool {
    let cap = shared.opts.endpoint_concurrency;
    let total = shared.opts.max_concurrency;
    let (rates, fifo) = throttle_rates(shared, &ep, now);
    let (n, skip) = {
        let mut s = shared.lock();
        let share = s.app_share(&ep.0, total);
        let app_running = s.apps.get(&ep.0).map_or(0, |a| a.running);
        let e = s.endpoint(&ep, cap);
        if e.fifo && !fifo {
            e.blocked_by = None;
        }
        e.fifo = fifo;
        if e.moving {
            return true; // listed again when the move ends
        }
        if e.hold_until > now {
            let until = e.hold_until;
            s.set_due(ep, until);
            return true;
        }
        // FIFO: one try in flight, and only the queue's head (the first key) may be it.
        let limit = if fifo { 1 } else { e.breaker.limit() };
        let ep_free = limit.saturating_sub(e.running.len());
        if ep_free == 0 {
            return true; // listed again when one of its tries ends
        }
        let app_free = share.saturating_sub(app_running);
        if app_free == 0 {
            if !std::mem::replace(&mut e.parked, true) {
                s.apps.entry(ep.0.clone()).or_default().parked.push(ep);
            }
            return true;
        }
        let global_free = shared.permits.available_permits();
        if global_free == 0 {
            s.set_due(ep, due);
            return false;
        }
        let skip: HashSet<Vec<u8>> = e.running.keys().cloned().collect();
        let n = ep_free.min(app_free).min(global_free);
        let n = if rates == (None, None) {
            n
        } else {
            match s.throttle_allowance(&ep, rates, now, n) {
                (0, next) => {
                    // Throttled: its tasks wait in the queue; look again when a try may start.
                    s.set_due(ep, next.max(now + 1));
                    return true;
                }
                (allowed, _) => allowed,
            }
        };
        (n, skip)
    };
    let tasks: Vec<QueuedTask> = match shared.store.due_tasks(&ep.0, &ep.1, now, n, &skip) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "reading the queue failed");
            let mut s = shared.lock();
            s.endpoint(&ep, cap).hold_until = now + BOOKKEEPING_BACKOFF_MS;
            s.set_due(ep, now + BOOKKEEPING_BACKOFF_MS);
            return true;
        }
    };
    let started = tasks.len();
    let (saturated, skip) = {
        let mut s = shared.lock();
        let e = s.endpoint(&ep, cap);
        for t in &tasks {
            e.running.insert(t.key.clone(), t.task.msg_id.clone());
        }
        let saturated = e.running.len() >= e.breaker.limit() || (e.fifo && !e.running.is_empty());
        let skip: HashSet<Vec<u8>> = if saturated || started == n {
            HashSet::new()
        } else {
            e.running.keys().cloned().collect()
        };
        if started > 0 {
            s.apps.entry(ep.0.clone()).or_default().running += started;
            if rates != (None, None) {
                s.throttle_take(&ep, rates, now, started);
            }
        }
        (saturated, skip)
    };
    for task in tasks {
        // Only the dispatcher takes permits, and it saw enough free: this cannot fail.
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            let _ = shared.events.send(Event::Finished {
                ep: ep.clone(),
                key: task.key,
                report: worker::Report::not_tried(),
            });
            continue;
        };
        let shared = shared.clone();
        let ep = ep.clone();
        tokio::spawn(async move {
            let report = worker::try_task(&shared, &ep, &task).await;
            drop(permit);
            let _ = shared.events.send(Event::Finished {
                ep,
                key: task.key,
                report,
            });
        });
    }
    if saturated {
        return true; // listed again when one of its tries ends
    }
    if started == n {
        // Maybe more due: look again in the next round.
        shared.lock().set_due(ep, now);
        return true;
    }
    // Everything due has started: list the endpoint at its next due time, or let it go.
    match shared.store.next_due(&ep.0, &ep.1, &skip) {
        Ok(Some(next)) => shared.lock().set_due(ep, next),
        Ok(None) => shared.lock().prune(&ep, now),
        Err(e) => {
            tracing::error!(error = %e, "reading the queue failed");
            shared.lock().set_due(ep, now + BOOKKEEPING_BACKOFF_MS);
        }
    }
    true
}

/// The throttle rates of `ep` and its application, read from the store at most once per
/// `RATES_FRESH_MS` (a failed read counts as none: delivery goes on unthrottled rather than not).
/// Also whether the endpoint is FIFO, read alongside.
fn throttle_rates(
    shared: &Arc<Shared>,
    ep: &EpRef,
    now: i64,
) -> ((Option<u16>, Option<u16>), bool) {
    if let Some(&(at, e, a, fifo)) = shared.lock().rates.get(ep) {
        if now - at < RATES_FRESH_MS {
            return ((e, a), fifo);
        }
    }
    let fifo = match shared.store.endpoint_ordering(&ep.0, &ep.1) {
        Ok(o) => o == DeliveryOrder::Fifo,
        Err(err) => {
            tracing::error!(error = %err, "reading the endpoint's ordering failed");
            false
        }
    };
    let (e, a) = match shared.store.throttle_rates(&ep.0, &ep.1) {
        Ok(r) => r,
        Err(err) => {
            tracing::error!(error = %err, "reading throttle rates failed");
            (None, None)
        }
    };
    shared.lock().rates.insert(ep.clone(), (now, e, a, fifo));
    ((e, a), fifo)
}

/// The endpoint answered 2xx after retries were scheduled: bring them forward, in chunks, off the
/// runtime. Nothing of the endpoint starts meanwhile (`moving`), so no task moves while it starts.
fn bring_forward(shared: &Arc<Shared>, ep: EpRef) {
    let skip: HashSet<Vec<u8>> = shared
        .lock()
        .endpoints
        .get(&ep)
        .map(|e| e.running.keys().cloned().collect())
        .unwrap_or_default();
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let now = Timestamp::now().millis();
        let mut total = 0;
        loop {
            match shared
                .store
                .bring_forward(&ep.0, &ep.1, now, &skip, RECOVERY_CHUNK)
            {
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
        let _ = shared.events.send(Event::Moved(ep));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(app: &AppId) -> EpRef {
        (app.clone(), EndpointId::generate())
    }

    #[test]
    fn applications_share_the_capacity_with_headroom_for_a_newcomer() {
        let mut s = Schedule::default();
        let (a, b) = (AppId::generate(), AppId::generate());
        assert_eq!(s.app_share(&a, 512), 384, "a quarter stays free for others");
        s.apps.entry(a.clone()).or_default().running = 300;
        assert_eq!(s.app_share(&b, 512), 192, "a newcomer counts itself");
        assert_eq!(s.app_share(&a, 512), 384);
        s.apps.entry(b.clone()).or_default().running = 1;
        assert_eq!(s.app_share(&a, 512), 192);
        assert_eq!(s.app_share(&a, 1), 1, "never zero");
    }

    #[test]
    fn idle_endpoints_and_apps_are_forgotten() {
        let mut s = Schedule::default();
        let app = AppId::generate();
        let e = ep(&app);
        s.endpoint(&e, 8)
            .running
            .insert(vec![1], MessageId::generate());
        s.prune(&e, 0);
        assert!(s.endpoints.contains_key(&e), "running: kept");
        s.endpoint(&e, 8).running.clear();
        s.set_due(e.clone(), 5);
        s.prune(&e, 0);
        assert!(s.endpoints.contains_key(&e), "listed: kept");
        s.take_head(10);
        s.prune(&e, 10);
        assert!(!s.endpoints.contains_key(&e));
        s.apps.entry(app.clone()).or_default();
        s.prune_app(&app);
        assert!(s.apps.is_empty());

        // An open breaker outlives its work for a while, then goes too.
        let failing = ep(&app);
        let st = s.endpoint(&failing, 8);
        for t in 0..3 {
            st.breaker.record(Signal::Unhealthy, t);
        }
        st.last_try = 1_000;
        s.prune(&failing, 2_000);
        assert!(s.endpoints.contains_key(&failing), "open: remembered");
        s.sweep(1_000 + OPEN_MEMORY_MS);
        assert!(s.endpoints.is_empty(), "forgotten after an hour idle");
    }
}
