//! Bad input gets a clear JSON error (status, `code`/`detail`, or 422 `detail[].loc`), never a
//! panic or a non-JSON body, and leaves what is stored unharmed. Also: auth and trailing slashes.

use serde_json::{json, Value};

use crate::support::{bearer, call, http, Herald};

fn loc(v: &Value) -> Vec<String> {
    v["detail"][0]["loc"]
        .as_array()
        .expect("loc")
        .iter()
        .map(|s| s.as_str().expect("string loc").to_string())
        .collect()
}

#[tokio::test]
async fn authentication_is_required_and_checked() {
    let h = Herald::start();
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Basic Zm9vOmJhcg=="),
        Some(bearer().trim_start_matches("Bearer ").to_string().as_str()),
    ] {
        let mut req = http().get(h.api("/app"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "authentication_failed");
        assert!(body["detail"].is_string());
    }
    // Health is open, for probes.
    assert!(http()
        .get(h.api("/health"))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
}

#[tokio::test]
async fn malformed_and_invalid_bodies_get_json_errors() {
    let h = Herald::start();
    let (s, _) = call(&h, "POST", "/app", Some(r#"{"name":"keep","uid":"keep"}"#)).await;
    assert_eq!(s, 201);

    let (s, b) = call(&h, "POST", "/app", Some(r#"{"name": "#)).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("bad_request")));
    let (s, b) = call(&h, "POST", "/app", Some("[1,2,3]")).await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = call(&h, "POST", "/app", Some(r#"{"uid":"x"}"#)).await;
    assert_eq!(
        (s, loc(&b)),
        (422, vec!["body".to_string(), "name".to_string()])
    );
    assert_eq!(b["detail"][0]["type"], "value_error.missing");
    let (s, b) = call(&h, "POST", "/app", Some(r#"{"name": 42}"#)).await;
    assert_eq!(
        (s, loc(&b)),
        (422, vec!["body".to_string(), "name".to_string()])
    );
    let (s, b) = call(
        &h,
        "POST",
        "/app",
        Some(r#"{"name":"x","throttleRate":70000}"#),
    )
    .await;
    assert_eq!(
        (s, loc(&b)),
        (422, vec!["body".to_string(), "throttleRate".to_string()])
    );
    let (s, b) = call(
        &h,
        "POST",
        "/app",
        Some(r#"{"name":"x","uid":"has space"}"#),
    )
    .await;
    assert_eq!(
        (s, loc(&b)),
        (422, vec!["body".to_string(), "uid".to_string()])
    );
    let (s, _) = call(
        &h,
        "POST",
        "/app",
        Some(r#"{"name":"unknown fields are ignored","colour":"red"}"#),
    )
    .await;
    assert_eq!(s, 201);

    let (s, b) = call(
        &h,
        "POST",
        "/app/keep/endpoint",
        Some(r#"{"url":"ftp://example.com"}"#),
    )
    .await;
    assert_eq!(
        (s, loc(&b)),
        (422, vec!["body".to_string(), "url".to_string()])
    );
    let (s, _) = call(
        &h,
        "POST",
        "/app/keep/endpoint",
        Some(r#"{"url":"not a url"}"#),
    )
    .await;
    assert_eq!(s, 422);
    let long = format!(r#"{{"url":"https://example.com/{}"}}"#, "a".repeat(2048));
    let (s, b) = call(&h, "POST", "/app/keep/endpoint", Some(&long)).await;
    assert_eq!(
        (s, loc(&b)),
        (422, vec!["body".to_string(), "url".to_string()])
    );
    let (s, b) = call(
        &h,
        "POST",
        "/app/keep/endpoint",
        Some(r#"{"url":"https://e.com","channels":["ok","bad channel"]}"#),
    )
    .await;
    assert_eq!(
        (s, loc(&b)),
        (
            422,
            vec!["body".to_string(), "channels".to_string(), "1".to_string()]
        )
    );
    let (s, _) = call(
        &h,
        "POST",
        "/app/keep/endpoint",
        Some(r#"{"url":"https://e.com","eventTypes":[]}"#),
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = call(
        &h,
        "POST",
        "/app/keep/endpoint",
        Some(r#"{"url":"https://e.com","headers":{"Content-Length":"1"}}"#),
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = call(
        &h,
        "POST",
        "/event-type",
        Some(r#"{"name":"a/b","description":""}"#),
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = call(
        &h,
        "POST",
        "/event-type",
        Some(r#"{"name":"a.b","description":"","schemas":[1]}"#),
    )
    .await;
    assert_eq!(s, 422);

    let (s, b) = call(&h, "GET", "/app?limit=251", None).await;
    assert_eq!(
        (s, loc(&b)),
        (422, vec!["query".to_string(), "limit".to_string()])
    );
    let (s, _) = call(&h, "GET", "/app?limit=0", None).await;
    assert_eq!(s, 422);
    let (s, _) = call(&h, "GET", "/app?limit=250", None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&h, "GET", "/app?iterator=garbage", None).await;
    assert_eq!(s, 422);
    let (s, _) = call(&h, "GET", "/app?order=sideways", None).await;
    assert_eq!(s, 422);

    let (s, b) = call(&h, "GET", "/app/nope", None).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    let (s, b) = call(&h, "GET", "/no/such/route", None).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    let (s, b) = call(&h, "DELETE", "/app", None).await;
    assert_eq!((s, b["code"].as_str()), (405, Some("method_not_allowed")));

    // Nothing stored was harmed.
    let (s, b) = call(&h, "GET", "/app/keep", None).await;
    assert_eq!((s, b["name"].as_str()), (200, Some("keep")));
    let (_, b) = call(&h, "GET", "/app/keep/endpoint", None).await;
    assert_eq!(b["data"], json!([]));
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let h = Herald::start();
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(1024 * 1024 + 10));
    let (s, b) = call(&h, "POST", "/app", Some(&big)).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("payload_too_large")));

    // Without a content-length (chunked), the limit holds while reading. The server answers 413
    // and closes without reading the rest, so the client may instead see its write fail.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let sent = http()
        .post(h.api("/app"))
        .header("authorization", bearer())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    match sent {
        Ok(resp) => {
            assert_eq!(resp.status(), 413);
            let b: Value = resp.json().await.unwrap();
            assert_eq!(b["code"], "payload_too_large");
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "unexpected error: {e:?}"),
    }

    // The server is still fine.
    let (s, _) = call(&h, "POST", "/app", Some(r#"{"name":"after"}"#)).await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn trailing_slashes_route_the_same() {
    let h = Herald::start();
    let (s, b) = call(
        &h,
        "POST",
        "/app/",
        Some(r#"{"name":"slash","uid":"slash"}"#),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(&h, "GET", "/app/slash/", None).await;
    assert_eq!((s, b["uid"].as_str()), (200, Some("slash")));
    let (s, b) = call(&h, "GET", "/app/?limit=1", None).await;
    assert_eq!((s, b["data"].as_array().map(Vec::len)), (200, Some(1)));
    assert!(b.get("iterator").is_some() && b.get("prevIterator").is_some() && b["done"] == true);
    let resp = http()
        .get(format!("{}/api/v1/health/", h.url))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
}
