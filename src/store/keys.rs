//! Every key layout of the store, in one place. Trees and their keys:
//!
//! | tree            | key                                   | value          |
//! |-----------------|---------------------------------------|----------------|
//! | `apps`          | app ksuid (27)                        | Application    |
//! | `app_uid`       | uid                                   | app ksuid      |
//! | `event_types`   | name                                  | EventType      |
//! | `endpoints`     | app ksuid (27) ‖ endpoint ksuid (27)  | Endpoint       |
//! | `endpoint_uid`  | app ksuid (27) ‖ uid                  | endpoint ksuid |
//! | `meta`          | `main_key_check`                      | sealed check value |
//! | `tokens`        | SHA-256 of the token (32)             | ApiToken       |
//! | `app_tokens`    | SHA-256 of the token (32)             | AppToken       |
//! | `messages`      | app (27) ‖ msg (27)                   | Message        |
//! | `msg_event_id`  | app (27) ‖ eventId                    | msg ksuid      |
//! | `idempotency`   | SHA-256(token hash ‖ path ‖ key) (32) | IdempotencyRecord |
//! | `queue`         | app (27) ‖ ep (27) ‖ due ms (8) ‖ seq (8) | Task       |
//! | `destinations`  | app (27) ‖ ep (27) ‖ msg (27)         | Destination    |
//! | `attempts`      | app (27) ‖ msg (27) ‖ attempt (27)    | Attempt        |
//! | `attempts_by_ep`| app (27) ‖ ep (27) ‖ attempt (27)     | MessageId      |
//! | `endpoint_health` | app (27) ‖ ep (27)                  | EndpointHealth |
//! | `manual_queued` | app (27) ‖ ep (27) ‖ msg (27)         | queue key of its manual task |
//! | `payload_expiry`| expiry ms (8) ‖ app (27) ‖ msg (27)   | (empty)        |
//! | `tasks`         | background task ksuid (27)            | BackgroundTask |
//!
//! The queue is grouped by endpoint and ordered by due time within it, so the dispatcher can take
//! the next due tasks of one endpoint without reading any other's, and bring an endpoint's waiting
//! retries forward with one range scan. Integers are big-endian, so byte order is numeric order.
//! KSUIDs are fixed-width base62, so byte order is creation order; composite keys put fixed-width
//! parts first so a prefix scan selects one parent.

use crate::domain::ids::KSUID_LEN;
use crate::domain::{AppId, AttemptId, EndpointId, MessageId, TaskId};

pub const TREE_META: &str = "meta";
pub const TREE_APPS: &str = "apps";
pub const TREE_APP_UID: &str = "app_uid";
pub const TREE_EVENT_TYPES: &str = "event_types";
pub const TREE_ENDPOINTS: &str = "endpoints";
pub const TREE_ENDPOINT_UID: &str = "endpoint_uid";
pub const TREE_TOKENS: &str = "tokens";
pub const TREE_APP_TOKENS: &str = "app_tokens";
pub const TREE_MESSAGES: &str = "messages";
pub const TREE_MSG_EVENT_ID: &str = "msg_event_id";
pub const TREE_IDEMPOTENCY: &str = "idempotency";
pub const TREE_QUEUE: &str = "queue";
pub const TREE_DESTINATIONS: &str = "destinations";
pub const TREE_ATTEMPTS: &str = "attempts";
pub const TREE_ATTEMPTS_BY_EP: &str = "attempts_by_ep";
pub const TREE_ENDPOINT_HEALTH: &str = "endpoint_health";
/// A message's queued manual try to an endpoint (keyed as `destinations`), so recover can skip it.
pub const TREE_MANUAL_QUEUED: &str = "manual_queued";
/// Messages whose payload expires before the retention period (their own retention), by time.
pub const TREE_PAYLOAD_EXPIRY: &str = "payload_expiry";
/// Background tasks (recover, replays), so they survive a restart.
pub const TREE_TASKS: &str = "tasks";
/// Payloads whose message record is expunged but whose bytes may not be punched out yet (by
/// message key), so a crash in between is finished at the next open.
pub const TREE_EXPUNGE_PENDING: &str = "expunge_pending";

