//! Messages and what happens to them: the delivery task that waits in the queue, the state of each
//! (message, endpoint) destination, the record of every try, and each endpoint's health clock.

use serde::{Deserialize, Serialize};

use super::ids::{AppId, AttemptId, EndpointId, MessageId};
use super::model::Endpoint;
use super::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub app_id: AppId,
    pub event_type: String,
    pub event_id: Option<String>,
    pub channels: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// The payload's JSON text exactly as received; it is sent byte for byte.
    pub payload: Vec<u8>,
    pub created_at: Timestamp,
    /// The endpoints it was fanned out to when accepted. Until a try ends, its state at each of
    /// them is "pending" with no record of its own, which keeps acceptance to one write per task.
    pub destinations: Vec<EndpointId>,
    /// Nothing is sent before this time (Svix's `deliverAt`): its tasks are queued due then.
    /// (Not in serde's form: the store's message records carry it; see `store::messages`.)
    #[serde(skip)]
    pub deliver_at: Option<Timestamp>,
    /// Its payload is expunged at this time (`payloadRetentionPeriod` / `payloadRetentionHours`).
    #[serde(skip)]
    pub payload_expires_at: Option<Timestamp>,
    /// Its payload was expunged: `payload` is empty and nothing of it is left on disk.
    #[serde(skip)]
    pub expunged: bool,
}

impl Message {
    /// When its first scheduled try is due.
    pub fn first_due(&self) -> Timestamp {
        self.deliver_at.unwrap_or(self.created_at)
    }
}

/// Svix's MessageStatus, with its wire numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Success,
    Pending,
    Fail,
    Sending,
    /// The delivery was called off before it was made (its message's payload was expunged).
    Canceled,
}

impl DeliveryStatus {
    pub fn code(self) -> u8 {
        match self {
            DeliveryStatus::Success => 0,
            DeliveryStatus::Pending => 1,
            DeliveryStatus::Fail => 2,
            DeliveryStatus::Sending => 3,
            DeliveryStatus::Canceled => 4,
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            DeliveryStatus::Success => "success",
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Fail => "fail",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Canceled => "canceled",
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        [
            Self::Success,
            Self::Pending,
            Self::Fail,
            Self::Sending,
            Self::Canceled,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// Sending is a moment of pending: where only the state of a delivery counts, they are one.
    pub fn settled(self) -> DeliveryStatus {
        match self {
            DeliveryStatus::Sending => DeliveryStatus::Pending,
            s => s,
        }
    }

    /// A message's status from those of its destinations: failed if any failed (an operator should
    /// look), else pending while any is unfinished, else success, canceled only if all were;
    /// `None` with no destinations.
    pub fn overall(each: impl IntoIterator<Item = DeliveryStatus>) -> Option<DeliveryStatus> {
        each.into_iter()
            .map(DeliveryStatus::settled)
            .max_by_key(|s| match s {
                DeliveryStatus::Canceled => 0,
                DeliveryStatus::Success => 1,
                DeliveryStatus::Pending | DeliveryStatus::Sending => 2,
                DeliveryStatus::Fail => 3,
            })
    }
}

/// What started a try: the retry schedule, or an operator (resend, recover), which is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    Scheduled,
    Manual,
}

impl Trigger {
    pub fn code(self) -> u8 {
        match self {
            Trigger::Scheduled => 0,
            Trigger::Manual => 1,
        }
    }
}

/// An endpoint with its application: how the queue and the dispatcher name a destination.
pub type EndpointRef = (AppId, EndpointId);

/// A queued delivery of one message to one endpoint (the endpoint is in the queue key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub msg_id: MessageId,
    /// Tries made so far.
    pub tries: u32,
    pub trigger: Trigger,
}

/// The state of one message at one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub status: DeliveryStatus,
    pub next_attempt: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl Destination {
    /// The state a destination is shown in: its record if a try has ended, else pending (it was
    /// fanned out to at acceptance and waits for its first try); "sending" while a try of this
    /// message to this endpoint is in flight and no outcome is final yet.
    pub fn shown(record: Option<&Destination>, in_flight: bool) -> DeliveryStatus {
        let stored = record.map_or(DeliveryStatus::Pending, |d| d.status);
        if in_flight && stored == DeliveryStatus::Pending {
            DeliveryStatus::Sending
        } else {
            stored
        }
    }

    /// The state after a try ends. `retry_at` is when the schedule tries again (a failed
    /// scheduled try with tries left). A manual try (resend, recover) never overrules the
    /// schedule's own state unless it succeeds: without a `previous` record the scheduled try is
    /// still to come if the message was fanned out here (`fanned_out_here`).
    pub fn after_try(
        success: bool,
        retry_at: Option<Timestamp>,
        trigger: Trigger,
        previous: Option<&Destination>,
        fanned_out_here: bool,
        now: Timestamp,
    ) -> Destination {
        let (status, next_attempt) = if success {
            (DeliveryStatus::Success, None)
        } else if retry_at.is_some() {
            (DeliveryStatus::Pending, retry_at)
        } else if trigger == Trigger::Manual {
            match previous {
                Some(d) => (d.status, d.next_attempt),
                None if fanned_out_here => (DeliveryStatus::Pending, None),
                None => (DeliveryStatus::Fail, None),
            }
        } else {
            (DeliveryStatus::Fail, None)
        };
        Destination {
            status,
            next_attempt,
            updated_at: now,
        }
    }

    /// A task called off without a try (its message's payload was expunged).
    pub fn canceled(now: Timestamp) -> Destination {
        Destination {
            status: DeliveryStatus::Canceled,
            next_attempt: None,
            updated_at: now,
        }
    }

    /// A task given up without a try (its endpoint is disabled).
    pub fn given_up(now: Timestamp) -> Destination {
        Destination {
            status: DeliveryStatus::Fail,
            next_attempt: None,
            updated_at: now,
        }
    }
}

/// What a try means for its endpoint's health clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEvent {
    /// A 2xx answer.
    Success,
    /// A scheduled message ran out of retries.
    Exhausted,
    /// Anything else: the clock does not move.
    Other,
}

