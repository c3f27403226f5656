//! Replays as background tasks: replay-missing sends exactly what an endpoint missed while it was
//! disabled or not subscribed, and a task killed with SIGKILL resumes after the restart (or ends
//! failed with a reason); expunge-all-contents is such a task too.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::json;
use svix::api::{BackgroundTaskListOptions, MessageGetOptions, Svix};
use svix::models::{
    ApplicationIn, BackgroundTaskOut, BackgroundTaskStatus, BackgroundTaskType, EndpointIn,
    EndpointPatch, MessageIn, ReplayIn,
};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{app_with_endpoint, data_dir_holds, fast_delivery_env, Herald, Launch};

async fn send(svix: &Svix, app: &str, event_type: &str) -> String {
    svix.message()
        .create(
            app.to_string(),
            MessageIn::new(event_type.to_string(), json!({"n": event_type})),
            None,
        )
        .await
        .unwrap()
        .id
}

async fn set_disabled(svix: &Svix, app: &str, ep: &str, disabled: bool) {
    svix.endpoint()
        .patch(
            app.to_string(),
            ep.to_string(),
            EndpointPatch {
                disabled: Some(disabled),
                ..EndpointPatch::new()
            },
        )
        .await
        .unwrap();
}

/// Wait (bounded) until the task is no longer running.
async fn ended(svix: &Svix, id: &str, timeout: Duration) -> BackgroundTaskOut {
    eventually("the background task to end", timeout, || async {
        let t = svix.background_task().get(id.to_string()).await.unwrap();
        (t.status != BackgroundTaskStatus::Running).then_some(t)
    })
    .await
}

/// Each message id received, with how many times.
fn ids_received(rx: &Receiver) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in rx.received() {
        *out.entry(r.header("webhook-id").to_string()).or_insert(0) += 1;
    }
    out
}

fn since_a_minute_ago() -> ReplayIn {
    ReplayIn::new(chrono::Utc::now() - chrono::Duration::minutes(1))
}

#[tokio::test]
async fn replay_missing_after_reenabling_a_disabled_endpoint_delivers_exactly_the_missed_ones() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let input = EndpointIn {
        event_types: Some(["a.b".to_string()].into()),
        ..EndpointIn::new(String::new())
    };
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, input).await;
    let svix = h.svix();

    let before = send(&svix, &app, "a.b").await;
    rx.wait_for(1, Duration::from_secs(20)).await;
    set_disabled(&svix, &app, &ep, true).await;
    let mut missed = BTreeSet::new();
    for _ in 0..5 {
        missed.insert(send(&svix, &app, "a.b").await);
    }
    // Not subscribed to: never missing.
    send(&svix, &app, "x.y").await;
    set_disabled(&svix, &app, &ep, false).await;
    let after = send(&svix, &app, "a.b").await;
    rx.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(ids_received(&rx).len(), 2, "nothing missed was sent yet");

    let started = svix
        .endpoint()
        .replay_missing(app.clone(), ep.clone(), since_a_minute_ago(), None)
        .await
        .unwrap();
    assert_eq!(started.task, BackgroundTaskType::EndpointReplay);
    assert!(started.id.starts_with("qtask_"), "{}", started.id);
    let done = ended(&svix, &started.id, Duration::from_secs(20)).await;
    assert_eq!(done.status, BackgroundTaskStatus::Finished, "{done:?}");
    assert_eq!(done.data["messagesSent"], 5, "{done:?}");

    rx.wait_for(7, Duration::from_secs(20)).await;
    // Deliveries are manual tries (no retries): give a stray one a moment to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = ids_received(&rx);
    let mut expected = missed.clone();
    expected.insert(before);
    expected.insert(after);
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "exactly the missed ones, beside those sent before and after"
    );
    assert!(got.values().all(|n| *n == 1), "each once: {got:?}");

    // A second replay finds nothing missing.
    let again = svix
        .endpoint()
        .replay_missing(app.clone(), ep.clone(), since_a_minute_ago(), None)
        .await
        .unwrap();
    let done = ended(&svix, &again.id, Duration::from_secs(20)).await;
    assert_eq!(done.status, BackgroundTaskStatus::Finished);
    assert_eq!(done.data["messagesSent"], 0, "{done:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 7);
}

