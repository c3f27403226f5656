//! Scoped application tokens (the customer portal's), through the real server: the official svix
//! crate mints them (`app-portal-access`), expires them (`expire-all`) and logs them out; and the
//! authorization matrix, every documented route × every kind of credential, each answer checked
//! against the one table in the code (`herald::api::authz`).

use std::collections::BTreeSet;
use std::time::Duration;

use herald::api::authz::{self, Caller, Outcome, Rule};
use herald::domain::token::{Capabilities, Capability};
use serde_json::{json, Value};
use svix::models::{
    AppPortalAccessIn, AppPortalCapability, ApplicationIn, ApplicationTokenExpireIn, EndpointIn,
    MessageIn,
};

use crate::support::receiver::{Answer, Receiver};
use crate::support::{attempts, call, fast_delivery_env, http, sdk_status, Herald};

/// A raw request with `token` (none: no header): status and JSON body (`Null` when empty). One
/// client per test: kept-alive connections keep the matrix quick.
async fn send(
    c: &reqwest::Client,
    h: &Herald,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = c.request(method.parse().unwrap(), format!("{}{path}", h.url));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Mint a portal token for `app` through the admin API, as raw JSON.
async fn mint(h: &Herald, app: &str, body: Value) -> String {
    let (status, out) = call(
        h,
        "POST",
        &format!("/auth/app-portal-access/{app}"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    out["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_svix_sdk_mints_expires_and_logs_out_portal_tokens() {
    let h = Herald::start_with(vec![("HERALD_SERVER__ACCESS_LOG", "all".into())]);
    let c = http();
    let svix = h.svix();
    let auth = svix.authentication();

    // The application is created inline, the path becoming its uid.
    let out = auth
        .app_portal_access(
            "portal-a".into(),
            AppPortalAccessIn {
                application: Some(ApplicationIn::new("Portal A".into())),
                capabilities: Some([AppPortalCapability::ViewBase].into()),
                session_id: Some("s1".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let app = svix.application().get("portal-a".into()).await.unwrap();
    assert_eq!(app.name, "Portal A");
    assert!(out.token.starts_with("hrld_app_"), "{}", out.token);
    assert_eq!(
        out.url,
        format!("{}/portal/#token={}", h.url, out.token),
        "the token is in the fragment, never the query"
    );
    let viewer = h.svix_as(&out.token);
    // By uid and by id.
    viewer
        .endpoint()
        .list("portal-a".into(), None)
        .await
        .unwrap();
    viewer.endpoint().list(app.id.clone(), None).await.unwrap();
    let refused = viewer
        .endpoint()
        .create(
            app.id.clone(),
            EndpointIn::new("https://example.com/hook".into()),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        sdk_status(&refused),
        403,
        "ViewBase alone cannot add endpoints"
    );
    let refused = viewer.application().list(None).await.unwrap_err();
    assert_eq!(sdk_status(&refused), 403);

    // Unknown application without an inline one: 404. Expiry outside Svix's range: 422.
    let missing = auth
        .app_portal_access("nobody".into(), AppPortalAccessIn::new(), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&missing), 404);
    for expiry in [60, 8 * 86400] {
        let bad = auth
            .app_portal_access(
                app.id.clone(),
                AppPortalAccessIn {
                    expiry: Some(expiry),
                    ..Default::default()
                },
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(sdk_status(&bad), 422, "expiry {expiry}");
    }
    let (status, body) = call(
        &h,
        "POST",
        &format!("/auth/app-portal-access/{}", app.id),
        Some(r#"{"capabilities":["ViewBase","Everything"]}"#),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "capabilities", "1"])
    );

    // readOnly=true: ViewBase alone, whatever else is asked. No capabilities: all of them.
    let read_only = mint(
        &h,
        &app.id,
        json!({"readOnly": true, "capabilities": ["ManageEndpoint"]}),
    )
    .await;
    let (status, _) = send(
        &c,
        &h,
        Some(&read_only),
        "POST",
        &format!("/api/v1/app/{}/endpoint", app.id),
        Some(r#"{"url":"https://example.com/hook"}"#),
    )
    .await;
    assert_eq!(status, 403);
    let full = mint(&h, &app.id, json!({"expiry": 3600, "sessionId": "s2"})).await;
    let ep = h
        .svix_as(&full)
        .endpoint()
        .create(
            app.id.clone(),
            EndpointIn::new("https://example.com/hook".into()),
            None,
        )
        .await
        .unwrap();
    h.svix_as(&full)
        .endpoint()
        .get_secret(app.id.clone(), ep.id.clone())
        .await
        .unwrap();

    // expire-all of another session leaves s1 alone; of s1 (no grace) ends it at once.
    let expire = |sessions: Vec<&str>, expiry: Option<i64>| ApplicationTokenExpireIn {
        expiry,
        session_ids: Some(sessions.into_iter().map(String::from).collect()),
    };
    auth.expire_all(app.id.clone(), expire(vec!["s3"], None), None)
        .await
        .unwrap();
    viewer.endpoint().list(app.id.clone(), None).await.unwrap();
    auth.expire_all(app.id.clone(), expire(vec!["s1"], None), None)
        .await
        .unwrap();
    let gone = viewer
        .endpoint()
        .list(app.id.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&gone), 401);
    // A grace period keeps the others working for now.
    auth.expire_all(app.id.clone(), expire(vec![], Some(600)), None)
        .await
        .unwrap();
    h.svix_as(&full)
        .endpoint()
        .list(app.id.clone(), None)
        .await
        .unwrap();
    let bad = auth
        .expire_all(app.id.clone(), expire(vec![], Some(259_201)), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&bad), 422);
    let bad = auth
        .expire_all("nobody".into(), ApplicationTokenExpireIn::new(), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&bad), 404);

    // Logout revokes the calling token only; an admin token cannot log out.
    h.svix_as(&full)
        .authentication()
        .logout(None)
        .await
        .unwrap();
    let gone = h
        .svix_as(&full)
        .endpoint()
        .list(app.id.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&gone), 401);
    let (status, _) = send(
        &c,
        &h,
        Some(&read_only),
        "GET",
        &format!("/api/v1/app/{}", app.id),
        None,
    )
    .await;
    assert_eq!(status, 200, "another token of the same app still works");
    let admin = auth.logout(None).await.unwrap_err();
    assert_eq!(sdk_status(&admin), 403);

    // No token, in full or in part, reaches the log (the access log is on for every request).
    let logs = h.logs();
    assert!(logs.contains("herald::access"), "{logs}");
    for t in [&out.token, &read_only, &full] {
        assert!(!logs.contains(&t[9..25]), "a token is in the log:\n{logs}");
    }
}

/// The credentials of the matrix, with what the table should make of each.
struct Cred {
    name: String,
    token: Option<String>,
    caller: Caller,
}

#[tokio::test]
async fn every_documented_route_answers_every_credential_as_the_table_says() {
    let receiver = Receiver::start(Answer::Status(200)).await;
    let h = Herald::start_with(fast_delivery_env());
    let c = http();
    let svix = h.svix();

    // Fixtures of app A (every path names A), and app B for a token of another application.
    let a = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    let b = svix
        .application()
        .create(ApplicationIn::new("B".into()), None)
        .await
        .unwrap()
        .id;
    let ep = svix
        .endpoint()
        .create(
            a.clone(),
            EndpointIn::new(format!("{}/hook", receiver.url)),
            None,
        )
        .await
        .unwrap()
        .id;
    let (status, _) = call(
        &h,
        "POST",
        "/event-type",
        Some(r#"{"name":"matrix.event","description":"m"}"#),
    )
    .await;
    assert_eq!(status, 201);
    let msg = svix
        .message()
        .create(
            a.clone(),
            MessageIn::new("matrix.event".into(), json!({"n": 1})),
            None,
        )
        .await
        .unwrap()
        .id;
    let attempt = attempts(&svix, &a, &msg, 1).await.data[0].id.clone();

    // The OpenAPI document and the table list the same routes.
    let doc: Value = http()
        .get(h.api("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for m in ops
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
        {
            documented.insert((m.to_uppercase(), path.clone()));
        }
    }
    let table: BTreeSet<(String, String)> = authz::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "documented routes missing from the table: {missing:?}"
    );
    let undocumented: Vec<_> = table
        .difference(&documented)
        .filter(|(_, p)| p.starts_with("/api/"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "table routes missing from the OpenAPI document: {undocumented:?}"
    );

    // Credentials: admin; A's tokens with each single capability and with all; B's; an
    // expired one, a revoked one, none.
    let mut creds = vec![Cred {
        name: "admin".into(),
        token: Some(crate::support::TOKEN.into()),
        caller: Caller::Admin,
    }];
    for c in Capability::ALL {
        let token = mint(&h, &a, json!({"capabilities": [c.name()]})).await;
        creds.push(Cred {
            name: format!("A:{}", c.name()),
            token: Some(token),
            caller: Caller::App {
                caps: Capabilities::of([c]),
                own: true,
            },
        });
    }
    creds.push(Cred {
        name: "A:all".into(),
        token: Some(mint(&h, &a, json!({})).await),
        caller: Caller::App {
            caps: Capabilities::all(),
            own: true,
        },
    });
    creds.push(Cred {
        name: "B:all".into(),
        token: Some(mint(&h, &b, json!({})).await),
        caller: Caller::App {
            caps: Capabilities::all(),
            own: false,
        },
    });
    let expired = mint(&h, &a, json!({"sessionId": "to-expire"})).await;
    let (status, _) = call(
        &h,
        "POST",
        &format!("/auth/app/{a}/expire-all"),
        Some(r#"{"sessionIds":["to-expire"]}"#),
    )
    .await;
    assert_eq!(status, 204);
    let revoked = mint(&h, &a, json!({})).await;
    let (status, _) = send(&c, &h, Some(&revoked), "POST", "/api/v1/auth/logout", None).await;
    assert_eq!(status, 204);
    for (name, token) in [
        ("expired", Some(expired)),
        ("revoked", Some(revoked)),
        ("none", None),
    ] {
        creds.push(Cred {
            name: name.into(),
            token,
            caller: Caller::Nobody,
        });
    }

    // Every table row, logout last (it revokes the token that calls it).
    let mut rows: Vec<&authz::Route> = authz::ROUTES.iter().collect();
    rows.sort_by_key(|r| r.rule == Rule::AppTokenOnly);
    let started = std::time::Instant::now();
    let mut cells = 0;
    let mut failures = Vec::new();
    for row in rows {
        for cred in &creds {
            let expected = authz::outcome(Some(row.rule), cred.caller);
            let path = concrete_path(&h, row, expected, &a, &ep, &msg, &attempt).await;
            let body = match (row.method, row.path) {
                ("GET" | "DELETE", _) => None,
                // Expires nothing, so the matrix's tokens live on.
                (_, "/api/v1/auth/app/{app_id}/expire-all") => Some(r#"{"sessionIds":["none"]}"#),
                _ => Some("{}"),
            };
            let (status, answer) =
                send(&c, &h, cred.token.as_deref(), row.method, &path, body).await;
            cells += 1;
            let ok = match expected {
                // On routes whose resources the matrix made, an allowed call finds them.
                Outcome::Allowed => {
                    ![401, 403].contains(&status) && (status != 404 || !has_fixtures(row.path))
                }
                Outcome::Unauthenticated => status == 401,
                Outcome::Forbidden => status == 403 && answer["code"] == "forbidden",
                Outcome::NotFound => status == 404 && answer["code"] == "not_found",
            };
            if !ok {
                failures.push(format!(
                    "{} {} as {}: expected {expected:?}, got {status} {answer}",
                    row.method, row.path, cred.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cells, authz::ROUTES.len() * creds.len());
    eprintln!(
        "authorization matrix: {cells} cells in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// Whether the matrix made the resources a route's path names.
fn has_fixtures(path: &str) -> bool {
    [
        "/api/v1/app",
        "/api/v1/event-type",
        "/api/v1/auth/",
        "/api/v1/health",
        "/api/v1/openapi",
    ]
    .iter()
    .any(|p| path.starts_with(p))
        || path == "/metrics"
}

/// The request path for a table row: every parameter names A's fixtures, except that a DELETE
/// the credential may make gets a fresh resource of its own.
async fn concrete_path(
    h: &Herald,
    row: &authz::Route,
    expected: Outcome,
    a: &str,
    ep: &str,
    msg: &str,
    attempt: &str,
) -> String {
    let (mut app, mut endpoint, mut event_type) =
        (a.to_string(), ep.to_string(), "matrix.event".to_string());
    if row.method == "DELETE" && expected == Outcome::Allowed {
        match row.path {
            "/api/v1/app/{app_id}" => {
                let (_, out) = call(h, "POST", "/app", Some(r#"{"name":"doomed"}"#)).await;
                app = out["id"].as_str().unwrap().to_string();
            }
            "/api/v1/app/{app_id}/endpoint/{endpoint_id}" => {
                let (_, out) = call(
                    h,
                    "POST",
                    &format!("/app/{a}/endpoint"),
                    Some(r#"{"url":"https://example.com/doomed"}"#),
                )
                .await;
                endpoint = out["id"].as_str().unwrap().to_string();
            }
            "/api/v1/event-type/{event_type_name}" => {
                let (_, out) = call(
                    h,
                    "POST",
                    "/event-type",
                    Some(r#"{"name":"doomed.event","description":"d"}"#),
                )
                .await;
                event_type = out["name"].as_str().unwrap().to_string();
            }
            // Routes added later (admin-only ones) answer 404 to the placeholder ids.
            _ => {}
        }
    }
    row.path
        .replace("{app_id}", &app)
        .replace("{endpoint_id}", &endpoint)
        .replace("{event_type_name}", &event_type)
        .replace("{msg_id}", msg)
        .replace("{attempt_id}", attempt)
        .split('/')
        .map(|seg| if seg.starts_with('{') { "none" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}
