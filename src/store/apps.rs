//! Applications and their uid index. Deleting an application removes its endpoints too.

use sled::Transactional;

use super::codec::{decode, encode};
use super::page::{scan, Page, PageQuery};
use super::{abort, keys, put_with_uid, Store, StoreError};
use crate::domain::{AppId, Application, Timestamp};

const UID_TAKEN: &str = "an application with this uid already exists";

impl Store {
    /// Store a new application; `Conflict` when its uid is taken.
    pub async fn create_app(&self, app: &Application) -> Result<(), StoreError> {
        self.ensure_space(super::WriteKind::Create)?;
        let gate = self.write_gate();
        let i = &self.inner;
        let value = encode(app)?;
        let key = keys::app(&app.id);
        (&i.apps, &i.app_uid).transaction(|(apps, uids)| {
            if apps.get(&key)?.is_some() {
                return abort(StoreError::Conflict("application id exists".into()));
            }
            put_with_uid(
                apps,
                uids,
                &key,
                value.clone(),
                None,
                app.uid.as_deref().map(keys::app_uid),
                &key,
                UID_TAKEN,
            )
        })?;
        {
            drop(gate);
            self.durable().await
        }
    }

    /// The application with this id, or else with this uid.
    pub fn get_app(&self, id_or_uid: &str) -> Result<Option<Application>, StoreError> {
        let i = &self.inner;
        if let Ok(id) = id_or_uid.parse::<AppId>() {
            if let Some(v) = i.apps.get(keys::app(&id))? {
                return Ok(Some(decode(&v)?));
            }
        }
        match i.app_uid.get(keys::app_uid(id_or_uid))? {
            Some(ksuid) => match i.apps.get(&ksuid)? {
                Some(v) => Ok(Some(decode(&v)?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    pub fn list_apps(
        &self,
        q: &PageQuery,
        keep: impl Fn(&Application) -> bool,
    ) -> Result<Page<Application>, StoreError> {
        scan(&self.inner.apps, b"", q, keep)
    }

    /// Apply `change` to the stored application atomically; `NotFound` if it is gone, `Conflict` if
    /// the new uid is taken.
    pub async fn update_app(
        &self,
        id: &AppId,
        change: impl Fn(&mut Application),
    ) -> Result<Application, StoreError> {
        let gate = self.write_gate();
        let i = &self.inner;
        let key = keys::app(id);
        let updated = (&i.apps, &i.app_uid).transaction(|(apps, uids)| {
            let Some(v) = apps.get(&key)? else {
                return abort(StoreError::NotFound);
            };
            let old: Application = decode(&v).or_else(abort)?;
            let mut new = old.clone();
            change(&mut new);
            new.updated_at = Timestamp::now();
            put_with_uid(
                apps,
                uids,
                &key,
                encode(&new).or_else(abort)?,
                old.uid.as_deref().map(keys::app_uid),
                new.uid.as_deref().map(keys::app_uid),
                &key,
                UID_TAKEN,
            )?;
            Ok(new)
        })?;
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(updated)
    }

    /// Remove an application with its endpoints. Returns false if it did not exist.
    pub async fn delete_app(&self, id: &AppId) -> Result<bool, StoreError> {
        let gate = self.write_gate();
        let i = &self.inner;
        let key = keys::app(id);
        let prefix = keys::endpoints_of(id);
        let mut endpoint_keys = Vec::new();
        for r in i.endpoints.scan_prefix(&prefix) {
            endpoint_keys.push(r?.0);
        }
        let mut uid_keys = Vec::new();
        for r in i.endpoint_uid.scan_prefix(&prefix) {
            uid_keys.push(r?.0);
        }
        let existed = (&i.apps, &i.app_uid, &i.endpoints, &i.endpoint_uid).transaction(
            |(apps, app_uids, eps, ep_uids)| {
                let Some(v) = apps.remove(key.as_slice())? else {
                    return Ok(false);
                };
                let app: Application = decode(&v).or_else(abort)?;
                if let Some(uid) = &app.uid {
                    app_uids.remove(keys::app_uid(uid))?;
                }
                for k in &endpoint_keys {
                    eps.remove(k)?;
                }
                for k in &uid_keys {
                    ep_uids.remove(k)?;
                }
                Ok(true)
            },
        )?;
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(existed)
    }
}
