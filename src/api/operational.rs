//! `/api/v1/operational-webhook/endpoint`: the operator's own subscriptions to operational events
//! (Svix's OperationalWebhookEndpoint API): create, list, read, upsert, delete, signing secret
//! (get, rotate) and custom headers. They are endpoints of the reserved operational application
//! (`store::operational_app`); delivery and event emission live in `delivery::operational`.
//! Admin only. Paths take ids or uids.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::endpoints::{as_set, headers_reply, rotate, rotation, set_disabled};
use super::error::ApiError;
use super::idempotency::{self, Idempotency};
use super::json;
use super::pagination::{ksuid_key, list_response, ListParams};
use super::query::Query;
use super::{body, no_content, query, reply, respond, with, Seg, State};
use crate::delivery::operational::EVENT_TYPES;
use crate::domain::{
    validate, Endpoint, EndpointId, Metadata, SigningKey, Timestamp, ValidationError,
};
use crate::store::operational_app;

/// Svix's OperationalWebhookEndpointIn (POST) and OperationalWebhookEndpointUpsertIn (PUT, which
/// ignores `secret` and `headers`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpEndpointIn {
    url: String,
    description: Option<String>,
    uid: Option<String>,
    disabled: Option<bool>,
    #[serde(alias = "filterTypes")]
    event_types: Option<Vec<String>>,
    secret: Option<String>,
    metadata: Option<Metadata>,
    headers: Option<BTreeMap<String, String>>,
    throttle_rate: Option<u16>,
}

/// Svix's OperationalWebhookEndpointOut.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OpEndpointOut {
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    event_types: Option<Vec<String>>,
    /// The same filter under the name Herald's endpoints also use.
    filter_types: Option<Vec<String>>,
    disabled: bool,
    /// Why Herald disabled the endpoint itself, if it did (Herald extension).
    disabled_reason: Option<String>,
    throttle_rate: Option<u16>,
    metadata: Metadata,
    created_at: String,
    updated_at: String,
}

