//! Messages: durable acceptance (message, its eventId, one task per endpoint and the idempotency
//! record, in one transaction, acknowledged only after the group commit), and reading them back.

use sled::Transactional;

use super::codec::{decode, encode};
use super::idempotency::{Answer, IdempotencyRecord};
use super::page::{scan_within, Budget, Page, PageQuery};
use super::{abort, keys, Store, StoreError};
use crate::domain::{ids, AppId, Message, MessageId, Task, Timestamp, Trigger};

#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was used before: the first request's answer; nothing was written.
    Replayed(Answer),
}

impl Store {
    /// Accept a message for delivery to its destinations: returns once it is on disk. With an
    /// idempotency key, the record is written with the message, unless a live one is there (then
    /// nothing is written and its answer comes back, once that is on disk too).
    pub async fn create_message(
        &self,
        msg: &Message,
        idempotency: Option<(&[u8; 32], &IdempotencyRecord)>,
    ) -> Result<CreateOutcome, StoreError> {
        self.ensure_space(super::WriteKind::Create)?;
        let gate = self.write_gate();
        let i = &self.inner;
        let msg_key = keys::message(&msg.app_id, &msg.id);
        let msg_value = encode(msg)?;
        let task = encode(&Task {
            msg_id: msg.id.clone(),
            tries: 0,
            trigger: Trigger::Scheduled,
        })?;
        let mut task_keys = Vec::with_capacity(msg.destinations.len());
        for ep in &msg.destinations {
            task_keys.push(keys::queue(
                &msg.app_id,
                ep,
                msg.created_at.millis(),
                self.next_seq()?,
            ));
        }
        let idem = idempotency
            .map(|(k, r)| r.encode(&i.sealer, k).map(|v| (k, v)))
            .transpose()?;
        let event_key = msg
            .event_id
            .as_deref()
            .map(|e| keys::msg_event_id(&msg.app_id, e));
        let outcome = (&i.messages, &i.msg_event_id, &i.idempotency, &i.queue).transaction(
            |(messages, event_ids, idem_tree, queue)| {
                if let Some((k, _)) = &idem {
                    let earlier = idem_tree
                        .get(k.as_slice())?
                        .and_then(|v| IdempotencyRecord::live(&i.sealer, k, &v));
                    match earlier.map(|r| r.answer) {
                        // A record whose message is gone (deleted with its application) is
                        // stale: this request makes a new message and takes the key over.
                        Some(Answer::Message { app_id, msg_id, .. })
                            if messages.get(keys::message(&app_id, &msg_id))?.is_none() => {}
                        Some(answer) => return Ok(CreateOutcome::Replayed(answer)),
                        None => {}
                    }
                }
                if let Some(ek) = &event_key {
                    if event_ids.get(ek.as_slice())?.is_some() {
                        return abort(StoreError::Conflict(
                            "a message with this eventId already exists".into(),
                        ));
                    }
                    event_ids.insert(ek.as_slice(), msg.id.ksuid().as_bytes())?;
                }
                messages.insert(msg_key.as_slice(), msg_value.as_slice())?;
                for qk in &task_keys {
                    queue.insert(qk.as_slice(), task.as_slice())?;
                }
                if let Some((k, v)) = &idem {
                    idem_tree.insert(k.as_slice(), v.as_slice())?;
                }
                Ok(CreateOutcome::Created)
            },
        )?;
        // A replay waits too: the request that wrote the record may not have seen its commit yet.
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(outcome)
    }

    /// The message with this id, or else with this eventId.
    pub fn get_message(
        &self,
        app: &AppId,
        id_or_event_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let i = &self.inner;
        if let Ok(id) = id_or_event_id.parse::<MessageId>() {
            if let Some(v) = i.messages.get(keys::message(app, &id))? {
                return Ok(Some(decode(&v)?));
            }
        }
        let Some(ksuid) = i
            .msg_event_id
            .get(keys::msg_event_id(app, id_or_event_id))?
        else {
            return Ok(None);
        };
        let id = std::str::from_utf8(&ksuid)
            .ok()
            .and_then(|k| MessageId::from_ksuid(k).ok())
            .ok_or_else(|| StoreError::Codec("bad eventId index entry".into()))?;
        match i.messages.get(keys::message(app, &id))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// A page of an application's messages, without their payloads: a page of 250 could hold
    /// 250 MiB, so a caller that shows payloads reads each with [`Store::get_message`] as it
    /// writes it out. With `max_payload_bytes`, the page ends (early, not done) when the stored
    /// messages it lists would add up to more than that (one larger message comes alone).
    /// Messages created outside `(after, before)` are not read at all: ids are time-ordered, so
    /// the window is a seek (widened by [`ID_CLOCK_SLACK_MS`], with `keep` left to judge the edges
    /// exactly).
    pub fn list_messages(
        &self,
        app: &AppId,
        q: &PageQuery,
        window: (Option<Timestamp>, Option<Timestamp>),
        max_payload_bytes: Option<usize>,
        keep: impl Fn(&Message) -> bool,
    ) -> Result<Page<Message>, StoreError> {
        let (after, before) = window;
        let bound = |t: Timestamp, slack: i64| {
            ids::ksuid_bound(t.millis().saturating_add(slack), false).into_bytes()
        };
        let budget = Budget {
            bytes: max_payload_bytes.unwrap_or(usize::MAX),
            from: after.map(|t| bound(t, -ID_CLOCK_SLACK_MS)),
            until: before.map(|t| bound(t, ID_CLOCK_SLACK_MS)),
            ..Budget::default()
        };
        let page = scan_within(
            &self.inner.messages,
            &keys::messages_of(app),
            q,
            &budget,
            |_, v| {
                let mut m: Message = decode(v)?;
                m.payload = Vec::new();
                Ok(Some((m, v.len())))
            },
            |(m, _)| keep(m),
            |(_, stored)| *stored,
        )?;
        page.try_map(|(m, _)| Ok(m))
    }
}

/// How far a message id's time may stray from its `created_at` (the clock is read once for each,
/// and ids stay increasing when the clock steps back), for seeking by time.
const ID_CLOCK_SLACK_MS: i64 = 60_000;
