//! One try of one task: load the endpoint and message, sign, POST, then record the attempt and
//! decide what follows (done, retry later, give up), including the endpoint-level consequences
//! (410 Gone disables it; exhausting messages with no success for long disables it; a success
//! after failures triggers fast recovery).

use std::sync::Arc;
use std::time::Duration;

use super::client::{headers, Outcome};
use super::dispatcher::{EpRef, Shared};
use super::retry::{jitter_sample, next_delay, Failure};
use super::signer::sign;
use crate::domain::{
    Attempt, AttemptId, DeliveryStatus, Destination, Endpoint, EndpointHealth, Message, Task,
    Timestamp, Trigger,
};
use crate::metrics;
use crate::store::{QueuedTask, StoreError, TryRecord};

/// Run one try; returns whether the task was rescheduled for a retry.
pub async fn try_task(shared: &Arc<Shared>, ep: &EpRef, qt: &QueuedTask) -> bool {
    match try_inner(shared, ep, qt).await {
        Ok(retrying) => retrying,
        Err(e) => {
            tracing::error!(error = %e, endpoint = %ep.1, "delivery bookkeeping failed");
            false
        }
    }
}

async fn try_inner(
    shared: &Arc<Shared>,
    ep_ref: &EpRef,
    qt: &QueuedTask,
) -> Result<bool, StoreError> {
    let store = &shared.store;
    let (app, ep_id) = ep_ref;
    let Some(ep) = store.get_endpoint(app, ep_id.as_str())? else {
        store.drop_task(&qt.key)?;
        return Ok(false);
    };
    let Some(msg) = store.get_message(app, qt.task.msg_id.as_str())? else {
        store.drop_task(&qt.key)?;
        return Ok(false);
    };
    if ep.disabled && qt.task.trigger == Trigger::Scheduled {
        // The give-up is visible as a failed destination; the endpoint shows why it is disabled.
        let dest = Destination {
            status: DeliveryStatus::Fail,
            next_attempt: None,
            updated_at: Timestamp::now(),
        };
        store.give_up(&qt.key, &msg, &ep, &dest)?;
        return Ok(false);
    }

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
    // Only a manual try needs the state before it: it must not overrule the schedule's own.
    let previous = match qt.task.trigger {
        Trigger::Manual => store.destination(app, ep_id, &msg.id)?,
        Trigger::Scheduled => None,
    };
    let status = if success {
        DeliveryStatus::Success
    } else if retry_in.is_some() {
        DeliveryStatus::Pending
    } else if qt.task.trigger == Trigger::Manual {
        match &previous {
            Some(d) => d.status,
            // No outcome yet: the scheduled try is still to come, if the message went here.
            None if msg.destinations.contains(ep_id) => DeliveryStatus::Pending,
            None => DeliveryStatus::Fail,
        }
    } else {
        DeliveryStatus::Fail
    };
    let next_attempt = match retry_in {
        Some(d) => Some(now.plus_millis(d.as_millis() as i64)),
        None if status == DeliveryStatus::Pending => previous.and_then(|d| d.next_attempt),
        None => None,
    };
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
        destination: Destination {
            status,
            next_attempt,
            updated_at: now,
        },
        retry: retry_in.map(|d| {
            let due = now.millis() + d.as_millis() as i64;
            (
                due,
                Task {
                    msg_id: msg.id.clone(),
                    tries,
                    trigger: Trigger::Scheduled,
                },
            )
        }),
    };
    store.finish_try(&record)?;

    if success {
        on_success(shared, ep_ref, now)?;
    } else if gone {
        disable(shared, ep_ref, "the endpoint answered 410 Gone".to_string()).await?;
    } else if retry_in.is_none() && qt.task.trigger == Trigger::Scheduled {
        on_exhausted(shared, ep_ref, now).await?;
    }
    Ok(retry_in.is_some())
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

fn on_success(shared: &Arc<Shared>, ep: &EpRef, now: Timestamp) -> Result<(), StoreError> {
    // The stored clock only needs clearing once per healthy stretch.
    if shared.mark_healthy(ep) {
        let h = EndpointHealth {
            failing_since: None,
            last_success: Some(now),
        };
        shared.store.set_endpoint_health(&ep.0, &ep.1, &h)?;
    }
    shared.succeeded(ep);
    Ok(())
}

/// A message exhausted its retries: start or check the endpoint's failure clock.
async fn on_exhausted(shared: &Arc<Shared>, ep: &EpRef, now: Timestamp) -> Result<(), StoreError> {
    shared.mark_failing(ep);
    let mut health = shared.store.endpoint_health(&ep.0, &ep.1)?;
    let since = *health.failing_since.get_or_insert(now);
    shared.store.set_endpoint_health(&ep.0, &ep.1, &health)?;
    let limit = shared.opts.disable_after;
    if Duration::from_millis((now.millis() - since.millis()).max(0) as u64) >= limit {
        let reason = format!(
            "messages exhausted their retries with no success since {}",
            since.to_rfc3339()
        );
        disable(shared, ep, reason).await?;
    }
    Ok(())
}

async fn disable(shared: &Shared, ep: &EpRef, reason: String) -> Result<(), StoreError> {
    tracing::warn!(endpoint = %ep.1, %reason, "disabling endpoint");
    let result = shared
        .store
        .update_endpoint(&ep.0, &ep.1, |e| {
            if !e.disabled {
                e.disabled = true;
                e.disabled_reason = Some(reason.clone());
            }
        })
        .await;
    match result {
        Err(StoreError::NotFound) => Ok(()),
        other => other.map(|_| ()),
    }
}
