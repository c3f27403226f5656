//! Messages: durable acceptance (message, its eventId, one task per endpoint and the idempotency
//! record, in one transaction, acknowledged only after the group commit), and reading them back.

use sled::Transactional;

use super::codec::{decode, encode};
use super::page::{scan, Page, PageQuery};
use super::{abort, keys, Store, StoreError};
use crate::domain::{AppId, Message, MessageId, Task, Timestamp, Trigger};

/// A response kept for an idempotency key, replayed for repeats of the request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub expires_at: Timestamp,
}

#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was used before: here is the first answer; nothing was written.
    Replayed(StoredResponse),
}

impl Store {
    /// The idempotent answer stored under `key`, if it has not expired.
    pub fn idempotent_response(
        &self,
        key: &[u8; 32],
    ) -> Result<Option<StoredResponse>, StoreError> {
        match self.inner.idempotency.get(key)? {
            Some(v) => {
                let r: StoredResponse = decode(&v)?;
                Ok((r.expires_at > Timestamp::now()).then_some(r))
            }
            None => Ok(None),
        }
    }

    /// Accept a message for delivery to `endpoints`: returns once it is on disk.
    pub async fn create_message(
        &self,
        msg: &Message,
        idempotency: Option<(&[u8; 32], &StoredResponse)>,
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
            .map(|(k, r)| encode(r).map(|v| (k, v)))
            .transpose()?;
        let event_key = msg
            .event_id
            .as_deref()
            .map(|e| keys::msg_event_id(&msg.app_id, e));
        let outcome = (&i.messages, &i.msg_event_id, &i.idempotency, &i.queue).transaction(
            |(messages, event_ids, idem_tree, queue)| {
                if let Some((k, _)) = &idem {
                    if let Some(v) = idem_tree.get(k.as_slice())? {
                        let r: StoredResponse = decode(&v).or_else(abort)?;
                        if r.expires_at > Timestamp::now() {
                            return Ok(CreateOutcome::Replayed(r));
                        }
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
        if matches!(outcome, CreateOutcome::Created) {
            {
                drop(gate);
                self.durable().await
            }?;
        }
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

    pub fn list_messages(
        &self,
        app: &AppId,
        q: &PageQuery,
        keep: impl Fn(&Message) -> bool,
    ) -> Result<Page<Message>, StoreError> {
        scan(&self.inner.messages, &keys::messages_of(app), q, keep)
    }

    /// Drop idempotency records past their expiry (a periodic sweep). Returns how many went.
    pub fn purge_expired_idempotency(&self) -> Result<usize, StoreError> {
        let _gate = self.write_gate();
        let now = Timestamp::now();
        let mut n = 0;
        for r in self.inner.idempotency.iter() {
            let (k, v) = r?;
            let expired = decode::<StoredResponse>(&v).map_or(true, |s| s.expires_at <= now);
            if expired && self.inner.idempotency.remove(&k)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }
}
