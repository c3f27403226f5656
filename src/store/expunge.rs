//! Expunging content: a message's payload (on request, or when its own retention ends) and an
//! attempt's response body. The record is rewritten first (no payload place, or an empty body)
//! and the payload's place noted as pending, its queued deliveries are called off, sled is
//! fsync'd, and only then are the bytes punched out of the payload log (`PayloadLog::remove`):
//! so no record ever points at bytes that are gone, and once the call returns the bytes are gone
//! from the file. A crash in between leaves the pending note, and the next open punches what it
//! names (`finish_expunges`): the expunged record no longer knows where its bytes were.

use std::collections::{BTreeMap, HashSet};

use sled::Transactional;

use super::codec::{decode, encode};
use super::delivery::{decode_attempt_record, encode_attempt_inline, unmark_manual};
use super::keys;
use super::messages::{decode_message, encode_expunged};
use super::payloads::PayloadRef;
use super::{Store, StoreError};
use crate::domain::{
    AppId, AttemptId, DeliveryStatus, Destination, EndpointId, MessageId, Task, Timestamp, Trigger,
};

/// What an attempt's response shows once expunged.
pub const EXPUNGED_RESPONSE: &str = "EXPUNGED";

/// What expunging one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpungeOutcome {
    /// Its payload was there and is gone now.
    Expunged,
    /// Its payload was expunged before.
    AlreadyGone,
    /// No such message.
    NotFound,
}

impl Store {
    /// Expunge the payloads of `ids` (message ids or eventIds) of `app`, cancel their queued
    /// deliveries, and return what happened to each, in order. Blocking (file I/O and fsyncs):
    /// call it off the async runtime.
    pub fn expunge_messages(
        &self,
        app: &AppId,
        ids: &[String],
    ) -> Result<Vec<ExpungeOutcome>, StoreError> {
        let (outcomes, punch) = self.expunge_records(app, ids)?;
        // The rewritten records must be on disk before the bytes they pointed at go.
        self.sync_trees()?;
        for (at, key) in punch {
            self.inner.payloads.remove(&at, &key)?;
            // Unsynced: a note that outlives its punch is punched again, which is a no-op.
            self.inner.expunge_pending.remove(&key)?;
        }
        Ok(outcomes)
    }

    /// Punch out the payloads an expunge interrupted by a crash left (see the module doc), and
    /// drop the notes; a note whose record still holds its payload (the crash came before the
    /// record was rewritten) is only dropped. Returns how many were punched.
    pub(super) fn finish_expunges(&self) -> Result<usize, StoreError> {
        let i = &self.inner;
        let mut punched = 0;
        for r in i.expunge_pending.iter() {
            let (key, v) = r?;
            let at: PayloadRef = decode(&v)?;
            let gone = match i.messages.get(&key)? {
                Some(rec) => decode_message(&key, &rec)?.1.is_none(),
                None => true,
            };
            if gone && i.payloads.remove(&at, &key)? {
                punched += 1;
            }
            i.expunge_pending.remove(&key)?;
        }
        if punched > 0 {
            tracing::info!(payloads = punched, "finished expunges cut short by a crash");
        }
        Ok(punched)
    }

    /// The sync part: rewrite each message's record without its payload and call off its
    /// queued tasks. Returns the outcomes and the payloads to punch out.
    #[allow(clippy::type_complexity)]
    fn expunge_records(
        &self,
        app: &AppId,
        ids: &[String],
    ) -> Result<(Vec<ExpungeOutcome>, Vec<(PayloadRef, Vec<u8>)>), StoreError> {
        let _gate = self.write_gate();
        let i = &self.inner;
        let mut outcomes = Vec::with_capacity(ids.len());
        let mut punch = Vec::new();
        let mut called_off = HashSet::new();
        for id in ids {
            let Some((key, value)) = self.message_record(app, id)? else {
                outcomes.push(ExpungeOutcome::NotFound);
                continue;
            };
            let (msg, at) = decode_message(&key, &value)?;
            if msg.expunged {
                outcomes.push(ExpungeOutcome::AlreadyGone);
                continue;
            }
            // The note goes first: sled recovers a prefix of its writes, so no crash leaves an
            // expunged record without it. (Left behind by a lost race, or a crash before the
            // record, it is harmless: see `finish_expunges`.)
            if let Some(at) = &at {
                i.expunge_pending.insert(key.as_slice(), encode(at)?)?;
            }
            let swapped =
                i.messages
                    .compare_and_swap(&key, Some(value), Some(encode_expunged(&msg)?))?;
            if swapped.is_err() {
                // Expunged by a concurrent call meanwhile (records change only so).
                outcomes.push(ExpungeOutcome::AlreadyGone);
                continue;
            }
            if let Some(t) = msg.payload_expires_at {
                i.payload_expiry
                    .remove(keys::payload_expiry(t.millis(), app, &msg.id))?;
            }
            if let Some(at) = at {
                punch.push((at, key));
            }
            called_off.insert(msg.id);
            outcomes.push(ExpungeOutcome::Expunged);
        }
        if !called_off.is_empty() {
            self.call_off_tasks(app, &called_off)?;
        }
        Ok((outcomes, punch))
    }

