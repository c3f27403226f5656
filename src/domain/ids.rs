//! Prefixed, time-ordered ids (`app_…`, `ep_…`, `msg_…`, `atmpt_…`): a prefix plus a 27-character
//! base62 KSUID with millisecond time. Ids made by one process are strictly increasing, so sorting ids
//! sorts by creation time and the last id of a page is a sound pagination cursor.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use svix_ksuid::{KsuidLike, KsuidMs};

/// Length of the KSUID part of every id (base62 of 20 bytes).
pub const KSUID_LEN: usize = 27;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a valid {kind} id")]
pub struct IdError {
    pub kind: &'static str,
}

static LAST: Mutex<[u8; 20]> = Mutex::new([0u8; 20]);

/// A new KSUID, strictly greater than any made before by this process. Within one 4 ms tick the
/// random payload is replaced by the previous id plus one, as monotonic ULID generators do.
fn next_ksuid() -> KsuidMs {
    let candidate = KsuidMs::new(None, None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let mut bytes = *candidate.bytes();
    if bytes <= *last {
        bytes = *last;
        for b in bytes.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    *last = bytes;
    KsuidMs::from_bytes(bytes)
}

/// The smallest (or, with `upper`, the greatest) KSUID of the 4 ms tick holding `millis`: bounds for
/// selecting ids by creation time.
pub fn ksuid_bound(millis: i64, upper: bool) -> String {
    let payload = if upper { [0xffu8; 15] } else { [0u8; 15] };
    let millis = millis.max(svix_ksuid::KSUID_EPOCH * 1000);
    KsuidMs::from_millis(Some(millis), Some(&payload)).to_string()
}

fn is_ksuid(s: &str) -> bool {
    s.len() == KSUID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
        && s.parse::<KsuidMs>().is_ok()
}

macro_rules! id_type {
    ($name:ident, $prefix:literal, $kind:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, next_ksuid()))
            }

            /// An id made at `millis` (for records dated in the past, e.g. in retention tests).
            pub fn generate_at(millis: i64) -> Self {
                $name(format!("{}{}", $prefix, KsuidMs::from_millis(Some(millis), None)))
            }

            /// The 27 KSUID characters: fixed width, so byte order is time order in store keys.
            pub fn ksuid(&self) -> &str {
                &self.0[$prefix.len()..]
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Rebuild from the KSUID part stored in a key.
            pub fn from_ksuid(ksuid: &str) -> Result<Self, IdError> {
                if is_ksuid(ksuid) {
                    Ok($name(format!("{}{}", $prefix, ksuid)))
                } else {
                    Err(IdError { kind: $kind })
                }
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                match s.strip_prefix($prefix) {
                    Some(k) => Self::from_ksuid(k),
                    None => Err(IdError { kind: $kind }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(AppId, "app_", "application");
id_type!(EndpointId, "ep_", "endpoint");
id_type!(MessageId, "msg_", "message");
id_type!(AttemptId, "atmpt_", "attempt");
id_type!(TaskId, "qtask_", "background task");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_fixed_width() {
        let id = AppId::generate();
        assert!(id.as_str().starts_with("app_"));
        assert_eq!(id.ksuid().len(), KSUID_LEN);
        assert_eq!(id.as_str().parse::<AppId>(), Ok(id.clone()));
        assert!(EndpointId::generate().as_str().starts_with("ep_"));
        assert!(MessageId::generate().as_str().starts_with("msg_"));
        assert!(AttemptId::generate().as_str().starts_with("atmpt_"));
    }

    #[test]
    fn ids_sort_in_generation_order() {
        let ids: Vec<EndpointId> = (0..10_000).map(|_| EndpointId::generate()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "ids must be unique");
    }

    #[test]
    fn ids_carry_their_creation_time() {
        let before = chrono::Utc::now().timestamp_millis();
        let id = AppId::generate();
        let k: KsuidMs = id.ksuid().parse().expect("valid ksuid");
        let t = k.timestamp_millis();
        assert!(
            (t - before).abs() < 2_000,
            "ksuid time {t} far from {before}"
        );
    }

    #[test]
    fn time_bounds_enclose_ids_made_in_between() {
        let before = chrono::Utc::now().timestamp_millis() - 10;
        let id = MessageId::generate();
        let after = chrono::Utc::now().timestamp_millis() + 10;
        assert!(ksuid_bound(before, false).as_str() < id.ksuid());
        assert!(ksuid_bound(after, true).as_str() > id.ksuid());
        assert!(ksuid_bound(after, false).as_str() > id.ksuid());
        assert_eq!(ksuid_bound(0, false).len(), KSUID_LEN);
    }

    #[test]
    fn bad_ids_are_refused() {
        assert!("ep_123".parse::<EndpointId>().is_err());
        assert!("app_2Yo5GNZB2LvV6KhKKpjzpQXoR2V"
            .parse::<EndpointId>()
            .is_err());
        assert!("ep_2Yo5GNZB2LvV6KhKKpjzpQXo!2V"
            .parse::<EndpointId>()
            .is_err());
        assert!("ep_2Yo5GNZB2LvV6KhKKpjzpQXoR2V"
            .parse::<EndpointId>()
            .is_ok());
    }
}
