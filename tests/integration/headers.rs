//! Response headers every client gets: `Cache-Control: no-store` under `/api/`, `nosniff` on
//! every answer (the UI's included, once), `WWW-Authenticate: Bearer` on a 401, and HSTS over TLS
//! (on by default, `tls.hsts = 0` turns it off), never over plain HTTP.

use crate::connections::tls_connector;
use crate::support::{bearer, http, Herald, Launch};

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn api_answers_are_not_stored_nothing_is_sniffed_and_a_401_names_bearer() {
    let h = Herald::start();
    let health = http().get(h.api("/health")).send().await.unwrap();
    let apps = http()
        .get(h.api("/app"))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(apps.status(), 200);
    let missing = http().get(h.api("/app/app_nope")).send().await.unwrap();
    for r in [&health, &apps] {
        assert_eq!(header(r, "cache-control"), Some("no-store"), "{}", r.url());
        assert_eq!(header(r, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(r, "strict-transport-security"), None, "plain HTTP");
    }

    // No token, a wrong one, and the metrics route: each 401 names the scheme.
    let wrong = http()
        .get(h.api("/app"))
        .header("authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    let metrics = http()
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap();
    for r in [&missing, &wrong, &metrics] {
        assert_eq!(r.status(), 401, "{}", r.url());
        assert_eq!(header(r, "www-authenticate"), Some("Bearer"));
        assert_eq!(header(r, "x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(header(&missing, "cache-control"), Some("no-store"));

    // The UI keeps its own caching (revalidate) and gets nosniff once.
    let ui = http().get(format!("{}/", h.url)).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    assert_eq!(header(&ui, "cache-control"), Some("no-cache"));
    let nosniff: Vec<_> = ui
        .headers()
        .get_all("x-content-type-options")
        .iter()
        .collect();
    assert_eq!(nosniff, ["nosniff"]);
    let unknown = http()
        .get(format!("{}/no-such-file", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(header(&unknown, "x-content-type-options"), Some("nosniff"));
}

/// The `Strict-Transport-Security` value of `/api/v1/health` over TLS (HTTP/1.1, raw).
async fn hsts_over_tls(env: Vec<(&'static str, String)>) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        args: vec!["--tls-self-signed"],
        env,
        ..Launch::new(dir.path())
    };
    let h = Herald::launch(&launch).unwrap();
    let connector = tls_connector(&dir.path().join("tls/self-signed-cert.pem"));
    let tcp = tokio::net::TcpStream::connect(h.url.trim_start_matches("https://"))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /api/v1/health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    answer.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("strict-transport-security")
            .then(|| v.trim().to_string())
    })
}

#[tokio::test]
async fn hsts_is_on_over_tls_by_default_and_can_be_turned_off() {
    assert_eq!(
        hsts_over_tls(Vec::new()).await.as_deref(),
        Some("max-age=31536000")
    );
    assert_eq!(
        hsts_over_tls(vec![("HERALD_TLS__HSTS", "0".to_string())]).await,
        None
    );
}
