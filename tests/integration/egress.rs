//! Egress through proxies, with a real forward proxy process on 127.0.0.1: the environment's proxy
//! variables are ignored; a configured proxy carries deliveries (except `no_proxy` targets) while
//! the SSRF guard still checks every target; refusals name the host, never its address.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use svix::models::{ApplicationIn, EndpointIn, MessageAttemptOut, MessageIn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::receiver::{eventually, Answer, Receiver};
use crate::support::{attempts, fast_delivery_env, Herald};

const WAIT: Duration = Duration::from_secs(15);
const REFUSED: &str = "refused by the address policy";

/// A forward proxy: records the request line of every request, splices `CONNECT` and forwards
/// absolute-form requests to loopback targets, and answers any other target itself (200 "from
/// proxy"), so nothing leaves the machine.
struct Proxy {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(WAIT, serve(conn, log)).await;
                });
            }
        });
        Proxy { addr, seen, task }
    }

    /// The proxy's URL with `host` as its name (a name or 127.0.0.1).
    fn url(&self, host: &str) -> String {
        format!("http://{host}:{}", self.addr.port())
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut conn: TcpStream, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end..].to_vec();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    log.lock().unwrap().push(request_line.clone());
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let loopback = |host: &str| matches!(host, "localhost" | "127.0.0.1");
    if method == "CONNECT" {
        let host = target.rsplit_once(':').map(|(h, _)| h).unwrap_or("");
        if !loopback(host) {
            return conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        }
        let mut upstream = TcpStream::connect(target).await?;
        conn.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        upstream.write_all(&rest).await?;
        tokio::io::copy_bidirectional(&mut conn, &mut upstream).await?;
        return Ok(());
    }
    let Ok(url) = url::Url::parse(target) else {
        return conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    };
    let host = url.host_str().unwrap_or("");
    if !loopback(host) {
        return conn
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nfrom proxy",
            )
            .await;
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let mut upstream = TcpStream::connect((host, port)).await?;
    let path = &url[url::Position::BeforePath..];
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if name != "connection" && name != "proxy-connection" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    // One request per upstream connection: when it closes, so does the splice.
    out.push_str("connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(&rest).await?;
    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await?;
    Ok(())
}

/// An application with one endpoint per URL, and one message sent to all of them.
async fn send_to(h: &Herald, urls: &[String]) -> (String, String) {
    let svix = h.svix();
    let app = svix
        .application()
        .create(ApplicationIn::new("A".into()), None)
        .await
        .unwrap()
        .id;
    for url in urls {
        svix.endpoint()
            .create(app.clone(), EndpointIn::new(url.clone()), None)
            .await
            .unwrap();
    }
    let msg = svix
        .message()
        .create(
            app.clone(),
            MessageIn::new("a.b".into(), json!({"n": 1})),
            None,
        )
        .await
        .unwrap()
        .id;
    (app, msg)
}

/// The message's attempts once every one of `urls` has had one (bounded wait).
async fn tried_each(h: &Herald, app: &str, msg: &str, urls: &[&str]) -> Vec<MessageAttemptOut> {
    let svix = h.svix();
    eventually("a try to every endpoint", WAIT, || async {
        let l = svix
            .message_attempt()
            .list_by_msg(app.to_string(), msg.to_string(), None)
            .await
            .unwrap();
        urls.iter()
            .all(|u| l.data.iter().any(|a| a.url == *u))
            .then_some(l.data)
    })
    .await
}

fn to<'a>(all: &'a [MessageAttemptOut], url: &str) -> Vec<&'a MessageAttemptOut> {
    all.iter().filter(|a| a.url == url).collect()
}

