//! Delivery state in the store: the queue (tasks grouped by endpoint, ordered by due time), the
//! outcome of each try (attempt, destination state, task removed or moved to its retry time,
//! endpoint health) written as one transaction, and the reads behind the attempts API. Progress
//! writes do not wait for the group commit: losing one in a crash means the try runs again, which
//! at-least-once allows; being one transaction, a crash never leaves half a try recorded (two
//! retry chains, or an attempt without its reschedule).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::codec::{decode, decode_as, encode, encode_as};
use super::keys::{self, prefix_end};
use super::page::{scan_within, Budget, Page, PageQuery};
use super::payloads::PayloadRef;
use super::{Store, StoreError};
use crate::domain::{
    AppId, Attempt, AttemptId, DeliveryStatus, Destination, EndpointHealth, EndpointId,
    EndpointRef, HealthEvent, Message, MessageId, Task, Timestamp, Trigger,
};

/// Response bodies longer than this go to the payload log; shorter ones stay in the attempt's
/// record. sled writes a node over a quarter of its segment (16 records of 8 KiB or more) to a
/// blob file it never fsyncs, which a power cut can turn into a store that does not open: sled's
/// records stay small.
pub(super) const INLINE_RESPONSE: usize = 1024;
/// An attempt record with its response inline (the only format before the payload log).
const ATTEMPT_V1: u8 = 1;
/// An attempt record with the place of its response body in the payload log, if it is there.
const ATTEMPT_V2: u8 = 2;

/// An attempt as stored (format 2): its ids are in its key (`keys::attempt`), and its response
/// body is inline or, when `body_at` is set, in the payload log.
#[derive(Serialize, Deserialize)]
struct StoredAttempt {
    endpoint_id: EndpointId,
    url: String,
    status: DeliveryStatus,
    response_status_code: i16,
    response: String,
    duration_ms: i64,
    trigger: Trigger,
    created_at: Timestamp,
    body_at: Option<PayloadRef>,
}

/// The stored form of `a`, its body at `body_at` in the payload log if given.
fn encode_attempt(a: &Attempt, body_at: Option<PayloadRef>) -> Result<Vec<u8>, StoreError> {
    encode_as(
        ATTEMPT_V2,
        &StoredAttempt {
            endpoint_id: a.endpoint_id.clone(),
            url: a.url.clone(),
            status: a.status,
            response_status_code: a.response_status_code,
            response: if body_at.is_some() {
                String::new()
            } else {
                a.response.clone()
            },
            duration_ms: a.duration_ms,
            trigger: a.trigger,
            created_at: a.created_at,
            body_at,
        },
    )
}

/// The attempt stored at `key` (its response empty if in the payload log) and where its
/// response body is, if in the payload log.
pub(super) fn decode_attempt_record(
    key: &[u8],
    v: &[u8],
) -> Result<(Attempt, Option<PayloadRef>), StoreError> {
    if v.first() == Some(&ATTEMPT_V1) {
        return Ok((decode_as(ATTEMPT_V1, v)?, None));
    }
    let s: StoredAttempt = decode_as(ATTEMPT_V2, v)?;
    let (app_id, msg_id, id) =
        keys::attempt_ids(key).ok_or_else(|| StoreError::Codec("malformed attempt key".into()))?;
    Ok((
        Attempt {
            id,
            app_id,
            msg_id,
            endpoint_id: s.endpoint_id,
            url: s.url,
            status: s.status,
            response_status_code: s.response_status_code,
            response: s.response,
            duration_ms: s.duration_ms,
            trigger: s.trigger,
            created_at: s.created_at,
        },
        s.body_at,
    ))
}

/// An attempt's record with `response` inline in place of a body that is lost (`herald check`).
pub(super) fn encode_attempt_inline(a: &Attempt) -> Result<Vec<u8>, StoreError> {
    encode_attempt(a, None)
}

/// A task as it sits in the queue.
#[derive(Debug, Clone)]
pub struct QueuedTask {
    pub key: Vec<u8>,
    pub due_ms: i64,
    pub task: Task,
}

/// Everything one finished try changes. The destination's new state is derived inside the write
/// (see [`Destination::after_try`]) from the one stored, so a concurrent manual try cannot be lost.
#[derive(Debug, Clone)]
pub struct TryRecord {
    pub task_key: Vec<u8>,
    pub attempt: Attempt,
    /// Retry: move the task to this due time with this state. `None` removes it.
    pub retry: Option<(i64, Task)>,
    /// The message was fanned out to this endpoint at acceptance.
    pub fanned_out_here: bool,
    pub health: HealthEvent,
    /// The endpoint is FIFO (`ordering: "fifo"`): a retry keeps the task's place in the queue,
    /// and the record is durable before `finish_try` returns (see there).
    pub ordered: bool,
}

/// Within a transaction: remove the manual-try marker at `mark` if it belongs to the task at
/// `task_key` (a later resend of the same message holds its own).
pub(super) fn unmark_manual(
    marks: &sled::transaction::TransactionalTree,
    mark: &[u8],
    task_key: &[u8],
) -> Result<(), sled::transaction::UnabortableTransactionError> {
    if marks.get(mark)?.is_some_and(|k| k.as_ref() == task_key) {
        marks.remove(mark)?;
    }
    Ok(())
}

/// Which messages a manual enqueue leaves out (a queued manual try counts only while its task is
/// still in the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// None (resend).
    Never,
    /// Those with a manual try queued (bulk replay).
    Queued,
    /// Those queued, or whose delivery here has not failed (recover).
    QueuedOrNotFailed,
    /// Those queued, or with any try here ended (replay-missing).
    QueuedOrRecorded,
}

