//! API tokens: random, shown once, stored only as their SHA-256.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::model::ApiToken;
use super::time::Timestamp;

/// Every token Herald makes starts with this, so a leaked one is easy to recognise in a scan.
pub const TOKEN_PREFIX: &str = "hrld_";
/// Bytes of entropy in a generated token.
pub const TOKEN_BYTES: usize = 32;
/// Shortest token accepted from the operator (`HERALD_ADMIN_TOKEN`).
pub const MIN_OPERATOR_TOKEN_LEN: usize = 32;

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh token (shown once to the caller) and the record to store for it.
pub fn generate(name: &str) -> Result<(String, ApiToken), getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let record = record_for(&token, name);
    Ok((token, record))
}

/// The record to store for a token the operator chose.
pub fn record_for(token: &str, name: &str) -> ApiToken {
    ApiToken {
        hash: hash(token),
        name: name.to_string(),
        created_at: Timestamp::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