/// Length of an `app ‖ endpoint` prefix.
pub const ENDPOINT_KEY_LEN: usize = 2 * KSUID_LEN;
/// Length of a queue key.
pub const QUEUE_KEY_LEN: usize = ENDPOINT_KEY_LEN + 16;

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn message(app: &AppId, msg: &MessageId) -> Vec<u8> {
    cat(&[app.ksuid().as_bytes(), msg.ksuid().as_bytes()])
}

/// The application and message of a `messages` key.
pub fn message_ids(key: &[u8]) -> Option<(AppId, MessageId)> {
    if key.len() != 2 * KSUID_LEN {
        return None;
    }
    let app = std::str::from_utf8(&key[..KSUID_LEN]).ok()?;
    let msg = std::str::from_utf8(&key[KSUID_LEN..]).ok()?;
    Some((
        AppId::from_ksuid(app).ok()?,
        MessageId::from_ksuid(msg).ok()?,
    ))
}

pub fn messages_of(app: &AppId) -> Vec<u8> {
    app.ksuid().as_bytes().to_vec()
}

pub fn msg_event_id(app: &AppId, event_id: &str) -> Vec<u8> {
    cat(&[app.ksuid().as_bytes(), event_id.as_bytes()])
}

/// Queue key of a task of `ep` due at `due_ms`; `seq` makes it unique.
pub fn queue(app: &AppId, ep: &EndpointId, due_ms: i64, seq: u64) -> Vec<u8> {
    let due = due_ms.max(0) as u64;
    cat(&[
        app.ksuid().as_bytes(),
        ep.ksuid().as_bytes(),
        &due.to_be_bytes(),
        &seq.to_be_bytes(),
    ])
}

/// Every queued task of one endpoint.
pub fn queue_of(app: &AppId, ep: &EndpointId) -> Vec<u8> {
    endpoint(app, ep)
}

/// `payload_expiry` key: when the payload of `msg` expires.
pub fn payload_expiry(at_ms: i64, app: &AppId, msg: &MessageId) -> Vec<u8> {
    let at = at_ms.max(0) as u64;
    cat(&[
        &at.to_be_bytes(),
        app.ksuid().as_bytes(),
        msg.ksuid().as_bytes(),
    ])
}

/// The application and message of a `payload_expiry` key.
pub fn payload_expiry_ids(key: &[u8]) -> Option<(AppId, MessageId)> {
    message_ids(key.get(8..)?)
}

/// Due time and sequence of a queue key.
pub fn queue_due(key: &[u8]) -> Option<(i64, u64)> {
    if key.len() != QUEUE_KEY_LEN {
        return None;
    }
    let due = u64::from_be_bytes(
        key[ENDPOINT_KEY_LEN..ENDPOINT_KEY_LEN + 8]
            .try_into()
            .ok()?,
    );
    let seq = u64::from_be_bytes(key[ENDPOINT_KEY_LEN + 8..].try_into().ok()?);
    Some((due as i64, seq))
}

/// The application and endpoint of a key that starts with `app ‖ ep`.
pub fn endpoint_of(key: &[u8]) -> Option<(AppId, EndpointId)> {
    let app = std::str::from_utf8(key.get(..KSUID_LEN)?).ok()?;
    let ep = std::str::from_utf8(key.get(KSUID_LEN..ENDPOINT_KEY_LEN)?).ok()?;
    Some((
        AppId::from_ksuid(app).ok()?,
        EndpointId::from_ksuid(ep).ok()?,
    ))
}

pub fn destination(app: &AppId, ep: &EndpointId, msg: &MessageId) -> Vec<u8> {
    cat(&[
        app.ksuid().as_bytes(),
        ep.ksuid().as_bytes(),
        msg.ksuid().as_bytes(),
    ])
}

