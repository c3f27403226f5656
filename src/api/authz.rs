//! Who may call what: the one table of route (method + path template) × credential, and the
//! decision made from it for every authenticated request. Admin tokens reach every route; an
//! application token reaches only its own application's routes within its capabilities, the
//! event-type catalogue, and logout. A route missing from the table is admin-only (fail closed).
//!
//! Answers: no valid credential 401; a credential that may never call the route, or lacks the
//! capability, 403 `forbidden`; an application token on another application's path 404 (as for
//! an application that does not exist, so a token learns nothing about other applications).

use super::error::ApiError;
use crate::domain::token::{AppToken, Capabilities, Capability};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No credential needed (health, the OpenAPI document).
    Public,
    /// Admin tokens only.
    Admin,
    /// Admin tokens, and application tokens of the path's `{app_id}` with this capability.
    OwnApp(Capability),
    /// Admin tokens, and any application token with this capability (the shared catalogue).
    AnyApp(Capability),
    /// Application tokens only (logout: an admin token is revoked with `herald token revoke`).
    AppTokenOnly,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// As in the OpenAPI document: `{name}` matches one path segment.
    pub path: &'static str,
    pub rule: Rule,
}

const fn row(method: &'static str, path: &'static str, rule: Rule) -> Route {
    Route { method, path, rule }
}

use Capability::{
    CreateAttempts, ManageEndpoint, ManageEndpointSecret, ViewBase, ViewEndpointSecret,
};
use Rule::{Admin, AnyApp, AppTokenOnly, OwnApp, Public};

/// Every route Herald serves. Tests check it against the OpenAPI document both ways.
pub const ROUTES: &[Route] = &[
    row("GET", "/api/v1/health", Public),
    row("HEAD", "/api/v1/health", Public),
    row("GET", "/api/v1/health/live", Public),
    row("HEAD", "/api/v1/health/live", Public),
    row("GET", "/api/v1/health/ready", Public),
    row("HEAD", "/api/v1/health/ready", Public),
    row("GET", "/api/v1/openapi.json", Public),
    row("GET", "/metrics", Admin),
    // Applications: a token may read its own; the set of applications is the operator's.
    row("GET", "/api/v1/app", Admin),
    row("POST", "/api/v1/app", Admin),
    row("GET", "/api/v1/app/{app_id}", OwnApp(ViewBase)),
    row("PUT", "/api/v1/app/{app_id}", Admin),
    row("PATCH", "/api/v1/app/{app_id}", Admin),
    row("DELETE", "/api/v1/app/{app_id}", Admin),
    // Event types: the catalogue is shared and read-only to customers.
    row("GET", "/api/v1/event-type", AnyApp(ViewBase)),
    row("POST", "/api/v1/event-type", Admin),
    row("POST", "/api/v1/event-type/import/openapi", Admin),
    row(
        "GET",
        "/api/v1/event-type/{event_type_name}",
        AnyApp(ViewBase),
    ),
    row("PUT", "/api/v1/event-type/{event_type_name}", Admin),
    row("PATCH", "/api/v1/event-type/{event_type_name}", Admin),
    row("DELETE", "/api/v1/event-type/{event_type_name}", Admin),
    // Endpoints.
    row("GET", "/api/v1/app/{app_id}/endpoint", OwnApp(ViewBase)),
    row(
        "POST",
        "/api/v1/app/{app_id}/endpoint",
        OwnApp(ManageEndpoint),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
        OwnApp(ViewBase),
    ),
    row(
        "PUT",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
        OwnApp(ManageEndpoint),
    ),
    row(
        "PATCH",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
        OwnApp(ManageEndpoint),
    ),
    row(
        "DELETE",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
        OwnApp(ManageEndpoint),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
        OwnApp(ViewEndpointSecret),
    ),
    row(
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
        OwnApp(ManageEndpointSecret),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
        OwnApp(ViewBase),
    ),
    row(
        "PUT",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
        OwnApp(ManageEndpoint),
    ),
    row(
        "PATCH",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
        OwnApp(ManageEndpoint),
    ),
    row(
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/filter/test",
        OwnApp(ViewBase),
    ),
    row(
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
        OwnApp(CreateAttempts),
    ),
    row(
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/replay-missing",
        OwnApp(CreateAttempts),
    ),
    row(
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/bulk-replay",
        OwnApp(CreateAttempts),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg",
        OwnApp(ViewBase),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats",
        OwnApp(ViewBase),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/health",
        OwnApp(ViewBase),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/attempt-stats",
        OwnApp(ViewBase),
    ),
    row(
        "POST",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example",
        OwnApp(CreateAttempts),
    ),
    // Messages: customers read what was sent to them; sending is the operator's.
    row("GET", "/api/v1/app/{app_id}/msg", OwnApp(ViewBase)),
    row("POST", "/api/v1/app/{app_id}/msg", Admin),
    row("GET", "/api/v1/app/{app_id}/msg/{msg_id}", OwnApp(ViewBase)),
    // Polling for messages instead of receiving them: as reading the list.
    row("GET", "/api/v1/app/{app_id}/events", OwnApp(ViewBase)),
    // Expunging content is the operator's (as in Svix).
    row("DELETE", "/api/v1/app/{app_id}/msg/{msg_id}/content", Admin),
    row("POST", "/api/v1/app/{app_id}/msg/bulk-expunge", Admin),
    row(
        "POST",
        "/api/v1/app/{app_id}/msg/expunge-all-contents",
        Admin,
    ),
    row(
        "DELETE",
        "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
        Admin,
    ),
    row("POST", "/api/v1/app/{app_id}/msg/precheck/active", Admin),
    // Attempts.
    row(
        "GET",
        "/api/v1/app/{app_id}/attempt/msg/{msg_id}",
        OwnApp(ViewBase),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}",
        OwnApp(ViewBase),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
        OwnApp(ViewBase),
    ),
    row(
        "GET",
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint",
        OwnApp(ViewBase),
    ),
    row(
        "POST",
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
        OwnApp(CreateAttempts),
    ),
    // Operator-only.
    row("POST", "/api/v1/environment/export", Admin),
    row("POST", "/api/v1/environment/import", Admin),
    row("GET", "/api/v1/background-task", Admin),
    row("GET", "/api/v1/background-task/{task_id}", Admin),
    row("POST", "/api/v1/admin/backup", Admin),
    row("GET", "/api/v1/admin/stats", Admin),
    row("PUT", "/api/v1/stats/usage/event-types", Admin),
    row("POST", "/api/v1/stats/usage/app", Admin),
    // Operational webhooks: the operator's own subscriptions.
    row("GET", "/api/v1/operational-webhook/endpoint", Admin),
    row("POST", "/api/v1/operational-webhook/endpoint", Admin),
    row(
        "GET",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}",
        Admin,
    ),
    row(
        "PUT",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}",
        Admin,
    ),
    row(
        "DELETE",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}",
        Admin,
    ),
    row(
        "GET",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret",
        Admin,
    ),
    row(
        "POST",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret/rotate",
        Admin,
    ),
    row(
        "GET",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers",
        Admin,
    ),
    row(
        "PUT",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers",
        Admin,
    ),
    // Tokens. Any valid token may ask what it is (`ViewBase` is in every application token).
    row("GET", "/api/v1/auth/whoami", AnyApp(ViewBase)),
    row("POST", "/api/v1/auth/app-portal-access/{app_id}", Admin),
    row("POST", "/api/v1/auth/app/{app_id}/expire-all", Admin),
    // Before logout: the authorization matrix calls rows in order, and logout revokes.
    row("GET", "/api/v1/auth/app-token", AppTokenOnly),
    row("POST", "/api/v1/auth/logout", AppTokenOnly),
];

