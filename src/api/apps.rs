//! `/api/v1/app`: applications (tenants). Paths take an id or a uid.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::idempotency::{self, Idempotency};
use super::json::{self, Patch};
use super::pagination::{ksuid_key, list_response, ListParams};
use super::query::Query;
use super::{body, no_content, query, reply, respond, with, Seg, State};
use crate::domain::{validate, AppId, Application, Metadata, Timestamp};
use crate::store::StoreError;

/// Also the inline application of `app-portal-access`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApplicationIn {
    pub(super) name: String,
    pub(super) uid: Option<String>,
    pub(super) metadata: Option<Metadata>,
    #[serde(alias = "rateLimit")]
    pub(super) throttle_rate: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationPatch {
    name: Option<String>,
    #[serde(default)]
    uid: Patch<String>,
    metadata: Option<Metadata>,
    #[serde(default, alias = "rateLimit")]
    throttle_rate: Patch<u16>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationOut {
    id: String,
    uid: Option<String>,
    name: String,
    metadata: Metadata,
    throttle_rate: Option<u16>,
    /// Older Svix clients read the same value under this name.
    rate_limit: Option<u16>,
    created_at: String,
    updated_at: String,
}

impl From<Application> for ApplicationOut {
    fn from(a: Application) -> Self {
        ApplicationOut {
            id: a.id.to_string(),
            uid: a.uid,
            name: a.name,
            metadata: a.metadata,
            throttle_rate: a.throttle_rate,
            rate_limit: a.throttle_rate,
            created_at: a.created_at.to_rfc3339(),
            updated_at: a.updated_at.to_rfc3339(),
        }
    }
}

impl ApplicationIn {
    pub(super) fn validate(&self, s: &State) -> Result<(), ApiError> {
        validate::name("name", &self.name)?;
        if let Some(uid) = &self.uid {
            validate::uid("uid", uid)?;
        }
        if let Some(m) = &self.metadata {
            validate::metadata("metadata", m, &s.limits)?;
        }
        Ok(())
    }
}

impl ApplicationPatch {
    fn validate(&self, s: &State) -> Result<(), ApiError> {
        if let Some(name) = &self.name {
            validate::name("name", name)?;
        }
        if let Some(uid) = self.uid.value() {
            validate::uid("uid", uid)?;
        }
        if let Some(m) = &self.metadata {
            validate::metadata("metadata", m, &s.limits)?;
        }
        Ok(())
    }
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let list = warp::path!("app")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|s, q| async move { respond(super::blocking(move || list(s, q)).await) });
    let create = warp::path!("app")
        .and(warp::post())
        .and(with(&state))
        .and(query())
        .and(body(&state))
        .and(idempotency::key())
        .then(|s: State, q, b, idem: Idempotency| idem.run(s.clone(), create(s, q, b)));
    let get = warp::path!("app" / Seg)
        .and(warp::get())
        .and(with(&state))
        .then(|id, s| async move { respond(get(s, id)) });
    let put = warp::path!("app" / Seg)
        .and(warp::put())
        .and(with(&state))
        .and(body(&state))
        .then(|id, s, b| async move { respond(upsert(s, id, b).await) });
    let patch = warp::path!("app" / Seg)
        .and(warp::patch())
        .and(with(&state))
        .and(body(&state))
        .then(|id, s, b| async move { respond(patch(s, id, b).await) });
    let delete = warp::path!("app" / Seg)
        .and(warp::delete())
        .and(with(&state))
        .then(|id, s| async move { respond(delete(s, id).await) });
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
        .boxed()
}

/// The application named by a path segment (id or uid), or 404.
pub fn find_app(s: &State, id_or_uid: &str) -> Result<Application, ApiError> {
    s.store
        .get_app(id_or_uid)?
        .ok_or(ApiError::NotFound("application not found"))
}

fn list(s: State, q: Query) -> Result<Response, ApiError> {
    let params = ListParams::parse(&q, false)?.scanning(s.limits.max_list_scan);
    let pq = params.to_page_query(|c| {
        c.parse::<AppId>()
            .ok()
            .map(|id| id.ksuid().as_bytes().to_vec())
    })?;
    // Herald extension: `search`, a case-insensitive part of the name, uid or id.
    let search = q.get("search").map(str::to_lowercase);
    let page = s.store.list_apps(&pq, |a| {
        search.as_deref().is_none_or(|want| {
            a.name.to_lowercase().contains(want)
                || a.uid
                    .as_deref()
                    .is_some_and(|u| u.to_lowercase().contains(want))
                || a.id.to_string().to_lowercase().contains(want)
        })
    })?;
    let out = list_response(
        page,
        |a| a.id.to_string(),
        ksuid_key(AppId::PREFIX),
        ApplicationOut::from,
    );
    Ok(reply(StatusCode::OK, &out))
}

