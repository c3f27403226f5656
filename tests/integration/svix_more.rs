//! More Svix routes (issue 13): `auth/whoami`, an application's message `events` (polling), an
//! endpoint's `attempt-stats` and the two usage statistics background tasks, each called through
//! the `svix` crate 2.9.1's own method against the real binary.

use std::time::Duration;

use serde_json::json;
use svix::api::{EndpointGetAttemptStatsOptions, Svix, V1MessageEventsParams};
use svix::models::{
    AppUsageStatsIn, ApplicationIn, AuthenticationSource, BackgroundTaskOut, BackgroundTaskStatus,
    BackgroundTaskType, EndpointAttemptStats, EndpointIn, MessageEventsOut, MessageIn,
};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{
    app_with_endpoint, attempts, call, fast_delivery_env, sdk_status, Herald, Launch,
};

#[tokio::test]
async fn whoami_says_which_token_calls_and_the_environment_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Herald::launch(&Launch::new(dir.path())).unwrap();
    let admin = h.svix().authentication().whoami().await.unwrap();
    assert_eq!(
        admin.permission_source,
        AuthenticationSource::GlobalAuthToken
    );
    assert_eq!((admin.app_id, admin.session_id), (None, None));
    let env = admin.env_id.expect("envId");
    assert!(
        env.starts_with("env_") && env.len() == 36,
        "{env}: env_ and 32 hex digits"
    );

    let (status, app) = call(&h, "POST", "/app", Some(r#"{"name":"A"}"#)).await;
    assert_eq!(status, 201);
    let app = app["id"].as_str().unwrap().to_string();
    let (status, out) = call(
        &h,
        "POST",
        &format!("/auth/app-portal-access/{app}"),
        Some(r#"{"sessionId":"sess-1","capabilities":["ViewBase"]}"#),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let token = out["token"].as_str().unwrap();
    let me = h.svix_as(token).authentication().whoami().await.unwrap();
    assert_eq!(me.permission_source, AuthenticationSource::Unknown);
    assert_eq!(me.app_id.as_deref(), Some(app.as_str()));
    assert_eq!(me.session_id.as_deref(), Some("sess-1"));
    assert_eq!(me.env_id.as_deref(), Some(env.as_str()));

    let err = h
        .svix_as("no-such-token")
        .authentication()
        .whoami()
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 401);

    // The same data directory is the same environment after a restart; another one is not.
    h.terminate();
    let h = Herald::launch(&Launch::new(dir.path())).unwrap();
    let again = h.svix().authentication().whoami().await.unwrap();
    assert_eq!(again.env_id.as_deref(), Some(env.as_str()));
    let elsewhere = Herald::start();
    let other = elsewhere.svix().authentication().whoami().await.unwrap();
    assert_ne!(other.env_id.as_deref(), Some(env.as_str()));
}

async fn poll(
    svix: &Svix,
    app: &str,
    iterator: Option<String>,
    f: impl FnOnce(&mut V1MessageEventsParams),
) -> MessageEventsOut {
    let mut p = V1MessageEventsParams {
        app_id: app.to_string(),
        limit: None,
        iterator,
        event_types: None,
        channels: None,
        after: None,
    };
    f(&mut p);
    svix.message().events(p).await.unwrap()
}

async fn send(svix: &Svix, app: &str, event_type: &str, channel: Option<&str>, i: u32) -> String {
    let m = MessageIn {
        channels: channel.map(|c| [c.to_string()].into()),
        ..MessageIn::new(event_type.into(), json!({"i": i}))
    };
    svix.message()
        .create(app.to_string(), m, None)
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn message_events_resume_exactly_after_the_last_message_seen() {
    let h = Herald::start();
    let svix = h.svix();
    let (status, app) = call(&h, "POST", "/app", Some(r#"{"name":"A"}"#)).await;
    assert_eq!(status, 201);
    let app = app["id"].as_str().unwrap().to_string();

    let empty = poll(&svix, &app, None, |_| {}).await;
    assert!(empty.data.is_empty() && empty.done);

    let mut first = Vec::new();
    for i in 0..5 {
        first.push(send(&svix, &app, "a.b", None, i).await);
    }
    let page = poll(&svix, &app, Some(empty.iterator), |_| {}).await;
    let ids: Vec<_> = page.data.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, first, "oldest first, all five");
    assert!(page.done);
    assert_eq!(page.data[3].payload, json!({"i": 3}), "with payloads");

    let mut second = Vec::new();
    for i in 5..8 {
        second.push(send(&svix, &app, "a.b", None, i).await);
    }
    let next = poll(&svix, &app, Some(page.iterator.clone()), |_| {}).await;
    let ids: Vec<_> = next.data.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, second, "exactly the three sent since");
    let idle = poll(&svix, &app, Some(next.iterator.clone()), |_| {}).await;
    assert!(idle.data.is_empty() && idle.done);
    assert_eq!(idle.iterator, next.iterator, "an empty poll stays in place");

    // Pages of `limit`, following the iterator, see everything once.
    let mut seen = Vec::new();
    let mut it = None;
    for _ in 0..10 {
        let p = poll(&svix, &app, it.take(), |p| p.limit = Some(3)).await;
        seen.extend(p.data.iter().map(|m| m.id.clone()));
        it = Some(p.iterator);
        if p.done {
            break;
        }
    }
    assert_eq!(seen, [first.clone(), second.clone()].concat());

    // Filters: event types and channels.
    let typed = send(&svix, &app, "c.d", Some("ch1"), 8).await;
    let chan = send(&svix, &app, "a.b", Some("ch2"), 9).await;
    let only = |p: MessageEventsOut| p.data.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let from = Some(idle.iterator.clone());
    let by_type = poll(&svix, &app, from.clone(), |p| {
        p.event_types = Some(vec!["c.d".into()])
    })
    .await;
    assert_eq!(only(by_type), [typed]);
    let by_channel = poll(&svix, &app, from.clone(), |p| {
        p.channels = Some(vec!["ch2".into(), "other".into()])
    })
    .await;
    assert_eq!(only(by_channel), [chan]);

    let err = svix
        .message()
        .events(V1MessageEventsParams {
            app_id: app.clone(),
            limit: None,
            iterator: Some("not-an-id".into()),
            event_types: None,
            channels: None,
            after: None,
        })
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 422);
}

async fn stats(
    svix: &Svix,
    app: &str,
    ep: &str,
    opts: Option<EndpointGetAttemptStatsOptions>,
) -> EndpointAttemptStats {
    svix.endpoint()
        .get_attempt_stats(app.to_string(), ep.to_string(), opts)
        .await
        .unwrap()
}

#[tokio::test]
async fn attempt_stats_count_every_try_by_outcome() {
    let h = Herald::start_with(fast_delivery_env());
    let rx = Receiver::start(Answer::Status(200)).await;
    let (app, ep, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
    let svix = h.svix();

    let none = stats(&svix, &app, &ep, None).await;
    assert_eq!((none.success, none.fail, none.canceled), (0, 0, 0));

    // The first message fails twice and then succeeds; the second succeeds at once.
    rx.script([Answer::Status(500), Answer::Status(503)]);
    let m1 = send(&svix, &app, "a.b", None, 1).await;
    attempts(&svix, &app, &m1, 3).await;
    let m2 = send(&svix, &app, "a.b", None, 2).await;
    attempts(&svix, &app, &m2, 1).await;
    let all = eventually("the counts", Duration::from_secs(20), || async {
        let s = stats(&svix, &app, &ep, None).await;
        (s.success + s.fail == 4).then_some(s)
    })
    .await;
    assert_eq!((all.success, all.fail, all.canceled), (2, 2, 0));

    // A window without attempts, and a window that is no window.
    let day_ago = chrono::Utc::now() - chrono::Duration::days(1);
    let past = stats(
        &svix,
        &app,
        &ep,
        Some(EndpointGetAttemptStatsOptions {
            since: Some(day_ago - chrono::Duration::hours(2)),
            until: Some(day_ago),
        }),
    )
    .await;
    assert_eq!((past.success, past.fail, past.canceled), (0, 0, 0));
    let err = svix
        .endpoint()
        .get_attempt_stats(
            app.clone(),
            ep.clone(),
            Some(EndpointGetAttemptStatsOptions {
                since: Some(chrono::Utc::now() + chrono::Duration::hours(3)),
                until: None,
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 422);
    let err = svix
        .endpoint()
        .get_attempt_stats(app.clone(), "ep_none".into(), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 404);
}

async fn finished(svix: &Svix, id: &str) -> BackgroundTaskOut {
    let t = eventually("the task to end", Duration::from_secs(20), || async {
        let t = svix.background_task().get(id.to_string()).await.unwrap();
        (t.status != BackgroundTaskStatus::Running).then_some(t)
    })
    .await;
    assert_eq!(t.status, BackgroundTaskStatus::Finished, "{:?}", t.data);
    t
}

#[tokio::test]
async fn usage_statistics_are_background_tasks_with_svix_results() {
    // Two records per step, so the tasks go on from their cursors, within an application too.
    let mut env = fast_delivery_env();
    env.push(("HERALD_DELIVERY__TASK_PAGE_SIZE", "2".to_string()));
    let h = Herald::start_with(env);
    let rx = Receiver::start(Answer::Status(200)).await;
    let svix = h.svix();
    let app = |name: &str, uid: Option<&str>| ApplicationIn {
        uid: uid.map(String::from),
        ..ApplicationIn::new(name.into())
    };
    let a = svix
        .application()
        .create(app("A", Some("a-uid")), None)
        .await
        .unwrap()
        .id;
    let b = svix
        .application()
        .create(app("B", None), None)
        .await
        .unwrap()
        .id;
    let endpoint = |types: Option<&[&str]>, disabled: bool| EndpointIn {
        event_types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
        disabled: Some(disabled),
        ..EndpointIn::new(format!("{}/hook", rx.url))
    };
    for (app, ep) in [
        (&a, endpoint(Some(&["x.a", "x.b"]), false)),
        (&a, endpoint(Some(&["x.c"]), false)),
        (&a, endpoint(Some(&["x.z"]), true)),
        (&b, endpoint(None, false)),
    ] {
        svix.endpoint().create(app.clone(), ep, None).await.unwrap();
    }
    // A: three messages to one endpoint, one to another, one to none; B: two to its catch-all.
    for t in ["x.a", "x.a", "x.b", "x.c", "x.q"] {
        send(&svix, &a, t, None, 0).await;
    }
    for _ in 0..2 {
        send(&svix, &b, "x.a", None, 0).await;
    }

    let now = chrono::Utc::now();
    let window = AppUsageStatsIn::new(
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );
    let started = svix
        .statistics()
        .aggregate_app_stats(window.clone(), None)
        .await
        .unwrap();
    assert_eq!(started.task, BackgroundTaskType::ApplicationStats);
    assert!(started.unresolved_app_ids.is_empty());
    let t = finished(&svix, &started.id).await;
    let mut stats: Vec<_> = t.data["appStats"].as_array().unwrap().clone();
    stats.sort_by_key(|s| s["appId"].as_str().unwrap().to_string());
    let mut want = vec![
        json!({"appId": a, "appUid": "a-uid", "messageDestinations": 4}),
        json!({"appId": b, "appUid": null, "messageDestinations": 2}),
    ];
    want.sort_by_key(|s| s["appId"].as_str().unwrap().to_string());
    assert_eq!(stats, want);

    // Some applications by uid or id; unknown ones are reported, and none known is a 422.
    let some = AppUsageStatsIn {
        app_ids: Some(["a-uid".to_string(), "nope".to_string()].into()),
        ..window.clone()
    };
    let started = svix
        .statistics()
        .aggregate_app_stats(some, None)
        .await
        .unwrap();
    assert_eq!(started.unresolved_app_ids, ["nope".to_string()].into());
    let t = finished(&svix, &started.id).await;
    assert_eq!(
        t.data["appStats"],
        json!([{"appId": a, "appUid": "a-uid", "messageDestinations": 4}])
    );
    let none = AppUsageStatsIn {
        app_ids: Some(["nope".to_string()].into()),
        ..window
    };
    let err = svix
        .statistics()
        .aggregate_app_stats(none, None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 422);

    let started = svix.statistics().aggregate_event_types().await.unwrap();
    assert_eq!(started.task, BackgroundTaskType::EventTypeAggregate);
    let t = finished(&svix, &started.id).await;
    let mut usage: Vec<_> = t.data["event_types"].as_array().unwrap().clone();
    usage.sort_by_key(|s| s["appId"].as_str().unwrap().to_string());
    let mut want = vec![
        json!({"appId": a, "explicitlySubscribedEventTypes": ["x.a", "x.b", "x.c"], "hasCatchAllEndpoint": false}),
        json!({"appId": b, "explicitlySubscribedEventTypes": [], "hasCatchAllEndpoint": true}),
    ];
    want.sort_by_key(|s| s["appId"].as_str().unwrap().to_string());
    assert_eq!(usage, want);
}

#[tokio::test]
async fn a_poller_racing_concurrent_senders_sees_every_message_once() {
    const SENDERS: usize = 8;
    const EACH: usize = 60;
    let h = Herald::start();
    let svix = h.svix();
    let (status, app) = call(&h, "POST", "/app", Some(r#"{"name":"A"}"#)).await;
    assert_eq!(status, 201);
    let app = app["id"].as_str().unwrap().to_string();
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (svix, app) = (h.svix(), app.clone());
        senders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                ids.push(send(&svix, &app, "a.b", None, (s * EACH + i) as u32).await);
            }
            ids
        }));
    }
    // Poll while they send, each poll from the last iterator, until all have arrived.
    let mut seen = Vec::new();
    let mut it = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < SENDERS * EACH && std::time::Instant::now() < deadline {
        let p = poll(&svix, &app, it.take(), |p| p.limit = Some(7)).await;
        seen.extend(p.data.into_iter().map(|m| m.id));
        it = Some(p.iterator);
    }
    let mut sent = Vec::new();
    for s in senders {
        sent.extend(s.await.unwrap());
    }
    // Once everything is sent, a last poll from the iterator picks up what is left.
    for _ in 0..10 {
        let p = poll(&svix, &app, it.take(), |_| {}).await;
        let done = p.done;
        seen.extend(p.data.into_iter().map(|m| m.id));
        it = Some(p.iterator);
        if done {
            break;
        }
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a message seen twice");
    let sent: std::collections::BTreeSet<_> = sent.into_iter().collect();
    let missed: Vec<_> = sent.difference(&unique).collect();
    assert!(
        missed.is_empty(),
        "{} of {} never seen: {missed:?}",
        missed.len(),
        sent.len()
    );
}

/// A usage task killed mid-way resumes at the next start from its recorded cursor and counts
/// every application once: the results so far are in the task's record, written with the cursor.
#[tokio::test]
async fn a_usage_task_survives_sigkill_and_counts_each_application_once() {
    const APPS: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let mut env = fast_delivery_env();
    // One application per step: sixty durable steps, so the kill lands mid-task.
    env.push(("HERALD_DELIVERY__TASK_PAGE_SIZE", "1".to_string()));
    let launch = Launch {
        env,
        ..Launch::new(dir.path())
    };
    let mut h = Herald::launch(&launch).unwrap();
    let rx = Receiver::start(Answer::Status(200)).await;
    let svix = h.svix();
    let mut apps = Vec::new();
    for i in 0..APPS {
        let (app, _, _) = app_with_endpoint(&h, &rx.url, EndpointIn::new(String::new())).await;
        send(&svix, &app, "x.a", None, i as u32).await;
        apps.push(app);
    }
    let now = chrono::Utc::now();
    let window = AppUsageStatsIn::new(
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );
    let started = svix
        .statistics()
        .aggregate_app_stats(window, None)
        .await
        .unwrap();
    h.kill();

    let h = Herald::launch(&launch).unwrap();
    let svix = h.svix();
    let t = finished(&svix, &started.id).await;
    assert!(
        h.logs().contains("resuming background task"),
        "the task was running at the kill and resumed: {}",
        h.logs()
    );
    let mut got: Vec<(String, u64)> = t.data["appStats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["appId"].as_str().unwrap().to_string(),
                s["messageDestinations"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = apps.into_iter().map(|a| (a, 1)).collect();
    want.sort();
    assert_eq!(got, want);
}