impl Store {
    /// Each endpoint that has queued tasks, with its earliest due time: one seek per endpoint.
    pub fn queue_heads(&self) -> Result<Vec<(EndpointRef, i64)>, StoreError> {
        let q = &self.inner.queue;
        let mut out = Vec::new();
        let mut next = q.first()?;
        while let Some((k, _)) = next {
            let (Some(ep), Some((due, _))) = (keys::endpoint_of(&k), keys::queue_due(&k)) else {
                return Err(StoreError::Codec("malformed queue key".into()));
            };
            out.push((ep, due));
            next = match prefix_end(&k[..keys::ENDPOINT_KEY_LEN]) {
                Some(end) => q.range(end..).next().transpose()?,
                None => None,
            };
        }
        Ok(out)
    }

    /// Every queued task (O(n): for metrics scrapes, not hot paths).
    pub fn queue_len(&self) -> usize {
        self.inner.queue.len()
    }

    /// Up to `limit` tasks of one endpoint due by `now_ms`, earliest first, except those in `skip`
    /// (already running).
    pub fn due_tasks(
        &self,
        app: &AppId,
        ep: &EndpointId,
        now_ms: i64,
        limit: usize,
        skip: &HashSet<Vec<u8>>,
    ) -> Result<Vec<QueuedTask>, StoreError> {
        let start = keys::queue_of(app, ep);
        let end = keys::queue(app, ep, now_ms.saturating_add(1), 0);
        let mut out = Vec::new();
        for r in self.inner.queue.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = r?;
            if skip.contains(k.as_ref()) {
                continue;
            }
            let due_ms = keys::queue_due(&k).map(|d| d.0).unwrap_or(0);
            out.push(QueuedTask {
                key: k.to_vec(),
                due_ms,
                task: decode(&v)?,
            });
        }
        Ok(out)
    }

    /// The due time of an endpoint's earliest task not in `skip`, if any.
    pub fn next_due(
        &self,
        app: &AppId,
        ep: &EndpointId,
        skip: &HashSet<Vec<u8>>,
    ) -> Result<Option<i64>, StoreError> {
        for r in self.inner.queue.scan_prefix(keys::queue_of(app, ep)) {
            let (k, _) = r?;
            if !skip.contains(k.as_ref()) {
                return Ok(keys::queue_due(&k).map(|d| d.0));
            }
        }
        Ok(None)
    }

    /// Record a finished try in one transaction: the attempt (and its index entry), the
    /// destination's state, the task removed or moved to its retry time, and the endpoint's health
    /// clock. Returns the clock as it stands after. Not awaited (see the module note), except for
    /// a FIFO endpoint: there the next try starts only once this returns, and were this record
    /// lost in a crash after that try had begun, the restart would send this message again
    /// after a later one (seen under load: sled writes a sealed batch to the file from a
    /// background thread, so even a SIGKILL can lose the last transaction). One flush per try
    /// is cheap next to a FIFO endpoint's one-at-a-time round trips, and shared with everyone
    /// else's through the group commit.
    pub async fn finish_try(&self, rec: &TryRecord) -> Result<EndpointHealth, StoreError> {
        self.ensure_space(super::WriteKind::Progress)?;
        let a = &rec.attempt;
        // A long response body goes to the payload log first, durable before the record that
        // points at it (as a message's payload).
        let body_at = if a.response.len() > INLINE_RESPONSE {
            let key = keys::attempt_body(&a.app_id, &a.id);
            let at =
                match self
                    .inner
                    .payloads
                    .append(&key, a.created_at.millis(), a.response.as_bytes())
                {
                    Ok(at) => at,
                    Err(e) if e.is_no_space() => return Err(self.inner.space.met_full_disk(&e)),
                    Err(e) => return Err(e),
                };
            self.payloads_durable().await?;
            Some(at)
        } else {
            None
        };
        let health = self.record_try(rec, body_at)?;
        if rec.ordered {
            self.durable().await?;
        }
        Ok(health)
    }

    /// The sync part of `finish_try`: the one transaction.
    fn record_try(
        &self,
        rec: &TryRecord,
        body_at: Option<PayloadRef>,
    ) -> Result<EndpointHealth, StoreError> {
        let _gate = self.write_gate();
        let i = &self.inner;
        let a = &rec.attempt;
        let attempt_key = keys::attempt(&a.app_id, &a.msg_id, &a.id);
        let attempt_value = encode_attempt(a, body_at)?;
        let by_ep_key = keys::attempt_by_ep(&a.app_id, &a.endpoint_id, &a.id);
        let by_ep_value = encode(&a.msg_id)?;
        let dest_key = keys::destination(&a.app_id, &a.endpoint_id, &a.msg_id);
        let health_key = keys::endpoint(&a.app_id, &a.endpoint_id);
        // A FIFO endpoint's retry keeps its place in the queue (its key, which orders by
        // acceptance): moving it to its retry time would let later messages pass it. The
        // dispatcher holds the endpoint until the retry time instead.
        let in_place = rec.retry.is_some() && rec.ordered;
        let retry = match &rec.retry {
            Some((due, task)) if in_place => {
                Some((rec.task_key.clone(), encode(task)?, Timestamp(*due)))
            }
            Some((due, task)) => Some((
                keys::queue(&a.app_id, &a.endpoint_id, *due, self.next_seq()?),
                encode(task)?,
                Timestamp(*due),
            )),
            None => None,
        };
        let success = a.status == DeliveryStatus::Success;
        let trees = (
            &i.attempts,
            &i.attempts_by_ep,
            &i.destinations,
            &i.queue,
            &i.endpoint_health,
            &i.manual_queued,
        );
        let health = trees.transaction(|(attempts, by_ep, dests, queue, health, marks)| {
            attempts.insert(attempt_key.as_slice(), attempt_value.as_slice())?;
            by_ep.insert(by_ep_key.as_slice(), by_ep_value.as_slice())?;
            let previous: Option<Destination> = match dests.get(dest_key.as_slice())? {
                Some(v) => Some(decode(&v).or_else(super::abort)?),
                None => None,
            };
            // A task no longer queued was called off while it ran (its message expunged): the
            // try is recorded, nothing is rescheduled, and a failure leaves it canceled.
            let called_off = queue.get(rec.task_key.as_slice())?.is_none();
            let retry = retry.as_ref().filter(|_| !called_off);
            let dest = match &previous {
                Some(p) if called_off && !success && super::expunge::is_canceled(Some(p)) => {
                    p.clone()
                }
                _ => Destination::after_try(
                    success,
                    retry.map(|r| r.2),
                    a.trigger,
                    previous.as_ref(),
                    rec.fanned_out_here,
                    a.created_at,
                ),
            };
            dests.insert(dest_key.as_slice(), encode(&dest).or_else(super::abort)?)?;
            if let Some((key, value, _)) = retry {
                queue.insert(key.as_slice(), value.as_slice())?;
            }
            #[cfg(test)]
            if tests::CRASH_MID_TRY.with(|c| c.get()) {
                return super::abort(StoreError::Durability("injected crash".into()));
            }
            if !(in_place && retry.is_some()) {
                queue.remove(rec.task_key.as_slice())?;
            }
            if a.trigger == Trigger::Manual {
                unmark_manual(marks, &dest_key, &rec.task_key)?;
            }
            let clock: EndpointHealth = match health.get(health_key.as_slice())? {
                Some(v) => decode(&v).or_else(super::abort)?,
                None => EndpointHealth::default(),
            };
            Ok(match clock.after(rec.health, a.created_at) {
                Some(next) => {
                    health.insert(health_key.as_slice(), encode(&next).or_else(super::abort)?)?;
                    next
                }
                None => clock,
            })
        })?;
        Ok(health)
    }

    /// Give up a task without trying (its endpoint is disabled): mark the destination failed and
    /// drop the task, in one transaction.
    pub fn give_up(
        &self,
        key: &[u8],
        app: &AppId,
        ep: &EndpointId,
        msg: &MessageId,
    ) -> Result<(), StoreError> {
        let _gate = self.write_gate();
        let dest_key = keys::destination(app, ep, msg);
        let dest = encode(&Destination::given_up(Timestamp::now()))?;
        (&self.inner.destinations, &self.inner.queue).transaction(|(dests, queue)| {
            dests.insert(dest_key.as_slice(), dest.as_slice())?;
            queue.remove(key)?;
            Ok(())
        })?;
        Ok(())
    }

    /// Drop a task whose message or endpoint is gone (with its manual-try marker).
    pub fn drop_task(&self, key: &[u8]) -> Result<(), StoreError> {
        let _gate = self.write_gate();
        (&self.inner.queue, &self.inner.manual_queued).transaction(|(queue, marks)| {
            let Some(v) = queue.remove(key)? else {
                return Ok(());
            };
            if let (Ok(task), Some((app, ep))) = (decode::<Task>(&v), keys::endpoint_of(key)) {
                if task.trigger == Trigger::Manual {
                    unmark_manual(marks, &keys::destination(&app, &ep, &task.msg_id), key)?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Queue a manual try (resend) of each of `msgs` to `ep`, due now; durable on return.
    pub async fn enqueue_manual(
        &self,
        app: &AppId,
        ep: &EndpointId,
        msgs: &[MessageId],
    ) -> Result<(), StoreError> {
        self.queue_manual(app, ep, msgs, Skip::Never)?;
        self.durable().await
    }

    /// Queue a manual try (recover) of each of `msgs` to `ep` whose delivery there has failed and
    /// that has no manual try queued or running yet, due now; durable on return. Returns how many
    /// were queued. The checks and the write are one transaction, so recovers running side by
    /// side queue each message once, and a try that ended since the caller read the failed
    /// messages (its marker gone, its destination no longer failed) is not queued again.
    pub async fn enqueue_manual_unless_queued(
        &self,
        app: &AppId,
        ep: &EndpointId,
        msgs: &[MessageId],
    ) -> Result<usize, StoreError> {
        let queued = self.queue_manual(app, ep, msgs, Skip::QueuedOrNotFailed)?;
        self.durable().await?;
        Ok(queued)
    }

    /// Queue a manual try (replay-missing) of each of `msgs` to `ep` that has never been sent
    /// there: no try of it to `ep` has ended and none is queued. The caller leaves out messages
    /// fanned out to `ep` at acceptance. Durable on return; returns how many were queued.
    pub async fn enqueue_missing(
        &self,
        app: &AppId,
        ep: &EndpointId,
        msgs: &[MessageId],
    ) -> Result<usize, StoreError> {
        let queued = self.queue_manual(app, ep, msgs, Skip::QueuedOrRecorded)?;
        self.durable().await?;
        Ok(queued)
    }

    /// Queue a manual try (bulk replay) of each of `msgs` to `ep` that has none queued yet, so a
    /// task resumed after a crash does not queue a page twice. Durable on return; returns how
    /// many were queued.
    pub async fn enqueue_replay(
        &self,
        app: &AppId,
        ep: &EndpointId,
        msgs: &[MessageId],
    ) -> Result<usize, StoreError> {
        let queued = self.queue_manual(app, ep, msgs, Skip::Queued)?;
        self.durable().await?;
        Ok(queued)
    }

    /// The sync part of the two above: each task is written with its marker in `manual_queued`
    /// (value: the task's queue key), which the end of the task removes. A marker whose task is
    /// no longer in the queue counts as absent, so a marker left behind cannot hide a message.
    fn queue_manual(
        &self,
        app: &AppId,
        ep: &EndpointId,
        msgs: &[MessageId],
        skip: Skip,
    ) -> Result<usize, StoreError> {
        let _gate = self.write_gate();
        let now = Timestamp::now();
        let mut tasks = Vec::with_capacity(msgs.len());
        for m in msgs {
            let task = Task {
                msg_id: m.clone(),
                tries: 0,
                trigger: Trigger::Manual,
            };
            tasks.push((
                keys::destination(app, ep, m),
                keys::queue(app, ep, now.millis(), self.next_seq()?),
                encode(&task)?,
            ));
        }
        let trees = (
            &self.inner.queue,
            &self.inner.manual_queued,
            &self.inner.destinations,
        );
        let queued = trees.transaction(|(queue, marks, dests)| {
            let mut queued = 0;
            for (mark, key, task) in &tasks {
                if skip != Skip::Never {
                    if let Some(earlier) = marks.get(mark.as_slice())? {
                        if queue.get(&earlier)?.is_some() {
                            continue;
                        }
                    }
                }
                // Destinations are keyed as the markers are.
                let skipped = match skip {
                    Skip::Never | Skip::Queued => false,
                    Skip::QueuedOrRecorded => dests.get(mark.as_slice())?.is_some(),
                    Skip::QueuedOrNotFailed => match dests.get(mark.as_slice())? {
                        Some(v) => {
                            let d: Destination = decode(&v).or_else(super::abort)?;
                            d.status != DeliveryStatus::Fail
                        }
                        None => true,
                    },
                };
                if skipped {
                    continue;
                }
                queue.insert(key.as_slice(), task.as_slice())?;
                marks.insert(mark.as_slice(), key.as_slice())?;
                queued += 1;
            }
            Ok(queued)
        })?;
        Ok(queued)
    }

    /// Move up to `limit` of an endpoint's tasks waiting past `now_ms` to `now_ms` (fast
    /// recovery), except those in `skip` (running). Returns how many moved.
    pub fn bring_forward(
        &self,
        app: &AppId,
        ep: &EndpointId,
        now_ms: i64,
        skip: &HashSet<Vec<u8>>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let _gate = self.write_gate();
        let q = &self.inner.queue;
        let start = keys::queue(app, ep, now_ms.saturating_add(1), 0);
        let end = prefix_end(&keys::queue_of(app, ep)).unwrap_or_default();
        let mut batch = sled::Batch::default();
        let mut moved = 0;
        for r in q.range(start..end) {
            let (k, v) = r?;
            if skip.contains(k.as_ref()) {
                continue;
            }
            batch.insert(keys::queue(app, ep, now_ms, self.next_seq()?), v);
            batch.remove(k);
            moved += 1;
            if moved >= limit {
                break;
            }
        }
        q.apply_batch(batch)?;
        Ok(moved)
    }

    /// The `throttleRate` of an endpoint and of its application (none when gone).
    pub fn throttle_rates(
        &self,
        app: &AppId,
        ep: &EndpointId,
    ) -> Result<(Option<u16>, Option<u16>), StoreError> {
        let ep_rate = self
            .get_endpoint(app, ep.as_str())?
            .and_then(|e| e.throttle_rate);
        let app_rate = self.get_app(app.as_str())?.and_then(|a| a.throttle_rate);
        // 0 is no rate at all, as an absent one.
        Ok((ep_rate.filter(|r| *r > 0), app_rate.filter(|r| *r > 0)))
    }

    pub fn destination(
        &self,
        app: &AppId,
        ep: &EndpointId,
        msg: &MessageId,
    ) -> Result<Option<Destination>, StoreError> {
        match self
            .inner
            .destinations
            .get(keys::destination(app, ep, msg))?
        {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// A message's overall status (see [`DeliveryStatus::overall`]): a destination without a record
    /// has had no try end yet.
    pub fn message_status(&self, msg: &Message) -> Result<Option<DeliveryStatus>, StoreError> {
        let mut each = Vec::with_capacity(msg.destinations.len());
        for ep in &msg.destinations {
            let record = self.destination(&msg.app_id, ep, &msg.id)?;
            each.push(Destination::shown(record.as_ref(), false));
        }
        Ok(DeliveryStatus::overall(each))
    }

    /// Tasks queued for an endpoint (running ones included), counting no further than `cap`: cheap
    /// enough to poll while a large backlog waits.
    pub fn queued_count_capped(&self, app: &AppId, ep: &EndpointId, cap: usize) -> usize {
        self.inner
            .queue
            .scan_prefix(keys::queue_of(app, ep))
            .keys()
            .take(cap)
            .count()
    }

    /// Tasks queued for an endpoint (running ones included), for messages created in
    /// `[since, until)`.
    pub fn queued_count(
        &self,
        app: &AppId,
        ep: &EndpointId,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<u64, StoreError> {
        let lo = since.map(|t| crate::domain::ids::ksuid_bound(t.millis(), false));
        let hi = until.map(|t| crate::domain::ids::ksuid_bound(t.millis(), false));
        let mut n = 0;
        for r in self.inner.queue.scan_prefix(keys::queue_of(app, ep)) {
            let task: Task = decode(&r?.1)?;
            let k = task.msg_id.ksuid();
            if lo.as_deref().is_none_or(|lo| k >= lo) && hi.as_deref().is_none_or(|hi| k < hi) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Count an endpoint's destinations by status, for messages created in `[since, until)`.
    pub fn destination_counts(
        &self,
        app: &AppId,
        ep: &EndpointId,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<[u64; 5], StoreError> {
        let mut counts = [0u64; 5];
        for r in self.destinations_between(app, ep, since, until, None) {
            let (_, d) = r?;
            counts[d.status.code() as usize] += 1;
        }
        Ok(counts)
    }

    /// A page of the messages created in `[since, until)` whose delivery to `ep` failed, after
    /// `after` (a message id from the previous page's cursor). Reads at most `scan` destination
    /// records, so one call is bounded whatever the history; the cursor is `None` at the end.
    pub fn failed_messages(
        &self,
        app: &AppId,
        ep: &EndpointId,
        since: Timestamp,
        until: Option<Timestamp>,
        after: Option<&MessageId>,
        scan: usize,
    ) -> Result<(Vec<MessageId>, Option<MessageId>), StoreError> {
        let mut out = Vec::new();
        let mut last = None;
        for (seen, r) in self
            .destinations_between(app, ep, Some(since), until, after)
            .enumerate()
        {
            let (msg, d) = r?;
            if seen == scan {
                return Ok((out, last));
            }
            if d.status == DeliveryStatus::Fail {
                out.push(msg.clone());
            }
            last = Some(msg);
        }
        Ok((out, None))
    }

    fn destinations_between(
        &self,
        app: &AppId,
        ep: &EndpointId,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        after: Option<&MessageId>,
    ) -> impl Iterator<Item = Result<(MessageId, Destination), StoreError>> {
        let prefix = keys::endpoint(app, ep);
        let bound = |t: Option<Timestamp>, upper: bool, default: Vec<u8>| match t {
            Some(t) => [
                prefix.as_slice(),
                crate::domain::ids::ksuid_bound(t.millis(), upper).as_bytes(),
            ]
            .concat(),
            None => default,
        };
        let mut start = bound(since, false, prefix.clone());
        if let Some(a) = after {
            // Just past `after`'s key: the smallest key greater than it.
            let mut past = keys::destination(app, ep, a);
            past.push(0);
            start = start.max(past);
        }
        let end = bound(until, false, prefix_end(&prefix).unwrap_or_default());
        self.inner.destinations.range(start..end).map(|r| {
            let (k, v) = r?;
            let msg = keys::destination_msg(&k)
                .ok_or_else(|| StoreError::Codec("malformed destination key".into()))?;
            Ok((msg, decode(&v)?))
        })
    }

    pub fn get_attempt(
        &self,
        app: &AppId,
        msg: &MessageId,
        id: &AttemptId,
    ) -> Result<Option<Attempt>, StoreError> {
        let key = keys::attempt(app, msg, id);
        match self.inner.attempts.get(&key)? {
            Some(v) => self.open_attempt(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// A stored attempt with its response body, read back from the payload log if it is there. A
    /// body that cannot be read is shown as such rather than failing the whole list.
    fn open_attempt(&self, key: &[u8], v: &[u8]) -> Result<Attempt, StoreError> {
        let (mut a, at) = decode_attempt_record(key, v)?;
        if let Some(at) = at {
            let key = keys::attempt_body(&a.app_id, &a.id);
            a.response = match self.inner.payloads.read(&at, &key) {
                Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                Err(e) => format!("[response body unavailable: {e}]"),
            };
        }
        Ok(a)
    }

    pub fn list_attempts_by_msg(
        &self,
        app: &AppId,
        msg: &MessageId,
        q: &PageQuery,
        keep: impl Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        scan_within(
            &self.inner.attempts,
            &keys::attempts_of_msg(app, msg),
            q,
            &Budget::default(),
            |k, v| self.open_attempt(k, v).map(Some),
            keep,
            |_| 0,
        )
    }

    /// Attempts to one endpoint, newest first by default, read through the endpoint's index;
    /// `keep` filters after the look-up.
    pub fn list_attempts_by_endpoint(
        &self,
        app: &AppId,
        ep: &EndpointId,
        q: &PageQuery,
        keep: impl Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        scan_within(
            &self.inner.attempts_by_ep,
            &keys::endpoint(app, ep),
            q,
            &Budget::default(),
            |k, v| {
                let msg: MessageId = decode(v)?;
                let id = keys::attempt_id_of(k)
                    .ok_or_else(|| StoreError::Codec("malformed attempt key".into()))?;
                // An index entry whose attempt was purged meanwhile is skipped.
                self.get_attempt(app, &msg, &id)
            },
            keep,
            |_| 0,
        )
    }

    /// The attempts made to `ep` in `[since, until)`, counted by status (indexed by
    /// [`DeliveryStatus::code`]), read through the endpoint's attempt index. Reads at most `scan`
    /// index entries, so one call is bounded whatever the history: `None` when the window holds
    /// more. Response bodies are never read.
    pub fn attempt_counts(
        &self,
        app: &AppId,
        ep: &EndpointId,
        since: Timestamp,
        until: Timestamp,
        scan: usize,
    ) -> Result<Option<[u64; 5]>, StoreError> {
        let prefix = keys::endpoint(app, ep);
        // Attempt ids carry their time: the window is a seek, widened by the ids' clock slack,
        // and each attempt's own time judges the edges exactly.
        let bound = |t: Timestamp, slack: i64| {
            let k = crate::domain::ids::ksuid_bound(t.millis().saturating_add(slack), false);
            [prefix.as_slice(), k.as_bytes()].concat()
        };
        let slack = super::messages::ID_CLOCK_SLACK_MS;
        let mut counts = [0u64; 5];
        for (seen, r) in self
            .inner
            .attempts_by_ep
            .range(bound(since, -slack)..bound(until, slack))
            .enumerate()
        {
            if seen == scan {
                return Ok(None);
            }
            let (k, v) = r?;
            let msg: MessageId = decode(&v)?;
            let id = keys::attempt_id_of(&k)
                .ok_or_else(|| StoreError::Codec("malformed attempt key".into()))?;
            let key = keys::attempt(app, &msg, &id);
            // An index entry whose attempt was purged meanwhile is skipped.
            let Some(rec) = self.inner.attempts.get(&key)? else {
                continue;
            };
            let (a, _) = decode_attempt_record(&key, &rec)?;
            if a.created_at >= since && a.created_at < until {
                counts[a.status.code() as usize] += 1;
            }
        }
        Ok(Some(counts))
    }

    pub fn endpoint_health(
        &self,
        app: &AppId,
        ep: &EndpointId,
    ) -> Result<EndpointHealth, StoreError> {
        match self.inner.endpoint_health.get(keys::endpoint(app, ep))? {
            Some(v) => decode(&v),
            None => Ok(EndpointHealth::default()),
        }
    }

    pub fn set_endpoint_health(
        &self,
        app: &AppId,
        ep: &EndpointId,
        health: &EndpointHealth,
    ) -> Result<(), StoreError> {
        let _gate = self.write_gate();
        self.inner
            .endpoint_health
            .insert(keys::endpoint(app, ep), encode(health)?)?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;

    use crate::domain::*;
    use crate::store::{keys, Store, StoreOptions, TryRecord};

    thread_local! {
        /// Makes the next `finish_try` on this thread stop between its writes, as a crash would.
        pub(crate) static CRASH_MID_TRY: Cell<bool> = const { Cell::new(false) };
    }

    fn attempt(app: &AppId, msg: &MessageId, ep: &EndpointId, status: DeliveryStatus) -> Attempt {
        Attempt {
            id: AttemptId::generate(),
            app_id: app.clone(),
            msg_id: msg.clone(),
            endpoint_id: ep.clone(),
            url: "http://x".into(),
            status,
            response_status_code: if status == DeliveryStatus::Success {
                200
            } else {
                500
            },
            response: String::new(),
            duration_ms: 1,
            trigger: Trigger::Scheduled,
            created_at: Timestamp::now(),
        }
    }

    fn message(app: &AppId, eps: &[EndpointId]) -> Message {
        Message {
            id: MessageId::generate(),
            app_id: app.clone(),
            event_type: "a.b".into(),
            event_id: None,
            channels: None,
            tags: None,
            payload: b"{}".to_vec(),
            created_at: Timestamp::now(),
            destinations: eps.to_vec(),
            deliver_at: None,
            payload_expires_at: None,
            expunged: false,
        }
    }

    /// A message to `ep`, accepted and tried once: the try ended with `status`, no retry. Returns
    /// it and the health clock `finish_try` answered.
    async fn tried(
        store: &Store,
        app: &AppId,
        ep: &EndpointId,
        status: DeliveryStatus,
        health: HealthEvent,
    ) -> (MessageId, EndpointHealth) {
        let m = message(app, std::slice::from_ref(ep));
        store.create_message(&m, None).await.unwrap();
        let qt = store
            .due_tasks(app, ep, i64::MAX, 1, &Default::default())
            .unwrap()
            .pop()
            .unwrap();
        let clock = store
            .finish_try(&TryRecord {
                task_key: qt.key,
                attempt: attempt(app, &m.id, ep, status),
                retry: None,
                fanned_out_here: true,
                health,
                ordered: false,
            })
            .await
            .unwrap();
        (m.id, clock)
    }

    /// A long response body lives in the payload log, so sled's record stays small; it reads
    /// back whole, a damaged one shows as unavailable (the attempt stays), and `herald check`
    /// finds it and, repairing, marks it lost.
    #[tokio::test]
    async fn long_response_bodies_go_to_the_payload_log() {
        let dir = tempfile::tempdir().unwrap();
        let (app, ep) = (AppId::generate(), EndpointId::generate());
        let body = "<html>".to_string() + &"bad gateway ".repeat(400) + "</html>";
        let (msg, attempt_id) = {
            let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
            let m = message(&app, std::slice::from_ref(&ep));
            store.create_message(&m, None).await.unwrap();
            let qt = store
                .due_tasks(&app, &ep, i64::MAX, 1, &Default::default())
                .unwrap()
                .pop()
                .unwrap();
            let mut a = attempt(&app, &m.id, &ep, DeliveryStatus::Fail);
            a.response = body.clone();
            let id = a.id.clone();
            store
                .finish_try(&TryRecord {
                    task_key: qt.key,
                    attempt: a,
                    retry: None,
                    fanned_out_here: true,
                    health: HealthEvent::Other,
                    ordered: false,
                })
                .await
                .unwrap();
            let raw = store
                .inner
                .attempts
                .get(keys::attempt(&app, &m.id, &id))
                .unwrap()
                .unwrap();
            assert!(raw.len() < 300, "the record holds {} bytes", raw.len());
            let got = store.get_attempt(&app, &m.id, &id).unwrap().unwrap();
            assert_eq!(got.response, body);
            store.close().unwrap();
            (m.id, id)
        };
        assert!(crate::store::check(dir.path(), false).unwrap().is_clean());

        // Damage the body in its file.
        let files = crate::store::payloads::list_dir(
            &dir.path().join(crate::store::FORMAT_DIR).join("payloads"),
        )
        .unwrap();
        let path = &files[0].2;
        let bytes = std::fs::read(path).unwrap();
        let at = bytes.windows(11).position(|w| w == b"bad gateway").unwrap();
        std::os::unix::fs::FileExt::write_all_at(
            &std::fs::OpenOptions::new().write(true).open(path).unwrap(),
            b"B",
            at as u64,
        )
        .unwrap();
        let found = crate::store::check(dir.path(), false).unwrap();
        assert!(
            found.render().contains("response body"),
            "{}",
            found.render()
        );
        {
            let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
            let got = store.get_attempt(&app, &msg, &attempt_id).unwrap().unwrap();
            assert!(
                got.response.starts_with("[response body unavailable"),
                "{}",
                got.response
            );
            store.close().unwrap();
        }
        crate::store::check(dir.path(), true).unwrap();
        let after = crate::store::check(dir.path(), false).unwrap();
        assert!(after.is_clean(), "{}", after.render());
    }

    /// A crash between the writes of a try (here: after the retry is written, before the old task
    /// is removed) leaves the try unrecorded, never two retry chains; the try then runs again.
    #[tokio::test]
    async fn a_crash_mid_try_leaves_one_retry_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let (app, ep) = (AppId::generate(), EndpointId::generate());
        let m = message(&app, std::slice::from_ref(&ep));
        store.create_message(&m, None).await.unwrap();
        let all = |s: &Store| {
            s.due_tasks(&app, &ep, i64::MAX, 100, &Default::default())
                .unwrap()
        };
        let qt = all(&store).pop().unwrap();
        let rec = TryRecord {
            task_key: qt.key.clone(),
            attempt: attempt(&app, &m.id, &ep, DeliveryStatus::Fail),
            retry: Some((
                Timestamp::now().millis() + 60_000,
                Task {
                    msg_id: m.id.clone(),
                    tries: 1,
                    trigger: Trigger::Scheduled,
                },
            )),
            fanned_out_here: true,
            health: HealthEvent::Other,
            ordered: false,
        };
        CRASH_MID_TRY.with(|c| c.set(true));
        assert!(store.finish_try(&rec).await.is_err());
        CRASH_MID_TRY.with(|c| c.set(false));
        let left = all(&store);
        assert_eq!(left.len(), 1, "one chain: the original task, untouched");
        assert_eq!(left[0].key, qt.key);
        assert_eq!(left[0].task.tries, 0);
        assert!(store.destination(&app, &ep, &m.id).unwrap().is_none());
        let q = crate::store::PageQuery {
            limit: 10,
            cursor: None,
            descending: true,
            max_scan: crate::store::SCAN_RECORDS,
        };
        assert!(store
            .list_attempts_by_msg(&app, &m.id, &q, |_| true)
            .unwrap()
            .items
            .is_empty());

        // The try runs again and is recorded whole: one task, at its retry time.
        store.finish_try(&rec).await.unwrap();
        let left = all(&store);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].task.tries, 1);
        assert_ne!(left[0].key, qt.key);
        let d = store.destination(&app, &ep, &m.id).unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(
            store
                .list_attempts_by_msg(&app, &m.id, &q, |_| true)
                .unwrap()
                .items
                .len(),
            1
        );
    }

    /// A FIFO endpoint's try is on disk when `finish_try` returns (a commit round ran after its
    /// transaction), and its retry keeps the task's key; an unordered endpoint's does neither.
    /// Without that, a crash could lose the record of a delivered message after the next one
    /// had gone out, and the restart would send the earlier one again after the later one.
    #[tokio::test]
    async fn a_fifo_try_is_durable_on_return_and_its_retry_keeps_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let app = AppId::generate();
        for ordered in [false, true] {
            let ep = EndpointId::generate();
            let mut ids = Vec::new();
            for _ in 0..2 {
                let m = message(&app, std::slice::from_ref(&ep));
                store.create_message(&m, None).await.unwrap();
                ids.push(m.id);
            }
            let all = |s: &Store| {
                s.due_tasks(&app, &ep, i64::MAX, 100, &Default::default())
                    .unwrap()
            };
            // A failed try of the first: its retry.
            let head = all(&store).remove(0);
            let retry_at = Timestamp::now().millis() + 60_000;
            let before = store.commit_rounds();
            store
                .finish_try(&TryRecord {
                    task_key: head.key.clone(),
                    attempt: attempt(&app, &ids[0], &ep, DeliveryStatus::Fail),
                    retry: Some((
                        retry_at,
                        Task {
                            msg_id: ids[0].clone(),
                            tries: 1,
                            trigger: Trigger::Scheduled,
                        },
                    )),
                    fanned_out_here: true,
                    health: HealthEvent::Other,
                    ordered,
                })
                .await
                .unwrap();
            let flushed = store.commit_rounds() > before;
            let left = all(&store);
            let first = &left[0];
            if ordered {
                assert!(flushed, "FIFO: the try is on disk on return");
                assert_eq!(first.key, head.key, "FIFO: the retry keeps its place");
                assert_eq!(
                    (first.task.msg_id.clone(), first.task.tries),
                    (ids[0].clone(), 1)
                );
            } else {
                assert!(
                    !flushed,
                    "unordered: progress does not wait for the group commit"
                );
                assert_eq!(
                    first.task.msg_id, ids[1],
                    "unordered: the retry moves to its time"
                );
                assert_eq!(left[1].due_ms, retry_at);
            }
        }
    }

    /// A recover queues a failed message's manual try once while it is queued or running; the
    /// try's end (still failed) or the task's drop lets the next recover queue it again. A
    /// resend always queues.
    #[tokio::test]
    async fn recover_queues_a_message_once_until_its_manual_try_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let (app, ep) = (AppId::generate(), EndpointId::generate());
        let mut ids = Vec::new();
        for i in 0..4 {
            let status = match i {
                3 => DeliveryStatus::Success,
                _ => DeliveryStatus::Fail,
            };
            ids.push(tried(&store, &app, &ep, status, HealthEvent::Other).await.0);
        }
        let manual = |s: &Store| {
            s.due_tasks(&app, &ep, i64::MAX, 100, &Default::default())
                .unwrap()
        };
        let recover = |ids: Vec<MessageId>| {
            let (s, app, ep) = (store.clone(), app.clone(), ep.clone());
            async move {
                s.enqueue_manual_unless_queued(&app, &ep, &ids)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            recover(ids.clone()).await,
            3,
            "the failed ones, not the delivered one"
        );
        assert_eq!(recover(ids.clone()).await, 0);
        assert_eq!(manual(&store).len(), 3);

        let tasks = manual(&store);
        let mut done = attempt(&app, &tasks[0].task.msg_id, &ep, DeliveryStatus::Fail);
        done.trigger = Trigger::Manual;
        store
            .finish_try(&TryRecord {
                task_key: tasks[0].key.clone(),
                attempt: done,
                retry: None,
                fanned_out_here: true,
                health: HealthEvent::Other,
                ordered: false,
            })
            .await
            .unwrap();
        store.drop_task(&tasks[1].key).unwrap();
        assert_eq!(
            store.inner.manual_queued.len(),
            1,
            "markers go with their tasks"
        );
        assert_eq!(
            recover(ids.clone()).await,
            2,
            "ended tries may be queued again"
        );
        assert_eq!(manual(&store).len(), 3);

        store.enqueue_manual(&app, &ep, &ids[..1]).await.unwrap();
        assert_eq!(manual(&store).len(), 4, "a resend is not skipped");
    }

    /// Recover reads failed destinations page by page: each call reads at most `scan` records and
    /// the pages together find every failed message once.
    #[tokio::test]
    async fn failed_messages_come_in_bounded_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let (app, ep) = (AppId::generate(), EndpointId::generate());
        let since = Timestamp::now().plus_seconds(-60);
        let mut failed = Vec::new();
        for i in 0..7 {
            if i % 2 == 0 {
                failed.push(
                    tried(&store, &app, &ep, DeliveryStatus::Fail, HealthEvent::Other)
                        .await
                        .0,
                );
            } else {
                tried(
                    &store,
                    &app,
                    &ep,
                    DeliveryStatus::Success,
                    HealthEvent::Other,
                )
                .await;
            }
        }
        let (mut found, mut after, mut calls) = (Vec::new(), None, 0);
        loop {
            let (ids, next) = store
                .failed_messages(&app, &ep, since, None, after.as_ref(), 2)
                .unwrap();
            assert!(ids.len() <= 2);
            found.extend(ids);
            calls += 1;
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(found, failed);
        assert_eq!(calls, 4, "7 records, 2 per call");
    }

    #[tokio::test]
    async fn the_health_clock_moves_with_the_try() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let (app, ep) = (AppId::generate(), EndpointId::generate());
        for (status, event) in [
            (DeliveryStatus::Fail, HealthEvent::Exhausted),
            (DeliveryStatus::Success, HealthEvent::Success),
        ] {
            let (_, h) = tried(&store, &app, &ep, status, event).await;
            assert_eq!(h, store.endpoint_health(&app, &ep).unwrap());
            assert_eq!(h.failing_since.is_some(), event == HealthEvent::Exhausted);
        }
    }

    #[tokio::test]
    async fn queue_counts_stop_at_the_cap_and_message_status_follows_tries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let app = AppId::generate();
        let (ep, other) = (EndpointId::generate(), EndpointId::generate());
        let mut msgs = Vec::new();
        for _ in 0..5 {
            let m = message(&app, &[ep.clone(), other.clone()]);
            store.create_message(&m, None).await.unwrap();
            msgs.push(m);
        }
        assert_eq!(store.queued_count_capped(&app, &ep, 3), 3);
        assert_eq!(store.queued_count_capped(&app, &ep, 100), 5);
        assert_eq!(
            store.message_status(&msgs[0]).unwrap(),
            Some(DeliveryStatus::Pending)
        );

        // One endpoint succeeds, the other fails for good: the message is failed.
        for (target, status) in [
            (&ep, DeliveryStatus::Success),
            (&other, DeliveryStatus::Fail),
        ] {
            let due = store
                .due_tasks(&app, target, i64::MAX, 10, &Default::default())
                .unwrap();
            let qt = due.iter().find(|t| t.task.msg_id == msgs[0].id).unwrap();
            store
                .finish_try(&TryRecord {
                    task_key: qt.key.clone(),
                    attempt: attempt(&app, &msgs[0].id, target, status),
                    retry: None,
                    fanned_out_here: true,
                    health: HealthEvent::Other,
                    ordered: false,
                })
                .await
                .unwrap();
            let expected = if status == DeliveryStatus::Success {
                DeliveryStatus::Pending
            } else {
                DeliveryStatus::Fail
            };
            assert_eq!(store.message_status(&msgs[0]).unwrap(), Some(expected));
        }
        assert_eq!(store.queued_count_capped(&app, &ep, 100), 4);
    }
}
