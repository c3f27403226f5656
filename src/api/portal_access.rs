//! `/api/v1/auth`: application tokens for the customer portal (Svix's `app-portal-access`,
//! `expire-all` and `logout`, and Herald's `app-token`: what the calling token may do, which the
//! portal asks so that it shows only the controls the token allows). A token is shown once, in the answer; only its hash is kept. The
//! portal link carries it in the URL fragment, which browsers never send to a server, so it never
//! reaches an access log or a `Referer`. These routes take no idempotency key: replaying a
//! stored answer would mean keeping the token itself.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::apps::ApplicationIn;
use super::authz::Credential;
use super::error::ApiError;
use super::{body, json, no_content, reply, respond, with, Seg, State};
use crate::domain::token::{self, Capabilities, Capability};
use crate::domain::{validate, AppId, Application, Timestamp, ValidationError};
use crate::store::StoreError;

/// Svix's range and default for a portal token's life, in seconds (1 hour to 7 days).
pub const EXPIRY_MIN_SECS: u64 = 3600;
pub const EXPIRY_MAX_SECS: u64 = 7 * 86400;
pub const EXPIRY_DEFAULT_SECS: u64 = EXPIRY_MAX_SECS;
/// Svix's longest grace period for `expire-all`, in seconds (3 days).
pub const GRACE_MAX_SECS: i64 = 3 * 86400;
/// Longest session id (Svix sets none; ids are the operator's own).
const MAX_SESSION_ID_LEN: usize = 256;
/// Svix's limits on `featureFlags` (accepted and ignored: Herald's portal has no flags).
const MAX_FEATURE_FLAGS: usize = 25;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppPortalAccessIn {
    application: Option<ApplicationIn>,
    /// Deprecated by Svix: `true` gives `ViewBase` alone.
    read_only: Option<bool>,
    capabilities: Option<Vec<String>>,
    feature_flags: Option<Vec<String>>,
    expiry: Option<u64>,
    session_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct AppPortalAccessOut {
    url: String,
    token: String,
}

/// `GET /auth/app-token`: the calling application token, as the portal needs it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AppTokenOut {
    app_id: String,
    /// Every capability the token has, those its others imply included (`ManageEndpoint` implies
    /// both secret capabilities), so a client need not know the rules.
    capabilities: Vec<&'static str>,
    expires_at: String,
    session_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationTokenExpireIn {
    expiry: Option<i64>,
    session_ids: Option<Vec<String>>,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let access = warp::path!("auth" / "app-portal-access" / Seg)
        .and(warp::post())
        .and(with(&state))
        .and(origin(&state))
        .and(body(&state))
        .then(|id, s, origin, b| async move { respond(portal_access(s, id, origin, b).await) });
    let expire_all = warp::path!("auth" / "app" / Seg / "expire-all")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .then(|id, s, b| async move { respond(expire_all(s, id, b).await) });
    let logout = warp::path!("auth" / "logout")
        .and(warp::post())
        .and(with(&state))
        .and(warp::header::optional::<String>("authorization"))
        .then(|s, h: Option<String>| async move { respond(logout(s, h).await) });
    let whoami = warp::path!("auth" / "app-token")
        .and(warp::get())
        .and(with(&state))
        .and(warp::header::optional::<String>("authorization"))
        .then(|s, h: Option<String>| async move { respond(app_token(s, h)) });
    access
        .or(expire_all)
        .unify()
        .or(logout)
        .unify()
        .or(whoami)
        .unify()
        .boxed()
}

/// Where the portal is served, as the caller reached us: scheme and `Host` (or `:authority`).
fn origin(
    state: &State,
) -> impl Filter<Extract = (Result<String, ApiError>,), Error = warp::Rejection> + Clone {
    let scheme = if state.https { "https" } else { "http" };
    warp::host::optional().map(move |host: Option<warp::host::Authority>| {
        let host = host.ok_or_else(|| {
            ApiError::BadRequest("a Host header is needed to build the portal URL".into())
        })?;
        Ok(format!("{scheme}://{}", host.as_str()))
    })
}

fn check_input(input: &AppPortalAccessIn) -> Result<Capabilities, ApiError> {
    let mut errors = Vec::new();
    let expiry = input.expiry.unwrap_or(EXPIRY_DEFAULT_SECS);
    if !(EXPIRY_MIN_SECS..=EXPIRY_MAX_SECS).contains(&expiry) {
        errors.push(ValidationError::new(
            "expiry",
            format!("must be between {EXPIRY_MIN_SECS} and {EXPIRY_MAX_SECS} seconds"),
        ));
    }
    if let Some(id) = &input.session_id {
        if id.is_empty() || id.len() > MAX_SESSION_ID_LEN {
            errors.push(ValidationError::new(
                "sessionId",
                format!("must be 1 to {MAX_SESSION_ID_LEN} bytes"),
            ));
        }
    }
    if let Some(flags) = &input.feature_flags {
        if flags.len() > MAX_FEATURE_FLAGS {
            errors.push(ValidationError::new(
                "featureFlags",
                format!("at most {MAX_FEATURE_FLAGS} flags"),
            ));
        }
        for (i, f) in flags.iter().enumerate() {
            if let Err(e) = validate::uid(&format!("featureFlags.{i}"), f) {
                errors.push(e);
            }
        }
    }
    let mut caps = Vec::new();
    for (i, name) in input.capabilities.iter().flatten().enumerate() {
        match Capability::from_name(name) {
            Some(c) => caps.push(c),
            None => errors.push(ValidationError::new(
                format!("capabilities.{i}"),
                format!(
                    "unknown capability; one of {}",
                    Capability::ALL.map(Capability::name).join(", ")
                ),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // readOnly=true wins: the deprecated flag meant "look, do not touch". Without it and without
    // a list, a token gets every capability, as Svix gives.
    Ok(match (input.read_only, &input.capabilities) {
        (Some(true), _) => Capabilities::of([]),
        (_, Some(_)) => Capabilities::of(caps),
        (_, None) => Capabilities::all(),
    })
}

async fn portal_access(
    s: State,
    id: Seg,
    origin: Result<String, ApiError>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let origin = origin?;
    let input: AppPortalAccessIn = json::parse(&body)?;
    let caps = check_input(&input)?;
    let app = match s.store.get_app(&id.0)? {
        Some(app) => app,
        None => match input.application {
            Some(new) => create_app(&s, &id.0, new).await?,
            None => return Err(ApiError::NotFound("application not found")),
        },
    };
    let expiry = input.expiry.unwrap_or(EXPIRY_DEFAULT_SECS);
    let expires_at = Timestamp::now().plus_seconds(i64::try_from(expiry).unwrap_or(i64::MAX));
    let (token, record) =
        token::generate_app_token(app.id.clone(), caps, input.session_id, expires_at)
            .map_err(|e| ApiError::Internal(format!("no randomness for a token: {e}")))?;
    s.store.add_app_token(&record).await?;
    // The portal learns its application from the token (`GET /auth/app-token`): one secret in
    // the link, nothing else to keep in step with it.
    let url = format!("{origin}/portal/#token={token}");
    Ok(reply(StatusCode::OK, &AppPortalAccessOut { url, token }))
}

/// The application the path names, created from `new`: as `PUT /app/{id}` does, a path that is
/// not one of our ids becomes its uid when the body gives none.
pub(super) async fn create_app(
    s: &State,
    path: &str,
    new: ApplicationIn,
) -> Result<Application, ApiError> {
    new.validate(s)?;
    let uid = match new.uid {
        Some(uid) => Some(uid),
        None if path.parse::<AppId>().is_err() => {
            validate::uid("uid", path)?;
            Some(path.to_string())
        }
        None => None,
    };
    let now = Timestamp::now();
    let app = Application {
        id: AppId::generate(),
        uid,
        name: new.name,
        metadata: new.metadata.unwrap_or_default(),
        throttle_rate: new.throttle_rate,
        created_at: now,
        updated_at: now,
    };
    match s.store.create_app(&app).await {
        Ok(()) => Ok(app),
        // A concurrent request made it first: use that one.
        Err(StoreError::Conflict(_)) => s.store.get_app(path)?.ok_or_else(|| {
            ApiError::Conflict("an application with this uid already exists".into())
        }),
        Err(e) => Err(e.into()),
    }
}

async fn expire_all(s: State, id: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: ApplicationTokenExpireIn = json::parse(&body)?;
    let grace = input.expiry.unwrap_or(0);
    if !(0..=GRACE_MAX_SECS).contains(&grace) {
        return Err(ValidationError::new(
            "expiry",
            format!("must be between 0 and {GRACE_MAX_SECS} seconds"),
        )
        .into());
    }
    let app = super::apps::find_app(&s, &id.0)?;
    let sessions = input.session_ids.unwrap_or_default();
    let at = Timestamp::now().plus_seconds(grace);
    s.store.expire_app_tokens(&app.id, &sessions, at).await?;
    Ok(no_content())
}

async fn logout(s: State, header: Option<String>) -> Result<Response, ApiError> {
    // The table lets only application tokens here; asked again so this handler stands alone.
    match s.auth.credential(&s.store, header.as_deref())? {
        Some(Credential::App(t)) => {
            s.store.remove_app_token(&t.hash).await?;
            Ok(no_content())
        }
        Some(Credential::Admin) => {
            Err(ApiError::Forbidden("only an application token can log out"))
        }
        None => Err(ApiError::Unauthorized),
    }
}

fn app_token(s: State, header: Option<String>) -> Result<Response, ApiError> {
    // The table lets only application tokens here; asked again so this handler stands alone.
    match s.auth.credential(&s.store, header.as_deref())? {
        Some(Credential::App(t)) => Ok(reply(
            StatusCode::OK,
            &AppTokenOut {
                app_id: t.app_id.as_str().to_string(),
                capabilities: Capability::ALL
                    .into_iter()
                    .filter(|c| t.capabilities.grants(*c))
                    .map(Capability::name)
                    .collect(),
                expires_at: t.expires_at.to_rfc3339(),
                session_id: t.session_id,
            },
        )),
        Some(Credential::Admin) => Err(ApiError::Forbidden(
            "only an application token can describe itself",
        )),
        None => Err(ApiError::Unauthorized),
    }
}
