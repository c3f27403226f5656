//! One try of one task: load the endpoint and message, sign, POST, record the outcome (one
//! transaction: attempt, destination, task removed or rescheduled, health clock), and apply the
//! endpoint-level consequences (410 Gone disables it; exhausting messages with no success for long
//! disables it), then the operational events they call for (`operational`). It reports back what
//! the try said; the dispatcher decides what follows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::breaker::Signal;
use super::client::{headers, Outcome};
use super::dispatcher::{EpRef, Shared};
use super::operational;
use super::retry::{jitter_sample, next_delay, Failure};
use super::signer::sign;
use crate::domain::{
    Attempt, AttemptId, DeliveryOrder, DeliveryStatus, Endpoint, HealthEvent, Message, Task,
    Timestamp, Trigger,
};
use crate::metrics;
use crate::store::{QueuedTask, StoreError, TryRecord, WriteKind};

/// What one try told the dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub signal: Signal,
    /// The task was rescheduled for a retry.
    pub retrying: bool,
    /// When the retry is due, if one was scheduled.
    pub retry_at: Option<i64>,
    /// The store could not record the outcome: the task is still due as it was.
    pub bookkeeping_failed: bool,
}

impl Report {
    pub fn not_tried() -> Report {
        Report {
            signal: Signal::Neutral,
            retrying: false,
            retry_at: None,
            bookkeeping_failed: false,
        }
    }
}

/// Run one try.
pub async fn try_task(shared: &Arc<Shared>, ep: &EpRef, qt: &QueuedTask) -> Report {
    match try_inner(shared, ep, qt).await {
        Ok(report) => report,
        Err(e) => {
            // Lack of space is logged by the store, once a minute.
            if e.is_no_space() {
                tracing::debug!(error = %e, endpoint = %ep.1, "delivery waits for disk space");
            } else {
                tracing::error!(error = %e, endpoint = %ep.1, "delivery bookkeeping failed");
            }
            Report {
                bookkeeping_failed: true,
                ..Report::not_tried()
            }
        }
    }
}