async fn create(s: State, q: Query, body: Bytes) -> Result<Response, ApiError> {
    let input: ApplicationIn = json::parse(&body)?;
    input.validate(&s)?;
    let get_if_exists = q.bool("get_if_exists")?.unwrap_or(false);
    let existing = |s: &State| -> Result<Option<Application>, ApiError> {
        match &input.uid {
            Some(uid) if get_if_exists => Ok(s
                .store
                .get_app(uid)?
                .filter(|a| a.uid.as_ref() == Some(uid))),
            _ => Ok(None),
        }
    };
    if let Some(app) = existing(&s)? {
        return Ok(reply(StatusCode::OK, &ApplicationOut::from(app)));
    }
    let now = Timestamp::now();
    let app = Application {
        id: AppId::generate(),
        uid: input.uid.clone(),
        name: input.name.clone(),
        metadata: input.metadata.clone().unwrap_or_default(),
        throttle_rate: input.throttle_rate,
        created_at: now,
        updated_at: now,
    };
    match s.store.create_app(&app).await {
        Ok(()) => Ok(reply(StatusCode::CREATED, &ApplicationOut::from(app))),
        // Lost a race with a concurrent create of the same uid: answer as if we had looked second.
        Err(StoreError::Conflict(_)) if get_if_exists => match existing(&s)? {
            Some(app) => Ok(reply(StatusCode::OK, &ApplicationOut::from(app))),
            None => Err(ApiError::Conflict(
                "an application with this uid already exists".into(),
            )),
        },
        Err(e) => Err(e.into()),
    }
}

fn get(s: State, id: Seg) -> Result<Response, ApiError> {
    Ok(reply(
        StatusCode::OK,
        &ApplicationOut::from(find_app(&s, &id.0)?),
    ))
}

/// PUT: replace the application's fields, or create it (201) when the path names none.
async fn upsert(s: State, id: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: ApplicationIn = json::parse(&body)?;
    input.validate(&s)?;
    if let Some(app) = s.store.get_app(&id.0)? {
        let updated = s
            .store
            .update_app(&app.id, |a| {
                a.name = input.name.clone();
                if input.uid.is_some() {
                    a.uid = input.uid.clone();
                }
                a.metadata = input.metadata.clone().unwrap_or_default();
                a.throttle_rate = input.throttle_rate;
            })
            .await?;
        return Ok(reply(StatusCode::OK, &ApplicationOut::from(updated)));
    }
    // A path that is not one of our ids becomes the new application's uid.
    let uid = match &input.uid {
        Some(uid) => Some(uid.clone()),
        None if id.0.parse::<AppId>().is_err() => {
            validate::uid("uid", &id.0)?;
            Some(id.0.clone())
        }
        None => None,
    };
    let now = Timestamp::now();
    let app = Application {
        id: AppId::generate(),
        uid,
        name: input.name,
        metadata: input.metadata.unwrap_or_default(),
        throttle_rate: input.throttle_rate,
        created_at: now,
        updated_at: now,
    };
    s.store.create_app(&app).await?;
    Ok(reply(StatusCode::CREATED, &ApplicationOut::from(app)))
}

async fn patch(s: State, id: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: ApplicationPatch = json::parse(&body)?;
    input.validate(&s)?;
    let app = find_app(&s, &id.0)?;
    let updated = s
        .store
        .update_app(&app.id, |a| {
            if let Some(name) = &input.name {
                a.name = name.clone();
            }
            input.uid.clone().apply_to(&mut a.uid);
            if let Some(m) = &input.metadata {
                a.metadata = m.clone();
            }
            input.throttle_rate.clone().apply_to(&mut a.throttle_rate);
        })
        .await?;
    Ok(reply(StatusCode::OK, &ApplicationOut::from(updated)))
}

async fn delete(s: State, id: Seg) -> Result<Response, ApiError> {
    let app = find_app(&s, &id.0)?;
    if s.store.delete_app(&app.id).await? {
        Ok(no_content())
    } else {
        Err(ApiError::NotFound("application not found"))
    }
}
