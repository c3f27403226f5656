//! The served OpenAPI document and the routes agree both ways: every route of the API contract is
//! documented, and every documented operation is answered by a route (not "no such route").

use serde_json::Value;

use crate::support::{bearer, http, Herald};

/// The routes Herald serves (DESIGN.md section 4 and the delivery issue), as documented paths.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/app"),
    ("post", "/api/v1/app"),
    ("get", "/api/v1/app/{app_id}"),
    ("put", "/api/v1/app/{app_id}"),
    ("patch", "/api/v1/app/{app_id}"),
    ("delete", "/api/v1/app/{app_id}"),
    ("get", "/api/v1/event-type"),
    ("post", "/api/v1/event-type"),
    ("get", "/api/v1/event-type/{event_type_name}"),
    ("put", "/api/v1/event-type/{event_type_name}"),
    ("patch", "/api/v1/event-type/{event_type_name}"),
    ("delete", "/api/v1/event-type/{event_type_name}"),
    ("get", "/api/v1/app/{app_id}/endpoint"),
    ("post", "/api/v1/app/{app_id}/endpoint"),
    ("get", "/api/v1/app/{app_id}/endpoint/{endpoint_id}"),
    ("put", "/api/v1/app/{app_id}/endpoint/{endpoint_id}"),
    ("patch", "/api/v1/app/{app_id}/endpoint/{endpoint_id}"),
    ("delete", "/api/v1/app/{app_id}/endpoint/{endpoint_id}"),
    ("get", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret"),
    (
        "post",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
    ),
    ("get", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers"),
    ("put", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers"),
    (
        "patch",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
    ),
    (
        "post",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
    ),
    ("get", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats"),
    ("get", "/api/v1/app/{app_id}/msg"),
    ("post", "/api/v1/app/{app_id}/msg"),
    ("get", "/api/v1/app/{app_id}/msg/{msg_id}"),
    ("get", "/api/v1/app/{app_id}/attempt/msg/{msg_id}"),
    ("get", "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}"),
    (
        "get",
        "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
    ),
    ("get", "/api/v1/app/{app_id}/msg/{msg_id}/endpoint"),
    (
        "post",
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
    ),
    ("post", "/api/v1/admin/backup"),
    ("get", "/api/v1/admin/stats"),
    ("get", "/api/v1/app/{app_id}/endpoint/{endpoint_id}/health"),
    (
        "post",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example",
    ),
    ("get", "/api/v1/operational-webhook/endpoint"),
    ("post", "/api/v1/operational-webhook/endpoint"),
    ("get", "/api/v1/operational-webhook/endpoint/{endpoint_id}"),
    ("put", "/api/v1/operational-webhook/endpoint/{endpoint_id}"),
    (
        "delete",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}",
    ),
    (
        "get",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret",
    ),
    (
        "post",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/secret/rotate",
    ),
    (
        "get",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers",
    ),
    (
        "put",
        "/api/v1/operational-webhook/endpoint/{endpoint_id}/headers",
    ),
    ("delete", "/api/v1/app/{app_id}/msg/{msg_id}/content"),
    ("post", "/api/v1/app/{app_id}/msg/bulk-expunge"),
    ("post", "/api/v1/app/{app_id}/msg/expunge-all-contents"),
    (
        "delete",
        "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}/content",
    ),
];

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let h = Herald::start();
    let resp = http().get(h.api("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "served without auth");
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");

    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{} {path} is missing from the OpenAPI document",
            method.to_uppercase()
        );
    }

    for (path, ops) in paths {
        for method in ops
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
        {
            let url = path
                .replace("{app_id}", "no-such-app")
                .replace("{endpoint_id}", "no-such-ep")
                .replace("{event_type_name}", "no.such.type")
                .replace("{msg_id}", "no-such-msg")
                .replace("{attempt_id}", "atmpt_none");
            let resp = http()
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{url}", h.url),
                )
                .header("authorization", bearer())
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(
                !body.contains("no such route"),
                "{method} {path} is documented but not served"
            );
        }
    }
}
