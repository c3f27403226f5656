//! Background tasks: recover, replay-missing, bulk replay and purging an application's content,
//! run step by step. Each step reads one bounded page (`delivery.task_page_size` records), does
//! its work durably (queues manual tries, or expunges payloads), then records the task's cursor
//! and counters durably, in that order: a crash between the two repeats one page, whose enqueue
//! skips what is already queued (and whose expunge finds those payloads gone). At start-up every
//! task still marked running resumes from its cursor; one that cannot go on (its endpoint or
//! application is gone, a store error) ends `failed` with the reason.

use std::sync::Arc;

use super::dispatcher::Shared;
use crate::domain::{AppId, Destination, Endpoint, Message, MessageId};
use crate::store::{
    BackgroundTask, EndpointWindow, ExpungeOutcome, ReplayFilter, Store, TaskParams, TaskStatus,
};

/// What one step did.
struct Step {
    /// Where the next step starts; `None`: the task is done.
    next: Option<String>,
    scanned: u64,
    sent: u64,
    /// The task's parameters with the results so far (usage tasks), to record with the step.
    params: Option<TaskParams>,
}

/// Write a new task and run it in the background; durable (so it will be resumed) on return.
pub(super) async fn start(
    shared: &Arc<Shared>,
    params: TaskParams,
) -> Result<BackgroundTask, crate::store::StoreError> {
    let task = BackgroundTask::new(params);
    shared.store.put_task(&task).await?;
    spawn(shared, task.clone());
    Ok(task)
}

