//! `/api/v1/app/{app}/msg`: accepting messages (durably, idempotently, fanned out to the matching
//! endpoints) and reading them back. The payload is kept as the exact bytes received.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::apps::{find_app, ApplicationIn};
use super::error::ApiError;
use super::idempotency::{self, json_bytes, Idempotency, Key};
use super::json;
use super::pagination::{ksuid_key, list_json, ListParams};
use super::query::Query;
use super::{body, query, reply, respond, with, Seg, State};
use crate::domain::{
    validate, AppId, DeliveryStatus, EndpointId, Message, MessageId, Timestamp, ValidationError,
};
use crate::store::{Answer, CreateOutcome, IdempotencyRecord};

const MAX_TAGS: usize = 5;

/// The tag `send-example` puts on the test events it creates; the messages list's `test` filter
/// and the dashboard's test count go by it.
pub const TEST_TAG: &str = "herald.test";

fn is_test(m: &Message) -> bool {
    m.tags
        .as_ref()
        .is_some_and(|t| t.iter().any(|x| x == TEST_TAG))
}

/// Svix's range of `payloadRetentionPeriod` (days; 90 when absent).
const RETENTION_DAYS: std::ops::RangeInclusive<i64> = 5..=90;
/// Range of `payloadRetentionHours` (up to Svix's longest period).
const RETENTION_HOURS: std::ops::RangeInclusive<i64> = 1..=2160;
/// The latest `deliverAt` (Svix: 24 hours ahead).
const DELIVER_AT_MAX_LEAD_SECS: i64 = 86_400;
/// What an expunged message's payload reads (as Svix shows one).
const EXPUNGED_PAYLOAD: &str = r#"{"expired":true}"#;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageIn {
    event_type: String,
    payload: Box<RawValue>,
    event_id: Option<String>,
    channels: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    /// Created when the path's application does not exist (Svix).
    application: Option<ApplicationIn>,
    deliver_at: Option<String>,
    payload_retention_period: Option<i64>,
    payload_retention_hours: Option<i64>,
}

/// A message's wire form, borrowing from the stored message (a payload is never copied to be
/// written out).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageOut<'a> {
    id: &'a str,
    event_type: &'a str,
    event_id: Option<&'a str>,
    channels: Option<&'a [String]>,
    tags: Option<&'a [String]>,
    payload: &'a RawValue,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    deliver_at: Option<String>,
    /// Herald extension, on reads: the overall delivery status (see `DeliveryStatus::overall`);
    /// absent for a message that had no endpoint to go to. In a list of one endpoint's messages
    /// (Svix's EndpointMessageOut): the status there.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u8>,
    /// In a list of one endpoint's messages: the status there, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    status_text: Option<&'static str>,
    /// In a list of one endpoint's messages: when the next scheduled try there is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt: Option<String>,
}

impl<'a> MessageOut<'a> {
    /// The wire form; `payload` is `{}` unless `with_content` (Svix clients require the key).
    pub fn new(m: &'a Message, with_content: bool) -> Result<Self, ApiError> {
        let payload: &RawValue = if with_content && m.expunged {
            serde_json::from_str(EXPUNGED_PAYLOAD).map_err(internal)?
        } else if with_content {
            let text = std::str::from_utf8(&m.payload)
                .map_err(|e| ApiError::Internal(format!("stored payload: {e}")))?;
            serde_json::from_str(text).map_err(internal)?
        } else {
            serde_json::from_str("{}").map_err(internal)?
        };
        Ok(MessageOut {
            id: m.id.as_str(),
            event_type: &m.event_type,
            event_id: m.event_id.as_deref(),
            channels: m.channels.as_deref(),
            tags: m.tags.as_deref(),
            payload,
            timestamp: m.created_at.to_rfc3339(),
            deliver_at: m.deliver_at.map(|t| t.to_rfc3339()),
            status: None,
            status_text: None,
            next_attempt: None,
        })
    }

    fn with_status(mut self, s: &State, m: &Message) -> Result<Self, ApiError> {
        self.status = s.store.message_status(m)?.map(DeliveryStatus::code);
        Ok(self)
    }

