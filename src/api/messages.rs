//! `/api/v1/app/{app}/msg`: accepting messages (durably, idempotently, fanned out to the matching
//! endpoints) and reading them back. The payload is kept as the exact bytes received.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::apps::find_app;
use super::error::ApiError;
use super::json;
use super::pagination::{list_response, ListParams};
use super::query::Query;
use super::{body, query, reply, respond, with, Seg, State};
use crate::domain::{token, validate, EndpointId, Message, MessageId, Timestamp, ValidationError};
use crate::store::{CreateOutcome, StoredResponse};

/// How long a repeated `idempotency-key` answers with the first response.
const IDEMPOTENCY_TTL_SECONDS: i64 = 12 * 3600;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;
const MAX_TAGS: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageIn {
    event_type: String,
    payload: Box<RawValue>,
    event_id: Option<String>,
    channels: Option<Vec<String>>,
    tags: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut {
    id: String,
    event_type: String,
    event_id: Option<String>,
    channels: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    payload: Box<RawValue>,
    timestamp: String,
}

impl MessageOut {
    /// The wire form; `payload` is `{}` unless `with_content` (Svix clients require the key).
    pub fn new(m: &Message, with_content: bool) -> Result<Self, ApiError> {
        let payload = if with_content {
            let text = String::from_utf8(m.payload.clone())
                .map_err(|e| ApiError::Internal(format!("stored payload: {e}")))?;
            RawValue::from_string(text).map_err(internal)?
        } else {
            RawValue::from_string("{}".to_string()).map_err(internal)?
        };
        Ok(MessageOut {
            id: m.id.to_string(),
            event_type: m.event_type.clone(),
            event_id: m.event_id.clone(),
            channels: m.channels.clone(),
            tags: m.tags.clone(),
            payload,
            timestamp: m.created_at.to_rfc3339(),
        })
    }
}

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(format!("stored payload: {e}"))
}

impl MessageIn {
    fn validate(&self) -> Result<(), ValidationError> {
        validate::event_type_name("eventType", &self.event_type)?;
        if !self.payload.get().trim_start().starts_with('{') {
            return Err(ValidationError::new("payload", "must be a JSON object"));
        }
        if let Some(e) = &self.event_id {
            validate::uid("eventId", e)?;
        }
        if let Some(c) = &self.channels {
            validate::channels("channels", c)?;
        }
        if let Some(tags) = &self.tags {
            if tags.len() > MAX_TAGS {
                return Err(ValidationError::new(
                    "tags",
                    format!("must hold at most {MAX_TAGS} tags"),
                ));
            }
            for (i, t) in tags.iter().enumerate() {
                validate::uid(&format!("tags.{i}"), t)?;
            }
        }
        Ok(())
    }
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let create = warp::path!("app" / Seg / "msg")
        .and(warp::post())
        .and(with(&state))
        .and(query())
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(body(&state))
        .then(
            |app, s, q, path: warp::path::FullPath, auth, key, b| async move {
                respond(create(s, app, q, path.as_str().to_string(), auth, key, b).await)
            },
        );
    let list = warp::path!("app" / Seg / "msg")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|app, s, q| async move { respond(list(s, app, q)) });
    let get = warp::path!("app" / Seg / "msg" / Seg)
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|app, m, s, q| async move { respond(get(s, app, m, q)) });
    create.or(list).unify().or(get).unify().boxed()
}

