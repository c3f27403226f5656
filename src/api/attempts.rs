//! Delivery state over the API: attempts (by message, by endpoint, one), a message's destinations,
//! resend (a manual try, not retried), endpoint stats, and endpoint health (a Herald extension, for the admin UI).

use std::collections::HashMap;

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::apps::find_app;
use super::error::ApiError;
use super::idempotency::{self, Idempotency};
use super::messages::{time_param, MessageOut};
use super::pagination::{ksuid_key, list_response, ListParams};
use super::query::Query;
use super::{query, reply, respond, with, Seg, State};
use crate::domain::{
    AppId, Application, Attempt, AttemptId, DeliveryOrder, DeliveryStatus, Destination, Endpoint,
    Message, MessageId, Timestamp, ValidationError,
};
use crate::store::Page;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AttemptOut {
    id: String,
    msg_id: String,
    endpoint_id: String,
    url: String,
    response: String,
    response_status_code: i16,
    response_duration_ms: i64,
    status: u8,
    status_text: &'static str,
    trigger_type: u8,
    timestamp: String,
    /// Herald extension: with no HTTP response (`responseStatusCode` 0), what went wrong (see
    /// `delivery::no_response_kind`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'static str>,
    /// The message (without payload) when the list was asked `with_msg=true`, else null.
    msg: Option<serde_json::Value>,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> Self {
        let error_kind =
            (a.response_status_code == 0).then(|| crate::delivery::no_response_kind(&a.response));
        AttemptOut {
            id: a.id.to_string(),
            msg_id: a.msg_id.to_string(),
            endpoint_id: a.endpoint_id.to_string(),
            url: a.url,
            response: a.response,
            response_status_code: a.response_status_code,
            response_duration_ms: a.duration_ms,
            status: a.status.code(),
            status_text: a.status.text(),
            trigger_type: a.trigger.code(),
            timestamp: a.created_at.to_rfc3339(),
            error_kind,
            msg: None,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DestinationOut {
    id: String,
    uid: Option<String>,
    url: String,
    description: String,
    status: u8,
    status_text: &'static str,
    next_attempt: Option<String>,
    disabled: bool,
    event_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    throttle_rate: Option<u16>,
    created_at: String,
    updated_at: String,
}

/// Attempts the health figures look back over: bounded, so polling stays cheap.
const HEALTH_WINDOW: usize = 100;
/// Queued tasks counted at most, for the same reason (the UI shows "10000+").
const HEALTH_QUEUE_CAP: usize = 10_000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthOut {
    last_attempt: Option<LastAttemptOut>,
    last_success_at: Option<String>,
    failing_since: Option<String>,
    /// `success`/`fail` over the last [`HEALTH_WINDOW`] attempts; `pending`/`sending` queued now
    /// (together at most [`HEALTH_QUEUE_CAP`]).
    counts: StatsOut,
    /// Share of the last [`HEALTH_WINDOW`] attempts that succeeded; `None` before any.
    success_rate: Option<f64>,
    disabled: bool,
    disabled_reason: Option<String>,
    /// The endpoint's circuit breaker (see the README's "Isolation and the circuit breaker").
    circuit: CircuitOut,
    /// Herald extension: `unordered` or `fifo` (see the README's "FIFO endpoints").
    ordering: DeliveryOrder,
    /// FIFO endpoint whose head message is failing: it holds back the ones after it.
    blocked_by: Option<BlockedOut>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockedOut {
    msg_id: String,
    since: String,
    /// "blocked by msg_… since …", for people.
    detail: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CircuitOut {
    /// "closed" (normal) or "open" (failing: one probe at a time).
    state: &'static str,
    open_since: Option<String>,
    /// Tries that may run at once now.
    concurrency_limit: usize,
    running: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LastAttemptOut {
    id: String,
    timestamp: String,
    status: u8,
    response_status_code: i16,
}

#[derive(Debug, Serialize)]
struct StatsOut {
    success: u64,
    pending: u64,
    sending: u64,
    fail: u64,
    canceled: u64,
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let by_msg = warp::path!("app" / Seg / "attempt" / "msg" / Seg)
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(
            |a, m, s, q| async move { respond(super::blocking(move || by_msg(s, a, m, q)).await) },
        );
    let by_endpoint = warp::path!("app" / Seg / "attempt" / "endpoint" / Seg)
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|a, e, s, q| async move {
            respond(super::blocking(move || by_endpoint(s, a, e, q)).await)
        });
    let one = warp::path!("app" / Seg / "msg" / Seg / "attempt" / Seg)
        .and(warp::get())
        .and(with(&state))
        .then(|a, m, t, s| async move { respond(get_one(s, a, m, t)) });
    let destinations = warp::path!("app" / Seg / "msg" / Seg / "endpoint")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|a, m, s, q| async move {
            respond(super::blocking(move || destinations(s, a, m, q)).await)
        });
    let resend = warp::path!("app" / Seg / "msg" / Seg / "endpoint" / Seg / "resend")
        .and(warp::post())
        .and(with(&state))
        .and(idempotency::key())
        .then(|a, m, e, s: State, idem: Idempotency| idem.run(s.clone(), resend(s, a, m, e)));
    let health = warp::path!("app" / Seg / "endpoint" / Seg / "health")
        .and(warp::get())
        .and(with(&state))
        .then(|a, e, s| async move { respond(health(s, a, e).await) });
    let stats = warp::path!("app" / Seg / "endpoint" / Seg / "stats")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|a, e, s, q| async move { respond(stats(s, a, e, q).await) });
    by_msg
        .or(by_endpoint)
        .unify()
        .or(one)
        .unify()
        .or(destinations)
        .unify()
        .or(resend)
        .unify()
        .or(stats)
        .unify()
        .or(health)
        .unify()
        .boxed()
}

fn find_msg(s: &State, app: &Application, msg: &Seg) -> Result<Message, ApiError> {
    s.store
        .get_message(&app.id, &msg.0)?
        .ok_or(ApiError::NotFound("message not found"))
}

fn find_endpoint(s: &State, app: &Application, ep: &Seg) -> Result<Endpoint, ApiError> {
    s.store
        .get_endpoint(&app.id, &ep.0)?
        .ok_or(ApiError::NotFound("endpoint not found"))
}

/// Attempt filters: `status` (0 success, 2 fail, ...), `status_code_class` (0 no response, 100 ..
/// 500), `before`, `after`.
struct AttemptFilter {
    status: Option<u8>,
    class: Option<i16>,
    before: Option<Timestamp>,
    after: Option<Timestamp>,
}

impl AttemptFilter {
    fn parse(q: &Query) -> Result<Self, ApiError> {
        let int = |name: &str, ok: &dyn Fn(i64) -> bool| -> Result<Option<i64>, ApiError> {
            match q.get(name) {
                None => Ok(None),
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if ok(n) => Ok(Some(n)),
                    _ => Err(
                        ValidationError::new(format!("query.{name}"), "is not a valid value")
                            .into(),
                    ),
                },
            }
        };
        Ok(AttemptFilter {
            status: int("status", &|n| (0..=4).contains(&n))?.map(|n| n as u8),
            class: int("status_code_class", &|n| {
                n % 100 == 0 && (0..=500).contains(&n)
            })?
            .map(|n| n as i16),
            before: time_param(q, "before")?,
            after: time_param(q, "after")?,
        })
    }

    fn keep(&self, a: &Attempt) -> bool {
        self.status.is_none_or(|s| a.status.code() == s)
            && self.class.is_none_or(|c| match c {
                0 => a.response_status_code == 0,
                c => (c..c + 100).contains(&a.response_status_code),
            })
            && self.before.is_none_or(|b| a.created_at < b)
            && self.after.is_none_or(|t| a.created_at > t)
    }
}

/// Filters on an attempt's message: Svix's `tag`, `event_types` (comma-separated) and `channel`.
struct OfMessage {
    tag: Option<String>,
    event_types: Option<Vec<String>>,
    channel: Option<String>,
}

impl OfMessage {
    fn parse(q: &Query) -> Self {
        OfMessage {
            tag: q.get("tag").map(String::from),
            event_types: q
                .get("event_types")
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .filter(|t| !t.is_empty()),
            channel: q.get("channel").map(String::from),
        }
    }

    fn is_empty(&self) -> bool {
        self.tag.is_none() && self.event_types.is_none() && self.channel.is_none()
    }

    fn keep(&self, m: &Message) -> bool {
        self.tag
            .as_ref()
            .is_none_or(|t| m.tags.as_ref().is_some_and(|ts| ts.contains(t)))
            && self
                .event_types
                .as_ref()
                .is_none_or(|t| t.contains(&m.event_type))
            && self
                .channel
                .as_ref()
                .is_none_or(|c| m.channels.as_ref().is_some_and(|cs| cs.contains(c)))
    }
}

fn attempt_cursor(c: &str) -> Option<Vec<u8>> {
    c.parse::<AttemptId>()
        .ok()
        .map(|id| id.ksuid().as_bytes().to_vec())
}

/// A page of attempts; with `with_msg=true` each carries its message (without payload), each
/// message read once per page.
fn attempts_page(
    s: &State,
    app: &AppId,
    q: &Query,
    page: Page<Attempt>,
) -> Result<Response, ApiError> {
    let mut msgs: HashMap<MessageId, Option<serde_json::Value>> = HashMap::new();
    if q.bool("with_msg")?.unwrap_or(false) {
        for a in &page.items {
            if msgs.contains_key(&a.msg_id) {
                continue;
            }
            let out = match s.store.get_message_head(app, &a.msg_id)? {
                Some(m) => Some(
                    serde_json::to_value(MessageOut::new(&m, false)?)
                        .map_err(|e| ApiError::Internal(e.to_string()))?,
                ),
                None => None,
            };
            msgs.insert(a.msg_id.clone(), out);
        }
    }
    let out = list_response(
        page,
        |a| a.id.to_string(),
        ksuid_key(AttemptId::PREFIX),
        |a| {
            let msg = msgs.get(&a.msg_id).cloned().flatten();
            AttemptOut {
                msg,
                ..AttemptOut::from(a)
            }
        },
    );
    Ok(reply(StatusCode::OK, &out))
}

fn by_msg(s: State, app: Seg, msg: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let msg = find_msg(&s, &app, &msg)?;
    let pq = ListParams::parse(&q, true)?
        .scanning(s.limits.max_list_scan)
        .to_page_query(attempt_cursor)?;
    let filter = AttemptFilter::parse(&q)?;
    let endpoint = match q.get("endpoint_id") {
        Some(e) => Some(find_endpoint(&s, &app, &Seg(e.to_string()))?.id),
        None => None,
    };
    let of_msg = OfMessage::parse(&q).keep(&msg);
    let page = s.store.list_attempts_by_msg(&app.id, &msg.id, &pq, |a| {
        of_msg && filter.keep(a) && endpoint.as_ref().is_none_or(|e| &a.endpoint_id == e)
    })?;
    attempts_page(&s, &app.id, &q, page)
}

fn by_endpoint(s: State, app: Seg, ep: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let ep = find_endpoint(&s, &app, &ep)?;
    let pq = ListParams::parse(&q, true)?
        .scanning(s.limits.max_list_scan)
        .to_page_query(attempt_cursor)?;
    let filter = AttemptFilter::parse(&q)?;
    let of_msg = OfMessage::parse(&q);
    // Message filters read each attempt's message record (not its payload), within the page's
    // scan budget.
    let page = s
        .store
        .list_attempts_by_endpoint(&app.id, &ep.id, &pq, |a| {
            filter.keep(a)
                && (of_msg.is_empty()
                    || s.store
                        .get_message_head(&app.id, &a.msg_id)
                        .ok()
                        .flatten()
                        .is_some_and(|m| of_msg.keep(&m)))
        })?;
    attempts_page(&s, &app.id, &q, page)
}

fn get_one(s: State, app: Seg, msg: Seg, attempt: Seg) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let msg = find_msg(&s, &app, &msg)?;
    let id = attempt
        .0
        .parse::<AttemptId>()
        .map_err(|_| ApiError::NotFound("attempt not found"))?;
    let a = s
        .store
        .get_attempt(&app.id, &msg.id, &id)?
        .ok_or(ApiError::NotFound("attempt not found"))?;
    Ok(reply(StatusCode::OK, &AttemptOut::from(a)))
}

/// The endpoints a message was sent to, with its state at each.
fn destinations(s: State, app: Seg, msg: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let msg = find_msg(&s, &app, &msg)?;
    let params = ListParams::parse(&q, false)?;
    let mut rows = Vec::new();
    for ep in s.store.all_endpoints(&app.id)? {
        // Fanned out to it at acceptance (pending until a try ends), or tried by hand since.
        let record = s.store.destination(&app.id, &ep.id, &msg.id)?;
        let next_attempt = match &record {
            Some(d) => d.next_attempt,
            None if msg.destinations.contains(&ep.id) => Some(msg.first_due()),
            None => continue,
        };
        let status = Destination::shown(
            record.as_ref(),
            s.delivery.in_flight(&app.id, &ep.id, &msg.id),
        );
        rows.push(DestinationOut {
            id: ep.id.to_string(),
            uid: ep.uid,
            url: ep.url,
            description: ep.description,
            status: status.code(),
            status_text: status.text(),
            next_attempt: next_attempt.map(Timestamp::to_rfc3339),
            disabled: ep.disabled,
            event_types: ep.filter_types,
            channels: ep.channels,
            throttle_rate: ep.throttle_rate,
            created_at: ep.created_at.to_rfc3339(),
            updated_at: ep.updated_at.to_rfc3339(),
        });
    }
    // Applications hold few endpoints: page in memory, after the iterator's endpoint id.
    if let Some((after, _)) = &params.cursor {
        rows.retain(|r| r.id.as_str() > after.as_str());
    }
    let done = rows.len() <= params.limit;
    rows.truncate(params.limit);
    let out = list_response(Page::of(rows, done), |r| r.id.clone(), |_| None, |r| r);
    Ok(reply(StatusCode::OK, &out))
}

async fn resend(s: State, app: Seg, msg: Seg, ep: Seg) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let msg = find_msg(&s, &app, &msg)?;
    let ep = find_endpoint(&s, &app, &ep)?;
    s.store.enqueue_manual(&app.id, &ep.id, &[msg.id]).await?;
    s.delivery.enqueued(&app.id, &[ep.id]);
    Ok(reply(StatusCode::ACCEPTED, &serde_json::json!({})))
}

