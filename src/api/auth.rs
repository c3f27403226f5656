//! Bearer-token authentication. Token hashes are held in memory and compared in constant time
//! against the SHA-256 of the presented token, so response timing reveals nothing about them.

use std::sync::RwLock;

use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::domain::token;
use crate::store::{Store, StoreError};

pub struct Auth {
    hashes: RwLock<Vec<[u8; 32]>>,
}

impl Auth {
    pub fn load(store: &Store) -> Result<Auth, StoreError> {
        let hashes = store.tokens()?.into_iter().map(|t| t.hash).collect();
        Ok(Auth {
            hashes: RwLock::new(hashes),
        })
    }

    /// Accept `Authorization: Bearer <token>` when the token is one of ours.
    pub fn check(&self, header: Option<&str>) -> Result<(), ApiError> {
        let presented = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let h = token::hash(presented);
        let known = self.hashes.read().unwrap_or_else(|e| e.into_inner());
        // No early exit: every stored hash is compared.
        let found = known
            .iter()
            .fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(&h));
        if bool::from(found) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_bearer_tokens_pass() {
        let auth = Auth {
            hashes: RwLock::new(vec![token::hash("secret-token")]),
        };
        assert!(auth.check(Some("Bearer secret-token")).is_ok());
        assert!(auth.check(Some("bearer secret-token")).is_ok());
        assert!(auth.check(Some("Bearer secret-tokeN")).is_err());
        assert!(auth.check(Some("Basic secret-token")).is_err());
        assert!(auth.check(Some("Bearer ")).is_err());
        assert!(auth.check(Some("secret-token")).is_err());
        assert!(auth.check(None).is_err());
    }
}