    /// The id of the message with this id, or else with this eventId, if there is one.
    pub fn message_id_of(
        &self,
        app: &AppId,
        id_or_event_id: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        Ok(self
            .message_record(app, id_or_event_id)?
            .and_then(|(k, _)| keys::message_ids(&k).map(|(_, id)| id)))
    }

    /// Remove every queued task of `msgs` (one scan of the application's queue): a scheduled
    /// delivery shows as canceled; a manual try (resend, recover) just goes, leaving the state
    /// the schedule gave.
    fn call_off_tasks(&self, app: &AppId, msgs: &HashSet<MessageId>) -> Result<(), StoreError> {
        let mut found = Vec::new();
        for r in self.inner.queue.scan_prefix(keys::messages_of(app)) {
            let (k, v) = r?;
            let task: Task = decode(&v)?;
            if msgs.contains(&task.msg_id) {
                found.push((k.to_vec(), task));
            }
        }
        let now = Timestamp::now();
        for (key, task) in found {
            let Some((_, ep)) = keys::endpoint_of(&key) else {
                continue;
            };
            self.cancel_one(&key, app, &ep, &task.msg_id, task.trigger, now)?;
        }
        Ok(())
    }

    /// Call off one queued task (see `call_off_tasks`) in one transaction; nothing if it is no
    /// longer queued.
    fn cancel_one(
        &self,
        key: &[u8],
        app: &AppId,
        ep: &EndpointId,
        msg: &MessageId,
        trigger: Trigger,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let dest_key = keys::destination(app, ep, msg);
        let canceled = encode(&Destination::canceled(now))?;
        let i = &self.inner;
        (&i.queue, &i.manual_queued, &i.destinations).transaction(|(queue, marks, dests)| {
            if queue.remove(key)?.is_none() {
                return Ok(());
            }
            match trigger {
                Trigger::Manual => unmark_manual(marks, &dest_key, key)?,
                Trigger::Scheduled => {
                    dests.insert(dest_key.as_slice(), canceled.as_slice())?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// A task whose message was expunged reached the worker: call it off (see `call_off_tasks`).
    pub fn cancel_task(
        &self,
        key: &[u8],
        app: &AppId,
        ep: &EndpointId,
        msg: &MessageId,
        trigger: Trigger,
    ) -> Result<(), StoreError> {
        let _gate = self.write_gate();
        self.cancel_one(key, app, ep, msg, trigger, Timestamp::now())
    }

    /// Expunge the payloads whose own retention ended by `now`, at most `limit` of them; returns
    /// how many were expunged. Index entries of messages purged meanwhile are dropped.
    pub fn expunge_expired_payloads(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let end = (now.millis().max(0) as u64).saturating_add(1).to_be_bytes();
        let mut by_app: BTreeMap<AppId, Vec<String>> = BTreeMap::new();
        let mut stale = Vec::new();
        for r in self
            .inner
            .payload_expiry
            .range(..end.as_slice())
            .take(limit)
        {
            let (k, _) = r?;
            if let Some((app, msg)) = keys::payload_expiry_ids(&k) {
                by_app.entry(app).or_default().push(msg.to_string());
            }
            stale.push(k);
        }
        let mut expunged = 0;
        for (app, ids) in by_app {
            expunged += self
                .expunge_messages(&app, &ids)?
                .into_iter()
                .filter(|o| *o == ExpungeOutcome::Expunged)
                .count();
        }
        // Entries left (their message gone, or expunged otherwise) go too.
        let _gate = self.write_gate();
        for k in stale {
            self.inner.payload_expiry.remove(k)?;
        }
        Ok(expunged)
    }

    /// A page of an application's message ids after `after`, oldest first, at most `limit`; the
    /// cursor for the next page is `None` at the end (for expunging them all, page by page).
    pub fn message_ids_page(
        &self,
        app: &AppId,
        after: Option<&MessageId>,
        limit: usize,
    ) -> Result<(Vec<MessageId>, Option<MessageId>), StoreError> {
        let prefix = keys::messages_of(app);
        let start = match after {
            Some(m) => {
                let mut k = keys::message(app, m);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let end = keys::prefix_end(&prefix).unwrap_or_default();
        let mut out = Vec::new();
        for r in self.inner.messages.range(start..end).take(limit) {
            let (k, _) = r?;
            if let Some((_, id)) = keys::message_ids(&k) {
                out.push(id);
            }
        }
        let next = (out.len() == limit).then(|| out.last().cloned()).flatten();
        Ok((out, next))
    }

    /// Expunge an attempt's response body: the record keeps the attempt, its response reads
    /// [`EXPUNGED_RESPONSE`], and a body kept in the payload log is punched out of it. False when
    /// there is no such attempt.
    pub fn expunge_attempt_content(
        &self,
        app: &AppId,
        msg: &MessageId,
        attempt: &AttemptId,
    ) -> Result<bool, StoreError> {
        let key = keys::attempt(app, msg, attempt);
        let body_at = {
            let _gate = self.write_gate();
            let Some(v) = self.inner.attempts.get(&key)? else {
                return Ok(false);
            };
            let (mut a, body_at) = decode_attempt_record(&key, &v)?;
            a.response = EXPUNGED_RESPONSE.to_string();
            self.inner
                .attempts
                .insert(&key, encode_attempt_inline(&a)?)?;
            body_at
        };
        self.sync_trees()?;
        if let Some(at) = body_at {
            self.inner
                .payloads
                .remove(&at, &keys::attempt_body(app, attempt))?;
        }
        Ok(true)
    }
}

/// Whether a destination's state is final because its delivery was called off.
pub(super) fn is_canceled(d: Option<&Destination>) -> bool {
    d.is_some_and(|d| d.status == DeliveryStatus::Canceled)
}

#[cfg(test)]
mod tests {
    use crate::domain::*;
    use crate::store::{ExpungeOutcome, Store, StoreOptions};

    fn message(app: &AppId, ep: &EndpointId, payload: &[u8]) -> Message {
        Message {
            id: MessageId::generate(),
            app_id: app.clone(),
            event_type: "a.b".into(),
            event_id: Some(format!("ev-{}", MessageId::generate())),
            channels: None,
            tags: None,
            payload: payload.to_vec(),
            created_at: Timestamp::now(),
            destinations: vec![ep.clone()],
            deliver_at: None,
            payload_expires_at: None,
            expunged: false,
        }
    }

    fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if std::fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    return true;
                }
            }
        }
        false
    }

    /// An expunge cut short after its records were rewritten and synced, before the punch (as
    /// a kill does), is finished at the next open; a pending note whose record was never
    /// rewritten leaves that payload alone.
    #[tokio::test]
    async fn an_expunge_cut_short_by_a_crash_is_finished_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let marker = b"crash-marker-90ad3e";
        let (app, ep) = (AppId::generate(), EndpointId::generate());
        let m = message(
            &app,
            &ep,
            &[b"{\"x\":\"".as_slice(), marker, b"\"}"].concat(),
        );
        let live = message(&app, &ep, b"{\"live\":1}");
        {
            let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
            store.create_message(&m, None).await.unwrap();
            store.create_message(&live, None).await.unwrap();
            store.durable().await.unwrap();
            let (out, punch) = store.expunge_records(&app, &[m.id.to_string()]).unwrap();
            assert_eq!((out.len(), punch.len()), (1, 1));
            // A note left by a crash before its record was rewritten.
            let (key, rec) = store
                .message_record(&app, live.id.as_str())
                .unwrap()
                .unwrap();
            let at = super::decode_message(&key, &rec).unwrap().1.unwrap();
            let note = crate::store::codec::encode(&at).unwrap();
            store.inner.expunge_pending.insert(key, note).unwrap();
            store.sync_trees().unwrap();
            store.close().unwrap();
        }
        assert!(
            files_contain(dir.path(), marker),
            "the crash left the bytes"
        );
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        assert!(
            !files_contain(dir.path(), marker),
            "bytes left after the open"
        );
        assert_eq!(store.inner.expunge_pending.len(), 0);
        assert_eq!(
            store
                .get_message(&app, live.id.as_str())
                .unwrap()
                .unwrap()
                .payload,
            b"{\"live\":1}"
        );
    }

    /// Expunging removes the payload's bytes from every file at once, cancels the queued
    /// delivery, keeps the message, and a second expunge finds nothing left.
    #[tokio::test]
    async fn an_expunged_payload_leaves_the_files_and_its_delivery_is_canceled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let (app, ep) = (AppId::generate(), EndpointId::generate());
        let marker = b"secret-marker-5f1e0c";
        let payload = [b"{\"x\":\"".as_slice(), marker, b"\"}"].concat();
        let m = message(&app, &ep, &payload);
        let kept = message(&app, &ep, b"{\"keep\":1}");
        store.create_message(&m, None).await.unwrap();
        store.create_message(&kept, None).await.unwrap();
        store.durable().await.unwrap();
        assert!(files_contain(dir.path(), marker));
        let out = store
            .expunge_messages(&app, &[m.event_id.clone().unwrap(), "nope".into()])
            .unwrap();
        assert_eq!(out, [ExpungeOutcome::Expunged, ExpungeOutcome::NotFound]);
        assert!(!files_contain(dir.path(), marker), "bytes left on disk");
        let got = store.get_message(&app, m.id.as_str()).unwrap().unwrap();
        assert!(got.expunged && got.payload.is_empty());
        assert_eq!(
            store
                .destination(&app, &ep, &m.id)
                .unwrap()
                .map(|d| d.status),
            Some(DeliveryStatus::Canceled)
        );
        let due = store
            .due_tasks(&app, &ep, i64::MAX, 10, &Default::default())
            .unwrap();
        assert_eq!(due.len(), 1, "only the other message's task is left");
        assert_eq!(due[0].task.msg_id, kept.id);
        assert_eq!(
            store.expunge_messages(&app, &[m.id.to_string()]).unwrap(),
            [ExpungeOutcome::AlreadyGone]
        );
        assert_eq!(
            store
                .get_message(&app, kept.id.as_str())
                .unwrap()
                .unwrap()
                .payload,
            b"{\"keep\":1}"
        );
        store.close().unwrap();
        drop(store);
        let report = crate::store::check(dir.path(), false).unwrap();
        assert!(report.is_clean(), "{}", report.render());
    }

    /// A payload with its own retention is expunged by the pass after its time, not before.
    #[tokio::test]
    async fn payloads_expire_at_their_own_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let (app, ep) = (AppId::generate(), EndpointId::generate());
        let mut m = message(&app, &ep, b"{\"short\":\"lived-7d3a\"}");
        let now = Timestamp::now();
        m.payload_expires_at = Some(now.plus_seconds(3600));
        store.create_message(&m, None).await.unwrap();
        assert_eq!(store.expunge_expired_payloads(now, 100).unwrap(), 0);
        assert!(
            !store
                .get_message(&app, m.id.as_str())
                .unwrap()
                .unwrap()
                .expunged
        );
        assert_eq!(
            store
                .expunge_expired_payloads(now.plus_seconds(3601), 100)
                .unwrap(),
            1
        );
        assert!(
            store
                .get_message(&app, m.id.as_str())
                .unwrap()
                .unwrap()
                .expunged
        );
        assert!(!files_contain(dir.path(), b"lived-7d3a"));
        assert_eq!(store.inner.payload_expiry.len(), 0, "index entry removed");
    }
}
