//! Bearer-token authentication: which credential a request carries. Admin token hashes are held
//! in memory and compared in constant time against the SHA-256 of the presented token, so
//! response timing reveals nothing about them. Application tokens are looked up in the store by
//! that SHA-256 (timing can only tell about a hash nobody can steer), and the hash found is
//! compared in constant time again; an expired one is no credential.

use std::sync::RwLock;

use subtle::ConstantTimeEq;

use super::authz::Credential;
use super::error::ApiError;
use crate::domain::{token, Timestamp};
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

    /// Accept `Authorization: Bearer <token>` when the token is one of our admin tokens.
    pub fn check(&self, header: Option<&str>) -> Result<(), ApiError> {
        let h = bearer_hash(header).ok_or(ApiError::Unauthorized)?;
        if self.is_admin(&h) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    fn is_admin(&self, h: &[u8; 32]) -> bool {
        let known = self.hashes.read().unwrap_or_else(|e| e.into_inner());
        // No early exit: every stored hash is compared.
        let found = known
            .iter()
            .fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(h));
        bool::from(found)
    }

    /// The credential of `Authorization: Bearer <token>`: an admin token, or a live application
    /// token. `None` for no token, an unknown one, or an expired or revoked application token.
    pub fn credential(
        &self,
        store: &Store,
        header: Option<&str>,
    ) -> Result<Option<Credential>, ApiError> {
        let Some(h) = bearer_hash(header) else {
            return Ok(None);
        };
        if self.is_admin(&h) {
            return Ok(Some(Credential::Admin));
        }
        Ok(store
            .app_token(&h)?
            .filter(|t| bool::from(t.hash.ct_eq(&h)) && !t.is_expired(Timestamp::now()))
            .map(Credential::App))
    }
}

/// The SHA-256 of a bearer token, if the header carries one.
pub fn bearer_hash(header: Option<&str>) -> Option<[u8; 32]> {
    header
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .map(token::hash)
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

    #[tokio::test]
    async fn live_app_tokens_are_credentials_and_expired_ones_are_not() {
        use crate::domain::token::{generate_app_token, Capabilities};
        use crate::domain::AppId;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &crate::store::StoreOptions::for_tests()).unwrap();
        let auth = Auth {
            hashes: RwLock::new(vec![token::hash("secret-token")]),
        };
        let soon = Timestamp::now().plus_seconds(3600);
        let (live, rec) =
            generate_app_token(AppId::generate(), Capabilities::all(), None, soon).unwrap();
        store.add_app_token(&rec).await.unwrap();
        let past = Timestamp::now().plus_seconds(-1);
        let (old, rec_old) =
            generate_app_token(AppId::generate(), Capabilities::all(), None, past).unwrap();
        store.add_app_token(&rec_old).await.unwrap();

        let cred = |h: String| auth.credential(&store, Some(&h)).unwrap();
        assert!(matches!(
            cred("Bearer secret-token".into()),
            Some(Credential::Admin)
        ));
        assert!(matches!(cred(format!("Bearer {live}")), Some(Credential::App(t)) if t == rec));
        assert!(cred(format!("Bearer {old}")).is_none(), "expired");
        assert!(cred(format!("Bearer {live}x")).is_none());
        assert!(
            auth.check(Some(&format!("Bearer {live}"))).is_err(),
            "not admin"
        );
        assert!(auth.credential(&store, None).unwrap().is_none());
    }
}
