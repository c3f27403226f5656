//! Background tasks (recover, replay-missing, bulk replay, purging an application's content):
//! durable records of what a long job was
//! asked, how far it got (a cursor and counters) and how it ended, so that a restart resumes each
//! running task from its cursor instead of forgetting it. The work itself belongs to delivery
//! (`delivery::tasks`); this module only keeps the records.

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::page::{scan, Page, PageQuery};
use super::{keys, Store, StoreError};
use crate::domain::{AppId, DeliveryStatus, EndpointId, MessageId, TaskId, Timestamp};

/// Svix's BackgroundTaskStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    Running,
    Finished,
    Failed,
}

impl TaskStatus {
    pub fn text(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Finished => "finished",
            TaskStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        [Self::Running, Self::Finished, Self::Failed]
            .into_iter()
            .find(|t| t.text() == s)
    }
}

/// The endpoint and the window of message creation times a task works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointWindow {
    pub app: AppId,
    pub endpoint: EndpointId,
    pub since: Timestamp,
    pub until: Option<Timestamp>,
}

/// Svix's BulkReplayIn filters (all must hold; absent ones hold).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayFilter {
    pub event_types: Option<Vec<String>>,
    pub channel: Option<String>,
    pub tag: Option<String>,
    /// The message's delivery state at this endpoint.
    pub status: Option<DeliveryStatus>,
}

/// What a task was asked to do. A new kind of task adds a variant here and a step in
/// `delivery::tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskParams {
    /// Re-send the messages whose delivery to the endpoint failed.
    Recover(EndpointWindow),
    /// Send the messages never sent to the endpoint (created while it was disabled, or not
    /// subscribed then) that it would accept now.
    ReplayMissing(EndpointWindow),
    /// Send again the messages sent to the endpoint that pass the filter.
    BulkReplay(EndpointWindow, ReplayFilter),
    /// Expunge the payloads of the application's messages up to `until`, its newest message when
    /// the task started (`None`: it had none), so that messages sent meanwhile keep theirs and
    /// the task ends. Last: records are bincode, and a variant's index is its place here.
    PurgeContent {
        app: AppId,
        until: Option<MessageId>,
    },
    /// Count each application's message destinations (message × endpoint at acceptance) for
    /// messages created in `[since, until)`: those of `apps`, or of every application (`None`).
    /// `counts` holds the results so far, in the order the applications were read.
    AppStats {
        since: Timestamp,
        until: Timestamp,
        apps: Option<Vec<AppId>>,
        counts: Vec<AppCount>,
    },
    /// List, for every application, the event types its enabled endpoints subscribe to by name
    /// and whether one takes every type. `usage` holds the results so far.
    EventTypeUsage { usage: Vec<AppEventTypes> },
}

/// One application's line of an `AppStats` task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCount {
    pub app: AppId,
    pub uid: Option<String>,
    pub destinations: u64,
}

/// One application's line of an `EventTypeUsage` task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppEventTypes {
    pub app: AppId,
    /// Sorted, each once.
    pub event_types: Vec<String>,
    pub catch_all: bool,
}