/// A success refreshes `last_success` at most this often, so a busy endpoint does not write its
/// health on every delivery.
const LAST_SUCCESS_GRANULARITY_MS: i64 = 60_000;

impl EndpointHealth {
    /// The clock after `event`, or `None` when nothing worth storing changed.
    pub fn after(&self, event: HealthEvent, now: Timestamp) -> Option<EndpointHealth> {
        match event {
            HealthEvent::Success => {
                let fresh = self
                    .last_success
                    .is_some_and(|t| now.millis() - t.millis() < LAST_SUCCESS_GRANULARITY_MS);
                (self.failing_since.is_some() || !fresh).then_some(EndpointHealth {
                    failing_since: None,
                    last_success: Some(now),
                })
            }
            HealthEvent::Exhausted if self.failing_since.is_none() => Some(EndpointHealth {
                failing_since: Some(now),
                last_success: self.last_success,
            }),
            HealthEvent::Exhausted | HealthEvent::Other => None,
        }
    }

    /// Whether messages have been exhausting with no success for at least `limit_ms`.
    pub fn failing_for(&self, now: Timestamp, limit_ms: i64) -> bool {
        self.failing_since
            .is_some_and(|since| now.millis() - since.millis() >= limit_ms)
    }
}

/// One HTTP try. `response_status_code` is 0 when no response came; `response` then holds the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: AttemptId,
    pub app_id: AppId,
    pub msg_id: MessageId,
    pub endpoint_id: EndpointId,
    pub url: String,
    pub status: DeliveryStatus,
    pub response_status_code: i16,
    pub response: String,
    pub duration_ms: i64,
    pub trigger: Trigger,
    pub created_at: Timestamp,
}

/// The clock behind auto-disable: since when an endpoint has had messages exhausted with no success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHealth {
    pub failing_since: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
}

