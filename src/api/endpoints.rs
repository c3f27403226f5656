//! `/api/v1/app/{app}/endpoint`: subscriptions of an application, their signing secrets (get,
//! rotate with a grace period) and custom headers. Paths take ids or uids.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::apps::find_app;
use super::error::ApiError;
use super::idempotency::{self, Idempotency};
use super::json::{self, Patch};
use super::pagination::{ksuid_key, list_response, ListParams};
use super::query::Query;
use super::{body, no_content, query, reply, respond, with, Seg, State};
use crate::domain::filter;
use crate::domain::{
    validate, Application, DeliveryOrder, Endpoint, EndpointId, Metadata, RetiredKey, SigningKey,
    Timestamp, ValidationError,
};

/// Default and longest grace period during which a rotated-out key still signs deliveries.
const DEFAULT_GRACE_SECONDS: u32 = 86_400;
const MAX_GRACE_SECONDS: u32 = 7 * 86_400;
/// Retired keys kept at most (the newest ones), however often a secret is rotated.
const MAX_RETIRED_KEYS: usize = 5;

/// POST and PUT body (PUT ignores `secret` and `headers`, as Svix's EndpointUpsertIn lacks them).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointIn {
    url: String,
    description: Option<String>,
    uid: Option<String>,
    disabled: Option<bool>,
    #[serde(alias = "filterTypes")]
    event_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    secret: Option<String>,
    metadata: Option<Metadata>,
    headers: Option<BTreeMap<String, String>>,
    #[serde(alias = "rateLimit")]
    throttle_rate: Option<u16>,
    /// Herald extension: `"fifo"` or `"unordered"`; absent keeps it as it is (PUT) or unordered.
    ordering: Option<DeliveryOrder>,
    version: Option<i32>,
    /// Payload filter (Herald extension; syntax in `domain::filter`).
    filter: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointPatch {
    url: Option<String>,
    description: Option<String>,
    disabled: Option<bool>,
    metadata: Option<Metadata>,
    #[serde(default)]
    uid: Patch<String>,
    #[serde(default, alias = "filterTypes")]
    event_types: Patch<Vec<String>>,
    #[serde(default)]
    channels: Patch<Vec<String>>,
    #[serde(default, alias = "rateLimit")]
    throttle_rate: Patch<u16>,
    ordering: Option<DeliveryOrder>,
    #[serde(default)]
    filter: Patch<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointOut {
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    event_types: Option<Vec<String>>,
    /// Older Svix clients read the filter under this name.
    filter_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    disabled: bool,
    /// Why Herald disabled the endpoint itself, if it did (Herald extension).
    disabled_reason: Option<String>,
    throttle_rate: Option<u16>,
    rate_limit: Option<u16>,
    /// Herald extension.
    ordering: DeliveryOrder,
    metadata: Metadata,
    version: i32,
    created_at: String,
    updated_at: String,
    /// Payload filter (Herald extension).
    filter: Option<String>,
}

impl From<Endpoint> for EndpointOut {
    fn from(e: Endpoint) -> Self {
        EndpointOut {
            id: e.id.to_string(),
            uid: e.uid,
            url: e.url,
            description: e.description,
            event_types: e.filter_types.clone(),
            filter_types: e.filter_types,
            channels: e.channels,
            disabled: e.disabled,
            disabled_reason: e.disabled_reason,
            throttle_rate: e.throttle_rate,
            rate_limit: e.throttle_rate,
            ordering: e.ordering,
            metadata: e.metadata,
            version: e.version,
            created_at: e.created_at.to_rfc3339(),
            updated_at: e.updated_at.to_rfc3339(),
            filter: e.filter,
        }
    }
}

#[derive(Debug, Serialize)]
struct SecretOut {
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RotateIn {
    key: Option<String>,
    grace_period_seconds: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct HeadersIn {
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadersPatchIn {
    #[serde(default)]
    headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    delete_headers: Vec<String>,
}

#[derive(Debug, Serialize)]
struct HeadersOut {
    headers: BTreeMap<String, String>,
    sensitive: Vec<String>,
}

fn check_url(s: &State, url: &str) -> Result<(), ValidationError> {
    validate::endpoint_url("url", url, &s.limits)
}

/// Indices in errors refer to the list as sent; what is stored is sorted and de-duplicated, as the
/// sets Svix clients send.
fn check_filters(
    event_types: Option<&Vec<String>>,
    channels: Option<&Vec<String>>,
) -> Result<(), ValidationError> {
    if let Some(t) = event_types {
        validate::filter_types("eventTypes", t)?;
    }
    if let Some(c) = channels {
        validate::channels("channels", c)?;
    }
    Ok(())
}

pub(super) fn as_set(items: &[String]) -> Vec<String> {
    items
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl EndpointIn {
    /// Every field's first error at once (the admin UI marks them all).
    fn validate(&self, s: &State) -> Result<(), ApiError> {
        validate::all([
            check_url(s, &self.url),
            self.description.as_ref().map_or(Ok(()), |d| {
                validate::text("description", d, validate::MAX_DESCRIPTION_LEN)
            }),
            self.uid
                .as_ref()
                .map_or(Ok(()), |uid| validate::uid("uid", uid)),
            check_filters(self.event_types.as_ref(), None),
            check_filters(None, self.channels.as_ref()),
            self.metadata
                .as_ref()
                .map_or(Ok(()), |m| validate::metadata("metadata", m, &s.limits)),
            self.headers
                .as_ref()
                .map_or(Ok(()), |h| validate::headers("headers", h, &s.limits)),
            self.filter
                .as_ref()
                .map_or(Ok(()), |f| validate::payload_filter("filter", f)),
        ])
        .map_err(ApiError::Validation)
    }

    /// A new endpoint of `app` with these fields; `uid` overrides the body's.
    fn into_endpoint(self, app: &Application, uid: Option<String>) -> Result<Endpoint, ApiError> {
        let secret = match &self.secret {
            Some(s) => SigningKey::parse("secret", s)?,
            None => {
                SigningKey::generate().map_err(|e| ApiError::Internal(format!("csprng: {e}")))?
            }
        };
        let now = Timestamp::now();
        Ok(Endpoint {
            id: EndpointId::generate(),
            app_id: app.id.clone(),
            uid: uid.or(self.uid),
            url: self.url,
            description: self.description.unwrap_or_default(),
            filter_types: self.event_types.as_deref().map(as_set),
            channels: self.channels.as_deref().map(as_set),
            disabled: self.disabled.unwrap_or(false),
            disabled_reason: None,
            throttle_rate: self.throttle_rate,
            ordering: self.ordering.unwrap_or_default(),
            headers: self.headers.unwrap_or_default(),
            metadata: self.metadata.unwrap_or_default(),
            version: self.version.unwrap_or(1),
            secret,
            retired_keys: Vec::new(),
            created_at: now,
            updated_at: now,
            filter: self.filter,
        })
    }
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let list = warp::path!("app" / Seg / "endpoint")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|a, s, q| async move { respond(super::blocking(move || list(s, a, q)).await) });
    let create = warp::path!("app" / Seg / "endpoint")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|a, s: State, b, idem: Idempotency| idem.run(s.clone(), create(s, a, b)));
    let get = warp::path!("app" / Seg / "endpoint" / Seg)
        .and(warp::get())
        .and(with(&state))
        .then(|a, e, s| async move { respond(get(s, a, e)) });
    let put = warp::path!("app" / Seg / "endpoint" / Seg)
        .and(warp::put())
        .and(with(&state))
        .and(body(&state))
        .then(|a, e, s, b| async move { respond(upsert(s, a, e, b).await) });
    let patch = warp::path!("app" / Seg / "endpoint" / Seg)
        .and(warp::patch())
        .and(with(&state))
        .and(body(&state))
        .then(|a, e, s, b| async move { respond(patch(s, a, e, b).await) });
    let delete = warp::path!("app" / Seg / "endpoint" / Seg)
        .and(warp::delete())
        .and(with(&state))
        .then(|a, e, s| async move { respond(delete(s, a, e).await) });
    let secret = warp::path!("app" / Seg / "endpoint" / Seg / "secret")
        .and(warp::get())
        .and(with(&state))
        .then(|a, e, s| async move { respond(get_secret(s, a, e)) });
    let rotate = warp::path!("app" / Seg / "endpoint" / Seg / "secret" / "rotate")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|a, e, s: State, b, idem: Idempotency| {
            idem.run(s.clone(), rotate_secret(s, a, e, b))
        });
    let headers_get = warp::path!("app" / Seg / "endpoint" / Seg / "headers")
        .and(warp::get())
        .and(with(&state))
        .then(|a, e, s| async move { respond(get_headers(s, a, e)) });
    let headers_put = warp::path!("app" / Seg / "endpoint" / Seg / "headers")
        .and(warp::put())
        .and(with(&state))
        .and(body(&state))
        .then(|a, e, s, b| async move { respond(set_headers(s, a, e, b).await) });
    let headers_patch = warp::path!("app" / Seg / "endpoint" / Seg / "headers")
        .and(warp::patch())
        .and(with(&state))
        .and(body(&state))
        .then(|a, e, s, b| async move { respond(patch_headers(s, a, e, b).await) });
    let filter_test = warp::path!("app" / Seg / "endpoint" / Seg / "filter" / "test")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .then(|a, e, s, b| async move {
            respond(super::blocking(move || test_filter(s, a, e, b)).await)
        });
    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(put)
        .unify()
        .or(patch)
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
        .or(headers_patch)
        .unify()
        .or(filter_test)
        .unify()
        .boxed()
}

/// The application and endpoint named by the path, or 404.
fn find(s: &State, app: &Seg, ep: &Seg) -> Result<(Application, Endpoint), ApiError> {
    let app = find_app(s, &app.0)?;
    let ep = s
        .store
        .get_endpoint(&app.id, &ep.0)?
        .ok_or(ApiError::NotFound("endpoint not found"))?;
    Ok((app, ep))
}

fn list(s: State, app: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let params = ListParams::parse(&q, false)?.scanning(s.limits.max_list_scan);
    let pq = params.to_page_query(|c| {
        c.parse::<EndpointId>()
            .ok()
            .map(|id| id.ksuid().as_bytes().to_vec())
    })?;
    let page = s.store.list_endpoints(&app.id, &pq)?;
    let out = list_response(
        page,
        |e| e.id.to_string(),
        ksuid_key(EndpointId::PREFIX),
        EndpointOut::from,
    );
    Ok(reply(StatusCode::OK, &out))
}

async fn create(s: State, app: Seg, body: Bytes) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let input: EndpointIn = json::parse(&body)?;
    input.validate(&s)?;
    let ep = input.into_endpoint(&app, None)?;
    s.store.create_endpoint(&ep).await?;
    s.delivery.endpoint_changed(&app, None, Some(&ep)).await;
    Ok(reply(StatusCode::CREATED, &EndpointOut::from(ep)))
}

fn get(s: State, app: Seg, ep: Seg) -> Result<Response, ApiError> {
    let (_, ep) = find(&s, &app, &ep)?;
    Ok(reply(StatusCode::OK, &EndpointOut::from(ep)))
}

/// PUT: replace the endpoint's settings (not its secret or headers), or create it (201) when the
/// path names none, taking the path as its uid.
async fn upsert(s: State, app: Seg, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let mut input: EndpointIn = json::parse(&body)?;
    input.secret = None;
    input.headers = None;
    input.validate(&s)?;
    if let Some(existing) = s.store.get_endpoint(&app.id, &ep.0)? {
        let updated = s
            .store
            .update_endpoint(&app.id, &existing.id, |e| {
                e.url = input.url.clone();
                e.description = input.description.clone().unwrap_or_default();
                if input.uid.is_some() {
                    e.uid = input.uid.clone();
                }
                e.filter_types = input.event_types.as_deref().map(as_set);
                e.channels = input.channels.as_deref().map(as_set);
                set_disabled(e, input.disabled.unwrap_or(false));
                e.throttle_rate = input.throttle_rate;
                if let Some(o) = input.ordering {
                    e.ordering = o;
                }
                e.metadata = input.metadata.clone().unwrap_or_default();
                e.filter = input.filter.clone();
                if let Some(v) = input.version {
                    e.version = v;
                }
            })
            .await?;
        s.delivery
            .endpoint_changed(&app, Some(&existing), Some(&updated))
            .await;
        return Ok(reply(StatusCode::OK, &EndpointOut::from(updated)));
    }
    let uid = match &input.uid {
        Some(_) => None,
        None if ep.0.parse::<EndpointId>().is_err() => {
            validate::uid("uid", &ep.0)?;
            Some(ep.0.clone())
        }
        None => None,
    };
    let new = input.into_endpoint(&app, uid)?;
    s.store.create_endpoint(&new).await?;
    s.delivery.endpoint_changed(&app, None, Some(&new)).await;
    Ok(reply(StatusCode::CREATED, &EndpointOut::from(new)))
}

/// An operator's enable clears the reason Herald recorded when it disabled the endpoint.
pub(super) fn set_disabled(e: &mut Endpoint, disabled: bool) {
    if !disabled {
        e.disabled_reason = None;
    }
    e.disabled = disabled;
}

async fn patch(s: State, app: Seg, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: EndpointPatch = json::parse(&body)?;
    validate::all([
        input.url.as_ref().map_or(Ok(()), |url| check_url(&s, url)),
        input.description.as_ref().map_or(Ok(()), |d| {
            validate::text("description", d, validate::MAX_DESCRIPTION_LEN)
        }),
        input
            .uid
            .value()
            .map_or(Ok(()), |uid| validate::uid("uid", uid)),
        check_filters(input.event_types.value(), None),
        check_filters(None, input.channels.value()),
        input
            .metadata
            .as_ref()
            .map_or(Ok(()), |m| validate::metadata("metadata", m, &s.limits)),
        input
            .filter
            .value()
            .map_or(Ok(()), |f| validate::payload_filter("filter", f)),
    ])
    .map_err(ApiError::Validation)?;
    let (app, existing) = find(&s, &app, &ep)?;
    let updated = s
        .store
        .update_endpoint(&app.id, &existing.id, |e| {
            if let Some(u) = &input.url {
                e.url = u.clone();
            }
            if let Some(d) = &input.description {
                e.description = d.clone();
            }
            if let Some(d) = input.disabled {
                set_disabled(e, d);
            }
            if let Some(m) = &input.metadata {
                e.metadata = m.clone();
            }
            input.uid.clone().apply_to(&mut e.uid);
            input
                .event_types
                .map(|v| as_set(v))
                .apply_to(&mut e.filter_types);
            input.channels.map(|v| as_set(v)).apply_to(&mut e.channels);
            input.throttle_rate.clone().apply_to(&mut e.throttle_rate);
            if let Some(o) = input.ordering {
                e.ordering = o;
            }
            input.filter.clone().apply_to(&mut e.filter);
        })
        .await?;
    s.delivery
        .endpoint_changed(&app, Some(&existing), Some(&updated))
        .await;
    Ok(reply(StatusCode::OK, &EndpointOut::from(updated)))
}

#[derive(Debug, Deserialize)]
struct FilterTestIn {
    /// A filter to try instead of the endpoint's (before saving it).
    filter: Option<String>,
    payload: serde_json::Value,
}

/// `POST …/endpoint/{ep}/filter/test` (Herald extension): would the endpoint's filter (or the one
/// given) let `payload` through? An endpoint without a filter takes every payload.
fn test_filter(s: State, app: Seg, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: FilterTestIn = json::parse(&body)?;
    let (_, ep) = find(&s, &app, &ep)?;
    let matches = match input.filter.or(ep.filter) {
        None => true,
        Some(text) => filter::Filter::parse(&text)
            .map_err(|e| ApiError::from(ValidationError::new("filter", e.to_string())))?
            .matches(&input.payload),
    };
    Ok(reply(
        StatusCode::OK,
        &serde_json::json!({ "matches": matches }),
    ))
}

async fn delete(s: State, app: Seg, ep: Seg) -> Result<Response, ApiError> {
    let (app, ep) = find(&s, &app, &ep)?;
    if s.store.delete_endpoint(&app.id, &ep.id).await? {
        s.delivery.endpoint_changed(&app, Some(&ep), None).await;
        Ok(no_content())
    } else {
        Err(ApiError::NotFound("endpoint not found"))
    }
}

fn get_secret(s: State, app: Seg, ep: Seg) -> Result<Response, ApiError> {
    let (_, ep) = find(&s, &app, &ep)?;
    Ok(reply(
        StatusCode::OK,
        &SecretOut {
            key: ep.secret.to_whsec(),
        },
    ))
}

/// Replace the signing key; the old one keeps signing (beside the new) for the grace period, so
/// receivers can switch without dropping deliveries.
async fn rotate_secret(s: State, app: Seg, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let (new_key, grace) = rotation(&body)?;
    let (app, existing) = find(&s, &app, &ep)?;
    let now = Timestamp::now();
    s.store
        .update_endpoint(&app.id, &existing.id, |e| rotate(e, &new_key, grace, now))
        .await?;
    Ok(reply(
        StatusCode::OK,
        &SecretOut {
            key: new_key.to_whsec(),
        },
    ))
}

/// A rotate request's body (may be empty): the new key and the old one's grace period.
pub(super) fn rotation(body: &[u8]) -> Result<(SigningKey, u32), ApiError> {
    let input: RotateIn = if body.iter().all(u8::is_ascii_whitespace) {
        RotateIn::default()
    } else {
        json::parse(body)?
    };
    let grace = input.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if grace > MAX_GRACE_SECONDS {
        return Err(ValidationError::new(
            "gracePeriodSeconds",
            format!("must be at most {MAX_GRACE_SECONDS}"),
        )
        .into());
    }
    let new_key = match &input.key {
        Some(k) => SigningKey::parse("key", k)?,
        None => SigningKey::generate().map_err(|e| ApiError::Internal(format!("csprng: {e}")))?,
    };
    Ok((new_key, grace))
}

/// Sign with `new_key` from now on; the old key keeps signing for `grace` seconds.
pub(super) fn rotate(e: &mut Endpoint, new_key: &SigningKey, grace: u32, now: Timestamp) {
    let old = std::mem::replace(&mut e.secret, new_key.clone());
    e.retired_keys.retain(|k| k.expires_at > now);
    if grace > 0 {
        e.retired_keys.push(RetiredKey {
            key: old,
            expires_at: now.plus_seconds(grace.into()),
        });
    }
    let excess = e.retired_keys.len().saturating_sub(MAX_RETIRED_KEYS);
    e.retired_keys.drain(..excess);
}

/// The endpoint's custom headers as Svix shows them: sensitive ones by name only.
pub(super) fn headers_reply(ep: Endpoint) -> Response {
    let (sensitive, plain): (BTreeMap<_, _>, BTreeMap<_, _>) = ep
        .headers
        .into_iter()
        .partition(|(k, _)| validate::is_sensitive_header(k));
    reply(
        StatusCode::OK,
        &HeadersOut {
            headers: plain,
            sensitive: sensitive.into_keys().collect(),
        },
    )
}

fn get_headers(s: State, app: Seg, ep: Seg) -> Result<Response, ApiError> {
    let (_, ep) = find(&s, &app, &ep)?;
    Ok(headers_reply(ep))
}

async fn set_headers(s: State, app: Seg, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: HeadersIn = json::parse(&body)?;
    validate::headers("headers", &input.headers, &s.limits)?;
    let (app, existing) = find(&s, &app, &ep)?;
    s.store
        .update_endpoint(&app.id, &existing.id, |e| e.headers = input.headers.clone())
        .await?;
    Ok(no_content())
}

/// PATCH: set the given headers, remove those given as `null` or listed in `deleteHeaders`
/// (names compare case-insensitively, as in HTTP).
async fn patch_headers(s: State, app: Seg, ep: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: HeadersPatchIn = json::parse(&body)?;
    let (app, existing) = find(&s, &app, &ep)?;
    let merge = |current: &BTreeMap<String, String>| {
        let mut merged = current.clone();
        let names = input.headers.keys().chain(input.delete_headers.iter());
        for name in names {
            merged.retain(|k, _| !k.eq_ignore_ascii_case(name));
        }
        for (k, v) in &input.headers {
            if let Some(v) = v {
                merged.insert(k.clone(), v.clone());
            }
        }
        merged
    };
    validate::headers("headers", &merge(&existing.headers), &s.limits)?;
    s.store
        .update_endpoint(&app.id, &existing.id, |e| e.headers = merge(&e.headers))
        .await?;
    Ok(no_content())
}
