//! API tokens, stored only as SHA-256 hashes of the token.

use super::codec::{decode, encode};
use super::{keys, Store, StoreError};
use crate::domain::ApiToken;

impl Store {
    pub async fn add_token(&self, token: &ApiToken) -> Result<(), StoreError> {
        self.ensure_space(super::WriteKind::Create)?;
        let gate = self.write_gate();
        self.inner
            .tokens
            .insert(keys::token(&token.hash), encode(token)?)?;
        {
            drop(gate);
            self.durable().await
        }
    }

    pub fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.inner.tokens.iter().map(|r| decode(&r?.1)).collect()
    }

    /// Remove every token with this name; returns how many were removed.
    pub async fn revoke_token(&self, name: &str) -> Result<usize, StoreError> {
        let gate = self.write_gate();
        let mut removed = 0;
        for t in self.tokens()? {
            if t.name == name && self.inner.tokens.remove(keys::token(&t.hash))?.is_some() {
                removed += 1;
            }
        }
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(removed)
    }
}