#[tokio::test]
async fn proxy_variables_in_the_environment_do_not_carry_deliveries_past_the_guard() {
    let proxy = Proxy::start().await;
    let rx = Receiver::start(Answer::Status(200)).await;
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    let via = proxy.url("127.0.0.1");
    let mut env = vec![
        ("HERALD_DELIVERY__RETRY_SCHEDULE", "0.2".to_string()),
        ("HERALD_DELIVERY__REQUEST_TIMEOUT", "2".to_string()),
        ("NO_PROXY", String::new()),
        ("no_proxy", String::new()),
    ];
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        env.push((var, via.clone()));
    }
    let h = Herald::start_with(env);
    let local = format!("http://localhost:{port}/");
    let local_tls = format!("https://localhost:{port}/");
    let metadata = "http://metadata.google.internal/computeMetadata/v1/".to_string();
    let (app, msg) = send_to(&h, &[local.clone(), local_tls.clone(), metadata.clone()]).await;
    let all = tried_each(&h, &app, &msg, &[&local, &local_tls, &metadata]).await;

    assert_eq!(
        proxy.seen(),
        Vec::<String>::new(),
        "nothing went to the proxy"
    );
    assert!(rx.received().is_empty(), "nothing reached loopback");
    for url in [&local, &local_tls] {
        for a in to(&all, url) {
            assert_eq!(a.response_status_code, 0);
            assert_eq!(a.response, format!("{REFUSED}: localhost"), "{url}");
            assert!(!a.response.contains("127.0.0.1"), "{}", a.response);
        }
    }
    for a in to(&all, &metadata) {
        // It does not resolve here (or resolves to a link-local address): either way no answer.
        assert_eq!(a.response_status_code, 0, "{}", a.response);
        assert!(!a.response.contains("from proxy"), "{}", a.response);
    }
    // The operator's log keeps what the name resolved to and why it was refused.
    let logs = h.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("delivery refused by the address policy"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{logs}"));
    assert!(
        line.contains("127.0.0.1") && line.contains("loopback"),
        "{line}"
    );
}

#[tokio::test]
async fn a_configured_proxy_carries_deliveries_except_to_no_proxy_hosts() {
    let proxy = Proxy::start().await;
    let env_proxy = Proxy::start().await;
    let via_proxy = Receiver::start(Answer::Status(200)).await;
    let direct = Receiver::start(Answer::Status(200)).await;
    let proxied_port = via_proxy.url.rsplit(':').next().unwrap().to_string();
    let mut env = fast_delivery_env();
    env.extend([
        ("HERALD_DELIVERY__PROXY", proxy.url("localhost")),
        ("HERALD_DELIVERY__NO_PROXY", "127.0.0.1".to_string()),
        ("HTTP_PROXY", env_proxy.url("127.0.0.1")),
        ("http_proxy", env_proxy.url("127.0.0.1")),
    ]);
    let h = Herald::start_with(env);
    let through = format!("http://localhost:{proxied_port}/hook");
    let (app, msg) = send_to(&h, &[through.clone(), format!("{}/hook", direct.url)]).await;
    via_proxy.wait_for(1, WAIT).await;
    direct.wait_for(1, WAIT).await;
    let all = attempts(&h.svix(), &app, &msg, 2).await.data;
    for a in &all {
        assert_eq!(a.response_status_code, 200, "{}: {}", a.url, a.response);
    }
    assert_eq!(
        proxy.seen(),
        vec![format!("POST {through} HTTP/1.1")],
        "the proxy carried the delivery to localhost and not the one to 127.0.0.1 (no_proxy)"
    );
    assert!(
        env_proxy.seen().is_empty(),
        "the environment's proxy is unused"
    );
}

#[tokio::test]
async fn through_a_configured_proxy_the_guard_still_checks_each_target() {
    // No allow-list: the proxy itself is on loopback, and named (so the resolver must let its name
    // through), but connecting to it is not a delivery.
    let proxy = Proxy::start().await;
    let rx = Receiver::start(Answer::Status(200)).await;
    let port = rx.url.rsplit(':').next().unwrap().to_string();
    let env = vec![
        ("HERALD_DELIVERY__RETRY_SCHEDULE", "0.2".to_string()),
        ("HERALD_DELIVERY__REQUEST_TIMEOUT", "2".to_string()),
        ("HERALD_DELIVERY__PROXY", proxy.url("localhost")),
    ];
    let h = Herald::start_with(env);
    let local = format!("http://localhost:{port}/");
    let unresolvable = "http://herald-test.invalid/hook".to_string();
    // A public address the test proxy answers itself (it never forwards off loopback).
    let public = "http://93.184.216.34/hook".to_string();
    let (app, msg) = send_to(&h, &[local.clone(), unresolvable.clone(), public.clone()]).await;
    let all = tried_each(&h, &app, &msg, &[&local, &unresolvable, &public]).await;

    assert_eq!(proxy.seen(), vec![format!("POST {public} HTTP/1.1")]);
    assert!(rx.received().is_empty());
    let ok = to(&all, &public);
    assert_eq!(ok.len(), 1);
    assert_eq!(
        (ok[0].response_status_code, ok[0].response.as_str()),
        (200, "from proxy")
    );
    for a in to(&all, &local) {
        assert_eq!(a.response, format!("{REFUSED}: localhost"));
    }
    for a in to(&all, &unresolvable) {
        assert!(
            a.response.starts_with(&format!(
                "{REFUSED}: herald-test.invalid cannot be resolved"
            )),
            "{}",
            a.response
        );
    }
}