async fn try_inner(
    shared: &Arc<Shared>,
    ep_ref: &EpRef,
    qt: &QueuedTask,
) -> Result<Report, StoreError> {
    let store = &shared.store;
    let (app, ep_id) = ep_ref;
    let Some(ep) = store.get_endpoint(app, ep_id.as_str())? else {
        store.drop_task(&qt.key)?;
        return Ok(Report::not_tried());
    };
    let Some(msg) = store.get_message(app, qt.task.msg_id.as_str())? else {
        store.drop_task(&qt.key)?;
        return Ok(Report::not_tried());
    };
    if msg.expunged {
        // Expunged since it was queued: there is nothing left to send.
        store.cancel_task(&qt.key, app, ep_id, &msg.id, qt.task.trigger)?;
        return Ok(Report::not_tried());
    }
    if ep.disabled && qt.task.trigger == Trigger::Scheduled {
        // The give-up is visible as a failed destination; the endpoint shows why it is disabled.
        store.give_up(&qt.key, app, ep_id, &msg.id)?;
        return Ok(Report::not_tried());
    }

    // Without room to record the outcome, a POST would be sent again and again: wait instead
    // (the dispatcher holds the endpoint back for a while).
    store.ensure_space(WriteKind::Progress)?;
    let outcome = post(shared, &ep, &msg).await;
    let counted = match outcome.failure {
        None => metrics::Outcome::Success,
        Some(Failure::Status(_)) => metrics::Outcome::HttpError,
        Some(Failure::Timeout) => metrics::Outcome::Timeout,
        Some(Failure::Network) => metrics::Outcome::NetworkError,
    };
    shared.metrics.attempt(counted, outcome.duration);
    let now = Timestamp::now();
    let tries = qt.task.tries + 1;
    let success = outcome.failure.is_none();
    let gone = outcome.status == 410;
    let retry_in = match (outcome.failure, qt.task.trigger) {
        (Some(f), Trigger::Scheduled) if !gone => next_delay(
            &shared.opts.retry_schedule,
            tries,
            f,
            outcome.retry_after,
            shared.opts.timeout_retry_floor,
            jitter_sample(),
        ),
        _ => None,
    };
    let exhausted =
        !success && !gone && retry_in.is_none() && qt.task.trigger == Trigger::Scheduled;
    let record = TryRecord {
        task_key: qt.key.clone(),
        attempt: Attempt {
            id: AttemptId::generate(),
            app_id: app.clone(),
            msg_id: msg.id.clone(),
            endpoint_id: ep_id.clone(),
            url: ep.url.clone(),
            status: if success {
                DeliveryStatus::Success
            } else {
                DeliveryStatus::Fail
            },
            response_status_code: i16::try_from(outcome.status).unwrap_or(0),
            response: outcome.body.clone(),
            duration_ms: outcome.duration.as_millis() as i64,
            trigger: qt.task.trigger,
            created_at: now,
        },
        retry: retry_in.map(|d| {
            (
                now.millis() + d.as_millis() as i64,
                Task {
                    msg_id: msg.id.clone(),
                    tries,
                    trigger: Trigger::Scheduled,
                },
            )
        }),
        fanned_out_here: msg.destinations.contains(ep_id),
        health: if success {
            HealthEvent::Success
        } else if exhausted {
            HealthEvent::Exhausted
        } else {
            HealthEvent::Other
        },
        ordered: ep.ordering == DeliveryOrder::Fifo,
    };
    let health = store.finish_try(&record).await?;

    // Svix's thresholds: failing once, at the N-th failed try of a message still being retried;
    // recovered on a later success of a message that was reported failing.
    let scheduled = qt.task.trigger == Trigger::Scheduled;
    let threshold = shared.opts.failing_event_after;
    let attempt_event = if exhausted {
        Some(operational::ATTEMPT_EXHAUSTED)
    } else if scheduled && !success && retry_in.is_some() && tries == threshold {
        Some(operational::ATTEMPT_FAILING)
    } else if scheduled && success && qt.task.tries >= threshold {
        Some(operational::ATTEMPT_RECOVERED)
    } else {
        None
    };
    if let Some(event) = attempt_event {
        operational::attempt_event(shared, event, &msg, &record.attempt).await;
    }

    if gone {
        let reason = "the endpoint answered 410 Gone";
        if let Some(ep) = disable(shared, ep_ref, reason.to_string()).await? {
            operational::endpoint_disabled(shared, &ep, Some(now), reason).await;
        }
    } else if exhausted {
        let limit = shared.opts.disable_after.as_millis() as i64;
        if let Some(since) = health
            .failing_since
            .filter(|_| health.failing_for(now, limit))
        {
            let reason = format!(
                "messages exhausted their retries with no success since {}",
                since.to_rfc3339()
            );
            if let Some(ep) = disable(shared, ep_ref, reason.clone()).await? {
                operational::endpoint_disabled(shared, &ep, Some(since), &reason).await;
            }
        }
    }
    Ok(Report {
        signal: Signal::of(outcome.status, !success),
        retrying: retry_in.is_some(),
        retry_at: record.retry.as_ref().map(|r| r.0),
        bookkeeping_failed: false,
    })
}

async fn post(shared: &Shared, ep: &Endpoint, msg: &Message) -> Outcome {
    let ts = Timestamp::now().millis() / 1000;
    let signature = sign(
        ep.signing_keys(Timestamp::now()),
        msg.id.as_str(),
        ts,
        &msg.payload,
    );
    let ts_text = ts.to_string();
    let mut ours = vec![
        ("webhook-id", msg.id.as_str()),
        ("webhook-timestamp", ts_text.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    if shared.opts.svix_headers {
        ours.extend([
            ("svix-id", msg.id.as_str()),
            ("svix-timestamp", ts_text.as_str()),
            ("svix-signature", signature.as_str()),
        ]);
    }
    // Ours first: `headers` keeps the first value of a name, so custom headers cannot override.
    let all = ours
        .into_iter()
        .chain(ep.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    shared
        .client
        .post(&ep.url, headers(all), msg.payload.clone())
        .await
}

/// Disable the endpoint; the endpoint when this call disabled it, `None` when it was disabled
/// already or is gone.
async fn disable(
    shared: &Shared,
    ep: &EpRef,
    reason: String,
) -> Result<Option<Endpoint>, StoreError> {
    tracing::warn!(endpoint = %ep.1, %reason, "disabling endpoint");
    // The change may run more than once (transaction retries): the last run tells.
    let flipped = AtomicBool::new(false);
    let result = shared
        .store
        .update_endpoint(&ep.0, &ep.1, |e| {
            flipped.store(!e.disabled, Ordering::Relaxed);
            if !e.disabled {
                e.disabled = true;
                e.disabled_reason = Some(reason.clone());
            }
        })
        .await;
    match result {
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
        Ok(ep) => Ok(flipped.load(Ordering::Relaxed).then_some(ep)),
    }
}
