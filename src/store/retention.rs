//! Retention: messages older than the retention period are removed with everything recorded about
//! them (eventId index, destinations, attempts and their endpoint index). Message ids are
//! time-ordered, so each application's old messages are one key range. Background tasks that
//! ended long enough ago go too (their own, shorter, retention); running ones never do.

use super::codec::decode;
use super::delivery::decode_attempt_record;
use super::keys::{self, prefix_end};
use super::messages::decode_message;
use super::{BackgroundTask, Store, StoreError, TaskStatus};
use crate::domain::ids::{ksuid_bound, KSUID_LEN};
use crate::domain::{AppId, EndpointId, Timestamp};

impl Store {
    /// Remove every message created before `cutoff`, with its records, then the payload files
    /// of the hours wholly before it (records first, so no record outlives its payload). Returns
    /// how many messages went.
    pub fn purge_messages_before(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let removed = {
            let _gate = self.write_gate();
            let mut removed = 0;
            for app in self.distinct_prefixes(&self.inner.messages, b"")? {
                let Ok(app) = AppId::from_ksuid(&app) else {
                    continue;
                };
                removed += self.purge_app_messages(&app, cutoff)?;
            }
            removed
        };
        // The removals must be on disk before the bytes they pointed at go.
        self.sync_trees()?;
        let (files, bytes) = self.inner.payloads.drop_before(cutoff.millis())?;
        if files > 0 {
            tracing::info!(files, bytes, "retention removed payload files");
        }
        Ok(removed)
    }

