//! Messages: durable acceptance and reading them back. A message's payload goes to the payload
//! log (`payloads`) and is fsync'd there first; then its small record (metadata and the payload's
//! place), its eventId, one task per endpoint and the idempotency record go to sled in one
//! transaction, acknowledged only after sled's group commit. So every record in sled points at
//! payload bytes already on disk.

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::codec::{decode_as, encode, encode_as};
use super::idempotency::{Answer, IdempotencyRecord};
use super::page::{scan_within, Budget, Page, PageQuery};
use super::payloads::PayloadRef;
use super::{abort, keys, Store, StoreError};
use crate::domain::{ids, AppId, EndpointId, Message, MessageId, Task, Timestamp, Trigger};

#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was used before: the first request's answer; nothing was written.
    Replayed(Answer),
}

/// Format of a message record that holds its payload inline (written before the payload log;
/// read only to upgrade a store, see `upgrade`).
pub(super) const MESSAGE_V1: u8 = 1;
/// Format of a message record whose payload is in the payload log.
pub(super) const MESSAGE_V2: u8 = 2;
/// Format 2 plus a delivery time, a payload expiry, and no payload place once expunged. Written
/// only for messages that use one of these, so a store stays readable by the binary before them
/// as long as none does.
pub(super) const MESSAGE_V3: u8 = 3;

/// A message as sled keeps it (format 2). Its ids are in its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredMessage {
    pub event_type: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub created_at: Timestamp,
    pub destinations: Vec<EndpointId>,
    pub payload: PayloadRef,
}

impl StoredMessage {
    pub(super) fn of(msg: &Message, payload: PayloadRef) -> Self {
        StoredMessage {
            event_type: msg.event_type.clone(),
            event_id: msg.event_id.clone(),
            channels: msg.channels.clone(),
            tags: msg.tags.clone(),
            created_at: msg.created_at,
            destinations: msg.destinations.clone(),
            payload,
        }
    }

    /// The message without its payload.
    fn into_message(self, app_id: AppId, id: MessageId) -> Message {
        Message {
            id,
            app_id,
            event_type: self.event_type,
            event_id: self.event_id,
            channels: self.channels,
            tags: self.tags,
            payload: Vec::new(),
            created_at: self.created_at,
            destinations: self.destinations,
            deliver_at: None,
            payload_expires_at: None,
            expunged: false,
        }
    }
}

/// A message as sled keeps it in format 3: format 2's fields, `payload` gone once expunged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredMessageV3 {
    pub event_type: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub created_at: Timestamp,
    pub destinations: Vec<EndpointId>,
    pub payload: Option<PayloadRef>,
    pub deliver_at: Option<Timestamp>,
    pub payload_expires_at: Option<Timestamp>,
}

impl StoredMessageV3 {
    fn of(msg: &Message, payload: Option<PayloadRef>) -> Self {
        StoredMessageV3 {
            event_type: msg.event_type.clone(),
            event_id: msg.event_id.clone(),
            channels: msg.channels.clone(),
            tags: msg.tags.clone(),
            created_at: msg.created_at,
            destinations: msg.destinations.clone(),
            payload,
            deliver_at: msg.deliver_at,
            payload_expires_at: msg.payload_expires_at,
        }
    }
}

/// A message record read back: the message (its payload empty unless stored inline) and where its
/// payload is.
pub(super) fn decode_message(
    key: &[u8],
    v: &[u8],
) -> Result<(Message, Option<PayloadRef>), StoreError> {
    match v.first() {
        Some(&MESSAGE_V1) => Ok((decode_as(MESSAGE_V1, v)?, None)),
        Some(&MESSAGE_V3) => {
            let s: StoredMessageV3 = decode_as(MESSAGE_V3, v)?;
            let (app_id, id) = keys::message_ids(key)
                .ok_or_else(|| StoreError::Codec("malformed message key".into()))?;
            let msg = Message {
                id,
                app_id,
                event_type: s.event_type,
                event_id: s.event_id,
                channels: s.channels,
                tags: s.tags,
                payload: Vec::new(),
                created_at: s.created_at,
                destinations: s.destinations,
                deliver_at: s.deliver_at,
                payload_expires_at: s.payload_expires_at,
                expunged: s.payload.is_none(),
            };
            Ok((msg, s.payload))
        }
        _ => {
            let stored: StoredMessage = decode_as(MESSAGE_V2, v)?;
            let (app, id) = keys::message_ids(key)
                .ok_or_else(|| StoreError::Codec("malformed message key".into()))?;
            let at = stored.payload;
            Ok((stored.into_message(app, id), Some(at)))
        }
    }
}