/// Resume every task a previous run left running.
pub(super) fn resume_all(shared: &Arc<Shared>) {
    let s = shared.clone();
    shared.spawn_job(async move {
        let store = s.store.clone();
        match tokio::task::spawn_blocking(move || store.running_tasks()).await {
            Ok(Ok(tasks)) => {
                for t in tasks {
                    tracing::info!(task = %t.id, kind = t.params.kind(), "resuming background task");
                    spawn(&s, t);
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "reading background tasks failed"),
            Err(e) => tracing::error!(error = %e, "reading background tasks failed"),
        }
    });
}

fn spawn(shared: &Arc<Shared>, task: BackgroundTask) {
    let s = shared.clone();
    shared.spawn_job(run(s, task));
}

/// Step until done or failed. Shutdown aborts it between awaits: the record keeps the last
/// cursor written, and the next start resumes from there.
async fn run(shared: Arc<Shared>, mut task: BackgroundTask) {
    loop {
        let outcome = step(&shared, &task).await;
        match outcome {
            Ok(s) => {
                task.scanned += s.scanned;
                task.sent += s.sent;
                task.cursor = s.next.clone();
                if let Some(p) = s.params {
                    task.params = p;
                }
                if s.next.is_none() {
                    task.status = TaskStatus::Finished;
                }
            }
            Err(reason) => {
                tracing::warn!(task = %task.id, %reason, "background task failed");
                task.status = TaskStatus::Failed;
                task.error = Some(reason);
            }
        }
        task.updated_at = crate::domain::Timestamp::now();
        if let Err(e) = shared.store.put_task(&task).await {
            // It stays running on disk and resumes at the next start.
            tracing::error!(task = %task.id, error = %e, "recording background task progress failed");
            return;
        }
        if task.status != TaskStatus::Running {
            tracing::info!(task = %task.id, kind = task.params.kind(), sent = task.sent, status = task.status.text(), "background task ended");
            return;
        }
    }
}

/// One page of work; `Err` is the reason the task cannot go on.
async fn step(shared: &Arc<Shared>, task: &BackgroundTask) -> Result<Step, String> {
    if matches!(
        task.params,
        TaskParams::AppStats { .. } | TaskParams::EventTypeUsage { .. }
    ) {
        let (store, page) = (shared.store.clone(), shared.opts.task_page_size.max(1));
        let (params, cursor) = (task.params.clone(), task.cursor.clone());
        let s = tokio::task::spawn_blocking(move || {
            super::usage::step(&store, page, params, cursor.as_deref())
        })
        .await
        .map_err(|e| format!("the task's worker stopped: {e}"))??;
        return Ok(Step {
            next: s.next,
            scanned: s.scanned,
            sent: 0,
            params: Some(s.params),
        });
    }
    let after = match &task.cursor {
        Some(c) => Some(
            c.parse::<MessageId>()
                .map_err(|_| format!("the task's stored position {c:?} is not a message id"))?,
        ),
        None => None,
    };
    match &task.params {
        TaskParams::Recover(w) | TaskParams::ReplayMissing(w) | TaskParams::BulkReplay(w, _) => {
            endpoint_step(shared, task, w.clone(), after).await
        }
        TaskParams::PurgeContent { app, until } => {
            purge_step(shared, app.clone(), until.clone(), after).await
        }
        TaskParams::AppStats { .. } | TaskParams::EventTypeUsage { .. } => {
            Err("a usage task reached the message-page step".into())
        }
    }
}

/// One page of purging: expunge the payloads of the next page of the application's messages,
/// up to `until` (through the store's expunge, which also cancels their queued deliveries).
async fn purge_step(
    shared: &Arc<Shared>,
    app: AppId,
    until: Option<MessageId>,
    after: Option<MessageId>,
) -> Result<Step, String> {
    let page = shared.opts.task_page_size.max(1);
    let store = shared.store.clone();
    let work = move || -> Result<Step, String> {
        store
            .get_app(app.as_str())
            .map_err(|e| format!("reading the application failed: {e}"))?
            .ok_or_else(|| "the application was deleted".to_string())?;
        let Some(until) = until else {
            return Ok(Step {
                next: None,
                scanned: 0,
                sent: 0,
                params: None,
            });
        };
        let (mut ids, next) = store
            .message_ids_page(&app, after.as_ref(), page)
            .map_err(|e| format!("reading messages failed: {e}"))?;
        let past_end = ids.iter().any(|m| *m > until);
        ids.retain(|m| *m <= until);
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let outcomes = store
            .expunge_messages(&app, &ids)
            .map_err(|e| format!("expunging failed: {e}"))?;
        let expunged = outcomes
            .iter()
            .filter(|o| **o == ExpungeOutcome::Expunged)
            .count();
        Ok(Step {
            next: next.filter(|_| !past_end).map(|m| m.to_string()),
            scanned: ids.len() as u64,
            sent: expunged as u64,
            params: None,
        })
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the task's worker stopped: {e}"))?
}

/// One page of an endpoint task: read the page, queue the manual tries it calls for.
async fn endpoint_step(
    shared: &Arc<Shared>,
    task: &BackgroundTask,
    w: EndpointWindow,
    after: Option<MessageId>,
) -> Result<Step, String> {
    let page = shared.opts.task_page_size.max(1);
    let store = shared.store.clone();
    let (params, win) = (task.params.clone(), w.clone());
    let read_page = move || -> Result<(Vec<MessageId>, Option<MessageId>, u64), String> {
        let w = win;
        let ep = store
            .get_endpoint(&w.app, w.endpoint.as_str())
            .map_err(|e| format!("reading the endpoint failed: {e}"))?
            .ok_or_else(|| "the endpoint was deleted".to_string())?;
        let read = |e: crate::store::StoreError| format!("reading messages failed: {e}");
        match &params {
            TaskParams::Recover(_) => {
                let (ids, next) = store
                    .failed_messages(&w.app, &w.endpoint, w.since, w.until, after.as_ref(), page)
                    .map_err(read)?;
                let n = ids.len() as u64;
                Ok((ids, next, n))
            }
            TaskParams::ReplayMissing(_) => {
                let (msgs, next) = store
                    .messages_created(&w.app, w.since, w.until, after.as_ref(), page)
                    .map_err(read)?;
                let n = msgs.len() as u64;
                let ids = msgs
                    .into_iter()
                    .filter(|m| is_missing(&ep, m))
                    .map(|m| m.id)
                    .collect();
                Ok((ids, next, n))
            }
            TaskParams::PurgeContent { .. }
            | TaskParams::AppStats { .. }
            | TaskParams::EventTypeUsage { .. } => Ok((Vec::new(), None, 0)),
            TaskParams::BulkReplay(_, filter) => {
                let (msgs, next) = store
                    .messages_created(&w.app, w.since, w.until, after.as_ref(), page)
                    .map_err(read)?;
                let n = msgs.len() as u64;
                let mut ids = Vec::new();
                for m in msgs {
                    if replayed(&store, &w, filter, &m).map_err(read)? {
                        ids.push(m.id);
                    }
                }
                Ok((ids, next, n))
            }
        }
    };
    let (ids, next, scanned) = tokio::task::spawn_blocking(read_page)
        .await
        .map_err(|e| format!("the task's reader stopped: {e}"))??;
    let sent = if ids.is_empty() {
        0
    } else {
        let (s, app, ep) = (&shared.store, &w.app, &w.endpoint);
        let queued = match &task.params {
            TaskParams::Recover(_) => s.enqueue_manual_unless_queued(app, ep, &ids).await,
            TaskParams::ReplayMissing(_) => s.enqueue_missing(app, ep, &ids).await,
            TaskParams::BulkReplay(..) => s.enqueue_replay(app, ep, &ids).await,
            TaskParams::PurgeContent { .. }
            | TaskParams::AppStats { .. }
            | TaskParams::EventTypeUsage { .. } => Ok(0),
        }
        .map_err(|e| format!("queueing tries failed: {e}"))?;
        shared.enqueued(app, std::slice::from_ref(ep));
        queued as u64
    };
    Ok(Step {
        next: next.map(|m| m.to_string()),
        scanned,
        sent,
        params: None,
    })
}

/// A message the endpoint would take now but was not given at acceptance (the store's enqueue
/// also leaves out those with a try here already).
fn is_missing(ep: &Endpoint, m: &Message) -> bool {
    !m.destinations.contains(&ep.id)
        && ep.accepts(&m.event_type, m.channels.as_deref())
        && crate::domain::filter::passes(ep.filter.as_deref(), &m.payload)
}

/// A message sent to the endpoint (fanned out there, or tried there since) that passes `filter`.
fn replayed(
    store: &Store,
    w: &EndpointWindow,
    filter: &ReplayFilter,
    m: &Message,
) -> Result<bool, crate::store::StoreError> {
    let wanted = filter
        .event_types
        .as_ref()
        .is_none_or(|t| t.contains(&m.event_type))
        && filter
            .channel
            .as_ref()
            .is_none_or(|c| m.channels.as_ref().is_some_and(|cs| cs.contains(c)))
        && filter
            .tag
            .as_ref()
            .is_none_or(|t| m.tags.as_ref().is_some_and(|ts| ts.contains(t)));
    if !wanted {
        return Ok(false);
    }
    let record = store.destination(&w.app, &w.endpoint, &m.id)?;
    if record.is_none() && !m.destinations.contains(&w.endpoint) {
        return Ok(false);
    }
    Ok(filter
        .status
        .is_none_or(|s| Destination::shown(record.as_ref(), false) == s.settled()))
}
