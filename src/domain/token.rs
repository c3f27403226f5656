//! API tokens: random, shown once, stored only as their SHA-256. Admin tokens reach everything;
//! application tokens (minted for the customer portal) reach one application within a set of
//! capabilities, until they expire.

use base64::Engine;
use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

use super::ids::AppId;
use super::model::ApiToken;
use super::time::Timestamp;

/// Every token Herald makes starts with this, so a leaked one is easy to recognise in a scan.
pub const TOKEN_PREFIX: &str = "hrld_";
/// Application tokens start with this instead, so a scan also tells which kind leaked.
pub const APP_TOKEN_PREFIX: &str = "hrld_app_";
/// Bytes of entropy in a generated token.
pub const TOKEN_BYTES: usize = 32;
/// Shortest token accepted from the operator (`HERALD_ADMIN_TOKEN`).
pub const MIN_OPERATOR_TOKEN_LEN: usize = 32;

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh token (shown once to the caller) and the record to store for it.
pub fn generate(name: &str) -> Result<(String, ApiToken), getrandom::Error> {
    let token = random_token(TOKEN_PREFIX)?;
    let record = record_for(&token, name);
    Ok((token, record))
}

fn random_token(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The record to store for a token the operator chose.
pub fn record_for(token: &str, name: &str) -> ApiToken {
    ApiToken {
        hash: hash(token),
        name: name.to_string(),
        created_at: Timestamp::now(),
    }
}

/// What an application token may do beyond reading (Svix's app-portal capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Read the application, its endpoints (without secrets), messages, attempts, event types
    /// and stats.
    ViewBase,
    ViewEndpointSecret,
    /// Rotate (and so also read) an endpoint's secret.
    ManageEndpointSecret,
    /// Accepted for Svix compatibility; grants nothing, Herald has no transformations.
    ManageTransformations,
    /// Resend, recover and send example messages.
    CreateAttempts,
    /// Create, edit and delete endpoints and their headers (and so also their secrets).
    ManageEndpoint,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Capability::ViewBase,
        Capability::ViewEndpointSecret,
        Capability::ManageEndpointSecret,
        Capability::ManageTransformations,
        Capability::CreateAttempts,
        Capability::ManageEndpoint,
    ];

    /// The name Svix uses on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Capability::ViewBase => "ViewBase",
            Capability::ViewEndpointSecret => "ViewEndpointSecret",
            Capability::ManageEndpointSecret => "ManageEndpointSecret",
            Capability::ManageTransformations => "ManageTransformations",
            Capability::CreateAttempts => "CreateAttempts",
            Capability::ManageEndpoint => "ManageEndpoint",
        }
    }

    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of capabilities, stored as a bit set (one byte, stable across releases: bits are only
/// ever added). `ViewBase` is always in it, as Svix requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities(u8);

impl Capabilities {
    pub fn of(caps: impl IntoIterator<Item = Capability>) -> Self {
        caps.into_iter()
            .fold(Capabilities(Capability::ViewBase.bit()), |acc, c| {
                Capabilities(acc.0 | c.bit())
            })
    }

    pub fn all() -> Self {
        Capabilities::of(Capability::ALL)
    }

    pub fn has(self, c: Capability) -> bool {
        self.0 & c.bit() != 0
    }

    /// Whether a holder of this set may do what `needed` allows. Following Svix's definitions,
    /// managing an endpoint includes its secret, and rotating a secret includes reading it.
    pub fn grants(self, needed: Capability) -> bool {
        use Capability::*;
        match needed {
            ViewEndpointSecret => {
                self.has(ViewEndpointSecret)
                    || self.has(ManageEndpointSecret)
                    || self.has(ManageEndpoint)
            }
            ManageEndpointSecret => self.has(ManageEndpointSecret) || self.has(ManageEndpoint),
            other => self.has(other),
        }
    }

    pub fn names(self) -> Vec<&'static str> {
        Capability::ALL
            .into_iter()
            .filter(|c| self.has(*c))
            .map(Capability::name)
            .collect()
    }
}

/// A stored application token: only its hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppToken {
    pub hash: [u8; 32],
    pub app_id: AppId,
    pub capabilities: Capabilities,
    pub session_id: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl AppToken {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

/// A fresh application token (shown once to the caller) and the record to store for it.
pub fn generate_app_token(
    app_id: AppId,
    capabilities: Capabilities,
    session_id: Option<String>,
    expires_at: Timestamp,
) -> Result<(String, AppToken), getrandom::Error> {
    let token = random_token(APP_TOKEN_PREFIX)?;
    let record = AppToken {
        hash: hash(&token),
        app_id,
        capabilities,
        session_id,
        created_at: Timestamp::now(),
        expires_at,
    };
    Ok((token, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_base_is_always_granted_and_managing_includes_reading() {
        use Capability::*;
        let only_attempts = Capabilities::of([CreateAttempts]);
        assert!(only_attempts.grants(ViewBase));
        assert!(only_attempts.grants(CreateAttempts));
        assert!(!only_attempts.grants(ViewEndpointSecret));
        assert!(!only_attempts.grants(ManageEndpoint));
        let rotate = Capabilities::of([ManageEndpointSecret]);
        assert!(rotate.grants(ViewEndpointSecret));
        assert!(!rotate.grants(ManageEndpoint));
        let manage = Capabilities::of([ManageEndpoint]);
        assert!(manage.grants(ViewEndpointSecret) && manage.grants(ManageEndpointSecret));
        assert!(!manage.grants(CreateAttempts));
        assert!(!Capabilities::of([ViewEndpointSecret]).grants(ManageEndpointSecret));
        assert_eq!(Capabilities::of([]).names(), vec!["ViewBase"]);
        assert_eq!(Capabilities::all().names().len(), Capability::ALL.len());
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(c));
        }
        assert_eq!(Capability::from_name("viewbase"), None);
    }

    #[test]
    fn app_tokens_are_random_prefixed_and_stored_hashed() {
        let app = AppId::generate();
        let at = Timestamp::now().plus_seconds(60);
        let (t, rec) = generate_app_token(app.clone(), Capabilities::all(), None, at).unwrap();
        assert!(t.starts_with(APP_TOKEN_PREFIX));
        assert_eq!(rec.hash, hash(&t));
        assert_eq!(rec.app_id, app);
        assert!(!rec.is_expired(Timestamp::now()));
        assert!(rec.is_expired(at));
    }

    #[test]
    fn generated_tokens_are_random_and_stored_hashed() {
        let (a, ra) = generate("t").unwrap();
        let (b, _) = generate("t").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(ra.hash, hash(&a));
        assert_ne!(ra.hash.to_vec(), a.as_bytes()[..32].to_vec());
    }
}