impl Endpoint {
    /// Whether a message of `event_type` on `channels` goes to this endpoint: its event-type filter
    /// (absent = all) must name the type, and if it lists channels the message must carry one.
    pub fn accepts(&self, event_type: &str, channels: Option<&[String]>) -> bool {
        let type_ok = self
            .filter_types
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == event_type));
        let channel_ok = match &self.channels {
            None => true,
            Some(wanted) => channels.is_some_and(|c| c.iter().any(|x| wanted.contains(x))),
        };
        type_ok && channel_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::SigningKey;

    #[test]
    fn a_failure_outranks_pending_which_outranks_success() {
        use DeliveryStatus::*;
        assert_eq!(DeliveryStatus::overall([]), None);
        assert_eq!(DeliveryStatus::overall([Success, Success]), Some(Success));
        assert_eq!(DeliveryStatus::overall([Success, Sending]), Some(Pending));
        assert_eq!(
            DeliveryStatus::overall([Pending, Fail, Success]),
            Some(Fail)
        );
    }

    #[test]
    fn destination_states_follow_the_try_and_the_trigger() {
        use DeliveryStatus::*;
        let now = Timestamp(1_000);
        let later = Timestamp(9_000);
        let failed = Destination::given_up(now);
        assert_eq!(Destination::shown(None, false), Pending);
        assert_eq!(Destination::shown(None, true), Sending);
        assert_eq!(Destination::shown(Some(&failed), true), Fail);
        let ok = Destination::after_try(true, None, Trigger::Scheduled, None, true, now);
        assert_eq!((ok.status, ok.next_attempt), (Success, None));
        let retry = Destination::after_try(false, Some(later), Trigger::Scheduled, None, true, now);
        assert_eq!((retry.status, retry.next_attempt), (Pending, Some(later)));
        let out = Destination::after_try(false, None, Trigger::Scheduled, None, true, now);
        assert_eq!(out.status, Fail);
        // A failed manual try keeps the schedule's state.
        let manual = Destination::after_try(false, None, Trigger::Manual, Some(&retry), true, now);
        assert_eq!((manual.status, manual.next_attempt), (Pending, Some(later)));
        let first = Destination::after_try(false, None, Trigger::Manual, None, true, now);
        assert_eq!(first.status, Pending);
        let elsewhere = Destination::after_try(false, None, Trigger::Manual, None, false, now);
        assert_eq!(elsewhere.status, Fail);
    }

    #[test]
    fn the_health_clock_starts_on_exhaustion_and_clears_on_success() {
        let h = EndpointHealth::default();
        let t = |ms| Timestamp(ms);
        let failing = h.after(HealthEvent::Exhausted, t(1_000)).unwrap();
        assert_eq!(failing.failing_since, Some(t(1_000)));
        assert_eq!(
            failing.after(HealthEvent::Exhausted, t(2_000)),
            None,
            "keeps its start"
        );
        assert!(!failing.failing_for(t(5_000), 10_000));
        assert!(failing.failing_for(t(11_000), 10_000));
        let ok = failing.after(HealthEvent::Success, t(3_000)).unwrap();
        assert_eq!((ok.failing_since, ok.last_success), (None, Some(t(3_000))));
        assert_eq!(
            ok.after(HealthEvent::Success, t(4_000)),
            None,
            "no write per success"
        );
        assert!(ok.after(HealthEvent::Success, t(70_000)).is_some());
        assert_eq!(ok.after(HealthEvent::Other, t(70_000)), None);
    }

    fn ep(types: Option<&[&str]>, channels: Option<&[&str]>) -> Endpoint {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Endpoint {
            id: EndpointId::generate(),
            app_id: AppId::generate(),
            uid: None,
            url: "https://example.com".into(),
            description: String::new(),
            filter_types: types.map(v),
            channels: channels.map(v),
            disabled: false,
            disabled_reason: None,
            throttle_rate: None,
            ordering: Default::default(),
            headers: Default::default(),
            metadata: Default::default(),
            version: 1,
            secret: SigningKey(vec![0; 24]),
            retired_keys: vec![],
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            filter: None,
        }
    }

    #[test]
    fn filters_match_event_types_and_channels() {
        let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(ep(None, None).accepts("a", None));
        assert!(ep(None, None).accepts("a", Some(&s(&["c1"]))));
        assert!(ep(Some(&["a", "b"]), None).accepts("b", None));
        assert!(!ep(Some(&["a", "b"]), None).accepts("c", None));
        assert!(
            !ep(None, Some(&["c1"])).accepts("a", None),
            "channel endpoints need a channel"
        );
        assert!(ep(None, Some(&["c1", "c2"])).accepts("a", Some(&s(&["c9", "c2"]))));
        assert!(!ep(None, Some(&["c1"])).accepts("a", Some(&s(&["c2"]))));
        assert!(!ep(Some(&["a"]), Some(&["c1"])).accepts("b", Some(&s(&["c1"]))));
    }

    #[test]
    fn statuses_have_svix_numbers() {
        assert_eq!(DeliveryStatus::Success.code(), 0);
        assert_eq!(DeliveryStatus::Pending.code(), 1);
        assert_eq!(DeliveryStatus::Fail.code(), 2);
        assert_eq!(DeliveryStatus::Sending.code(), 3);
        assert_eq!(DeliveryStatus::from_code(2), Some(DeliveryStatus::Fail));
        assert_eq!(DeliveryStatus::from_code(9), None);
        assert_eq!(Trigger::Manual.code(), 1);
    }
}
