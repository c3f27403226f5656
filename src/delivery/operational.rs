//! Operational webhooks: events about the operator's own deployment (an endpoint created, changed,
//! disabled; a message failing, exhausted, recovered), in Svix's shapes
//! (`{"type", "timestamp", "data"}`).
//!
//! An event becomes a message of the reserved operational application (`store::operational_app`),
//! fanned out to its endpoints by their event-type filter. So it is delivered by this same engine
//! as any message: written to the durable queue before anything is sent, signed with the
//! operational endpoint's secret, retried on the schedule, recorded in the attempt log, and given
//! its own application's share of the capacity, so customer traffic cannot starve it nor it
//! customer traffic. Nothing is written when no operational endpoint takes the event.
//!
//! Events about the operational application's own endpoints and messages are never emitted, so
//! an operational endpoint that fails cannot feed itself events. An event that cannot be written is
//! logged and dropped: it never fails the customer's request or the delivery it is about.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::dispatcher::Shared;
use super::Delivery;
use crate::domain::{
    AppId, Application, Attempt, Endpoint, EndpointId, Message, MessageId, Timestamp,
};
use crate::store::operational_app;

/// Every event type an operational endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 8] = [
    ENDPOINT_CREATED,
    ENDPOINT_UPDATED,
    ENDPOINT_DELETED,
    ENDPOINT_DISABLED,
    ENDPOINT_ENABLED,
    ATTEMPT_EXHAUSTED,
    ATTEMPT_FAILING,
    ATTEMPT_RECOVERED,
];

pub const ENDPOINT_CREATED: &str = "endpoint.created";
pub const ENDPOINT_UPDATED: &str = "endpoint.updated";
pub const ENDPOINT_DELETED: &str = "endpoint.deleted";
pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
pub const ENDPOINT_ENABLED: &str = "endpoint.enabled";
pub const ATTEMPT_EXHAUSTED: &str = "message.attempt.exhausted";
pub const ATTEMPT_FAILING: &str = "message.attempt.failing";
pub const ATTEMPT_RECOVERED: &str = "message.attempt.recovered";

/// Why an endpoint was disabled (Svix's `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DisableTrigger {
    Manual,
    Automatic,
}

/// The application and endpoint an event is about (Svix's `appId`, `appUid`, `endpointId`,
/// `endpointUid`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Subject<'a> {
    app_id: &'a AppId,
    app_uid: Option<&'a str>,
    endpoint_id: &'a EndpointId,
    endpoint_uid: Option<&'a str>,
}

/// Svix's `MessageAttemptFailedData`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LastAttempt<'a> {
    id: &'a str,
    response_status_code: i16,
    timestamp: String,
}

/// `data` of the endpoint events: the endpoint, plus for `endpoint.disabled` Svix's `trigger` and
/// `failSince` and Herald's `reason`.
fn endpoint_data(app: Option<&Application>, ep: &Endpoint) -> serde_json::Value {
    let subject = Subject {
        app_id: &ep.app_id,
        app_uid: app.and_then(|a| a.uid.as_deref()),
        endpoint_id: &ep.id,
        endpoint_uid: ep.uid.as_deref(),
    };
    json!(subject)
}

/// The event's body as sent.
fn envelope(event_type: &str, at: Timestamp, data: serde_json::Value) -> Vec<u8> {
    json!({ "type": event_type, "timestamp": at.to_rfc3339(), "data": data })
        .to_string()
        .into_bytes()
}

