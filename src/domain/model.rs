//! The records Herald keeps, as stored: applications, event types, endpoints and API tokens.
//! Field meanings follow Svix's models; the API module maps them to and from the wire shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{AppId, EndpointId};
use super::time::Timestamp;

pub type Metadata = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub id: AppId,
    pub uid: Option<String>,
    pub name: String,
    pub metadata: Metadata,
    pub throttle_rate: Option<u16>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    /// JSON text of the schemas object, kept as text so the binary codec needs no self-describing values.
    pub schemas: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    pub group_name: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A signing key: the raw bytes behind `whsec_<base64>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey(pub Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A key replaced by a rotation that still signs deliveries until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredKey {
    pub key: SigningKey,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub app_id: AppId,
    pub uid: Option<String>,
    pub url: String,
    pub description: String,
    /// Event-type filter; `None` receives every event type.
    pub filter_types: Option<Vec<String>>,
    /// Channel filter; `None` receives messages of any channel.
    pub channels: Option<Vec<String>>,
    pub disabled: bool,
    /// Why the endpoint was disabled by Herald itself (410 Gone, exhausted for days); `None` when an
    /// operator disabled it or it is enabled.
    pub disabled_reason: Option<String>,
    pub throttle_rate: Option<u16>,
    /// Herald extension: whether tries to this endpoint keep acceptance order.
    pub ordering: DeliveryOrder,
    pub headers: BTreeMap<String, String>,
    pub metadata: Metadata,
    pub version: i32,
    pub secret: SigningKey,
    pub retired_keys: Vec<RetiredKey>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Payload filter (Herald extension, `domain::filter` syntax); `None` receives every payload.
    pub filter: Option<String>,
}

/// How tries to one endpoint are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOrder {
    /// Several tries at once, each message retried on its own schedule.
    #[default]
    Unordered,
    /// One try at a time, in acceptance order: a failing message blocks the ones after it until
    /// it succeeds or exhausts its retries.
    Fifo,
}

impl Endpoint {
    /// The keys that sign a delivery at `now`: the current one, then those still in their grace period.
    pub fn signing_keys(&self, now: Timestamp) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.secret).chain(
            self.retired_keys
                .iter()
                .filter(move |k| k.expires_at > now)
                .map(|k| &k.key),
        )
    }
}

/// An API token as stored: only the SHA-256 of the token, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub hash: [u8; 32],
    pub name: String,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_keys_stop_signing() {
        let now = Timestamp(10_000);
        let ep = Endpoint {
            id: EndpointId::generate(),
            app_id: AppId::generate(),
            uid: None,
            url: "https://example.com".into(),
            description: String::new(),
            filter_types: None,
            channels: None,
            disabled: false,
            disabled_reason: None,
            throttle_rate: None,
            ordering: DeliveryOrder::Unordered,
            headers: BTreeMap::new(),
            metadata: Metadata::new(),
            version: 1,
            secret: SigningKey(vec![1; 24]),
            retired_keys: vec![
                RetiredKey {
                    key: SigningKey(vec![2; 24]),
                    expires_at: Timestamp(20_000),
                },
                RetiredKey {
                    key: SigningKey(vec![3; 24]),
                    expires_at: Timestamp(5_000),
                },
            ],
            created_at: now,
            updated_at: now,
            filter: None,
        };
        let keys: Vec<u8> = ep.signing_keys(now).map(|k| k.0[0]).collect();
        assert_eq!(keys, vec![1, 2]);
        assert!(!format!("{:?}", ep.secret).contains('1'));
    }
}