/// `count` messages of type `a.b` from 8 concurrent senders (bounded).
async fn send_many(h: &Herald, app: &str, count: usize) -> BTreeSet<String> {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (svix, app) = (h.svix(), app.to_string());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (w..count).step_by(8) {
                ids.push(send(&svix, &app, "a.b").await);
            }
            ids
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// A replay killed (SIGKILL) while it runs is resumed at the next start, from its last recorded
/// step, and finishes: every missed message arrives (a page may be sent twice after a crash:
/// at-least-once), and nothing else does.
#[tokio::test]
async fn a_background_task_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Answer::Status(200)).await;
    let mut env = fast_delivery_env();
    // One message per step: hundreds of durable steps, so the kill lands mid-task.
    env.push(("HERALD_DELIVERY__TASK_PAGE_SIZE", "1".to_string()));
    let launch = Launch {
        env: env.clone(),
        ..Launch::new(dir.path())
    };
    let mut h = Herald::launch(&launch).unwrap();
    let input = EndpointIn {
        disabled: Some(true),
        ..EndpointIn::new(String::new())
    };
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, input).await;
    let missed = send_many(&h, &app, 300).await;
    let svix = h.svix();
    set_disabled(&svix, &app, &ep, false).await;
    let started = svix
        .endpoint()
        .replay_missing(app.clone(), ep.clone(), since_a_minute_ago(), None)
        .await
        .unwrap();
    h.kill();

    let h = Herald::launch(&launch).unwrap();
    let svix = h.svix();
    let done = ended(&svix, &started.id, Duration::from_secs(60)).await;
    assert!(
        h.logs().contains("resuming background task"),
        "the task was running at the kill and resumed: {}",
        h.logs()
    );
    assert_eq!(done.status, BackgroundTaskStatus::Finished, "{done:?}");
    rx.wait_until("every missed message", Duration::from_secs(60), |_| {
        ids_received(&rx).len() >= missed.len()
    })
    .await;
    let got: BTreeSet<String> = ids_received(&rx).into_keys().collect();
    assert_eq!(got, missed, "the missed messages and nothing else");
}

/// A task that cannot go on (its endpoint was deleted while it ran) ends failed, and says why.
#[tokio::test]
async fn a_task_whose_endpoint_is_deleted_fails_with_the_reason() {
    let rx = Receiver::start(Answer::Status(200)).await;
    let mut env = fast_delivery_env();
    env.push(("HERALD_DELIVERY__TASK_PAGE_SIZE", "1".to_string()));
    let h = Herald::start_with(env);
    let input = EndpointIn {
        disabled: Some(true),
        ..EndpointIn::new(String::new())
    };
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, input).await;
    send_many(&h, &app, 500).await;
    let svix = h.svix();
    let started = svix
        .endpoint()
        .replay_missing(app.clone(), ep.clone(), since_a_minute_ago(), None)
        .await
        .unwrap();
    svix.endpoint()
        .delete(app.clone(), ep.clone())
        .await
        .unwrap();
    let done = ended(&svix, &started.id, Duration::from_secs(30)).await;
    assert_eq!(done.status, BackgroundTaskStatus::Failed, "{done:?}");
    assert_eq!(done.data["error"], "the endpoint was deleted", "{done:?}");
}