pub(super) fn encode_message(msg: &Message, payload: PayloadRef) -> Result<Vec<u8>, StoreError> {
    if msg.deliver_at.is_some() || msg.payload_expires_at.is_some() {
        return encode_as(MESSAGE_V3, &StoredMessageV3::of(msg, Some(payload)));
    }
    encode_as(MESSAGE_V2, &StoredMessage::of(msg, payload))
}

/// The record of `msg` with its payload expunged (no place in the payload log).
pub(super) fn encode_expunged(msg: &Message) -> Result<Vec<u8>, StoreError> {
    encode_as(MESSAGE_V3, &StoredMessageV3::of(msg, None))
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
        let i = &self.inner;
        let msg_key = keys::message(&msg.app_id, &msg.id);
        let event_key = msg
            .event_id
            .as_deref()
            .map(|e| keys::msg_event_id(&msg.app_id, e));
        let idem = idempotency
            .map(|(k, r)| r.encode(&i.sealer, k).map(|v| (k, v)))
            .transpose()?;
        // Answered without a write, the usual way a replay or a taken eventId ends: no payload is
        // written for nothing. (The transaction below decides; two racing requests may leave an
        // unreferenced payload, which `herald check` reports and retention removes.)
        let idem_key = idem.as_ref().map(|(k, _)| *k);
        if let Some(settled) = self.settled(
            idem_key,
            event_key.as_deref(),
            |k| i.messages.get(k),
            |k| i.msg_event_id.get(k),
            |k| i.idempotency.get(k),
        )? {
            return match settled {
                Ok(answer) => {
                    self.durable().await?;
                    Ok(CreateOutcome::Replayed(answer))
                }
                Err(e) => Err(e),
            };
        }
        let at = match i
            .payloads
            .append(&msg_key, msg.created_at.millis(), &msg.payload)
        {
            Ok(at) => {
                i.space.note_written();
                at
            }
            Err(e) if e.is_no_space() => return Err(i.space.met_full_disk(&e)),
            Err(e) => return Err(e),
        };
        self.payloads_durable().await?;
        let gate = self.write_gate();
        let msg_value = encode_message(msg, at)?;
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
                msg.first_due().millis(),
                self.next_seq()?,
            ));
        }
        let expiry_key = msg
            .payload_expires_at
            .map(|t| keys::payload_expiry(t.millis(), &msg.app_id, &msg.id));
        let trees = (
            &i.messages,
            &i.msg_event_id,
            &i.idempotency,
            &i.queue,
            &i.payload_expiry,
        );
        let outcome = trees.transaction(|(messages, event_ids, idem_tree, queue, expiry)| {
            let settled = self.settled(
                idem_key,
                event_key.as_deref(),
                |k| messages.get(k),
                |k| event_ids.get(k),
                |k| idem_tree.get(k),
            )?;
            match settled {
                Some(Ok(answer)) => return Ok(CreateOutcome::Replayed(answer)),
                Some(Err(e)) => return abort(e),
                None => {}
            }
            if let Some(ek) = &event_key {
                event_ids.insert(ek.as_slice(), msg.id.ksuid().as_bytes())?;
            }
            messages.insert(msg_key.as_slice(), msg_value.as_slice())?;
            for qk in &task_keys {
                queue.insert(qk.as_slice(), task.as_slice())?;
            }
            if let Some(ek) = &expiry_key {
                expiry.insert(ek.as_slice(), Vec::<u8>::new())?;
            }
            if let Some((k, v)) = &idem {
                idem_tree.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(CreateOutcome::Created)
        })?;
        // A replay waits too: the request that wrote the record may not have seen its commit yet.
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(outcome)
    }

    /// Whether a create is settled before writing anything: `Ok(answer)` for a live idempotency
    /// record whose message still exists (a replay), `Err(Conflict)` for an eventId already
    /// taken. The getters read the trees, inside a transaction or not.
    fn settled<E>(
        &self,
        idem_key: Option<&[u8; 32]>,
        event_key: Option<&[u8]>,
        message: impl Fn(&[u8]) -> Result<Option<sled::IVec>, E>,
        event_id: impl Fn(&[u8]) -> Result<Option<sled::IVec>, E>,
        idempotency: impl Fn(&[u8]) -> Result<Option<sled::IVec>, E>,
    ) -> Result<Option<Result<Answer, StoreError>>, E> {
        if let Some(k) = idem_key {
            let earlier = idempotency(k.as_slice())?
                .and_then(|v| IdempotencyRecord::live(&self.inner.sealer, k, &v));
            match earlier.map(|r| r.answer) {
                // A record whose message is gone (deleted with its application) is stale: this
                // request makes a new message and takes the key over.
                Some(Answer::Message { app_id, msg_id, .. })
                    if message(&keys::message(&app_id, &msg_id))?.is_none() => {}
                Some(answer) => return Ok(Some(Ok(answer))),
                None => {}
            }
        }
        if let Some(ek) = event_key {
            if event_id(ek)?.is_some() {
                return Ok(Some(Err(StoreError::Conflict(
                    "a message with this eventId already exists".into(),
                ))));
            }
        }
        Ok(None)
    }

    /// The message with this id, or else with this eventId.
    pub fn get_message(
        &self,
        app: &AppId,
        id_or_event_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        self.message_record(app, id_or_event_id)?
            .map(|(key, v)| self.with_payload(&key, &v))
            .transpose()
    }

    /// The key and record of the message with this id, or else with this eventId.
    pub(super) fn message_record(
        &self,
        app: &AppId,
        id_or_event_id: &str,
    ) -> Result<Option<(Vec<u8>, sled::IVec)>, StoreError> {
        let i = &self.inner;
        if let Ok(id) = id_or_event_id.parse::<MessageId>() {
            let key = keys::message(app, &id);
            if let Some(v) = i.messages.get(&key)? {
                return Ok(Some((key, v)));
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
        let key = keys::message(app, &id);
        Ok(i.messages.get(&key)?.map(|v| (key, v)))
    }

    /// A stored message with its payload read back from the payload log.
    /// A message by its id without reading its payload from the payload log (`payload` is then
    /// empty): what a list of attempts shows of each message.
    pub fn get_message_head(
        &self,
        app: &AppId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let key = keys::message(app, id);
        match self.inner.messages.get(&key)? {
            Some(v) => decode_message(&key, &v).map(|(m, _)| Some(m)),
            None => Ok(None),
        }
    }

    pub(super) fn with_payload(&self, key: &[u8], v: &[u8]) -> Result<Message, StoreError> {
        let (mut msg, at) = decode_message(key, v)?;
        if let Some(at) = at {
            msg.payload = self.inner.payloads.read(&at, key)?;
        }
        Ok(msg)
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
            |k, v| {
                let (mut m, at) = decode_message(k, v)?;
                let size = at.map_or(m.payload.len(), |a| a.len as usize) + v.len();
                m.payload = Vec::new();
                Ok(Some((m, size)))
            },
            |(m, _)| keep(m),
            |(_, stored)| *stored,
        )?;
        page.try_map(|(m, _)| Ok(m))
    }
}

