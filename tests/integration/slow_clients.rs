//! Slow and stalled clients: a request body that stops or trickles gets 408 and its connection is
//! closed once `server.body_read_timeout` has passed, headers that stop and kept-alive connections
//! that sit idle are closed after `server.header_read_timeout`, and `/api/v1/health` keeps
//! answering meanwhile. The timeouts are shortened to one second here.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{http, read_until_closed, Herald, TOKEN};

const TIMEOUT: Duration = Duration::from_secs(1);
/// How long past the timeout the server may take to act (a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(5);

fn start() -> Herald {
    Herald::start_with(vec![
        ("HERALD_SERVER__HEADER_READ_TIMEOUT", "1".to_string()),
        ("HERALD_SERVER__BODY_READ_TIMEOUT", "1".to_string()),
    ])
}

async fn connect(h: &Herald) -> TcpStream {
    TcpStream::connect(h.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

fn post_head(declared_len: usize) -> String {
    format!(
        "POST /api/v1/app HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {declared_len}\r\n\r\n"
    )
}

async fn health_answers(h: &Herald) {
    let started = Instant::now();
    let status = http()
        .get(h.api("/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_the_connection_is_closed() {
    let h = start();
    // Several at once, to show they cost the server nothing that /health would notice.
    let mut conns = Vec::new();
    for _ in 0..8 {
        let mut c = connect(&h).await;
        c.write_all(post_head(100).as_bytes()).await.unwrap();
        c.write_all(br#"{"name":"#).await.unwrap();
        conns.push(c);
    }
    let started = Instant::now();
    health_answers(&h).await;
    for c in &mut conns {
        let answer =
            String::from_utf8_lossy(&read_until_closed(c, TIMEOUT + SLACK).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    }
    assert!(started.elapsed() >= TIMEOUT - Duration::from_millis(100));
    health_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_bounded_in_all_not_per_chunk() {
    let h = start();
    let mut c = connect(&h).await;
    c.write_all(post_head(1000).as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms: each gap is well under the timeout, the whole body never arrives.
    let mut closed_after = None;
    for _ in 0..100 {
        if c.write_all(b" ").await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf)).await
        {
            let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let took = closed_after.expect("the trickling request was never cut off");
    assert!(took < TIMEOUT + SLACK, "cut off after {took:?}");
    health_answers(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_headers_and_idle_keep_alive_connections_are_closed() {
    let h = start();
    let mut stalled = connect(&h).await;
    stalled
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nhost: her")
        .await
        .unwrap();

    // A kept-alive connection: one full request, then silence.
    let mut idle = connect(&h).await;
    idle.write_all(b"GET /api/v1/health HTTP/1.1\r\nhost: herald\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 204"), "{first}");

    let started = Instant::now();
    health_answers(&h).await;
    read_until_closed(&mut stalled, TIMEOUT + SLACK).await;
    read_until_closed(&mut idle, TIMEOUT + SLACK).await;
    assert!(started.elapsed() >= TIMEOUT - Duration::from_millis(500));
    health_answers(&h).await;
}