    /// With the message's status at `ep` (a message listed for one endpoint).
    fn at_endpoint(mut self, s: &State, m: &Message, ep: &EndpointId) -> Result<Self, ApiError> {
        let (status, next) = status_at(s, m, ep)?;
        self.status = Some(status.code());
        self.status_text = Some(status.text());
        self.next_attempt = next.map(Timestamp::to_rfc3339);
        Ok(self)
    }
}

/// A message's status at `ep` and its next try there, if it was sent there (fanned out at
/// acceptance, or tried there since: a resend or a replay).
fn status_at(
    s: &State,
    m: &Message,
    ep: &EndpointId,
) -> Result<(DeliveryStatus, Option<Timestamp>), ApiError> {
    let record = s.store.destination(&m.app_id, ep, &m.id)?;
    let in_flight = s.delivery.in_flight(&m.app_id, ep, &m.id);
    let status = crate::domain::Destination::shown(record.as_ref(), in_flight);
    Ok((status, record.and_then(|d| d.next_attempt)))
}

/// Whether `m` was sent to `ep`: fanned out there at acceptance, or tried there since.
fn sent_to(s: &State, m: &Message, ep: &EndpointId) -> bool {
    m.destinations.contains(ep)
        || s.store
            .destination(&m.app_id, ep, &m.id)
            .is_ok_and(|d| d.is_some())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrecheckIn {
    event_type: String,
    channels: Option<Vec<String>>,
}

/// `POST /app/{app}/msg/precheck/active`: would a message of this event type (and channels) go
/// to any endpoint now?
fn precheck(s: State, app: Seg, body: Bytes) -> Result<Response, ApiError> {
    let input: PrecheckIn = json::parse(&body)?;
    validate::event_type_name("eventType", &input.event_type)?;
    if let Some(c) = &input.channels {
        validate::channels("channels", c)?;
    }
    let app = find_app(&s, &app.0)?;
    let active = !s
        .store
        .fan_out(&app.id, &input.event_type, input.channels.as_deref(), None)?
        .is_empty();
    Ok(reply(
        StatusCode::OK,
        &serde_json::json!({ "active": active }),
    ))
}

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(format!("stored payload: {e}"))
}

impl MessageIn {
    /// When its payload expires, if it asks for a retention of its own.
    fn payload_expiry(&self, now: Timestamp) -> Result<Option<Timestamp>, ValidationError> {
        match (self.payload_retention_period, self.payload_retention_hours) {
            (Some(_), Some(_)) => Err(ValidationError::new(
                "payloadRetentionHours",
                "cannot be given with payloadRetentionPeriod",
            )),
            (Some(d), None) if !RETENTION_DAYS.contains(&d) => Err(ValidationError::new(
                "payloadRetentionPeriod",
                format!(
                    "must be between {} and {} days",
                    RETENTION_DAYS.start(),
                    RETENTION_DAYS.end()
                ),
            )),
            (None, Some(h)) if !RETENTION_HOURS.contains(&h) => Err(ValidationError::new(
                "payloadRetentionHours",
                format!(
                    "must be between {} and {} hours",
                    RETENTION_HOURS.start(),
                    RETENTION_HOURS.end()
                ),
            )),
            (Some(d), None) => Ok(Some(now.plus_seconds(d * 86_400))),
            (None, Some(h)) => Ok(Some(now.plus_seconds(h * 3_600))),
            (None, None) => Ok(None),
        }
    }