/// Every destination record of one endpoint, in message (time) order.
pub fn destinations_of(app: &AppId, ep: &EndpointId) -> Vec<u8> {
    endpoint(app, ep)
}

/// The message id at the end of a `destinations` key.
pub fn destination_msg(key: &[u8]) -> Option<MessageId> {
    MessageId::from_ksuid(std::str::from_utf8(key.get(ENDPOINT_KEY_LEN..)?).ok()?).ok()
}

/// The payload log's key of an attempt's response body (a message's payload is `message`).
pub fn attempt_body(app: &AppId, attempt: &AttemptId) -> Vec<u8> {
    cat(&[app.ksuid().as_bytes(), attempt.ksuid().as_bytes()])
}

pub fn attempt(app: &AppId, msg: &MessageId, attempt: &AttemptId) -> Vec<u8> {
    cat(&[
        app.ksuid().as_bytes(),
        msg.ksuid().as_bytes(),
        attempt.ksuid().as_bytes(),
    ])
}

pub fn attempts_of_msg(app: &AppId, msg: &MessageId) -> Vec<u8> {
    message(app, msg)
}

pub fn attempt_by_ep(app: &AppId, ep: &EndpointId, attempt: &AttemptId) -> Vec<u8> {
    cat(&[
        app.ksuid().as_bytes(),
        ep.ksuid().as_bytes(),
        attempt.ksuid().as_bytes(),
    ])
}

/// The attempt id at the end of an `attempts` or `attempts_by_ep` key.
/// The application, message and attempt of an `attempts` key.
pub fn attempt_ids(key: &[u8]) -> Option<(AppId, MessageId, AttemptId)> {
    if key.len() != 3 * KSUID_LEN {
        return None;
    }
    let part = |i: usize| std::str::from_utf8(&key[i * KSUID_LEN..(i + 1) * KSUID_LEN]).ok();
    Some((
        AppId::from_ksuid(part(0)?).ok()?,
        MessageId::from_ksuid(part(1)?).ok()?,
        AttemptId::from_ksuid(part(2)?).ok()?,
    ))
}

pub fn attempt_id_of(key: &[u8]) -> Option<AttemptId> {
    AttemptId::from_ksuid(std::str::from_utf8(key.get(ENDPOINT_KEY_LEN..)?).ok()?).ok()
}

/// A background task's key: its ksuid, so keys sort by creation time.
pub fn task(id: &TaskId) -> Vec<u8> {
    id.ksuid().as_bytes().to_vec()
}

pub fn app(id: &AppId) -> Vec<u8> {
    id.ksuid().as_bytes().to_vec()
}

pub fn app_uid(uid: &str) -> Vec<u8> {
    uid.as_bytes().to_vec()
}

pub fn event_type(name: &str) -> Vec<u8> {
    name.as_bytes().to_vec()
}

/// Prefix of all endpoints of one application.
pub fn endpoints_of(app: &AppId) -> Vec<u8> {
    app.ksuid().as_bytes().to_vec()
}

pub fn endpoint(app: &AppId, ep: &EndpointId) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 * KSUID_LEN);
    k.extend_from_slice(app.ksuid().as_bytes());
    k.extend_from_slice(ep.ksuid().as_bytes());
    k
}

pub fn endpoint_uid(app: &AppId, uid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(KSUID_LEN + uid.len());
    k.extend_from_slice(app.ksuid().as_bytes());
    k.extend_from_slice(uid.as_bytes());
    k
}

pub fn token(hash: &[u8; 32]) -> Vec<u8> {
    hash.to_vec()
}

/// The endpoint id inside an `endpoints` key.
pub fn endpoint_id_of(key: &[u8]) -> Option<EndpointId> {
    let tail = key.get(KSUID_LEN..2 * KSUID_LEN)?;
    EndpointId::from_ksuid(std::str::from_utf8(tail).ok()?).ok()
}

