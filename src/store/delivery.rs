//! Delivery state in the store: the queue (tasks grouped by endpoint, ordered by due time), the
//! outcome of each try (attempt, destination state, task removed or moved to its retry time),
//! endpoint health, and the reads behind the attempts API. Progress writes do not wait for the
//! group commit: losing one in a crash means one extra delivery, which at-least-once allows.

use std::collections::HashSet;

use super::codec::{decode, encode};
use super::keys::{self, prefix_end};
use super::page::{scan, scan_entries, Page, PageQuery};
use super::{Store, StoreError};
use crate::domain::{
    AppId, Attempt, AttemptId, DeliveryStatus, Destination, EndpointHealth, EndpointId,
    EndpointRef, Message, MessageId, Task, Timestamp, Trigger,
};

/// A task as it sits in the queue.
#[derive(Debug, Clone)]
pub struct QueuedTask {
    pub key: Vec<u8>,
    pub due_ms: i64,
    pub task: Task,
}

/// Everything one finished try changes.
#[derive(Debug, Clone)]
pub struct TryRecord {
    pub task_key: Vec<u8>,
    pub attempt: Attempt,
    pub destination: Destination,
    /// Retry: move the task to this due time with this state. `None` removes it.
    pub retry: Option<(i64, Task)>,
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

    /// Record a finished try: attempt, destination, then the task removed or moved. Not awaited.
    pub fn finish_try(&self, rec: &TryRecord) -> Result<(), StoreError> {
        self.ensure_space(super::WriteKind::Progress)?;
        let _gate = self.write_gate();
        let i = &self.inner;
        let a = &rec.attempt;
        i.attempts
            .insert(keys::attempt(&a.app_id, &a.msg_id, &a.id), encode(a)?)?;
        i.attempts_by_ep.insert(
            keys::attempt_by_ep(&a.app_id, &a.endpoint_id, &a.id),
            encode(&a.msg_id)?,
        )?;
        i.destinations.insert(
            keys::destination(&a.app_id, &a.endpoint_id, &a.msg_id),
            encode(&rec.destination)?,
        )?;
        if let Some((due, task)) = &rec.retry {
            let key = keys::queue(&a.app_id, &a.endpoint_id, *due, self.next_seq()?);
            i.queue.insert(key, encode(task)?)?;
        }
        i.queue.remove(&rec.task_key)?;
        Ok(())
    }

    /// Give up a task without trying (its endpoint is disabled): mark the destination, drop the task.
    pub fn give_up(
        &self,
        key: &[u8],
        msg: &crate::domain::Message,
        ep: &crate::domain::Endpoint,
        dest: &Destination,
    ) -> Result<(), StoreError> {
        let _gate = self.write_gate();
        self.inner.destinations.insert(
            keys::destination(&ep.app_id, &ep.id, &msg.id),
            encode(dest)?,
        )?;
        self.inner.queue.remove(key)?;
        Ok(())
    }

    /// Drop a task whose message or endpoint is gone.
    pub fn drop_task(&self, key: &[u8]) -> Result<(), StoreError> {
        let _gate = self.write_gate();
        self.inner.queue.remove(key)?;
        Ok(())
    }

    /// Queue a manual try (resend, recover) of `msg` to `ep`, due now; durable on return.
    pub async fn enqueue_manual(
        &self,
        app: &AppId,
        ep: &EndpointId,
        msgs: &[MessageId],
    ) -> Result<(), StoreError> {
        let gate = self.write_gate();
        let now = Timestamp::now();
        let mut batch = sled::Batch::default();
        for m in msgs {
            let task = Task {
                msg_id: m.clone(),
                tries: 0,
                trigger: Trigger::Manual,
            };
            batch.insert(
                keys::queue(app, ep, now.millis(), self.next_seq()?),
                encode(&task)?,
            );
        }
        self.inner.queue.apply_batch(batch)?;
        {
            drop(gate);
            self.durable().await
        }
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
            each.push(
                self.destination(&msg.app_id, ep, &msg.id)?
                    .map_or(DeliveryStatus::Pending, |d| d.status),
            );
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
    ) -> Result<[u64; 4], StoreError> {
        let mut counts = [0u64; 4];
        for r in self.destinations_between(app, ep, since, until) {
            let (_, d) = r?;
            counts[d.status.code() as usize] += 1;
        }
        Ok(counts)
    }

