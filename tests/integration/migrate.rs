//! `herald migrate` between two real Herald processes: the source filled through the svix SDK,
//! the real binary run against the stopped target, then the target checked through the SDK; a
//! second run copies nothing, a dry run writes nothing, and a delivery from the target verifies
//! with the secret the receiver had from the source (standardwebhooks crate).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use svix::models::{ApplicationIn, EndpointIn, EventTypeIn, MessageIn};

use crate::support::receiver::{Answer, Receiver};
use crate::support::{call, fast_delivery_env, Herald, Launch, TOKEN};

/// Applications on the source: more than one page of its list (250), so the copy must follow
/// `iterator` to the end.
const BULK_APPS: usize = 251;

/// `herald migrate` with these arguments on `data_dir`, the source token in the environment.
async fn migrate(source: &str, data_dir: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(["migrate", "--from", source, "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("HERALD_MIGRATE_TOKEN", TOKEN)
        .env_remove("HERALD_ADMIN_TOKEN")
        .env_remove("HERALD_MAIN_KEY");
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn target(dir: &Path) -> Herald {
    Herald::launch(&Launch {
        env: fast_delivery_env(),
        ..Launch::new(dir)
    })
    .unwrap()
}

/// Every application id of a server, page by page.
async fn app_ids(h: &Herald) -> Vec<String> {
    let mut ids = Vec::new();
    let mut iterator: Option<String> = None;
    for _ in 0..10 {
        let path = match &iterator {
            Some(it) => format!("/app?limit=250&iterator={it}"),
            None => "/app?limit=250".to_string(),
        };
        let (status, page) = call(h, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        for a in page["data"].as_array().unwrap() {
            ids.push(a["id"].as_str().unwrap().to_string());
        }
        if page["done"].as_bool().unwrap() {
            return ids;
        }
        iterator = page["iterator"].as_str().map(str::to_string);
    }
    panic!("more than 10 pages of applications");
}

#[tokio::test]
async fn migrate_copies_everything_once_and_receivers_keep_their_secret() {
    let receiver = Receiver::start(Answer::Status(200)).await;
    let source = Herald::start_with(fast_delivery_env());
    let svix = source.svix();

    let schemas = json!({"1": {"type": "object", "properties": {"id": {"type": "string"}},
                               "examples": [{"id": "o_1"}]}});
    svix.event_type()
        .create(
            EventTypeIn {
                schemas: Some(schemas.clone()),
                group_name: Some("orders".into()),
                ..EventTypeIn::new("order.created".into(), "An order was placed".into())
            },
            None,
        )
        .await
        .unwrap();
    svix.event_type()
        .create(
            EventTypeIn {
                archived: Some(true),
                ..EventTypeIn::new("order.legacy".into(), "Old".into())
            },
            None,
        )
        .await
        .unwrap();

    let acme = svix
        .application()
        .create(
            ApplicationIn {
                uid: Some("acme".into()),
                throttle_rate: Some(20),
                metadata: Some([("plan".to_string(), "pro".to_string())].into()),
                ..ApplicationIn::new("Acme".into())
            },
            None,
        )
        .await
        .unwrap();
    let main = svix
        .endpoint()
        .create(
            acme.id.clone(),
            EndpointIn {
                uid: Some("main".into()),
                description: Some("orders in the EU".into()),
                event_types: Some(set(&["order.created"])),
                channels: Some(set(&["eu"])),
                throttle_rate: Some(10),
                metadata: Some([("team".to_string(), "core".to_string())].into()),
                headers: Some(BTreeMap::from([
                    ("x-team".to_string(), "core".to_string()),
                    (
                        "authorization".to_string(),
                        "Bearer receiver-only".to_string(),
                    ),
                ])),
                ..EndpointIn::new(format!("{}/main", receiver.url))
            },
            None,
        )
        .await
        .unwrap();
    // Herald's extensions (no SDK field): a payload filter the test message passes, and FIFO.
    let filter = r#"$.id startsWith "o_""#;
    let body = json!({"filter": filter, "ordering": "fifo"}).to_string();
    let path = format!("/app/{}/endpoint/{}", acme.id, main.id);
    let (status, patched) = call(&source, "PATCH", &path, Some(&body)).await;
    assert_eq!(status, 200, "{patched}");
    let off = svix
        .endpoint()
        .create(
            acme.id.clone(),
            EndpointIn {
                disabled: Some(true),
                ..EndpointIn::new(format!("{}/off", receiver.url))
            },
            None,
        )
        .await
        .unwrap();
    let old_secret = svix
        .endpoint()
        .get_secret(acme.id.clone(), main.id.clone())
        .await
        .unwrap()
        .key;
    // The bulk, ten at a time: applications without endpoints but the last one.
    let mut bulk = Vec::new();
    for chunk in (0..BULK_APPS - 1).collect::<Vec<_>>().chunks(10) {
        let made = futures_util::future::join_all(chunk.iter().map(|i| {
            let svix = &svix;
            async move {
                svix.application()
                    .create(ApplicationIn::new(format!("bulk {i}")), None)
                    .await
            }
        }))
        .await;
        bulk.extend(made.into_iter().map(|a| a.unwrap().id));
    }
    let last = bulk.last().unwrap().clone();
    svix.endpoint()
        .create(
            last.clone(),
            EndpointIn::new(format!("{}/bulk", receiver.url)),
            None,
        )
        .await
        .unwrap();
    let from = source.url.clone();

    // A dry run on a directory without a store: the plan, and nothing made.
    let dir = tempfile::tempdir().unwrap();
    let out = migrate(&from, dir.path(), &["--dry-run"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("would copy   application {} (uid acme)", acme.id)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("would copy   endpoint {}/{}", acme.id, main.id)),
        "{stdout}"
    );
    assert!(
        stdout.contains("event types: 2 to copy, 0 already here, 0 skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("applications: {} to copy", BULK_APPS)),
        "{stdout}"
    );
    assert!(stdout.contains("endpoints: 3 to copy"), "{stdout}");
    assert!(
        !dir.path().join("store-v1").exists(),
        "a dry run makes no store"
    );
    assert!(!dir.path().join("main.key").exists(), "nor a main key");

    // The copy, then a second run that finds everything there.
    let out = migrate(&from, dir.path(), &[]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("event types: 2 copied, 0 already here, 0 skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "applications: {} copied, 0 already here, 0 skipped",
            BULK_APPS
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("endpoints: 3 copied, 0 already here, 0 skipped"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "copied       endpoint {}/{} (uid main)",
            acme.id, main.id
        )),
        "{stderr}"
    );
    // The write-only header is named, its value never shown.
    assert!(
        stdout.contains("warning:") && stdout.contains("authorization"),
        "{stdout}"
    );
    assert!(!format!("{stdout}{stderr}").contains("receiver-only"));
    assert!(
        !format!("{stdout}{stderr}").contains(&old_secret),
        "secrets are never printed"
    );

    let again = migrate(&from, dir.path(), &[]).await;
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("event types: 0 copied, 2 already here, 0 skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "applications: 0 copied, {} already here, 0 skipped",
            BULK_APPS
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("endpoints: 0 copied, 3 already here, 0 skipped"),
        "{stdout}"
    );

    // What arrived, through the SDK.
    let mut t = target(dir.path());
    let tsvix = t.svix();
    let mut want = bulk.clone();
    want.push(acme.id.clone());
    want.sort();
    let mut got = app_ids(&t).await;
    got.sort();
    assert_eq!(got, want, "every application once, with its id");
    let et = tsvix
        .event_type()
        .get("order.created".into())
        .await
        .unwrap();
    assert_eq!(et.schemas, Some(schemas));
    assert_eq!(et.group_name.as_deref(), Some("orders"));
    assert_eq!(et.description, "An order was placed");
    let legacy = tsvix.event_type().get("order.legacy".into()).await.unwrap();
    assert_eq!(legacy.archived, Some(true));
    let app = tsvix.application().get("acme".into()).await.unwrap();
    assert_eq!(app.id, acme.id);
    assert_eq!(app.metadata["plan"], "pro");
    assert_eq!(app.throttle_rate, Some(20));
    assert_eq!(app.created_at, acme.created_at);
    let ep = tsvix
        .endpoint()
        .get(acme.id.clone(), "main".into())
        .await
        .unwrap();
    assert_eq!(ep.id, main.id);
    assert_eq!(ep.url, main.url);
    assert_eq!(ep.description, "orders in the EU");
    assert_eq!(ep.event_types, Some(set(&["order.created"])));
    assert_eq!(ep.channels, Some(set(&["eu"])));
    assert_eq!(ep.throttle_rate, Some(10));
    assert_eq!(ep.metadata["team"], "core");
    assert_ne!(ep.disabled, Some(true));
    let (_, raw) = call(&t, "GET", &format!("/app/{}/endpoint/main", acme.id), None).await;
    assert_eq!(raw["filter"], filter, "{raw}");
    assert_eq!(raw["ordering"], "fifo", "{raw}");
    let (_, raw) = call(
        &t,
        "GET",
        &format!("/app/{}/endpoint/{}", acme.id, off.id),
        None,
    )
    .await;
    assert_eq!(raw["filter"], serde_json::Value::Null, "{raw}");
    assert_eq!(raw["ordering"], "unordered", "{raw}");
    let headers = tsvix
        .endpoint()
        .get_headers(acme.id.clone(), main.id.clone())
        .await
        .unwrap();
    assert_eq!(
        headers.headers.get("x-team").map(String::as_str),
        Some("core")
    );
    let secret = tsvix
        .endpoint()
        .get_secret(acme.id.clone(), main.id.clone())
        .await
        .unwrap()
        .key;
    assert_eq!(secret, old_secret);
    let disabled = tsvix
        .endpoint()
        .get(acme.id.clone(), off.id.clone())
        .await
        .unwrap();
    assert_eq!(disabled.disabled, Some(true));
    let (status, eps) = call(&t, "GET", &format!("/app/{last}/endpoint"), None).await;
    assert_eq!(status, 200);
    assert_eq!(eps["data"].as_array().unwrap().len(), 1, "{eps}");

    // The store is in use while the target runs: migrate says so and writes nothing.
    let busy = migrate(&from, dir.path(), &[]).await;
    assert!(!busy.status.success());
    assert!(text(&busy).1.contains("stop it first"), "{}", text(&busy).1);

    // A dry run against a store that lacks one new application leaves it lacking it.
    let newer = svix
        .application()
        .create(ApplicationIn::new("Newer".into()), None)
        .await
        .unwrap();
    assert!(t.terminate().success());
    let dry = migrate(&from, dir.path(), &["--dry-run"]).await;
    let (stdout, stderr) = text(&dry);
    assert!(dry.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("would copy   application {}", newer.id)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "applications: 1 to copy, {} already here",
            BULK_APPS
        )),
        "{stdout}"
    );
    let t = target(dir.path());
    let (status, _) = call(&t, "GET", &format!("/app/{}", newer.id), None).await;
    assert_eq!(status, 404, "the dry run wrote nothing");

    // A message sent on the target reaches the receiver signed with the secret it already had.
    let msg = t
        .svix()
        .message()
        .create(
            acme.id.clone(),
            MessageIn {
                channels: Some(set(&["eu"])),
                ..MessageIn::new("order.created".into(), json!({"id": "o_1"}))
            },
            None,
        )
        .await
        .unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let r = &got[0];
    assert_eq!(r.path, "/main", "the disabled endpoint gets nothing");
    assert_eq!(r.header("webhook-id"), msg.id);
    assert_eq!(r.header("x-team"), "core");
    standardwebhooks::Webhook::new(&old_secret)
        .unwrap()
        .verify(&r.body, &r.headers)
        .expect("the delivery verifies with the secret from the source");
}

#[test]
fn migrate_help_names_its_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["migrate", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for flag in [
        "--from",
        "--token",
        "--dry-run",
        "--data-dir",
        "--config",
        "Svix",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