    /// Remove the records of background tasks that ended (finished or failed) before `cutoff`;
    /// running ones stay, however old. Returns how many went.
    pub fn purge_tasks_ended_before(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let _gate = self.write_gate();
        let tasks = &self.inner.tasks;
        // Keys are task ids, by creation time; a task ends after it is created, so those that
        // ended before the cutoff are all in the range created before it.
        let end = ksuid_bound(cutoff.millis(), false);
        let mut removed = 0;
        for r in tasks.range(..end.as_bytes()) {
            let (k, v) = r?;
            let t: BackgroundTask = decode(&v)?;
            if t.status != TaskStatus::Running && t.updated_at < cutoff {
                tasks.remove(k)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn purge_app_messages(&self, app: &AppId, cutoff: Timestamp) -> Result<usize, StoreError> {
        let i = &self.inner;
        let prefix = keys::messages_of(app);
        let end = [
            prefix.as_slice(),
            ksuid_bound(cutoff.millis(), false).as_bytes(),
        ]
        .concat();
        // Destinations are keyed by endpoint first: find the endpoints this app ever delivered to.
        let endpoints: Vec<EndpointId> = self
            .distinct_prefixes(&i.destinations, &prefix)?
            .into_iter()
            .filter_map(|e| EndpointId::from_ksuid(&e).ok())
            .collect();
        // Destination keys end in the message id, which sorts by time: each endpoint's old ones
        // are one key range, so absent (message, endpoint) pairs cost no look-up.
        let bound = ksuid_bound(cutoff.millis(), false);
        for ep in &endpoints {
            let from = keys::destinations_of(app, ep);
            let to = [from.as_slice(), bound.as_bytes()].concat();
            for r in i.destinations.range(from..to) {
                let (k, _) = r?;
                i.destinations.remove(k)?;
            }
        }
        let mut removed = 0;
        for r in i.messages.range(prefix.clone()..end) {
            let (k, v) = r?;
            let (msg, _) = decode_message(&k, &v)?;
            for a in i.attempts.scan_prefix(keys::attempts_of_msg(app, &msg.id)) {
                let (ak, av) = a?;
                let (attempt, _) = decode_attempt_record(&ak, &av)?;
                i.attempts_by_ep.remove(keys::attempt_by_ep(
                    app,
                    &attempt.endpoint_id,
                    &attempt.id,
                ))?;
                i.attempts.remove(ak)?;
            }
            if let Some(e) = &msg.event_id {
                i.msg_event_id.remove(keys::msg_event_id(app, e))?;
            }
            i.messages.remove(k)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The distinct KSUIDs that follow `prefix` in `tree`'s keys (one seek each).
    fn distinct_prefixes(
        &self,
        tree: &sled::Tree,
        prefix: &[u8],
    ) -> Result<Vec<String>, StoreError> {
        let width = prefix.len() + KSUID_LEN;
        let mut out = Vec::new();
        let mut next = tree.scan_prefix(prefix).next().transpose()?;
        while let Some((k, _)) = next {
            let Some(part) = k.get(prefix.len()..width) else {
                break;
            };
            out.push(String::from_utf8_lossy(part).into_owned());
            next = match prefix_end(&k[..width]) {
                Some(after) => tree
                    .range(after..)
                    .next()
                    .transpose()?
                    .filter(|(k, _)| k.starts_with(prefix)),
                None => None,
            };
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::*;
    use crate::store::{Store, StoreOptions, TryRecord};

    #[tokio::test]
    async fn old_messages_go_with_their_records_and_new_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let app = AppId::generate();
        let ep = EndpointId::generate();
        let now = Timestamp::now();
        let old_time = now.plus_seconds(-100 * 86400);
        let mk = |id: MessageId, at: Timestamp, event: &str| Message {
            id,
            app_id: app.clone(),
            event_type: "a.b".into(),
            event_id: Some(event.into()),
            channels: None,
            tags: None,
            payload: b"{}".to_vec(),
            created_at: at,
            destinations: vec![ep.clone()],
            deliver_at: None,
            payload_expires_at: None,
            expunged: false,
        };
        let old = mk(MessageId::generate_at(old_time.millis()), old_time, "old");
        let new = mk(MessageId::generate(), now, "new");
        for m in [&old, &new] {
            store.create_message(m, None).await.unwrap();
            let task = store
                .due_tasks(&app, &ep, i64::MAX, 10, &Default::default())
                .unwrap();
            let qt = task.iter().find(|t| t.task.msg_id == m.id).unwrap();
            store
                .finish_try(&TryRecord {
                    task_key: qt.key.clone(),
                    attempt: Attempt {
                        id: AttemptId::generate(),
                        app_id: app.clone(),
                        msg_id: m.id.clone(),
                        endpoint_id: ep.clone(),
                        url: "http://x".into(),
                        status: DeliveryStatus::Success,
                        response_status_code: 200,
                        response: String::new(),
                        duration_ms: 1,
                        trigger: Trigger::Scheduled,
                        created_at: m.created_at,
                    },
                    retry: None,
                    fanned_out_here: true,
                    health: HealthEvent::Success,
                    ordered: false,
                })
                .await
                .unwrap();
        }
        let payload_files = || store.inner.payloads.list().unwrap().len();
        assert_eq!(payload_files(), 2, "one payload file per hour of creation");
        let removed = store
            .purge_messages_before(now.plus_seconds(-90 * 86400))
            .unwrap();
        assert_eq!(removed, 1);
        assert_eq!(payload_files(), 1, "the old hour's payload bytes are gone");
        assert!(store.get_message(&app, old.id.as_str()).unwrap().is_none());
        assert!(
            store.get_message(&app, "old").unwrap().is_none(),
            "eventId index removed"
        );
        assert!(store.destination(&app, &ep, &old.id).unwrap().is_none());
        let q = crate::store::PageQuery {
            limit: 10,
            cursor: None,
            descending: true,
            max_scan: crate::store::SCAN_RECORDS,
        };
        assert!(store
            .list_attempts_by_msg(&app, &old.id, &q, |_| true)
            .unwrap()
            .items
            .is_empty());
        let by_ep = store
            .list_attempts_by_endpoint(&app, &ep, &q, |_| true)
            .unwrap();
        assert_eq!(
            by_ep.items.len(),
            1,
            "only the new message's attempt is left"
        );
        assert_eq!(by_ep.items[0].msg_id, new.id);
        assert_eq!(
            store.get_message(&app, "new").unwrap().map(|m| m.payload),
            Some(b"{}".to_vec())
        );
        assert!(store.destination(&app, &ep, &new.id).unwrap().is_some());
    }

    /// Ended tasks go once they ended before the cutoff; a running one stays however old, and
    /// one ended after the cutoff stays.
    #[tokio::test]
    async fn ended_tasks_go_after_their_retention_and_running_ones_stay() {
        use crate::store::{BackgroundTask, TaskParams, TaskStatus};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let now = Timestamp::now();
        let old = now.plus_seconds(-40 * 86400);
        let task = |status: TaskStatus, created: Timestamp, ended: Timestamp| {
            let mut t = BackgroundTask::new(TaskParams::PurgeContent {
                app: AppId::generate(),
                until: None,
            });
            t.id = TaskId::generate_at(created.millis());
            (t.status, t.created_at, t.updated_at) = (status, created, ended);
            t
        };
        let old_finished = task(TaskStatus::Finished, old, old);
        let old_failed = task(TaskStatus::Failed, old, old.plus_seconds(60));
        let old_running = task(TaskStatus::Running, old, old);
        // Created long ago, ended only now.
        let long_finished = task(TaskStatus::Finished, old, now);
        let new_finished = task(TaskStatus::Finished, now, now);
        for t in [
            &old_finished,
            &old_failed,
            &old_running,
            &long_finished,
            &new_finished,
        ] {
            store.put_task(t).await.unwrap();
        }
        let removed = store
            .purge_tasks_ended_before(now.plus_seconds(-30 * 86400))
            .unwrap();
        assert_eq!(removed, 2);
        for gone in [&old_finished, &old_failed] {
            assert_eq!(store.get_task(&gone.id).unwrap(), None);
        }
        for kept in [&old_running, &long_finished, &new_finished] {
            assert_eq!(store.get_task(&kept.id).unwrap().as_ref(), Some(kept));
        }
    }
}