impl TaskParams {
    /// Svix's BackgroundTaskType of this task.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskParams::Recover(_) => "endpoint.recover",
            TaskParams::ReplayMissing(_) => "endpoint.replay",
            TaskParams::BulkReplay(..) => "endpoint.bulk-replay",
            TaskParams::PurgeContent { .. } => "application.purge_content",
            TaskParams::AppStats { .. } => "application.stats",
            TaskParams::EventTypeUsage { .. } => "event-type.aggregate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackgroundTask {
    pub id: TaskId,
    pub params: TaskParams,
    pub status: TaskStatus,
    /// Where the next step starts (the kind decides what it is: a message id for every kind so
    /// far); `None` before the first step.
    pub cursor: Option<String>,
    /// Records looked at so far.
    pub scanned: u64,
    /// Messages queued for sending so far; for `PurgeContent`, payloads expunged so far (those
    /// expunged before the task are scanned, not counted here).
    pub sent: u64,
    /// Why a failed task failed.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl BackgroundTask {
    /// A new running task.
    pub fn new(params: TaskParams) -> BackgroundTask {
        let now = Timestamp::now();
        BackgroundTask {
            id: TaskId::generate(),
            params,
            status: TaskStatus::Running,
            cursor: None,
            scanned: 0,
            sent: 0,
            error: None,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Store {
    /// Write a task's record (new or changed); durable on return, so a step's progress is never
    /// recorded ahead of the work it describes being on disk.
    pub async fn put_task(&self, task: &BackgroundTask) -> Result<(), StoreError> {
        self.ensure_space(super::WriteKind::Progress)?;
        {
            let _gate = self.write_gate();
            self.inner
                .tasks
                .insert(keys::task(&task.id), encode(task)?)?;
        }
        self.durable().await
    }

    pub fn get_task(&self, id: &TaskId) -> Result<Option<BackgroundTask>, StoreError> {
        match self.inner.tasks.get(keys::task(id))? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// A page of tasks (ordered by creation), those `keep` accepts.
    pub fn list_tasks(
        &self,
        q: &PageQuery,
        keep: impl Fn(&BackgroundTask) -> bool,
    ) -> Result<Page<BackgroundTask>, StoreError> {
        scan(&self.inner.tasks, &[], q, keep)
    }

    /// The newest message of `app` (where a purge of its content stops).
    pub fn newest_message_id(&self, app: &AppId) -> Result<Option<MessageId>, StoreError> {
        match self
            .inner
            .messages
            .scan_prefix(keys::messages_of(app))
            .next_back()
        {
            Some(r) => Ok(keys::message_ids(&r?.0).map(|(_, m)| m)),
            None => Ok(None),
        }
    }

    /// Up to `n` application ids after `after` (from the first without one), in key order,
    /// without the reserved operational-webhook application, and the id to go on after (`None`:
    /// there are no more).
    pub fn app_ids_after(
        &self,
        after: Option<&AppId>,
        n: usize,
    ) -> Result<(Vec<AppId>, Option<AppId>), StoreError> {
        let start = match after {
            Some(a) => {
                // Just past `after`'s key: the smallest key greater than it.
                let mut k = keys::app(a);
                k.push(0);
                k
            }
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for r in self.inner.apps.range(start..) {
            let (k, _) = r?;
            let id = std::str::from_utf8(&k)
                .ok()
                .and_then(|s| AppId::from_ksuid(s).ok())
                .ok_or_else(|| StoreError::Codec("malformed application key".into()))?;
            if out.len() == n {
                return Ok((out.clone(), out.last().cloned()));
            }
            if id != *super::operational_app() {
                out.push(id);
            }
        }
        Ok((out, None))
    }

    /// Every task still running (at start-up, to resume them).
    pub fn running_tasks(&self) -> Result<Vec<BackgroundTask>, StoreError> {
        let mut out = Vec::new();
        for r in self.inner.tasks.iter() {
            let (_, v) = r?;
            let t: BackgroundTask = decode(&v)?;
            if t.status == TaskStatus::Running {
                out.push(t);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreOptions, SCAN_RECORDS};

    fn window() -> EndpointWindow {
        EndpointWindow {
            app: AppId::generate(),
            endpoint: EndpointId::generate(),
            since: Timestamp(1),
            until: None,
        }
    }

    #[tokio::test]
    async fn application_ids_come_in_pages_that_go_on_from_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        let mut made = Vec::new();
        for _ in 0..3 {
            let now = Timestamp::now();
            let app = crate::domain::Application {
                id: AppId::generate(),
                uid: None,
                name: "a".into(),
                metadata: Default::default(),
                throttle_rate: None,
                created_at: now,
                updated_at: now,
            };
            store.create_app(&app).await.unwrap();
            made.push(app.id);
        }
        let (first, next) = store.app_ids_after(None, 2).unwrap();
        assert_eq!(first, made[..2]);
        assert_eq!(next.as_ref(), Some(&made[1]));
        let (rest, next) = store.app_ids_after(next.as_ref(), 2).unwrap();
        assert_eq!((rest, next), (vec![made[2].clone()], None));
        assert_eq!(
            store.app_ids_after(Some(&made[2]), 2).unwrap(),
            (vec![], None)
        );
    }

    #[test]
    fn task_kinds_keep_their_place_in_stored_records() {
        // Records are a format byte and bincode: a variant's index is its place, so new kinds go
        // last.
        let purge = TaskParams::PurgeContent {
            app: AppId::generate(),
            until: None,
        };
        let usage = TaskParams::EventTypeUsage { usage: Vec::new() };
        let variant = |p: &TaskParams| encode(p).unwrap()[1];
        assert_eq!(variant(&purge), 3);
        assert_eq!(variant(&usage), 5);
    }

    #[tokio::test]
    async fn tasks_survive_a_reopen_and_only_running_ones_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (running, finished) = {
            let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
            let mut a = BackgroundTask::new(TaskParams::ReplayMissing(window()));
            a.cursor = Some("msg_x".into());
            a.sent = 3;
            store.put_task(&a).await.unwrap();
            let mut b = BackgroundTask::new(TaskParams::Recover(window()));
            b.status = TaskStatus::Finished;
            store.put_task(&b).await.unwrap();
            store.close().unwrap();
            (a, b)
        };
        let store = Store::open(dir.path(), &StoreOptions::for_tests()).unwrap();
        assert_eq!(store.running_tasks().unwrap(), vec![running.clone()]);
        assert_eq!(store.get_task(&finished.id).unwrap(), Some(finished));
        let q = PageQuery {
            limit: 10,
            cursor: None,
            descending: true,
            max_scan: SCAN_RECORDS,
        };
        let page = store
            .list_tasks(&q, |t| t.params.kind() == "endpoint.replay")
            .unwrap();
        assert_eq!(page.items, vec![running]);
    }
}
