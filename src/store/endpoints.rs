//! Endpoints of an application and their per-application uid index.

use sled::Transactional;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::codec::{decode_as, encode_as};
use super::page::{scan_within, Budget, Page, PageQuery};
use super::{abort, keys, put_with_uid, Store, StoreError};
use crate::domain::filter::Filter;
use crate::domain::{
    AppId, DeliveryOrder, Endpoint, EndpointId, Metadata, RetiredKey, SigningKey, Timestamp,
};

const UID_TAKEN: &str = "an endpoint with this uid already exists in this application";
/// An endpoint without `ordering` (before FIFO endpoints): read as unordered.
const ENDPOINT_V1: u8 = 1;
/// An endpoint with `ordering` and a payload `filter`.
const ENDPOINT_V2: u8 = 2;

/// The layout of format 1, kept to read stores written before `ordering`.
#[derive(Serialize, Deserialize)]
struct EndpointV1 {
    id: EndpointId,
    app_id: AppId,
    uid: Option<String>,
    url: String,
    description: String,
    filter_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    disabled: bool,
    disabled_reason: Option<String>,
    throttle_rate: Option<u16>,
    headers: BTreeMap<String, String>,
    metadata: Metadata,
    version: i32,
    secret: SigningKey,
    retired_keys: Vec<RetiredKey>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// An endpoint as stored, in either format (its keys still sealed).
pub(super) fn decode_endpoint(bytes: &[u8]) -> Result<Endpoint, StoreError> {
    if bytes.first() == Some(&ENDPOINT_V2) {
        return decode_as(ENDPOINT_V2, bytes);
    }
    let e: EndpointV1 = decode_as(ENDPOINT_V1, bytes)?;
    Ok(Endpoint {
        id: e.id,
        app_id: e.app_id,
        uid: e.uid,
        url: e.url,
        description: e.description,
        filter_types: e.filter_types,
        channels: e.channels,
        disabled: e.disabled,
        disabled_reason: e.disabled_reason,
        throttle_rate: e.throttle_rate,
        ordering: DeliveryOrder::Unordered,
        filter: None,
        headers: e.headers,
        metadata: e.metadata,
        version: e.version,
        secret: e.secret,
        retired_keys: e.retired_keys,
        created_at: e.created_at,
        updated_at: e.updated_at,
    })
}

impl Store {
    /// The stored form: the endpoint with its signing keys sealed under the main key.
    fn seal_endpoint(&self, ep: &Endpoint) -> Result<Vec<u8>, StoreError> {
        let aad = keys::endpoint(&ep.app_id, &ep.id);
        let sealer = &self.inner.sealer;
        let mut stored = ep.clone();
        stored.secret = SigningKey(sealer.seal(&ep.secret.0, &aad)?);
        for k in &mut stored.retired_keys {
            k.key = SigningKey(sealer.seal(&k.key.0, &aad)?);
        }
        encode_as(ENDPOINT_V2, &stored)
    }

    fn open_endpoint(&self, bytes: &[u8]) -> Result<Endpoint, StoreError> {
        self.unseal(decode_endpoint(bytes)?)
    }

    fn unseal(&self, mut ep: Endpoint) -> Result<Endpoint, StoreError> {
        let aad = keys::endpoint(&ep.app_id, &ep.id);
        let sealer = &self.inner.sealer;
        ep.secret = SigningKey(sealer.open(&ep.secret.0, &aad)?);
        for k in &mut ep.retired_keys {
            k.key = SigningKey(sealer.open(&k.key.0, &aad)?);
        }
        Ok(ep)
    }

