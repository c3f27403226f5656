//! Endpoints through the svix SDK: CRUD, uid look-ups, filters, signing secrets (format, custom,
//! rotation) and custom headers (sensitive ones hidden).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use js_option::JsOption;
use svix::api::EndpointListOptions;
use svix::models::{
    ApplicationIn, EndpointHeadersIn, EndpointHeadersPatchIn, EndpointIn, EndpointPatch,
    EndpointSecretRotateIn, EndpointUpsertIn,
};

use crate::support::{sdk_status, Herald};

fn set(items: &[&str]) -> Option<BTreeSet<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}

#[tokio::test]
async fn endpoint_crud_with_the_svix_sdk() {
    let h = Herald::start();
    let svix = h.svix();
    let app = svix
        .application()
        .create(
            ApplicationIn {
                uid: Some("shop".into()),
                ..ApplicationIn::new("Shop".into())
            },
            None,
        )
        .await
        .unwrap();
    let eps = svix.endpoint();

    let input = EndpointIn {
        uid: Some("billing".into()),
        description: Some("Billing service".into()),
        event_types: set(&["order.created", "order.paid"]),
        channels: set(&["project:1"]),
        metadata: Some(BTreeMap::from([(
            "team".to_string(),
            "payments".to_string(),
        )])),
        ..EndpointIn::new("https://example.com/hooks/billing".into())
    };
    let ep = eps.create("shop".into(), input, None).await.unwrap();
    assert!(ep.id.starts_with("ep_"));
    assert_eq!(ep.url, "https://example.com/hooks/billing");
    assert_eq!(ep.description, "Billing service");
    assert_eq!(ep.event_types, set(&["order.created", "order.paid"]));
    assert_eq!(ep.channels, set(&["project:1"]));
    assert_eq!(ep.disabled, Some(false));
    assert_eq!(ep.uid.as_deref(), Some("billing"));

    assert_eq!(
        eps.get(app.id.clone(), ep.id.clone()).await.unwrap().id,
        ep.id
    );
    assert_eq!(
        eps.get("shop".into(), "billing".into()).await.unwrap().id,
        ep.id
    );

    let up = eps
        .upsert(
            "shop".into(),
            "billing".into(),
            EndpointUpsertIn {
                event_types: set(&["order.refunded"]),
                ..EndpointUpsertIn::new("https://example.com/v2".into())
            },
        )
        .await
        .unwrap();
    assert_eq!(up.id, ep.id);
    assert_eq!(up.url, "https://example.com/v2");
    assert_eq!(up.event_types, set(&["order.refunded"]));
    assert_eq!(up.channels, None, "PUT replaces the filter");

    let patched = eps
        .patch(
            "shop".into(),
            ep.id.clone(),
            EndpointPatch {
                disabled: Some(true),
                event_types: JsOption::Null,
                ..EndpointPatch::new()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.disabled, Some(true));
    assert_eq!(patched.event_types, None);
    assert_eq!(patched.url, "https://example.com/v2");

    let second = eps
        .create(
            "shop".into(),
            EndpointIn::new("https://example.com/2".into()),
            None,
        )
        .await
        .unwrap();
    let listed = eps.list("shop".into(), None).await.unwrap();
    assert_eq!(
        listed.data.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        [ep.id.clone(), second.id.clone()]
    );
    let one = eps
        .list(
            "shop".into(),
            Some(EndpointListOptions {
                limit: Some(1),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert!(!one.done);
    assert_eq!(one.data.len(), 1);

    let err = eps
        .create(
            "shop".into(),
            EndpointIn {
                uid: Some("billing".into()),
                ..EndpointIn::new("https://x.example".into())
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        sdk_status(&err),
        409,
        "endpoint uids are unique within an app"
    );

    eps.delete("shop".into(), "billing".into()).await.unwrap();
    assert_eq!(
        sdk_status(&eps.get("shop".into(), ep.id.clone()).await.unwrap_err()),
        404
    );
    assert_eq!(
        sdk_status(&eps.list("no-such-app".into(), None).await.unwrap_err()),
        404
    );

    // Deleting the application takes its endpoints with it.
    svix.application().delete("shop".into()).await.unwrap();
    svix.application()
        .create(
            ApplicationIn {
                uid: Some("shop".into()),
                ..ApplicationIn::new("Shop again".into())
            },
            None,
        )
        .await
        .unwrap();
    assert!(eps.list("shop".into(), None).await.unwrap().data.is_empty());
}

fn key_bytes(whsec: &str) -> Vec<u8> {
    let b64 = whsec.strip_prefix("whsec_").expect("whsec_ prefix");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("standard base64")
}

#[tokio::test]
async fn signing_secrets_are_generated_accepted_and_rotated() {
    let h = Herald::start();
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap();
    let eps = svix.endpoint();

    let generated = eps
        .create(
            app.id.clone(),
            EndpointIn::new("https://example.com/a".into()),
            None,
        )
        .await
        .unwrap();
    let key = eps
        .get_secret(app.id.clone(), generated.id.clone())
        .await
        .unwrap()
        .key;
    assert_eq!(key_bytes(&key).len(), 24, "24 random bytes");
    let other = eps
        .create(
            app.id.clone(),
            EndpointIn::new("https://example.com/b".into()),
            None,
        )
        .await
        .unwrap();
    let other_key = eps
        .get_secret(app.id.clone(), other.id.clone())
        .await
        .unwrap()
        .key;
    assert_ne!(key, other_key);

    let raw = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    for given in [raw.clone(), format!("whsec_{raw}")] {
        let ep = eps
            .create(
                app.id.clone(),
                EndpointIn {
                    secret: Some(given),
                    ..EndpointIn::new("https://example.com/c".into())
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            eps.get_secret(app.id.clone(), ep.id).await.unwrap().key,
            format!("whsec_{raw}")
        );
    }
    let err = eps
        .create(
            app.id.clone(),
            EndpointIn {
                secret: Some("whsec_tooshort".into()),
                ..EndpointIn::new("https://example.com/d".into())
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(sdk_status(&err), 422);

    let rotated = eps
        .rotate_secret(
            app.id.clone(),
            generated.id.clone(),
            EndpointSecretRotateIn::new(),
            None,
        )
        .await
        .unwrap();
    assert_ne!(rotated.key, key);
    assert_eq!(key_bytes(&rotated.key).len(), 24);
    assert_eq!(
        eps.get_secret(app.id.clone(), generated.id.clone())
            .await
            .unwrap()
            .key,
        rotated.key
    );

    let chosen = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 24])
    );
    let rotated = eps
        .rotate_secret(
            app.id.clone(),
            generated.id.clone(),
            EndpointSecretRotateIn {
                key: Some(chosen.clone()),
                grace_period_seconds: Some(60),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(rotated.key, chosen);
    assert_eq!(
        eps.get_secret(app.id, generated.id).await.unwrap().key,
        chosen
    );
}

#[tokio::test]
async fn custom_headers_hide_sensitive_values() {
    let h = Herald::start();
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap();
    let eps = svix.endpoint();
    let ep = eps
        .create(
            app.id.clone(),
            EndpointIn {
                headers: Some(BTreeMap::from([("X-Tenant".to_string(), "t1".to_string())])),
                ..EndpointIn::new("https://example.com/h".into())
            },
            None,
        )
        .await
        .unwrap();
    let got = eps
        .get_headers(app.id.clone(), ep.id.clone())
        .await
        .unwrap();
    assert_eq!(
        got.headers,
        BTreeMap::from([("X-Tenant".to_string(), "t1".to_string())])
    );
    assert!(got.sensitive.is_empty());

    let headers = BTreeMap::from([
        ("X-Region".to_string(), "eu".to_string()),
        (
            "Authorization".to_string(),
            "Bearer receiver-secret".to_string(),
        ),
    ]);
    eps.set_headers(
        app.id.clone(),
        ep.id.clone(),
        EndpointHeadersIn::new(headers),
    )
    .await
    .unwrap();
    let got = eps
        .get_headers(app.id.clone(), ep.id.clone())
        .await
        .unwrap();
    assert_eq!(
        got.headers,
        BTreeMap::from([("X-Region".to_string(), "eu".to_string())]),
        "replaced, secret hidden"
    );
    assert_eq!(got.sensitive, BTreeSet::from(["Authorization".to_string()]));

    let patch = EndpointHeadersPatchIn {
        delete_headers: Some(vec!["x-region".into()]),
        ..EndpointHeadersPatchIn::new(BTreeMap::from([("X-Extra".to_string(), "1".to_string())]))
    };
    eps.patch_headers(app.id.clone(), ep.id.clone(), patch)
        .await
        .unwrap();
    let got = eps
        .get_headers(app.id.clone(), ep.id.clone())
        .await
        .unwrap();
    assert_eq!(
        got.headers,
        BTreeMap::from([("X-Extra".to_string(), "1".to_string())])
    );
    assert_eq!(got.sensitive, BTreeSet::from(["Authorization".to_string()]));

    let bad = BTreeMap::from([("webhook-signature".to_string(), "forged".to_string())]);
    let err = eps
        .set_headers(app.id.clone(), ep.id.clone(), EndpointHeadersIn::new(bad))
        .await
        .unwrap_err();
    assert_eq!(
        sdk_status(&err),
        422,
        "our own headers cannot be overridden"
    );
}

/// Fan-out reads the endpoints as they are now: a message created right after an endpoint is
/// updated, disabled, enabled, added or deleted goes to the endpoints that take it at that moment.
#[tokio::test]
async fn fan_out_follows_each_endpoint_change_at_once() {
    use crate::support::call;
    let h = Herald::start();
    let (_, app) = call(&h, "POST", "/app", Some(r#"{"name":"A"}"#)).await;
    let app = app["id"].as_str().unwrap().to_string();
    let (_, ep) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint"),
        Some(r#"{"url":"https://hooks.example/one","filterTypes":["a.one"]}"#),
    )
    .await;
    let one = ep["id"].as_str().unwrap().to_string();
    // The endpoint ids a new `a.two` message fans out to.
    let send = || async {
        let (status, m) = call(
            &h,
            "POST",
            &format!("/app/{app}/msg"),
            Some(r#"{"eventType":"a.two","payload":{}}"#),
        )
        .await;
        assert_eq!(status, 202, "{m}");
        let msg = m["id"].as_str().unwrap().to_string();
        let (_, list) = call(&h, "GET", &format!("/app/{app}/msg/{msg}/endpoint"), None).await;
        let mut ids: Vec<String> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let patch = |body: &'static str| {
        let path = format!("/app/{app}/endpoint/{one}");
        let h = &h;
        async move {
            let (status, out) = call(h, "PATCH", &path, Some(body)).await;
            assert_eq!(status, 200, "{out}");
        }
    };
    assert!(send().await.is_empty(), "filtered out");
    patch(r#"{"filterTypes":["a.one","a.two"]}"#).await;
    assert_eq!(send().await, vec![one.clone()], "the new filter");
    patch(r#"{"disabled":true}"#).await;
    assert!(send().await.is_empty(), "disabled");
    patch(r#"{"disabled":false}"#).await;
    assert_eq!(send().await, vec![one.clone()], "enabled again");
    let (_, ep) = call(
        &h,
        "POST",
        &format!("/app/{app}/endpoint"),
        Some(r#"{"url":"https://hooks.example/two"}"#),
    )
    .await;
    let two = ep["id"].as_str().unwrap().to_string();
    let mut both = vec![one.clone(), two.clone()];
    both.sort();
    assert_eq!(send().await, both, "a new endpoint");
    let (status, _) = call(&h, "DELETE", &format!("/app/{app}/endpoint/{one}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(send().await, vec![two], "the deleted one is gone");
}
