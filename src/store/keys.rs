//! Every key layout of the store, in one place. Trees and their keys:
//!
//! | tree            | key                                   | value          |
//! |-----------------|---------------------------------------|----------------|
//! | `apps`          | app ksuid (27)                        | Application    |
//! | `app_uid`       | uid                                   | app ksuid      |
//! | `event_types`   | name                                  | EventType      |
//! | `endpoints`     | app ksuid (27) ‖ endpoint ksuid (27)  | Endpoint       |
//! | `endpoint_uid`  | app ksuid (27) ‖ uid                  | endpoint ksuid |
//! | `tokens`        | SHA-256 of the token (32)             | ApiToken       |
//!
//! KSUIDs are fixed-width base62, so byte order is creation order; composite keys put fixed-width
//! parts first so a prefix scan selects one parent.

use crate::domain::ids::KSUID_LEN;
use crate::domain::{AppId, EndpointId};

pub const TREE_APPS: &str = "apps";
pub const TREE_APP_UID: &str = "app_uid";
pub const TREE_EVENT_TYPES: &str = "event_types";
pub const TREE_ENDPOINTS: &str = "endpoints";
pub const TREE_ENDPOINT_UID: &str = "endpoint_uid";
pub const TREE_TOKENS: &str = "tokens";

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