impl Store {
    /// A page of an application's messages (without payloads) created in `[since, until)`, in
    /// creation order, after `after` (the previous page's cursor). Reads at most `scan` records,
    /// so one call is bounded whatever the history; the cursor is `None` at the end.
    pub fn messages_created(
        &self,
        app: &AppId,
        since: Timestamp,
        until: Option<Timestamp>,
        after: Option<&MessageId>,
        scan: usize,
    ) -> Result<(Vec<Message>, Option<MessageId>), StoreError> {
        let bound = |t: Timestamp, slack: i64| {
            let k = ids::ksuid_bound(t.millis().saturating_add(slack), false);
            [keys::messages_of(app), k.into_bytes()].concat()
        };
        let mut start = bound(since, -ID_CLOCK_SLACK_MS);
        if let Some(a) = after {
            // Just past `after`'s key: the smallest key greater than it.
            let mut past = keys::message(app, a);
            past.push(0);
            start = start.max(past);
        }
        let end = match until {
            Some(u) => bound(u, ID_CLOCK_SLACK_MS),
            None => keys::prefix_end(&keys::messages_of(app)).unwrap_or_default(),
        };
        let mut out = Vec::new();
        let mut last = None;
        for (seen, r) in self.inner.messages.range(start..end).enumerate() {
            if seen == scan {
                return Ok((out, last));
            }
            let (k, v) = r?;
            let (mut m, _) = decode_message(&k, &v)?;
            m.payload = Vec::new();
            last = Some(m.id.clone());
            // Ids are read with slack around the window; the creation time judges exactly.
            if m.created_at >= since && until.is_none_or(|u| m.created_at < u) {
                out.push(m);
            }
        }
        Ok((out, None))
    }
}

/// How far a message id's time may stray from its `created_at` (the clock is read once for each,
/// and ids stay increasing when the clock steps back), for seeking by time.
pub(super) const ID_CLOCK_SLACK_MS: i64 = 60_000;
