//! Event types, keyed by name. Deleting archives; expunging removes.

use sled::Transactional;

use super::codec::{decode, encode};
use super::page::{scan, Page, PageQuery};
use super::{abort, keys, Store, StoreError};
use crate::domain::EventType;

impl Store {
    /// Store a new event type; `Conflict` when the name exists.
    pub async fn create_event_type(&self, et: &EventType) -> Result<(), StoreError> {
        self.ensure_space(super::WriteKind::Create)?;
        let gate = self.write_gate();
        let value = encode(et)?;
        let key = keys::event_type(&et.name);
        let created =
            self.inner
                .event_types
                .compare_and_swap(key, None as Option<&[u8]>, Some(value))?;
        if created.is_err() {
            return Err(StoreError::Conflict(
                "an event type with this name already exists".into(),
            ));
        }
        {
            drop(gate);
            self.durable().await
        }
    }

    pub fn get_event_type(&self, name: &str) -> Result<Option<EventType>, StoreError> {
        match self.inner.event_types.get(keys::event_type(name))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    pub fn list_event_types(
        &self,
        q: &PageQuery,
        include_archived: bool,
    ) -> Result<Page<EventType>, StoreError> {
        scan(&self.inner.event_types, b"", q, |e: &EventType| {
            include_archived || !e.archived
        })
    }

    /// Create or change the event type `name` atomically: `change` gets the stored one (if any) and
    /// returns the new record or refuses. Returns the record and whether it was created.
    pub async fn upsert_event_type(
        &self,
        name: &str,
        change: impl Fn(Option<EventType>) -> Result<EventType, StoreError>,
    ) -> Result<(EventType, bool), StoreError> {
        let gate = self.write_gate();
        let key = keys::event_type(name);
        let tree = &self.inner.event_types;
        let result = (tree,).transaction(|(t,)| {
            let old = match t.get(&key)? {
                Some(v) => Some(decode::<EventType>(&v).or_else(abort)?),
                None => None,
            };
            let created = old.is_none();
            let new = change(old).or_else(abort)?;
            t.insert(key.as_slice(), encode(&new).or_else(abort)?)?;
            Ok((new, created))
        })?;
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(result)
    }

    /// Remove an event type for good. Returns false if it did not exist.
    pub async fn expunge_event_type(&self, name: &str) -> Result<bool, StoreError> {
        let gate = self.write_gate();
        let existed = self
            .inner
            .event_types
            .remove(keys::event_type(name))?
            .is_some();
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(existed)
    }
}