    /// The messages created in `[since, until)` whose delivery to `ep` failed.
    pub fn failed_messages(
        &self,
        app: &AppId,
        ep: &EndpointId,
        since: Timestamp,
        until: Option<Timestamp>,
    ) -> Result<Vec<MessageId>, StoreError> {
        let mut out = Vec::new();
        for r in self.destinations_between(app, ep, Some(since), until) {
            let (msg, d) = r?;
            if d.status == DeliveryStatus::Fail {
                out.push(msg);
            }
        }
        Ok(out)
    }

    fn destinations_between(
        &self,
        app: &AppId,
        ep: &EndpointId,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
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
        let start = bound(since, false, prefix.clone());
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
        match self.inner.attempts.get(keys::attempt(app, msg, id))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    pub fn list_attempts_by_msg(
        &self,
        app: &AppId,
        msg: &MessageId,
        q: &PageQuery,
        keep: impl Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        scan(
            &self.inner.attempts,
            &keys::attempts_of_msg(app, msg),
            q,
            keep,
        )
    }

    /// Attempts to one endpoint, newest first by default. `keep` filters after the look-up.
    pub fn list_attempts_by_endpoint(
        &self,
        app: &AppId,
        ep: &EndpointId,
        q: &PageQuery,
        keep: impl Fn(&Attempt) -> bool,
    ) -> Result<Page<Attempt>, StoreError> {
        let lookup = |k: &[u8], msg: &MessageId| -> Result<Option<Attempt>, StoreError> {
            let id = keys::attempt_id_of(k)
                .ok_or_else(|| StoreError::Codec("malformed attempt key".into()))?;
            self.get_attempt(app, msg, &id)
        };
        let page = scan_entries(
            &self.inner.attempts_by_ep,
            &keys::endpoint(app, ep),
            q,
            |k, m: &MessageId| matches!(lookup(k, m), Ok(Some(a)) if keep(&a)),
        )?;
        let mut items = Vec::with_capacity(page.items.len());
        for (k, m) in page.items {
            if let Some(a) = lookup(&k, &m)? {
                items.push(a);
            }
        }
        Ok(Page {
            items,
            done: page.done,
        })
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
mod tests {
    use crate::domain::*;
    use crate::store::{Store, StoreOptions, TryRecord};

    #[tokio::test]
    async fn queue_counts_stop_at_the_cap_and_message_status_follows_tries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let app = AppId::generate();
        let (ep, other) = (EndpointId::generate(), EndpointId::generate());
        let mut msgs = Vec::new();
        for _ in 0..5 {
            let m = Message {
                id: MessageId::generate(),
                app_id: app.clone(),
                event_type: "a.b".into(),
                event_id: None,
                channels: None,
                tags: None,
                payload: b"{}".to_vec(),
                created_at: Timestamp::now(),
                destinations: vec![ep.clone(), other.clone()],
            };
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
                    attempt: Attempt {
                        id: AttemptId::generate(),
                        app_id: app.clone(),
                        msg_id: msgs[0].id.clone(),
                        endpoint_id: target.clone(),
                        url: "http://x".into(),
                        status,
                        response_status_code: 200,
                        response: String::new(),
                        duration_ms: 1,
                        trigger: Trigger::Scheduled,
                        created_at: Timestamp::now(),
                    },
                    destination: Destination {
                        status,
                        next_attempt: None,
                        updated_at: Timestamp::now(),
                    },
                    retry: None,
                })
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