    /// When its first try is due, if it is scheduled: within Svix's range of `deliverAt`.
    fn deliver_at(
        &self,
        now: Timestamp,
        min_lead_secs: u64,
    ) -> Result<Option<Timestamp>, ValidationError> {
        let Some(text) = &self.deliver_at else {
            return Ok(None);
        };
        let at = Timestamp::parse_rfc3339(text)
            .ok_or_else(|| ValidationError::new("deliverAt", "must be an RFC 3339 date-time"))?;
        let lead_ms = at.millis() - now.millis();
        let min_ms = i64::try_from(min_lead_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        if lead_ms < min_ms || lead_ms > DELIVER_AT_MAX_LEAD_SECS * 1000 {
            return Err(ValidationError::new(
                "deliverAt",
                format!(
                    "must be at least {min_lead_secs} seconds and at most 24 hours in the future"
                ),
            ));
        }
        Ok(Some(at))
    }

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
                validate::token(&format!("tags.{i}"), t)?;
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
        .and(body(&state))
        .and(idempotency::key())
        .then(|app, s: State, q, b, idem: Idempotency| {
            idem.run_recorded(s.clone(), move |key| create(s, app, q, key, b))
        });
    let list = warp::path!("app" / Seg / "msg")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|app, s, q| async move {
            // A status filter reads each message's destinations: keep long scans off the runtime.
            respond(super::blocking(move || list(s, app, q)).await)
        });
    let get = warp::path!("app" / Seg / "msg" / Seg)
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(
            |app, m, s, q| async move { respond(super::blocking(move || get(s, app, m, q)).await) },
        );
    let example = warp::path!("app" / Seg / "endpoint" / Seg / "send-example")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .and(idempotency::key())
        .then(|app, ep, s: State, b, idem: Idempotency| {
            idem.run_recorded(s.clone(), move |key| send_example(s, app, ep, key, b))
        });
    let by_endpoint = warp::path!("app" / Seg / "endpoint" / Seg / "msg")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|app, ep, s, q| async move {
            respond(super::blocking(move || list_at(s, app, ep, q)).await)
        });
    let precheck = warp::path!("app" / Seg / "msg" / "precheck" / "active")
        .and(warp::post())
        .and(with(&state))
        .and(body(&state))
        .then(
            |app, s, b| async move { respond(super::blocking(move || precheck(s, app, b)).await) },
        );
    create
        .or(list)
        .unify()
        .or(by_endpoint)
        .unify()
        .or(precheck)
        .unify()
        .or(get)
        .unify()
        .or(example)
        .unify()
        .boxed()
}

async fn create(
    s: State,
    app: Seg,
    q: Query,
    key: Option<Key>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut input: MessageIn = json::parse(&body)?;
    input.validate()?;
    let with_content = q.bool("with_content")?.unwrap_or(true);
    let now = Timestamp::now();
    let payload_expires_at = input.payload_expiry(now)?;
    let deliver_at = input.deliver_at(now, s.limits.deliver_at_min_lead_secs)?;
    let app = match (s.store.get_app(&app.0)?, input.application.take()) {
        (Some(found), _) => found,
        (None, None) => return Err(ApiError::NotFound("application not found")),
        (None, Some(new)) => {
            // As Svix: the body's uid, if any, must be the path's; a path that is an id names
            // an application that cannot be made with that id.
            let mismatch = match new.uid.as_deref() {
                Some(u) => u != app.0,
                None => app.0.parse::<AppId>().is_ok(),
            };
            if mismatch {
                return Err(ValidationError::new(
                    "application.uid",
                    "must match the application id or uid of the path",
                )
                .into());
            }
            super::portal_access::create_app(&s, &app.0, new).await?
        }
    };
    let destinations = s.store.fan_out(
        &app.id,
        &input.event_type,
        input.channels.as_deref(),
        Some(input.payload.get()),
    )?;
    let creating = s.creating.begin(&app.id);
    let msg = Message {
        id: creating.id().clone(),
        app_id: app.id.clone(),
        event_type: input.event_type,
        event_id: input.event_id,
        channels: input.channels,
        tags: input.tags,
        payload: input.payload.get().as_bytes().to_vec(),
        created_at: now,
        destinations,
        deliver_at,
        payload_expires_at,
        expunged: false,
    };
    accept(&s, msg, creating, key, with_content).await
}