async fn stats(s: State, app: Seg, ep: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let ep = find_endpoint(&s, &app, &ep)?;
    let since = time_param(&q, "since")?;
    let until = time_param(&q, "until")?;
    let store = s.store.clone();
    let (a, e) = (app.id.clone(), ep.id.clone());
    // Outcomes are recorded per destination; what waits for a try is in the queue.
    let (counts, queued) = super::blocking(move || {
        Ok((
            store.destination_counts(&a, &e, since, until)?,
            store.queued_count(&a, &e, since, until)?,
        ))
    })
    .await?;
    let sending = (s.delivery.load_of(&app.id, &ep.id).running as u64).min(queued);
    let pending = queued - sending;
    Ok(reply(
        StatusCode::OK,
        &StatsOut {
            success: counts[DeliveryStatus::Success.code() as usize],
            pending,
            sending,
            fail: counts[DeliveryStatus::Fail.code() as usize],
            canceled: counts[DeliveryStatus::Canceled.code() as usize],
        },
    ))
}

async fn health(s: State, app: Seg, ep: Seg) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let ep = find_endpoint(&s, &app, &ep)?;
    let store = s.store.clone();
    let (a, e) = (app.id.clone(), ep.id.clone());
    let (recent, health, queued) = super::blocking(move || {
        let q = crate::store::PageQuery {
            limit: HEALTH_WINDOW,
            cursor: None,
            descending: true,
            max_scan: crate::store::SCAN_RECORDS,
        };
        Ok((
            store.list_attempts_by_endpoint(&a, &e, &q, |_| true)?.items,
            store.endpoint_health(&a, &e)?,
            store.queued_count_capped(&a, &e, HEALTH_QUEUE_CAP) as u64,
        ))
    })
    .await?;
    let success = recent
        .iter()
        .filter(|a| a.status == DeliveryStatus::Success)
        .count() as u64;
    let fail = recent.len() as u64 - success;
    let load = s.delivery.load_of(&app.id, &ep.id);
    let sending = (load.running as u64).min(queued);
    // The stored clock starts when a message exhausts its retries (it drives auto-disable); the
    // current run of failed attempts may have started earlier.
    let streak_start = recent
        .iter()
        .take_while(|a| a.status != DeliveryStatus::Success)
        .last()
        .map(|a| a.created_at);
    let failing_since = match (health.failing_since, streak_start) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let last_success = recent
        .iter()
        .find(|a| a.status == DeliveryStatus::Success)
        .map(|a| a.created_at)
        .or(health.last_success);
    Ok(reply(
        StatusCode::OK,
        &HealthOut {
            last_attempt: recent.first().map(|a| LastAttemptOut {
                id: a.id.to_string(),
                timestamp: a.created_at.to_rfc3339(),
                status: a.status.code(),
                response_status_code: a.response_status_code,
            }),
            last_success_at: last_success.map(Timestamp::to_rfc3339),
            failing_since: failing_since.map(Timestamp::to_rfc3339),
            counts: StatsOut {
                success,
                pending: queued - sending,
                sending,
                fail,
                canceled: 0,
            },
            success_rate: (!recent.is_empty()).then(|| success as f64 / recent.len() as f64),
            disabled: ep.disabled,
            disabled_reason: ep.disabled_reason,
            circuit: CircuitOut {
                state: load.breaker.text(),
                open_since: load.open_since.map(Timestamp::to_rfc3339),
                concurrency_limit: load.limit,
                running: load.running,
            },
            ordering: ep.ordering,
            blocked_by: load
                .blocked_by
                .filter(|_| ep.ordering == DeliveryOrder::Fifo)
                .map(|(msg, since)| BlockedOut {
                    detail: format!("blocked by {msg} since {}", since.to_rfc3339()),
                    msg_id: msg.to_string(),
                    since: since.to_rfc3339(),
                }),
        },
    ))
}