/// The table row for a request, with its raw `{app_id}` segment if the template has one.
pub fn find<'p>(method: &str, path: &'p str) -> Option<(&'static Route, Option<&'p str>)> {
    ROUTES.iter().find_map(|r| {
        if !r.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let mut app = None;
        let mut want = r.path.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return Some((r, app)),
                (Some(w), Some(g)) if w.starts_with('{') => {
                    if g.is_empty() {
                        return None;
                    }
                    if w == "{app_id}" {
                        app = Some(g);
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return None,
            }
        }
    })
}

/// The caller, once its token is recognised.
#[derive(Debug, Clone)]
pub enum Credential {
    Admin,
    App(AppToken),
}

/// A caller as the table sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No token, or one that is unknown, expired or revoked.
    Nobody,
    Admin,
    /// An application token with these capabilities; `own` when the path's application is its
    /// own (always true on a path without one).
    App {
        caps: Capabilities,
        own: bool,
    },
}

/// What the table says a caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// 401.
    Unauthenticated,
    /// 403 `forbidden`.
    Forbidden,
    /// 404: another application's path.
    NotFound,
}

/// The decision for `caller` on a route with `rule` (`None`: a route not in the table).
pub fn outcome(rule: Option<Rule>, caller: Caller) -> Outcome {
    match (rule.unwrap_or(Admin), caller) {
        (Public, _) => Outcome::Allowed,
        (_, Caller::Nobody) => Outcome::Unauthenticated,
        (AppTokenOnly, Caller::Admin) => Outcome::Forbidden,
        (_, Caller::Admin) => Outcome::Allowed,
        (Admin, Caller::App { .. }) => Outcome::Forbidden,
        (AppTokenOnly, Caller::App { .. }) => Outcome::Allowed,
        (OwnApp(_), Caller::App { own: false, .. }) => Outcome::NotFound,
        (OwnApp(cap) | AnyApp(cap), Caller::App { caps, .. }) if caps.grants(cap) => {
            Outcome::Allowed
        }
        (OwnApp(_) | AnyApp(_), Caller::App { .. }) => Outcome::Forbidden,
    }
}