    /// Store a new endpoint; `Conflict` when its uid is taken in the application.
    pub async fn create_endpoint(&self, ep: &Endpoint) -> Result<(), StoreError> {
        self.ensure_space(super::WriteKind::Create)?;
        let gate = self.write_gate();
        let i = &self.inner;
        let key = keys::endpoint(&ep.app_id, &ep.id);
        let value = self.seal_endpoint(ep)?;
        let app_key = keys::app(&ep.app_id);
        (&i.apps, &i.endpoints, &i.endpoint_uid).transaction(|(apps, eps, uids)| {
            // Reading the app inside the transaction keeps a concurrent app delete from orphaning us.
            // The operational application has no record (see `operational`).
            if ep.app_id != *super::operational_app() && apps.get(&app_key)?.is_none() {
                return abort(StoreError::NotFound);
            }
            put_with_uid(
                eps,
                uids,
                &key,
                value.clone(),
                None,
                ep.uid.as_deref().map(|u| keys::endpoint_uid(&ep.app_id, u)),
                ep.id.ksuid().as_bytes(),
                UID_TAKEN,
            )
        })?;
        {
            drop(gate);
            self.durable().await
        }
    }

    /// How tries to an endpoint are ordered (unordered when it is gone). Reads no secret.
    pub fn endpoint_ordering(
        &self,
        app: &AppId,
        id: &EndpointId,
    ) -> Result<DeliveryOrder, StoreError> {
        match self.inner.endpoints.get(keys::endpoint(app, id))? {
            Some(v) => Ok(decode_endpoint(&v)?.ordering),
            None => Ok(DeliveryOrder::Unordered),
        }
    }

    /// The endpoint of `app` with this id, or else with this uid.
    pub fn get_endpoint(
        &self,
        app: &AppId,
        id_or_uid: &str,
    ) -> Result<Option<Endpoint>, StoreError> {
        let i = &self.inner;
        if let Ok(id) = id_or_uid.parse::<EndpointId>() {
            if let Some(v) = i.endpoints.get(keys::endpoint(app, &id))? {
                return Ok(Some(self.open_endpoint(&v)?));
            }
        }
        let Some(ksuid) = i.endpoint_uid.get(keys::endpoint_uid(app, id_or_uid))? else {
            return Ok(None);
        };
        let id = std::str::from_utf8(&ksuid)
            .ok()
            .and_then(|k| EndpointId::from_ksuid(k).ok())
            .ok_or_else(|| StoreError::Codec("bad endpoint uid index entry".into()))?;
        match i.endpoints.get(keys::endpoint(app, &id))? {
            Some(v) => Ok(Some(self.open_endpoint(&v)?)),
            None => Ok(None),
        }
    }

    pub fn list_endpoints(&self, app: &AppId, q: &PageQuery) -> Result<Page<Endpoint>, StoreError> {
        scan_within(
            &self.inner.endpoints,
            &keys::endpoints_of(app),
            q,
            &Budget::default(),
            |_, v| decode_endpoint(v).map(Some),
            |_: &Endpoint| true,
            |_| 0,
        )?
        .try_map(|e| self.unseal(e))
    }

    /// How many customer endpoints are disabled, in all applications.
    pub fn disabled_endpoints(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for r in self.inner.endpoints.iter() {
            let ep = decode_endpoint(&r?.1)?;
            n += u64::from(ep.disabled && ep.app_id != *super::operational_app());
        }
        Ok(n)
    }

    /// Every endpoint of an application (for fan-out; applications hold few endpoints).
    pub fn all_endpoints(&self, app: &AppId) -> Result<Vec<Endpoint>, StoreError> {
        let mut out = Vec::new();
        for r in self.inner.endpoints.scan_prefix(keys::endpoints_of(app)) {
            out.push(self.open_endpoint(&r?.1)?);
        }
        Ok(out)
    }

