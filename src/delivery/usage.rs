//! The steps of the usage background tasks (Svix's `application.stats` and
//! `event-type.aggregate`): read-only counts over the store, a bounded page at a time, whose
//! results so far travel in the task's own record. A step has no effect besides that record, so
//! a crash before it is written just repeats the step.

use std::collections::BTreeSet;

use crate::domain::{AppId, MessageId, Timestamp};
use crate::store::{AppCount, AppEventTypes, Store, StoreError, TaskParams};

/// What one step did: where the next starts (`None`: done), records read, the task's new
/// parameters (with the results so far).
pub(super) struct UsageStep {
    pub next: Option<String>,
    pub scanned: u64,
    pub params: TaskParams,
}

fn read(e: StoreError) -> String {
    format!("reading the store failed: {e}")
}

/// One step of a usage task (`params` is one of the two kinds); `page`: records per step.
pub(super) fn step(
    store: &Store,
    page: usize,
    params: TaskParams,
    cursor: Option<&str>,
) -> Result<UsageStep, String> {
    match params {
        TaskParams::AppStats {
            since,
            until,
            apps,
            counts,
        } => app_stats(store, page, (since, until), apps, counts, cursor),
        TaskParams::EventTypeUsage { usage } => event_types(store, page, usage, cursor),
        other => Err(format!("{} is not a usage task", other.kind())),
    }
}

/// The application after `app` (the first without one): the next of the list asked for, or of
/// the store.
fn next_app(
    store: &Store,
    apps: &Option<Vec<AppId>>,
    app: Option<&AppId>,
) -> Result<Option<AppId>, String> {
    match (apps, app) {
        (Some(list), None) => Ok(list.first().cloned()),
        (Some(list), Some(a)) => Ok(list
            .iter()
            .position(|x| x == a)
            .and_then(|i| list.get(i + 1))
            .cloned()),
        (None, a) => Ok(store
            .app_ids_after(a, 1)
            .map_err(read)?
            .0
            .into_iter()
            .next()),
    }
}

/// The cursor of an `AppStats` task: the application being counted (`app_…`), and after a `/`
/// the last message of it counted so far.
fn parse_position(c: &str) -> Result<(AppId, Option<MessageId>), String> {
    let bad = || format!("the task's stored position {c:?} is not valid");
    let (app, msg) = match c.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (c, None),
    };
    let app = app.parse::<AppId>().map_err(|_| bad())?;
    let msg = msg
        .map(|m| m.parse::<MessageId>().map_err(|_| bad()))
        .transpose()?;
    Ok((app, msg))
}

fn app_stats(
    store: &Store,
    page: usize,
    (since, until): (Timestamp, Timestamp),
    apps: Option<Vec<AppId>>,
    mut counts: Vec<AppCount>,
    cursor: Option<&str>,
) -> Result<UsageStep, String> {
    let position = match cursor {
        Some(c) => Some(parse_position(c)?),
        None => next_app(store, &apps, None)?.map(|a| (a, None)),
    };
    let mut scanned = 0;
    let mut next = None;
    if let Some((app, after)) = position {
        let (msgs, more) = store
            .messages_created(&app, since, Some(until), after.as_ref(), page)
            .map_err(read)?;
        scanned = msgs.len() as u64;
        let n: u64 = msgs.iter().map(|m| m.destinations.len() as u64).sum();
        if counts.last().is_none_or(|c| c.app != app) {
            let uid = store
                .get_app(app.as_str())
                .map_err(read)?
                .and_then(|a| a.uid);
            counts.push(AppCount {
                app: app.clone(),
                uid,
                destinations: 0,
            });
        }
        if let Some(c) = counts.last_mut() {
            c.destinations += n;
        }
        next = match more {
            Some(m) => Some(format!("{app}/{m}")),
            None => next_app(store, &apps, Some(&app))?.map(|a| a.to_string()),
        };
    }
    Ok(UsageStep {
        next,
        scanned,
        params: TaskParams::AppStats {
            since,
            until,
            apps,
            counts,
        },
    })
}

fn event_types(
    store: &Store,
    page: usize,
    mut usage: Vec<AppEventTypes>,
    cursor: Option<&str>,
) -> Result<UsageStep, String> {
    let after = cursor
        .map(|c| {
            c.parse::<AppId>()
                .map_err(|_| format!("the task's stored position {c:?} is not an application id"))
        })
        .transpose()?;
    let (ids, next) = store.app_ids_after(after.as_ref(), page).map_err(read)?;
    let scanned = ids.len() as u64;
    for app in ids {
        let mut types = BTreeSet::new();
        let mut catch_all = false;
        for ep in store.all_endpoints(&app).map_err(read)? {
            if ep.disabled {
                continue;
            }
            match ep.filter_types {
                Some(t) if !t.is_empty() => types.extend(t),
                _ => catch_all = true,
            }
        }
        usage.push(AppEventTypes {
            app,
            event_types: types.into_iter().collect(),
            catch_all,
        });
    }
    Ok(UsageStep {
        next: next.map(|a| a.to_string()),
        scanned,
        params: TaskParams::EventTypeUsage { usage },
    })
}