/// The store key of an idempotency key: per token and path, so clients cannot collide.
fn idempotency_key(auth: Option<&str>, path: &str, key: &str) -> [u8; 32] {
    let token_hash = token::hash(auth.unwrap_or_default());
    let mut h = Sha256::new();
    h.update(token_hash);
    h.update([0]);
    h.update(path.trim_end_matches('/').as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// A JSON body already serialised (the answer kept for an idempotency key is the same bytes).
fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
    warp::reply::with_status(
        warp::reply::with_header(body, "content-type", "application/json"),
        status,
    )
    .into_response()
}

async fn create(
    s: State,
    app: Seg,
    q: Query,
    path: String,
    auth: Option<String>,
    key: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: MessageIn = json::parse(&body)?;
    input.validate()?;
    let with_content = q.bool("with_content")?.unwrap_or(true);
    let idem = match key.as_deref().filter(|k| !k.is_empty()) {
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY_LEN => {
            return Err(ValidationError::new(
                "header.idempotency-key",
                format!("must be at most {MAX_IDEMPOTENCY_KEY_LEN} characters"),
            )
            .into())
        }
        Some(k) => Some(idempotency_key(auth.as_deref(), &path, k)),
        None => None,
    };
    if let Some(k) = &idem {
        if let Some(r) = s.store.idempotent_response(k)? {
            return Ok(json_bytes(r.status, r.body));
        }
    }
    let app = find_app(&s, &app.0)?;
    let now = Timestamp::now();
    let destinations: Vec<EndpointId> = s
        .store
        .all_endpoints(&app.id)?
        .into_iter()
        .filter(|e| !e.disabled && e.accepts(&input.event_type, input.channels.as_deref()))
        .map(|e| e.id)
        .collect();
    let msg = Message {
        id: MessageId::generate(),
        app_id: app.id.clone(),
        event_type: input.event_type,
        event_id: input.event_id,
        channels: input.channels,
        tags: input.tags,
        payload: input.payload.get().as_bytes().to_vec(),
        created_at: now,
        destinations,
    };
    let out = serde_json::to_vec(&MessageOut::new(&msg, with_content)?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let stored = idem.map(|k| {
        (
            k,
            StoredResponse {
                status: 202,
                body: out.clone(),
                expires_at: now.plus_seconds(IDEMPOTENCY_TTL_SECONDS),
            },
        )
    });
    match s
        .store
        .create_message(&msg, stored.as_ref().map(|(k, r)| (k, r)))
        .await?
    {
        CreateOutcome::Replayed(r) => Ok(json_bytes(r.status, r.body)),
        CreateOutcome::Created => {
            s.metrics.message_accepted();
            s.delivery.enqueued(&app.id, &msg.destinations);
            Ok(json_bytes(202, out))
        }
    }
}

fn list(s: State, app: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let params = ListParams::parse(&q, true)?;
    let pq = params.to_page_query(|c| {
        c.parse::<MessageId>()
            .ok()
            .map(|id| id.ksuid().as_bytes().to_vec())
    })?;
    let with_content = q.bool("with_content")?.unwrap_or(true);
    let filter = MessageFilter::parse(&q)?;
    let page = s.store.list_messages(&app.id, &pq, |m| filter.keep(m))?;
    let data = page
        .items
        .iter()
        .map(|m| MessageOut::new(m, with_content))
        .collect::<Result<Vec<_>, _>>()?;
    let out = list_response(
        crate::store::Page {
            items: data,
            done: page.done,
        },
        |m| m.id.clone(),
        |m| m,
    );
    Ok(reply(StatusCode::OK, &out))
}

fn get(s: State, app: Seg, msg: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let m = s
        .store
        .get_message(&app.id, &msg.0)?
        .ok_or(ApiError::NotFound("message not found"))?;
    let with_content = q.bool("with_content")?.unwrap_or(true);
    Ok(reply(StatusCode::OK, &MessageOut::new(&m, with_content)?))
}

/// Message list filters: `event_types` (comma-separated), `channel`, `tag`, `before`, `after`.
pub struct MessageFilter {
    event_types: Option<Vec<String>>,
    channel: Option<String>,
    tag: Option<String>,
    before: Option<Timestamp>,
    after: Option<Timestamp>,
}

pub fn time_param(q: &Query, name: &str) -> Result<Option<Timestamp>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => Timestamp::parse_rfc3339(v).map(Some).ok_or_else(|| {
            ValidationError::new(format!("query.{name}"), "must be an RFC 3339 date-time").into()
        }),
    }
}

impl MessageFilter {
    pub fn parse(q: &Query) -> Result<Self, ApiError> {
        Ok(MessageFilter {
            event_types: q.get("event_types").map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }),
            channel: q.get("channel").map(String::from),
            tag: q.get("tag").map(String::from),
            before: time_param(q, "before")?,
            after: time_param(q, "after")?,
        })
    }

    pub fn keep(&self, m: &Message) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|t| t.is_empty() || t.contains(&m.event_type))
            && self
                .channel
                .as_ref()
                .is_none_or(|c| m.channels.as_ref().is_some_and(|mc| mc.contains(c)))
            && self
                .tag
                .as_ref()
                .is_none_or(|t| m.tags.as_ref().is_some_and(|mt| mt.contains(t)))
            && self.before.is_none_or(|b| m.created_at < b)
            && self.after.is_none_or(|a| m.created_at > a)
    }
}
