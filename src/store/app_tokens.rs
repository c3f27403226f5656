//! Application tokens (the customer portal's), stored only as SHA-256 hashes with their
//! application, capabilities, session and expiry. Looked up by hash; expired ones are refused by
//! the caller and removed by the periodic sweep.

use super::codec::{decode, encode};
use super::{keys, Store, StoreError};
use crate::domain::token::AppToken;
use crate::domain::{AppId, Timestamp};

impl Store {
    pub async fn add_app_token(&self, token: &AppToken) -> Result<(), StoreError> {
        self.ensure_space(super::WriteKind::Create)?;
        let gate = self.write_gate();
        self.inner
            .app_tokens
            .insert(keys::token(&token.hash), encode(token)?)?;
        {
            drop(gate);
            self.durable().await
        }
    }

    /// The token with this hash, expired or not.
    pub fn app_token(&self, hash: &[u8; 32]) -> Result<Option<AppToken>, StoreError> {
        self.inner
            .app_tokens
            .get(keys::token(hash))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Remove one token (logout); false if it was not there.
    pub async fn remove_app_token(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
        let gate = self.write_gate();
        let removed = self.inner.app_tokens.remove(keys::token(hash))?.is_some();
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(removed)
    }

    /// Make the tokens of `app` (only those of the given sessions, when some are given) expire
    /// at `at` at the latest; returns how many changed. Scans every token: there are as many as
    /// live portal links, and expired ones are swept.
    pub async fn expire_app_tokens(
        &self,
        app: &AppId,
        sessions: &[String],
        at: Timestamp,
    ) -> Result<usize, StoreError> {
        let gate = self.write_gate();
        let mut changed = 0;
        for r in self.inner.app_tokens.iter() {
            let (k, v) = r?;
            let mut t: AppToken = decode(&v)?;
            let chosen =
                sessions.is_empty() || t.session_id.as_ref().is_some_and(|s| sessions.contains(s));
            if &t.app_id == app && chosen && t.expires_at > at {
                t.expires_at = at;
                // Only if unchanged since read: a concurrent logout must not be undone.
                if self
                    .inner
                    .app_tokens
                    .compare_and_swap(&k, Some(v), Some(encode(&t)?))?
                    .is_ok()
                {
                    changed += 1;
                }
            }
        }
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(changed)
    }

    /// Remove every token expired by `now`; returns how many. Blocking: run it off the runtime.
    pub fn purge_expired_app_tokens(&self, now: Timestamp) -> Result<usize, StoreError> {
        let _gate = self.write_gate();
        let mut n = 0;
        for r in self.inner.app_tokens.iter() {
            let (k, v) = r?;
            // An unreadable record can never authenticate anyone: it goes too.
            let expired = decode::<AppToken>(&v).map_or(true, |t| t.is_expired(now));
            if expired
                && self
                    .inner
                    .app_tokens
                    .compare_and_swap(&k, Some(v), None as Option<&[u8]>)?
                    .is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::StoreOptions;
    use super::*;
    use crate::domain::token::{generate_app_token, Capabilities};

    fn token(app: &AppId, session: Option<&str>, secs: i64) -> AppToken {
        generate_app_token(
            app.clone(),
            Capabilities::all(),
            session.map(String::from),
            Timestamp::now().plus_seconds(secs),
        )
        .unwrap()
        .1
    }

    #[tokio::test]
    async fn tokens_are_found_by_hash_expired_by_app_and_session_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let (a, b) = (AppId::generate(), AppId::generate());
        let a1 = token(&a, Some("s1"), 3600);
        let a2 = token(&a, Some("s2"), 3600);
        let b1 = token(&b, Some("s1"), 3600);
        let old = token(&a, None, -1);
        for t in [&a1, &a2, &b1, &old] {
            store.add_app_token(t).await.unwrap();
        }
        assert_eq!(store.app_token(&a1.hash).unwrap().as_ref(), Some(&a1));
        assert_eq!(store.app_token(&[0; 32]).unwrap(), None);

        let now = Timestamp::now();
        let n = store
            .expire_app_tokens(&a, &["s1".to_string()], now)
            .await
            .unwrap();
        assert_eq!(n, 1, "only app a's token of session s1");
        assert!(store.app_token(&a1.hash).unwrap().unwrap().is_expired(now));
        assert!(!store.app_token(&a2.hash).unwrap().unwrap().is_expired(now));
        assert!(!store.app_token(&b1.hash).unwrap().unwrap().is_expired(now));

        // A grace period never extends a token.
        let later = now.plus_seconds(7200);
        assert_eq!(store.expire_app_tokens(&a, &[], later).await.unwrap(), 0);
        assert_eq!(store.expire_app_tokens(&a, &[], now).await.unwrap(), 1);

        assert_eq!(store.purge_expired_app_tokens(now).unwrap(), 3);
        assert_eq!(store.app_token(&a1.hash).unwrap(), None);
        assert_eq!(store.app_token(&old.hash).unwrap(), None);
        assert!(store.app_token(&b1.hash).unwrap().is_some());

        assert!(store.remove_app_token(&b1.hash).await.unwrap());
        assert!(!store.remove_app_token(&b1.hash).await.unwrap());
        assert_eq!(store.app_token(&b1.hash).unwrap(), None);
    }
}