/// Decide a request: `owns(segment)` tells whether the path's `{app_id}` (raw segment) names
/// the application token's own application.
pub fn authorize(
    method: &str,
    path: &str,
    credential: Option<&Credential>,
    owns: impl FnOnce(&AppToken, &str) -> Result<bool, ApiError>,
) -> Result<(), ApiError> {
    let found = find(method, path);
    let rule = found.map(|(r, _)| r.rule);
    let caller = match credential {
        None => Caller::Nobody,
        Some(Credential::Admin) => Caller::Admin,
        Some(Credential::App(t)) => {
            let own = match found {
                Some((r, Some(seg))) if matches!(r.rule, OwnApp(_)) => owns(t, seg)?,
                _ => true,
            };
            Caller::App {
                caps: t.capabilities,
                own,
            }
        }
    };
    match outcome(rule, caller) {
        Outcome::Allowed => Ok(()),
        Outcome::Unauthenticated => Err(ApiError::Unauthorized),
        Outcome::Forbidden => Err(ApiError::Forbidden(match rule {
            Some(AppTokenOnly) => "only an application token can use this route",
            Some(OwnApp(_) | AnyApp(_)) => "this token lacks the capability this route needs",
            _ => "this token cannot use this route",
        })),
        Outcome::NotFound => Err(ApiError::NotFound("application not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppId, Timestamp};

    #[test]
    fn templates_match_whole_segments_and_capture_the_app() {
        let (r, app) = find("GET", "/api/v1/app/app_x/endpoint/ep_1/secret").unwrap();
        assert_eq!(r.path, "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret");
        assert_eq!(app, Some("app_x"));
        assert_eq!(find("get", "/api/v1/app").unwrap().0.rule, Admin);
        assert!(find("GET", "/api/v1/app/").is_none(), "empty segment");
        assert!(find("GET", "/api/v1/app/a/endpoint/e/secret/x").is_none());
        assert!(find("HEAD", "/api/v1/app").is_none());
        assert!(
            find("POST", "/api/v1/no-such-resource").is_none(),
            "unlisted route"
        );
        let (r, app) = find("POST", "/api/v1/auth/logout").unwrap();
        assert_eq!((r.rule, app), (AppTokenOnly, None));
    }

    #[test]
    fn every_row_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }

    #[test]
    fn unknown_routes_are_admin_only() {
        let app = Caller::App {
            caps: Capabilities::all(),
            own: true,
        };
        assert_eq!(outcome(None, Caller::Admin), Outcome::Allowed);
        assert_eq!(outcome(None, app), Outcome::Forbidden);
        assert_eq!(outcome(None, Caller::Nobody), Outcome::Unauthenticated);
    }

    #[test]
    fn other_apps_are_not_found_and_missing_capabilities_forbidden() {
        let t = AppToken {
            hash: [1; 32],
            app_id: AppId::generate(),
            capabilities: Capabilities::of([]),
            session_id: None,
            created_at: Timestamp(0),
            expires_at: Timestamp(i64::MAX),
        };
        let cred = Some(Credential::App(t.clone()));
        let mine = |t: &AppToken, seg: &str| Ok(seg == t.app_id.as_str());
        let own = format!("/api/v1/app/{}/endpoint", t.app_id);
        assert!(authorize("GET", &own, cred.as_ref(), mine).is_ok());
        let err = authorize("POST", &own, cred.as_ref(), mine).unwrap_err();
        assert_eq!(err.status(), 403);
        let err = authorize("GET", "/api/v1/app/app_other/endpoint", cred.as_ref(), mine);
        assert_eq!(err.unwrap_err().status(), 404);
        // Admin-only routes are 403 even on another application's path.
        let err = authorize("DELETE", "/api/v1/app/app_other", cred.as_ref(), mine);
        assert_eq!(err.unwrap_err().status(), 403);
        assert!(authorize("GET", "/api/v1/event-type", cred.as_ref(), mine).is_ok());
        assert!(authorize("POST", "/api/v1/auth/logout", cred.as_ref(), mine).is_ok());
        let admin = Some(Credential::Admin);
        assert_eq!(
            authorize("POST", "/api/v1/auth/logout", admin.as_ref(), mine)
                .unwrap_err()
                .status(),
            403
        );
        assert!(authorize("GET", "/metrics", admin.as_ref(), mine).is_ok());
        assert_eq!(
            authorize("GET", "/metrics", None, mine)
                .unwrap_err()
                .status(),
            401
        );
    }
}
