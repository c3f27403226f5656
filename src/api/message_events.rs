//! `GET /api/v1/app/{app}/events` (Svix's MessageEventsOut): an application's messages in order
//! of creation, oldest first, for a client that polls instead of receiving webhooks. The
//! `iterator` of each answer is where the next poll starts: always present, it names the last
//! message read (or, on an empty page, the poll's own starting point), so a poller that passes it
//! back sees each message once, including ones created after the previous poll.
//!
//! Ids grow with time, but a message becomes visible when its write lands, and concurrent
//! creates can land out of id order: a poll that read a later message before an earlier one
//! landed would move its iterator past the earlier one for good. So messages are created under a
//! [`Creating`] registration, and a poll shows only ids below the smallest one still being created
//! in its application.

use std::sync::{Arc, Mutex};

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::apps::find_app;
use super::error::ApiError;
use super::idempotency::json_bytes;
use super::messages::{time_param, MessageOut};
use super::pagination::{ksuid_key, ListParams};
use super::query::Query;
use super::{query, respond, with, Seg, State};
use crate::domain::{AppId, Message, MessageId, ValidationError};
use crate::store::{Direction, PageQuery};

/// The messages being created now (id given, write not yet landed), by application.
#[derive(Debug, Default)]
pub struct Creating {
    ids: Mutex<Vec<(AppId, MessageId)>>,
}

/// A message's id, registered as being created until this is dropped (after its write).
#[derive(Debug)]
pub struct CreatingGuard {
    registry: Arc<Creating>,
    app: AppId,
    id: MessageId,
}

impl CreatingGuard {
    pub fn id(&self) -> &MessageId {
        &self.id
    }
}

impl Drop for CreatingGuard {
    fn drop(&mut self) {
        let mut ids = self.registry.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.retain(|(a, m)| !(a == &self.app && m == &self.id));
    }
}

impl Creating {
    /// A new message id for `app`, registered: made under the lock, so every id made later is
    /// greater and a poll that reads the registry after this call sees it.
    pub fn begin(self: &Arc<Self>, app: &AppId) -> CreatingGuard {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let id = MessageId::generate();
        ids.push((app.clone(), id.clone()));
        CreatingGuard {
            registry: self.clone(),
            app: app.clone(),
            id,
        }
    }

    /// The id a poll of `app` stays below: the smallest still being created there, or else a
    /// fresh one (every message created from now on has a greater id).
    fn horizon(&self, app: &AppId) -> MessageId {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter()
            .filter(|(a, _)| a == app)
            .map(|(_, m)| m)
            .min()
            .cloned()
            .unwrap_or_else(MessageId::generate)
    }
}

pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    warp::path!("app" / Seg / "events")
        .and(warp::get())
        .and(with(&state))
        .and(query())
        .then(|app, s, q| async move { respond(super::blocking(move || events(s, app, q)).await) })
        .boxed()
}

/// `event_types` and `channels` (each comma-separated; a message matches one of the listed).
struct EventsFilter {
    event_types: Option<Vec<String>>,
    channels: Option<Vec<String>>,
}

fn list_param(q: &Query, name: &str) -> Option<Vec<String>> {
    q.get(name)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
}

impl EventsFilter {
    fn parse(q: &Query) -> Self {
        EventsFilter {
            event_types: list_param(q, "event_types"),
            channels: list_param(q, "channels"),
        }
    }

    fn keep(&self, m: &Message) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|t| t.contains(&m.event_type))
            && self.channels.as_ref().is_none_or(|want| {
                m.channels
                    .as_ref()
                    .is_some_and(|have| have.iter().any(|c| want.contains(c)))
            })
    }
}

/// One poll: `limit` (1 to 250, 50 by default) messages after `iterator`, or, without one,
/// created after `after` (from the beginning without either). With payloads, as Svix shows them;
/// a page also ends early on the list byte budget (`limits.max_list_bytes`) or its scan budget,
/// `done: false`, and the iterator then continues from there.
fn events(s: State, app: Seg, q: Query) -> Result<Response, ApiError> {
    let app = find_app(&s, &app.0)?;
    let params = ListParams::parse(&q, false)?.scanning(s.limits.max_list_scan);
    let from = match q.get("iterator").filter(|i| !i.is_empty()) {
        None => None,
        Some(i) => Some(
            i.parse::<MessageId>()
                .map_err(|_| ValidationError::new("query.iterator", "is not a valid iterator"))?,
        ),
    };
    // The iterator takes over from `after` (it is later).
    let after = match from {
        Some(_) => None,
        None => time_param(&q, "after")?,
    };
    let filter = EventsFilter::parse(&q);
    // Read before the messages: everything below it has landed by now.
    let horizon = s.creating.horizon(&app.id);
    let pq = PageQuery {
        limit: params.limit,
        cursor: from
            .as_ref()
            .map(|id| (id.ksuid().as_bytes().to_vec(), Direction::Next)),
        descending: false,
        max_scan: params.max_scan,
    };
    let page = s.store.list_messages(
        &app.id,
        &pq,
        (after, None),
        Some(s.limits.max_list_bytes),
        |m| m.id < horizon && filter.keep(m) && after.is_none_or(|a| m.created_at > a),
    )?;
    // A page that stopped on its budget goes on from the last record read, unless that is at
    // or past the horizon (what is still landing there must not be passed over).
    let iterator = page
        .resume
        .as_deref()
        .and_then(ksuid_key(MessageId::PREFIX))
        .filter(|r| r.as_str() < horizon.as_str())
        .or_else(|| page.items.last().map(|m| m.id.to_string()))
        .or_else(|| from.map(|f| f.to_string()))
        .unwrap_or_default();
    let done = page.done;
    let mut buf = Vec::with_capacity(page.items.len() * 512 + 128);
    buf.extend_from_slice(b"{\"data\":[");
    let mut written = 0;
    for m in page.items {
        // The page was read without payloads; each is read as it is written. One deleted
        // meanwhile is left out.
        let Some(full) = s.store.get_message(&app.id, m.id.as_str())? else {
            continue;
        };
        if written > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, &MessageOut::new(&full, true)?)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        written += 1;
    }
    buf.extend_from_slice(b"],\"iterator\":");
    serde_json::to_writer(&mut buf, &iterator).map_err(|e| ApiError::Internal(e.to_string()))?;
    buf.extend_from_slice(if done {
        b",\"done\":true}"
    } else {
        b",\"done\":false}"
    });
    Ok(json_bytes(StatusCode::OK.as_u16(), buf))
}