    /// The endpoints of `app` that a message of `event_type` on `channels` with `payload` goes to:
    /// enabled, and with filters that take it. Their secrets stay sealed: fan-out needs none, and
    /// unsealing every endpoint's keys for every message was a good part of its cost.
    ///
    /// `payload` is the message's JSON text; `None` skips payload filters (a precheck has no payload). A filter is parsed here,
    /// per fan-out, rather than cached by endpoint: parsing a typical one costs about 21 µs in a
    /// debug build and evaluating it under 1 µs (the `filter` tests print both), small next to the
    /// message's write, and nothing can go stale. A stored filter that no longer
    /// parses (never, unless the grammar narrows) takes nothing.
    pub fn fan_out(
        &self,
        app: &AppId,
        event_type: &str,
        channels: Option<&[String]>,
        payload: Option<&str>,
    ) -> Result<Vec<EndpointId>, StoreError> {
        // Parsed only when some endpoint has a filter: most applications have none.
        let parsed = std::cell::OnceCell::new();
        let mut out = Vec::new();
        for r in self.inner.endpoints.scan_prefix(keys::endpoints_of(app)) {
            let ep = decode_endpoint(&r?.1)?;
            let payload_ok = match (&ep.filter, payload) {
                (Some(f), Some(p)) => {
                    let value = parsed
                        .get_or_init(|| serde_json::from_str(p).unwrap_or(serde_json::Value::Null));
                    Filter::parse(f).is_ok_and(|f| f.matches(value))
                }
                _ => true,
            };
            if !ep.disabled && ep.accepts(event_type, channels) && payload_ok {
                out.push(ep.id);
            }
        }
        Ok(out)
    }

    /// Apply `change` to the stored endpoint atomically; `NotFound` if it is gone, `Conflict` if the
    /// new uid is taken.
    pub async fn update_endpoint(
        &self,
        app: &AppId,
        id: &EndpointId,
        change: impl Fn(&mut Endpoint),
    ) -> Result<Endpoint, StoreError> {
        let gate = self.write_gate();
        let i = &self.inner;
        let key = keys::endpoint(app, id);
        let updated = (&i.endpoints, &i.endpoint_uid).transaction(|(eps, uids)| {
            let Some(v) = eps.get(&key)? else {
                return abort(StoreError::NotFound);
            };
            let old: Endpoint = self.open_endpoint(&v).or_else(abort)?;
            let mut new = old.clone();
            change(&mut new);
            new.updated_at = Timestamp::now();
            put_with_uid(
                eps,
                uids,
                &key,
                self.seal_endpoint(&new).or_else(abort)?,
                old.uid.as_deref().map(|u| keys::endpoint_uid(app, u)),
                new.uid.as_deref().map(|u| keys::endpoint_uid(app, u)),
                id.ksuid().as_bytes(),
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

    /// Remove an endpoint. Returns false if it did not exist.
    pub async fn delete_endpoint(&self, app: &AppId, id: &EndpointId) -> Result<bool, StoreError> {
        let gate = self.write_gate();
        let i = &self.inner;
        let key = keys::endpoint(app, id);
        let existed = (&i.endpoints, &i.endpoint_uid).transaction(|(eps, uids)| {
            let Some(v) = eps.remove(key.as_slice())? else {
                return Ok(false);
            };
            let ep = decode_endpoint(&v).or_else(abort)?;
            if let Some(uid) = &ep.uid {
                uids.remove(keys::endpoint_uid(app, uid))?;
            }
            Ok(true)
        })?;
        {
            drop(gate);
            self.durable().await
        }?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_stored_before_ordering_read_as_unordered() {
        let old = EndpointV1 {
            id: EndpointId::generate(),
            app_id: AppId::generate(),
            uid: Some("u".into()),
            url: "https://example.com/hook".into(),
            description: "d".into(),
            filter_types: None,
            channels: Some(vec!["c".into()]),
            disabled: false,
            disabled_reason: None,
            throttle_rate: Some(4),
            headers: BTreeMap::new(),
            metadata: Metadata::new(),
            version: 1,
            secret: SigningKey(vec![7; 24]),
            retired_keys: Vec::new(),
            created_at: Timestamp(1),
            updated_at: Timestamp(2),
        };
        let ep = decode_endpoint(&encode_as(ENDPOINT_V1, &old).unwrap()).unwrap();
        assert_eq!(ep.ordering, DeliveryOrder::Unordered);
        assert_eq!(
            (ep.url.as_str(), ep.throttle_rate),
            (old.url.as_str(), Some(4))
        );

        assert_eq!(ep.filter, None);

        let mut fifo = ep.clone();
        fifo.ordering = DeliveryOrder::Fifo;
        fifo.filter = Some("$.amount > 100".into());
        let back = decode_endpoint(&encode_as(ENDPOINT_V2, &fifo).unwrap()).unwrap();
        assert_eq!(back, fifo);
    }
}
