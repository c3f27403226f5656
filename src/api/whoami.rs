//! `GET /api/v1/auth/whoami` (Svix's WhoamiOut): what the caller's token is. Herald has one
//! environment per data directory, no organisations and no regions, so `envId` is the store's
//! stable environment id; `permissionSource` is `GlobalAuthToken` for an admin token (it reaches
//! the whole server) and `Unknown` for an application token (an opaque portal token, none of
//! Svix's kinds); an application token also names its `appId` and, if it has one, `sessionId`.

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::authz::Credential;
use super::error::ApiError;
use super::{reply, respond, with, State};

/// Svix's WhoamiOut (`streamAppId` is never set: Herald has no streams).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct WhoamiOut {
    env_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_id: Option<String>,
    permission_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<String>,
}

impl WhoamiOut {
    fn of(env_id: String, credential: &Credential) -> Self {
        match credential {
            Credential::Admin => WhoamiOut {
                env_id,
                app_id: None,
                permission_source: "GlobalAuthToken",
                session_id: None,
            },
            Credential::App(t) => WhoamiOut {
                env_id,
                app_id: Some(t.app_id.to_string()),
                permission_source: "Unknown",
                session_id: t.session_id.clone(),
            },
        }
    }
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    warp::path!("auth" / "whoami")
        .and(warp::get())
        .and(with(&state))
        .and(warp::header::optional::<String>("authorization"))
        .then(|s: State, h: Option<String>| async move {
            respond(super::blocking(move || whoami(&s, h.as_deref())).await)
        })
        .boxed()
}

/// The credential was checked on the way in (the authorization table); it is read again here to
/// say which one it is.
fn whoami(s: &State, header: Option<&str>) -> Result<Response, ApiError> {
    let credential = s
        .auth
        .credential(&s.store, header)?
        .ok_or(ApiError::Unauthorized)?;
    let out = WhoamiOut::of(s.store.environment_id()?, &credential);
    Ok(reply(StatusCode::OK, &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::token::{generate_app_token, Capabilities};
    use crate::domain::{AppId, Timestamp};

    #[test]
    fn each_kind_of_token_says_what_it_is() {
        let admin = serde_json::to_value(WhoamiOut::of("env_x".into(), &Credential::Admin));
        assert_eq!(
            admin.unwrap(),
            serde_json::json!({"envId": "env_x", "permissionSource": "GlobalAuthToken"})
        );
        let app = AppId::generate();
        let (_, t) = generate_app_token(
            app.clone(),
            Capabilities::all(),
            Some("sess_1".into()),
            Timestamp::now(),
        )
        .unwrap();
        let out = serde_json::to_value(WhoamiOut::of("env_x".into(), &Credential::App(t)));
        assert_eq!(
            out.unwrap(),
            serde_json::json!({
                "envId": "env_x",
                "appId": app.to_string(),
                "permissionSource": "Unknown",
                "sessionId": "sess_1",
            })
        );
    }
}
