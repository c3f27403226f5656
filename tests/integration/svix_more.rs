//! More Svix routes (issue 13): `auth/whoami`, an application's message `events` (polling) and an
//! endpoint's `attempt-stats`, each called through the `svix` crate 2.9.1's own method against
//! the real binary.

use std::time::Duration;

use serde_json::json;
use svix::api::{EndpointGetAttemptStatsOptions, Svix, SvixOptions, V1MessageEventsParams};
use svix::models::{
    AuthenticationSource, EndpointAttemptStats, EndpointIn, MessageEventsOut, MessageIn,
};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{
    app_with_endpoint, attempts, call, fast_delivery_env, sdk_status, Herald, Launch,
};

fn client(h: &Herald, token: &str) -> Svix {
    Svix::new(
        token.to_string(),
        Some(SvixOptions {
            server_url: Some(h.url.clone()),
            ..Default::default()
        }),
    )
}

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
    let me = client(&h, token).authentication().whoami().await.unwrap();
    assert_eq!(me.permission_source, AuthenticationSource::Unknown);
    assert_eq!(me.app_id.as_deref(), Some(app.as_str()));
    assert_eq!(me.session_id.as_deref(), Some("sess-1"));
    assert_eq!(me.env_id.as_deref(), Some(env.as_str()));

    let err = client(&h, "no-such-token")
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