/// Store a message, hand it to delivery and answer 202 with it (or, for a key used before, with
/// the first answer). The write and the hand-over run to the end even if the client goes away
/// meanwhile (hyper then drops the handler, not the spawned task): stopped in between, the
/// message would wait on disk until something else woke its endpoints. `creating` registers the
/// message's id until its write has landed (see `message_events`).
async fn accept(
    s: &State,
    msg: Message,
    creating: super::message_events::CreatingGuard,
    key: Option<Key>,
    with_content: bool,
) -> Result<Response, ApiError> {
    let out = serde_json::to_vec(&MessageOut::new(&msg, with_content)?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let record = key.map(|k| {
        let r = k.record(Answer::Message {
            app_id: msg.app_id.clone(),
            msg_id: msg.id.clone(),
            status: StatusCode::ACCEPTED.as_u16(),
            with_content,
        });
        (k, r)
    });
    let state = s.clone();
    let outcome = tokio::spawn(async move {
        let idem = record
            .as_ref()
            .map(|(k, r): &(Key, IdempotencyRecord)| (k.bytes(), r));
        let outcome = state.store.create_message(&msg, idem).await;
        drop(creating);
        let outcome = outcome?;
        if matches!(outcome, CreateOutcome::Created) {
            if is_test(&msg) {
                state.metrics.test_message_accepted();
            } else {
                state.metrics.message_accepted();
            }
            state.delivery.enqueued(&msg.app_id, &msg.destinations);
        }
        Ok::<_, ApiError>(outcome)
    })
    .await??;
    match outcome {
        CreateOutcome::Created => Ok(json_bytes(StatusCode::ACCEPTED.as_u16(), out)),
        CreateOutcome::Replayed(answer) => {
            idempotency::answer_of(s, answer)?.ok_or(ApiError::NotFound("message not found"))
        }
    }
}

/// The answer to a repeat of the create that made `msg`, rebuilt from the stored message (`None`
/// if it is gone). It also wakes delivery for the message's endpoints, in case the first
/// request's wake-up never happened (cheap; one too many is harmless).
pub fn replay(
    s: &State,
    app: &AppId,
    msg: &MessageId,
    status: u16,
    with_content: bool,
) -> Result<Option<Response>, ApiError> {
    let Some(m) = s.store.get_message(app, msg.as_str())? else {
        return Ok(None);
    };
    s.delivery.enqueued(&m.app_id, &m.destinations);
    let out = serde_json::to_vec(&MessageOut::new(&m, with_content)?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Some(json_bytes(status, out)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventExampleIn {
    event_type: String,
    #[serde(default)]
    example_index: usize,
}

/// `POST /app/{app}/endpoint/{ep}/send-example`: a test message to one endpoint, whatever its
/// filters. The payload is the event type's schema example when it has one, else a small
/// marked-as-test object.
async fn send_example(
    s: State,
    app: Seg,
    ep: Seg,
    key: Option<Key>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: EventExampleIn = json::parse(&body)?;
    validate::event_type_name("eventType", &input.event_type)?;
    let app = find_app(&s, &app.0)?;
    let ep = s
        .store
        .get_endpoint(&app.id, &ep.0)?
        .ok_or(ApiError::NotFound("endpoint not found"))?;
    let now = Timestamp::now();
    let example = s
        .store
        .get_event_type(&input.event_type)?
        .and_then(|et| schema_example(et.schemas.as_deref()?, input.example_index));
    let payload = match example {
        Some(p) => p,
        None => serde_json::to_vec(&serde_json::json!({
            "type": input.event_type,
            "test": true,
            "sentAt": now.to_rfc3339(),
        }))
        .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    let creating = s.creating.begin(&app.id);
    let msg = Message {
        id: creating.id().clone(),
        app_id: app.id.clone(),
        event_type: input.event_type,
        event_id: None,
        channels: None,
        tags: Some(vec![TEST_TAG.to_string()]),
        payload,
        created_at: now,
        destinations: vec![ep.id],
        deliver_at: None,
        payload_expires_at: None,
        expunged: false,
    };
    accept(&s, msg, creating, key, true).await
}

/// `examples[index]` of the newest schema version that has one, if it is a JSON object.
fn schema_example(schemas: &str, index: usize) -> Option<Vec<u8>> {
    let schemas: serde_json::Map<String, serde_json::Value> = serde_json::from_str(schemas).ok()?;
    let mut versions: Vec<_> = schemas.into_iter().collect();
    versions.sort_by_key(|(v, _)| v.parse::<u64>().unwrap_or(0));
    versions.into_iter().rev().find_map(|(_, schema)| {
        let ex = schema.get("examples")?.get(index)?;
        ex.is_object()
            .then(|| serde_json::to_vec(ex).ok())
            .flatten()
    })
}

/// The list, written straight to bytes. With content, a page holds at most
/// `limits.max_list_bytes` of payload (or one message) and then ends early, `done: false`, so one
/// request costs memory on the order of that budget, whatever the payloads add up to.
fn list(s: State, app: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    list_of(s, app, None, q)
}

/// `GET /app/{app}/endpoint/{ep}/msg`: the messages sent to one endpoint, each with its status
/// there (Svix's EndpointMessageOut). Filters as the messages list; `status` is the one there.
fn list_at(s: State, app: Seg, ep: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let ep = s
        .store
        .get_endpoint(&app.id, &ep.0)?
        .ok_or(ApiError::NotFound("endpoint not found"))?;
    list_of(s, app, Some(ep.id), q)
}

fn list_of(
    s: State,
    app: crate::domain::Application,
    at: Option<EndpointId>,
    q: Query,
) -> Result<Response, ApiError> {
    let params = ListParams::parse(&q, true)?.scanning(s.limits.max_list_scan);
    let pq = params.to_page_query(|c| {
        c.parse::<MessageId>()
            .ok()
            .map(|id| id.ksuid().as_bytes().to_vec())
    })?;
    let with_content = q.bool("with_content")?.unwrap_or(true);
    let filter = MessageFilter::parse(&q)?;
    let status = match q.get("status") {
        None => None,
        Some(v) => Some(
            v.parse::<u8>()
                .ok()
                .and_then(DeliveryStatus::from_code)
                .ok_or_else(|| ValidationError::new("query.status", "must be 0, 1, 2, 3 or 4"))?,
        ),
    };
    let page = s.store.list_messages(
        &app.id,
        &pq,
        (filter.after, filter.before),
        with_content.then_some(s.limits.max_list_bytes),
        |m| {
            filter.keep(m)
                && at.as_ref().is_none_or(|ep| sent_to(&s, m, ep))
                && status.is_none_or(|want| {
                    // Sending is a moment of pending: a filter on either finds both.
                    let have = match &at {
                        Some(ep) => status_at(&s, m, ep).ok().map(|(st, _)| st.settled()),
                        None => s.store.message_status(m).ok().flatten(),
                    };
                    have.is_some_and(|h| h == want.settled())
                })
        },
    )?;
    // The page comes without payloads: each is read as it is written, so one request holds the
    // JSON written so far and one message, not a page of payloads as well.
    let capacity = page.items.len() * 512
        + 256
        + if with_content {
            s.limits.max_list_bytes
        } else {
            0
        };
    let body = list_json(
        page,
        |m| m.id.to_string(),
        ksuid_key(MessageId::PREFIX),
        capacity,
        |buf, m| {
            let full;
            let m = if with_content {
                // Deleted since the page was read: left out.
                let Some(f) = s.store.get_message(&app.id, m.id.as_str())? else {
                    return Ok(false);
                };
                full = f;
                &full
            } else {
                &m
            };
            let out = MessageOut::new(m, with_content)?;
            let out = match &at {
                Some(ep) => out.at_endpoint(&s, m, ep)?,
                None => out.with_status(&s, m)?,
            };
            serde_json::to_writer(buf, &out).map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(true)
        },
    )?;
    Ok(json_bytes(StatusCode::OK.as_u16(), body))
}

fn get(s: State, app: Seg, msg: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let m = s
        .store
        .get_message(&app.id, &msg.0)?
        .ok_or(ApiError::NotFound("message not found"))?;
    let with_content = q.bool("with_content")?.unwrap_or(true);
    Ok(reply(
        StatusCode::OK,
        &MessageOut::new(&m, with_content)?.with_status(&s, &m)?,
    ))
}

/// Message list filters: `event_types` (comma-separated), `channel`, `tag`, `before`, `after`,
/// and Herald's `test` (true: only test events, false: none of them).
pub struct MessageFilter {
    event_types: Option<Vec<String>>,
    channel: Option<String>,
    tag: Option<String>,
    test: Option<bool>,
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
            test: q.bool("test")?,
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
            && self.test.is_none_or(|t| is_test(m) == t)
            && self.before.is_none_or(|b| m.created_at < b)
            && self.after.is_none_or(|a| m.created_at > a)
    }
}
