//! Connections that cost the server without asking anything of it: more silent connections than
//! `server.max_connections` (the surplus is refused at once, the rest closed by
//! `server.idle_timeout`, and `/api/v1/health` answers again), an h2c preface with no request,
//! HTTP/2 headers or a body never finished, and a TLS connection idle after its handshake. The
//! idle timeout is one second here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{http, metric, read_until_closed, Herald, Launch, TOKEN};

const IDLE: Duration = Duration::from_secs(1);
/// How long past its deadline the server may take to act (a loaded 2-core machine). A silent
/// HTTP/2 peer gets a GOAWAY after one idle period and is dropped after a second one.
const SLACK: Duration = Duration::from_secs(5);
const CAP: usize = 20;

fn start(extra: Vec<(&'static str, String)>) -> Herald {
    let mut env = vec![
        ("HERALD_SERVER__IDLE_TIMEOUT", "1".to_string()),
        ("HERALD_SERVER__MAX_CONNECTIONS", CAP.to_string()),
    ];
    env.extend(extra);
    Herald::start_with(env)
}

fn addr(h: &Herald) -> String {
    h.url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string()
}

/// `/api/v1/health` through a new connection: its status, or `None` if the connection failed.
async fn health(url: &str) -> Option<u16> {
    let _ = http(); // installs the crypto provider reqwest needs
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let r = client
        .get(format!("{url}/api/v1/health"))
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_over_the_cap_are_refused_then_closed_and_health_answers() {
    let h = start(Vec::new());
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..2 * CAP {
        silent.push(TcpStream::connect(addr(&h)).await.unwrap());
    }
    // While they are held the server is full; the idle timeout frees it.
    let mut refused_probes = 0;
    loop {
        match health(&h.url).await {
            Some(204) => break,
            _ => refused_probes += 1,
        }
        assert!(
            started.elapsed() < IDLE + SLACK,
            "/health did not answer while silent connections were held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered_after = started.elapsed();
    // Each silent connection is closed: the surplus at once with a 503, the rest when idle.
    let mut told_503 = 0;
    for c in &mut silent {
        let got = read_until_closed(c, IDLE + SLACK).await;
        if got.starts_with(b"HTTP/1.1 503") {
            told_503 += 1;
        } else {
            assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        }
    }
    assert!(
        told_503 >= CAP,
        "at most {CAP} of {} silent connections may be held; {told_503} were refused",
        2 * CAP
    );
    assert_eq!(metric(&h, "herald_connections_max").await, CAP as f64);
    assert!(metric(&h, "herald_connections_refused_total").await >= CAP as f64);
    assert!(metric(&h, "herald_connections_open").await <= CAP as f64);
    let logs = h.logs();
    assert_eq!(
        logs.matches("connection cap reached").count(),
        1,
        "refusals are logged once a minute, not per connection: {logs}"
    );
    eprintln!("health answered after {answered_after:?} ({refused_probes} probes refused); {told_503} silent connections refused");
}

/// With a long idle timeout, silent connections that fill the cap do not lock clients out for
/// that long: a new connection makes the server close connections idle for a second or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cap_of_silent_connections_makes_room_for_a_new_client() {
    let h = start(vec![("HERALD_SERVER__IDLE_TIMEOUT", "60".to_string())]);
    let mut silent = Vec::new();
    for _ in 0..CAP {
        silent.push(TcpStream::connect(addr(&h)).await.unwrap());
    }
    // Past the eviction age (1 s), far below the idle timeout (60 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let mut answered = None;
    while started.elapsed() < SLACK {
        if let Some(204) = health(&h.url).await {
            answered = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took =
        answered.expect("/health did not answer while the cap was full of silent connections");
    // The silent connections were closed to make room, not left for the 60 s idle timeout.
    let mut closed = 0;
    for c in &mut silent {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no silent connection was closed");
    assert!(metric(&h, "herald_connections_open").await <= CAP as f64);
    eprintln!("health answered after {took:?}; {closed} of {CAP} silent connections closed");
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
fn h2_preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&frame(0x4, 0, 0, &[]));
    out
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK literal header without indexing, its name from the static table (`index`).
fn literal(index: u8, value: &str) -> Vec<u8> {
    let mut out = if index < 15 {
        vec![index]
    } else {
        vec![0x0f, index - 15]
    };
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
    out
}

const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const END_HEADERS: u8 = 0x4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_preface_without_a_request_is_closed() {
    let h = start(Vec::new());
    let mut c = TcpStream::connect(addr(&h)).await.unwrap();
    c.write_all(&h2_preface()).await.unwrap();
    read_until_closed(&mut c, 2 * IDLE + SLACK).await;
    assert_eq!(health(&h.url).await, Some(204));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_headers_never_finished_are_closed() {
    let h = start(Vec::new());
    let mut c = TcpStream::connect(addr(&h)).await.unwrap();
    c.write_all(&h2_preface()).await.unwrap();
    // GET / over http, then no END_HEADERS and no CONTINUATION: the stream never reaches the
    // service, so the connection counts as idle.
    let block = [0x82, 0x86, 0x84];
    c.write_all(&frame(HEADERS, 0, 1, &block)).await.unwrap();
    read_until_closed(&mut c, 2 * IDLE + SLACK).await;
    assert_eq!(health(&h.url).await, Some(204));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_never_finished_is_closed() {
    let h = start(vec![("HERALD_SERVER__BODY_READ_TIMEOUT", "1".to_string())]);
    let mut c = TcpStream::connect(addr(&h)).await.unwrap();
    c.write_all(&h2_preface()).await.unwrap();
    // POST /api/v1/app with a body of 100 bytes declared, 9 sent, and no END_STREAM.
    let mut block = vec![0x83, 0x86];
    block.extend(literal(4, "/api/v1/app"));
    block.extend(literal(23, &format!("Bearer {TOKEN}")));
    block.extend(literal(31, "application/json"));
    block.extend(literal(28, "100"));
    c.write_all(&frame(HEADERS, END_HEADERS, 1, &block))
        .await
        .unwrap();
    c.write_all(&frame(DATA, 0, 1, br#"{"name":"#))
        .await
        .unwrap();
    let got = read_until_closed(&mut c, IDLE + 2 * IDLE + SLACK).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("request_timeout"), "a 408 first: {text:?}");
    assert_eq!(health(&h.url).await, Some(204));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_idle_after_its_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        args: vec!["--tls-self-signed"],
        env: vec![("HERALD_SERVER__IDLE_TIMEOUT", "1".to_string())],
        ..Launch::new(dir.path())
    };
    let h = Herald::launch(&launch).unwrap();
    let pem = dir.path().join("tls/self-signed-cert.pem");
    let connector = tls_connector(&pem);
    let tcp = TcpStream::connect(addr(&h)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let handshaken = Instant::now();
    read_until_closed(&mut tls, IDLE + SLACK).await;
    assert!(handshaken.elapsed() >= IDLE - Duration::from_millis(200));
}

/// A TLS client that trusts only the certificate in `pem`.
pub fn tls_connector(pem: &std::path::Path) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