/// The first key after every key that starts with `prefix`, or `None` when no such key exists.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_round_trip_and_group_by_app() {
        let a = AppId::generate();
        let e = EndpointId::generate();
        let k = endpoint(&a, &e);
        assert_eq!(k.len(), 54);
        assert!(k.starts_with(&endpoints_of(&a)));
        assert_eq!(endpoint_id_of(&k), Some(e));
        assert_eq!(endpoint_id_of(b"short"), None);
    }

    #[test]
    fn key_order_is_creation_order() {
        let a = AppId::generate();
        let eps: Vec<EndpointId> = (0..500).map(|_| EndpointId::generate()).collect();
        let keys: Vec<Vec<u8>> = eps.iter().map(|e| endpoint(&a, e)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let apps: Vec<Vec<u8>> = (0..500).map(|_| app(&AppId::generate())).collect();
        assert!(apps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn endpoint_uid_keys_of_one_app_share_its_prefix() {
        let a = AppId::generate();
        let b = AppId::generate();
        assert!(endpoint_uid(&a, "x").starts_with(&endpoints_of(&a)));
        assert_ne!(endpoint_uid(&a, "x"), endpoint_uid(&b, "x"));
    }

    #[test]
    fn queue_keys_order_by_endpoint_then_due_time() {
        let a = AppId::generate();
        let e1 = EndpointId::generate();
        let e2 = EndpointId::generate();
        let k = queue(&a, &e1, 1_700_000_000_123, 7);
        assert_eq!(k.len(), QUEUE_KEY_LEN);
        assert_eq!(queue_due(&k), Some((1_700_000_000_123, 7)));
        assert_eq!(endpoint_of(&k), Some((a.clone(), e1.clone())));
        assert!(k.starts_with(&queue_of(&a, &e1)));
        // Earlier due first, then sequence; all of e1 before any of e2.
        assert!(queue(&a, &e1, 5, 9) < queue(&a, &e1, 6, 0));
        assert!(queue(&a, &e1, 5, 1) < queue(&a, &e1, 5, 2));
        assert!(queue(&a, &e1, 256, 0) > queue(&a, &e1, 255, u64::MAX));
        assert!(queue(&a, &e1, i64::MAX, u64::MAX) < queue(&a, &e2, 0, 0));
        assert_eq!(queue_due(b"short"), None);
    }

    #[test]
    fn message_scoped_keys_round_trip() {
        let a = AppId::generate();
        let e = EndpointId::generate();
        let m = MessageId::generate();
        let t = AttemptId::generate();
        assert_eq!(destination_msg(&destination(&a, &e, &m)), Some(m.clone()));
        assert!(destination(&a, &e, &m).starts_with(&endpoint(&a, &e)));
        assert_eq!(attempt_id_of(&attempt(&a, &m, &t)), Some(t.clone()));
        assert!(attempt(&a, &m, &t).starts_with(&attempts_of_msg(&a, &m)));
        assert_eq!(attempt_id_of(&attempt_by_ep(&a, &e, &t)), Some(t));
        assert!(message(&a, &m).starts_with(&messages_of(&a)));
        assert_ne!(msg_event_id(&a, "x"), msg_event_id(&AppId::generate(), "x"));
    }

    #[test]
    fn payload_expiry_keys_order_by_time_and_round_trip() {
        let (a, m) = (AppId::generate(), MessageId::generate());
        let k = payload_expiry(1_700_000_000_000, &a, &m);
        assert_eq!(payload_expiry_ids(&k), Some((a.clone(), m.clone())));
        assert!(payload_expiry(5, &a, &m) < payload_expiry(6, &AppId::generate(), &m));
        assert!(payload_expiry(255, &a, &m) < payload_expiry(256, &a, &m));
    }

    #[test]
    fn prefix_end_bounds_exactly_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
        let end = prefix_end(b"ab").unwrap();
        assert!(b"ab\xff\xff".as_slice() < end.as_slice());
        assert!(b"ac".as_slice() >= end.as_slice());
    }
}