impl Delivery {
    /// An endpoint was created (`before` none), changed, or deleted (`after` none) through the API:
    /// `endpoint.created`, `.updated` (with `.disabled` or `.enabled` when that flag flipped) or
    /// `.deleted`.
    pub async fn endpoint_changed(
        &self,
        app: &Application,
        before: Option<&Endpoint>,
        after: Option<&Endpoint>,
    ) {
        let (event, ep) = match (before, after) {
            (None, Some(ep)) => (ENDPOINT_CREATED, ep),
            (Some(_), Some(ep)) => (ENDPOINT_UPDATED, ep),
            (Some(ep), None) => (ENDPOINT_DELETED, ep),
            (None, None) => return,
        };
        let data = endpoint_data(Some(app), ep);
        emit(&self.shared, event, data).await;
        if let (Some(b), Some(a)) = (before, after) {
            if !b.disabled && a.disabled {
                let mut data = endpoint_data(Some(app), a);
                data["trigger"] = json!(DisableTrigger::Manual);
                emit(&self.shared, ENDPOINT_DISABLED, data).await;
            } else if b.disabled && !a.disabled {
                emit(&self.shared, ENDPOINT_ENABLED, endpoint_data(Some(app), a)).await;
            }
        }
    }
}

/// Herald disabled `ep` itself (410 Gone, or exhausting with no success since `fail_since`).
pub async fn endpoint_disabled(
    shared: &Arc<Shared>,
    ep: &Endpoint,
    fail_since: Option<Timestamp>,
    reason: &str,
) {
    let app = app_of(shared, &ep.app_id);
    let mut data = endpoint_data(app.as_ref(), ep);
    data["trigger"] = json!(DisableTrigger::Automatic);
    data["failSince"] = json!(fail_since.map(Timestamp::to_rfc3339));
    data["reason"] = json!(reason);
    emit(shared, ENDPOINT_DISABLED, data).await;
}

/// A `message.attempt.*` event about `msg` to `attempt`'s endpoint, after that attempt.
pub async fn attempt_event(shared: &Arc<Shared>, event: &str, msg: &Message, attempt: &Attempt) {
    if msg.app_id == *operational_app() {
        return;
    }
    let app = app_of(shared, &msg.app_id);
    let data = json!({
        "appId": msg.app_id,
        "appUid": app.as_ref().and_then(|a| a.uid.as_deref()),
        "msgId": msg.id,
        "msgEventId": msg.event_id,
        "endpointId": attempt.endpoint_id,
        "lastAttempt": LastAttempt {
            id: attempt.id.as_str(),
            response_status_code: attempt.response_status_code,
            timestamp: attempt.created_at.to_rfc3339(),
        },
    });
    emit(shared, event, data).await;
}

/// The application, for its uid; an event still goes out without it.
fn app_of(shared: &Shared, id: &AppId) -> Option<Application> {
    shared.store.get_app(id.as_str()).ok().flatten()
}

/// Write the event as a message of the operational application to the operational endpoints
/// that take it, and wake the dispatcher for them.
async fn emit(shared: &Arc<Shared>, event_type: &str, data: serde_json::Value) {
    if data["appId"].as_str() == Some(operational_app().as_str()) {
        return;
    }
    let ops = operational_app();
    let destinations = match shared.store.fan_out(ops, event_type, None, None) {
        Ok(d) if d.is_empty() => return,
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, event = event_type, "operational event not sent");
            return;
        }
    };
    let now = Timestamp::now();
    let msg = Message {
        id: MessageId::generate(),
        app_id: ops.clone(),
        event_type: event_type.to_string(),
        event_id: None,
        channels: None,
        tags: None,
        payload: envelope(event_type, now, data),
        created_at: now,
        destinations,
        deliver_at: None,
        payload_expires_at: None,
        expunged: false,
    };
    match shared.store.create_message(&msg, None).await {
        Ok(_) => shared.enqueued(ops, &msg.destinations),
        Err(e) => tracing::error!(error = %e, event = event_type, "operational event not sent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_svix_shapes() {
        let body = envelope(
            ENDPOINT_DISABLED,
            Timestamp(0),
            json!({"appId": "app_1", "trigger": DisableTrigger::Automatic}),
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "endpoint.disabled");
        assert!(v["timestamp"]
            .as_str()
            .unwrap()
            .starts_with("1970-01-01T00:00:00"));
        assert_eq!(v["data"]["trigger"], "automatic");
        assert_eq!(EVENT_TYPES.len(), 8);
    }
}