impl From<Endpoint> for OpEndpointOut {
    fn from(e: Endpoint) -> Self {
        OpEndpointOut {
            id: e.id.to_string(),
            uid: e.uid,
            url: e.url,
            description: e.description,
            event_types: e.filter_types.clone(),
            filter_types: e.filter_types,
            disabled: e.disabled,
            disabled_reason: e.disabled_reason,
            throttle_rate: e.throttle_rate,
            metadata: e.metadata,
            created_at: e.created_at.to_rfc3339(),
            updated_at: e.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize)]
struct SecretOut {
    key: String,
}

#[derive(Debug, Deserialize)]
struct HeadersIn {
    headers: BTreeMap<String, String>,
}

impl OpEndpointIn {
    fn validate(&self, s: &State) -> Result<(), ValidationError> {
        validate::endpoint_url("url", &self.url, &s.limits)?;
        if let Some(d) = &self.description {
            validate::text("description", d, validate::MAX_DESCRIPTION_LEN)?;
        }
        if let Some(uid) = &self.uid {
            validate::uid("uid", uid)?;
        }
        if let Some(types) = &self.event_types {
            validate::filter_types("eventTypes", types)?;
            if let Some((i, t)) = types
                .iter()
                .enumerate()
                .find(|(_, t)| !EVENT_TYPES.contains(&t.as_str()))
            {
                return Err(ValidationError::new(
                    format!("eventTypes.{i}"),
                    format!(
                        "{t:?} is not an operational event type (one of {})",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
        if let Some(m) = &self.metadata {
            validate::metadata("metadata", m, &s.limits)?;
        }
        if let Some(h) = &self.headers {
            validate::headers("headers", h, &s.limits)?;
        }
        Ok(())
    }

    fn into_endpoint(self, uid: Option<String>) -> Result<Endpoint, ApiError> {
        let secret = match &self.secret {
            Some(s) => SigningKey::parse("secret", s)?,
            None => {
                SigningKey::generate().map_err(|e| ApiError::Internal(format!("csprng: {e}")))?
            }
        };
        let now = Timestamp::now();
        Ok(Endpoint {
            id: EndpointId::generate(),
            app_id: operational_app().clone(),
            uid: uid.or(self.uid),
            url: self.url,
            description: self.description.unwrap_or_default(),
            filter_types: self.event_types.as_deref().map(as_set),
            channels: None,
            disabled: self.disabled.unwrap_or(false),
            disabled_reason: None,
            throttle_rate: self.throttle_rate,
            ordering: Default::default(),
            headers: self.headers.unwrap_or_default(),
            metadata: self.metadata.unwrap_or_default(),
            version: 1,
            secret,
            retired_keys: Vec::new(),
            created_at: now,
            updated_at: now,
            filter: None,
        })
    }
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let base = || warp::path("operational-webhook").and(warp::path("endpoint"));
    let list = base()
        .and(warp::path::end())
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|s, q| async move { respond(super::blocking(move || list(s, q)).await) });
    let create = base()
        .and(warp::path::end())
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|s: State, b, idem: Idempotency| idem.run(s.clone(), create(s, b)));
    let get = base()
        .and(warp::path!(Seg))
        .and(warp::get())
        .and(with(&state))
        .then(|e, s| async move { respond(get(s, e)) });
    let put = base()
        .and(warp::path!(Seg))
        .and(warp::put())
        .and(with(&state))
        .and(body(&state))
        .then(|e, s, b| async move { respond(upsert(s, e, b).await) });
    let delete = base()
        .and(warp::path!(Seg))
        .and(warp::delete())
        .and(with(&state))
        .then(|e, s| async move { respond(delete(s, e).await) });
    let secret = base()
        .and(warp::path!(Seg / "secret"))
        .and(warp::get())
        .and(with(&state))
        .then(|e, s| async move { respond(get_secret(s, e)) });
    let rotate = base()
        .and(warp::path!(Seg / "secret" / "rotate"))
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|e, s: State, b, idem: Idempotency| idem.run(s.clone(), rotate_secret(s, e, b)));
    let headers_get = base()
        .and(warp::path!(Seg / "headers"))
        .and(warp::get())
        .and(with(&state))
        .then(|e, s| async move { respond(get_headers(s, e)) });
    let headers_put = base()
        .and(warp::path!(Seg / "headers"))
        .and(warp::put())
        .and(with(&state))
        .and(body(&state))
        .then(|e, s, b| async move { respond(set_headers(s, e, b).await) });
    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(put)
        .unify()
        .or(delete)
        .unify()
        .or(secret)
        .unify()
        .or(rotate)
        .unify()
        .or(headers_get)
        .unify()
        .or(headers_put)
        .unify()
        .boxed()
}

/// The operational endpoint named by the path, or 404.
fn find(s: &State, ep: &Seg) -> Result<Endpoint, ApiError> {
    s.store
        .get_endpoint(operational_app(), &ep.0)?
        .ok_or(ApiError::NotFound("operational webhook endpoint not found"))
}

fn list(s: State, q: Query) -> Result<Response, ApiError> {
    let params = ListParams::parse(&q, false)?.scanning(s.limits.max_list_scan);
    let pq = params.to_page_query(|c| {
        c.parse::<EndpointId>()
            .ok()
            .map(|id| id.ksuid().as_bytes().to_vec())
    })?;
    let page = s.store.list_endpoints(operational_app(), &pq)?;
    let out = list_response(
        page,
        |e| e.id.to_string(),
        ksuid_key(EndpointId::PREFIX),
        OpEndpointOut::from,
    );
    Ok(reply(StatusCode::OK, &out))
}

async fn create(s: State, body: Bytes) -> Result<Response, ApiError> {
    let input: OpEndpointIn = json::parse(&body)?;
    input.validate(&s)?;
    let ep = input.into_endpoint(None)?;
    s.store.create_endpoint(&ep).await?;
    Ok(reply(StatusCode::CREATED, &OpEndpointOut::from(ep)))
}

fn get(s: State, ep: Seg) -> Result<Response, ApiError> {
    Ok(reply(StatusCode::OK, &OpEndpointOut::from(find(&s, &ep)?)))
}

/// PUT: replace the endpoint's settings (not its secret or headers), or create it (201) when the
/// path names none, taking the path as its uid.
async fn upsert(s: State, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let mut input: OpEndpointIn = json::parse(&body)?;
    input.secret = None;
    input.headers = None;
    input.validate(&s)?;
    let ops = operational_app();
    if let Some(existing) = s.store.get_endpoint(ops, &ep.0)? {
        let updated = s
            .store
            .update_endpoint(ops, &existing.id, |e| {
                e.url = input.url.clone();
                e.description = input.description.clone().unwrap_or_default();
                if input.uid.is_some() {
                    e.uid = input.uid.clone();
                }
                e.filter_types = input.event_types.as_deref().map(as_set);
                set_disabled(e, input.disabled.unwrap_or(false));
                e.throttle_rate = input.throttle_rate;
                e.metadata = input.metadata.clone().unwrap_or_default();
            })
            .await?;
        return Ok(reply(StatusCode::OK, &OpEndpointOut::from(updated)));
    }
    let uid = match &input.uid {
        Some(_) => None,
        None if ep.0.parse::<EndpointId>().is_err() => {
            validate::uid("uid", &ep.0)?;
            Some(ep.0.clone())
        }
        None => None,
    };
    let new = input.into_endpoint(uid)?;
    s.store.create_endpoint(&new).await?;
    Ok(reply(StatusCode::CREATED, &OpEndpointOut::from(new)))
}

async fn delete(s: State, ep: Seg) -> Result<Response, ApiError> {
    let ep = find(&s, &ep)?;
    if s.store.delete_endpoint(operational_app(), &ep.id).await? {
        Ok(no_content())
    } else {
        Err(ApiError::NotFound("operational webhook endpoint not found"))
    }
}

fn get_secret(s: State, ep: Seg) -> Result<Response, ApiError> {
    let ep = find(&s, &ep)?;
    Ok(reply(
        StatusCode::OK,
        &SecretOut {
            key: ep.secret.to_whsec(),
        },
    ))
}

/// Svix answers 204 here (unlike the application endpoints' rotate, which returns the key).
async fn rotate_secret(s: State, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let (new_key, grace) = rotation(&body)?;
    let existing = find(&s, &ep)?;
    let now = Timestamp::now();
    s.store
        .update_endpoint(operational_app(), &existing.id, |e| {
            rotate(e, &new_key, grace, now)
        })
        .await?;
    Ok(no_content())
}

fn get_headers(s: State, ep: Seg) -> Result<Response, ApiError> {
    Ok(headers_reply(find(&s, &ep)?))
}

async fn set_headers(s: State, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: HeadersIn = json::parse(&body)?;
    validate::headers("headers", &input.headers, &s.limits)?;
    let existing = find(&s, &ep)?;
    s.store
        .update_endpoint(operational_app(), &existing.id, |e| {
            e.headers = input.headers.clone()
        })
        .await?;
    Ok(no_content())
}
