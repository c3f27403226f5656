//! The one client-facing error type, mapped once to HTTP: `{"code","detail"}` for most errors and
//! `{"detail":[{loc,msg,type}]}` for 422 validation errors, as Svix answers. A 500 never carries
//! internals; they go to the log. A write refused for lack of disk space is a 507 with
//! `Retry-After` (the store counts and logs those, at most once a minute); a 401 carries
//! `WWW-Authenticate: Bearer`.

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use crate::domain::ValidationError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication failed")]
    Unauthorized,
    /// A valid credential that may not do this (an application token's scope).
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body did not arrive within {} seconds", .0.as_secs_f64())]
    RequestTimeout(std::time::Duration),
    #[error("validation failed")]
    Validation(Vec<ValidationError>),
    #[error("the server is out of storage space: nothing was written; retry later")]
    InsufficientStorage,
    #[error("internal error: {0}")]
    Internal(String),
}

/// Seconds a client is asked to wait after a 507: freeing space takes an operator, not a moment.
pub const STORAGE_RETRY_AFTER_SECS: u32 = 30;

impl warp::reject::Reject for ApiError {}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Validation(vec![e])
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            StoreError::NotFound => ApiError::NotFound("not found"),
            e if e.is_no_space() => ApiError::InsufficientStorage,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A blocking store task that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

#[derive(Serialize)]
struct CodeDetail<'a> {
    code: &'a str,
    detail: String,
}

#[derive(Serialize)]
struct ValidationBody {
    detail: Vec<ValidationItem>,
}

#[derive(Serialize)]
struct ValidationItem {
    loc: Vec<String>,
    msg: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "authentication_failed",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Validation(_) => "validation_error",
            ApiError::InsufficientStorage => "insufficient_storage",
            ApiError::Internal(_) => "server_error",
        }
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Validation(errors) = self {
            let detail = errors
                .into_iter()
                .map(|e| ValidationItem {
                    loc: loc(&e.field),
                    msg: e.msg,
                    kind: e.kind,
                })
                .collect();
            return warp::reply::with_status(warp::reply::json(&ValidationBody { detail }), status)
                .into_response();
        }
        let detail = match &self {
            ApiError::Internal(msg) => {
                tracing::error!(error = %msg, "request failed");
                "internal server error".to_string()
            }
            other => other.to_string(),
        };
        let body = CodeDetail {
            code: self.code(),
            detail,
        };
        let mut resp = warp::reply::with_status(warp::reply::json(&body), status).into_response();
        match self {
            ApiError::InsufficientStorage => {
                resp.headers_mut().insert(
                    warp::http::header::RETRY_AFTER,
                    STORAGE_RETRY_AFTER_SECS.into(),
                );
            }
            // RFC 6750: a 401 names the scheme the client should use.
            ApiError::Unauthorized => {
                resp.headers_mut().insert(
                    warp::http::header::WWW_AUTHENTICATE,
                    warp::http::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        resp
    }
}

/// `channels.1` becomes `["body", "channels", "1"]`: Svix clients read `loc` as a list of strings.
fn loc(field: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !(field.starts_with("query.") || field.starts_with("path.") || field.starts_with("header."))
    {
        out.push("body".to_string());
    }
    out.extend(field.split('.').filter(|p| !p.is_empty()).map(String::from));
    out
}

/// Turn warp's own rejections (no route, wrong method, ...) and ours into JSON errors.
pub async fn handle_rejection(r: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    let err = if let Some(e) = r.find::<ApiError>() {
        match e {
            ApiError::Unauthorized => ApiError::Unauthorized,
            ApiError::Forbidden(m) => ApiError::Forbidden(m),
            ApiError::NotFound(m) => ApiError::NotFound(m),
            ApiError::PayloadTooLarge(n) => ApiError::PayloadTooLarge(*n),
            ApiError::RequestTimeout(t) => ApiError::RequestTimeout(*t),
            ApiError::BadRequest(m) => ApiError::BadRequest(m.clone()),
            ApiError::InsufficientStorage => ApiError::InsufficientStorage,
            other => ApiError::Internal(other.to_string()),
        }
    } else if r.is_not_found() {
        ApiError::NotFound("no such route")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge(0)
    } else {
        tracing::debug!(rejection = ?r, "unhandled rejection");
        ApiError::BadRequest("bad request".into())
    };
    Ok(err.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_is_a_507_with_retry_after() {
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "full");
        for e in [
            StoreError::NoSpace("under the reserve".into()),
            StoreError::Io(full),
        ] {
            let resp = ApiError::from(e).into_response();
            assert_eq!(resp.status(), 507);
            assert_eq!(resp.headers()["retry-after"], "30");
        }
        let other = ApiError::from(StoreError::Durability("fsync failed".into()));
        assert_eq!(other.status(), 500);
    }

    #[test]
    fn a_401_names_the_bearer_scheme() {
        let resp = ApiError::Unauthorized.into_response();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let other = ApiError::NotFound("x").into_response();
        assert!(other.headers().get("www-authenticate").is_none());
    }

    #[test]
    fn locations_split_into_body_paths() {
        assert_eq!(loc("channels.1"), vec!["body", "channels", "1"]);
        assert_eq!(loc("query.limit"), vec!["query", "limit"]);
        assert_eq!(loc(""), vec!["body"]);
    }
}