/// Expunge-all-contents is a durable background task: killed (SIGKILL) right after its 202, it
/// resumes at the next start and finishes, and no byte of the application's 300 payloads is
/// left in the data directory. A message sent after it started keeps its payload; the task
/// shows under its kind with its progress.
#[tokio::test]
async fn expunge_all_contents_survives_sigkill_and_leaves_no_payload_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = fast_delivery_env();
    // One message per step: hundreds of durable steps, so the kill lands mid-task.
    env.push(("HERALD_DELIVERY__TASK_PAGE_SIZE", "1".to_string()));
    let launch = Launch {
        env,
        ..Launch::new(dir.path())
    };
    let mut h = Herald::launch(&launch).unwrap();
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("purge".into()), None)
        .await
        .unwrap()
        .id;
    let marker = "purge-me-5c1e08aa";
    let mut senders = Vec::new();
    for w in 0..8 {
        let (svix, app) = (h.svix(), app.clone());
        senders.push(tokio::spawn(async move {
            for i in (w..300).step_by(8) {
                svix.message()
                    .create(
                        app.clone(),
                        MessageIn::new("a.b".into(), json!({"secret": format!("{marker}-{i}")})),
                        None,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    assert!(!data_dir_holds(dir.path(), marker.as_bytes()).is_empty());
    let started = svix
        .message()
        .expunge_all_contents(app.clone(), None)
        .await
        .unwrap();
    h.kill();
    assert_eq!(started.task, BackgroundTaskType::ApplicationPurgeContent);
    assert!(started.id.starts_with("qtask_"), "{}", started.id);

    let h = Herald::launch(&launch).unwrap();
    let svix = h.svix();
    let kept = svix
        .message()
        .create(
            app.clone(),
            MessageIn::new("a.b".into(), json!({"kept": true})),
            None,
        )
        .await
        .unwrap()
        .id;
    let done = ended(&svix, &started.id, Duration::from_secs(120)).await;
    assert!(
        h.logs().contains("resuming background task"),
        "the task was running at the kill and resumed: {}",
        h.logs()
    );
    assert_eq!(done.status, BackgroundTaskStatus::Finished, "{done:?}");
    assert_eq!(done.task, BackgroundTaskType::ApplicationPurgeContent);
    // A page cut short by the kill is done again: scanned twice, its expunge counted once or
    // not at all (the second time finds it gone).
    let scanned = done.data["messagesScanned"].as_u64().unwrap_or(0);
    let expunged = done.data["messagesExpunged"].as_u64().unwrap_or(0);
    assert!((300..=301).contains(&scanned), "{done:?}");
    assert!((299..=300).contains(&expunged), "{done:?}");
    let left = data_dir_holds(dir.path(), marker.as_bytes());
    assert!(left.is_empty(), "payload bytes left in {left:?}");
    let got = svix
        .message()
        .get(
            app.clone(),
            kept,
            Some(MessageGetOptions {
                with_content: Some(true),
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        got.payload,
        json!({"kept": true}),
        "sent after the task began"
    );

    let listed = svix
        .background_task()
        .list(Some(BackgroundTaskListOptions {
            task: Some(BackgroundTaskType::ApplicationPurgeContent),
            ..Default::default()
        }))
        .await
        .unwrap();
    let ids: Vec<&str> = listed.data.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [started.id.as_str()]);
}

/// Expunge-all whose application is deleted while it runs ends failed, and says why.
#[tokio::test]
async fn expunge_all_whose_application_is_deleted_fails_with_the_reason() {
    let mut env = fast_delivery_env();
    env.push(("HERALD_DELIVERY__TASK_PAGE_SIZE", "1".to_string()));
    let h = Herald::start_with(env);
    let rx = Receiver::start(Answer::Status(200)).await;
    let input = EndpointIn {
        disabled: Some(true),
        ..EndpointIn::new(String::new())
    };
    let (app, _, _) = app_with_endpoint(&h, &rx.url, input).await;
    send_many(&h, &app, 500).await;
    let svix = h.svix();
    let started = svix
        .message()
        .expunge_all_contents(app.clone(), None)
        .await
        .unwrap();
    svix.application().delete(app.clone()).await.unwrap();
    let done = ended(&svix, &started.id, Duration::from_secs(30)).await;
    assert_eq!(done.status, BackgroundTaskStatus::Failed, "{done:?}");
    assert_eq!(
        done.data["error"], "the application was deleted",
        "{done:?}"
    );
}
