//! The customer portal's server side: `/portal/` served with the framing policy and branding from
//! `[portal]`, the admin UI still unframeable, `GET /auth/app-token` (what the portal asks about its
//! token), and invalid portal settings refused at start. The pages themselves are driven in
//! Chromium by tests/ui/portal.test.mjs.

use serde_json::{json, Value};

use crate::support::{call, http, Herald, Launch};

async fn get(h: &Herald, path: &str) -> reqwest::Response {
    http().get(format!("{}{path}", h.url)).send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn the_portal_is_framed_only_by_the_configured_sites_and_carries_the_branding() {
    let h = Herald::start_with(vec![
        (
            "HERALD_PORTAL__FRAME_ANCESTORS",
            "'self'  https://app.example.com".into(),
        ),
        ("HERALD_PORTAL__OPERATOR_NAME", "Acme Cloud".into()),
        (
            "HERALD_PORTAL__LOGO_URL",
            "https://cdn.example.com/acme/logo.svg".into(),
        ),
        ("HERALD_PORTAL__ACCENT", "#0a7d5a".into()),
    ]);
    for path in [
        "/portal/",
        "/portal",
        "/portal/portal.js",
        "/portal/config.json",
    ] {
        let r = get(&h, path).await;
        assert_eq!(r.status(), 200, "{path}");
        let csp = header(&r, "content-security-policy").unwrap();
        assert!(
            csp.ends_with("frame-ancestors 'self' https://app.example.com"),
            "{path}: {csp}"
        );
        assert!(
            csp.contains("img-src 'self' data: https://cdn.example.com;"),
            "{path}: {csp}"
        );
        assert_eq!(header(&r, "x-frame-options"), None, "{path}");
    }
    let page = get(&h, "/portal/").await.text().await.unwrap();
    assert!(page.contains("/portal/portal.js"), "{page}");
    let brand: Value = get(&h, "/portal/config.json").await.json().await.unwrap();
    assert_eq!(
        brand,
        json!({"operatorName": "Acme Cloud", "logoUrl": "https://cdn.example.com/acme/logo.svg", "accent": "#0a7d5a"})
    );
    // The admin UI never follows the portal's policy.
    let admin = get(&h, "/").await;
    let csp = header(&admin, "content-security-policy").unwrap();
    assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&admin, "x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(get(&h, "/portal/nope.js").await.status(), 404);
}

#[tokio::test]
async fn by_default_no_site_may_frame_the_portal() {
    let h = Herald::start();
    let r = get(&h, "/portal/").await;
    let csp = header(&r, "content-security-policy").unwrap();
    assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("img-src 'self' data:;"), "{csp}");
    assert_eq!(header(&r, "x-frame-options").as_deref(), Some("DENY"));
    let brand: Value = get(&h, "/portal/config.json").await.json().await.unwrap();
    assert_eq!(
        brand,
        json!({"operatorName": null, "logoUrl": null, "accent": null})
    );
}

#[tokio::test]
async fn an_app_token_describes_itself_with_its_implied_capabilities() {
    let h = Herald::start();
    let (status, out) = call(
        &h,
        "POST",
        "/auth/app-portal-access/customer-7",
        Some(
            &json!({"application": {"name": "C7"}, "capabilities": ["ManageEndpointSecret"],
                    "sessionId": "s-1", "expiry": 3600})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    let token = out["token"].as_str().unwrap();
    let url = out["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/portal/#token=hrld_app_", h.url)),
        "{url}"
    );
    let (_, app) = call(&h, "GET", "/app/customer-7", None).await;

    let me = http()
        .get(h.api("/auth/app-token"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["appId"], app["id"]);
    assert_eq!(
        me["capabilities"],
        json!(["ViewBase", "ViewEndpointSecret", "ManageEndpointSecret"])
    );
    assert_eq!(me["sessionId"], "s-1");
    let expires = chrono::DateTime::parse_from_rfc3339(me["expiresAt"].as_str().unwrap()).unwrap();
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&left), "{left}");

    let (status, out) = call(&h, "GET", "/auth/app-token", None).await;
    assert_eq!((status, &out["code"]), (403, &json!("forbidden")), "{out}");
    let none = http().get(h.api("/auth/app-token")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    // Expired at once: the portal shows its "link expired" page on this 401.
    let (status, _) = call(
        &h,
        "POST",
        "/auth/app/customer-7/expire-all",
        Some(r#"{"sessionIds":["s-1"]}"#),
    )
    .await;
    assert_eq!(status, 204);
    let gone = http()
        .get(h.api("/auth/app-token"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
}

#[test]
fn invalid_portal_settings_stop_the_start_and_name_the_key() {
    for (key, value) in [
        (
            "HERALD_PORTAL__FRAME_ANCESTORS",
            "https://a.example; script-src *",
        ),
        ("HERALD_PORTAL__ACCENT", "not-a-colour"),
        ("HERALD_PORTAL__LOGO_URL", "javascript:alert(1)"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let launch = Launch {
            env: vec![(key, value.to_string())],
            ..Launch::new(tmp.path())
        };
        let err = match Herald::launch(&launch) {
            Ok(_) => panic!("{key}={value} was accepted"),
            Err(e) => e,
        };
        let setting = key
            .trim_start_matches("HERALD_")
            .to_ascii_lowercase()
            .replace("__", ".");
        assert!(err.contains(&setting), "{key}: {err}");
    }
}
