//! Built-in TLS with the real binary: a certificate signed by a test CA, served over HTTP/1.1 and
//! HTTP/2 (ALPN); swapped on SIGHUP without a restart; plain HTTP and garbage on the TLS port fail
//! cleanly while the server keeps serving; a self-signed certificate made on first start.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::support::receiver::eventually;
use crate::support::{Herald, Launch};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A server certificate for localhost and 127.0.0.1, written to `dir`; returns its DER.
    fn issue(&self, dir: &Path) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        // Write the key first and the certificate last: the pair on disk is complete once the
        // certificate changes.
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        cert.der().to_vec()
    }

    fn client(&self, http1_only: bool) -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root = reqwest::Certificate::from_pem(self.issuer.pem().as_bytes()).unwrap();
        let mut b = reqwest::Client::builder()
            .add_root_certificate(root)
            .tls_info(true);
        if http1_only {
            b = b.http1_only();
        }
        b.build().unwrap()
    }
}

fn tls_launch(dir: &Path) -> Launch<'_> {
    let cert = dir.join("cert.pem").to_string_lossy().into_owned();
    let key = dir.join("key.pem").to_string_lossy().into_owned();
    let args: Vec<&'static str> = vec![
        "--tls-cert",
        Box::leak(cert.into_boxed_str()),
        "--tls-key",
        Box::leak(key.into_boxed_str()),
    ];
    Launch {
        args,
        ..Launch::new(dir)
    }
}

fn peer_cert(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .map(<[u8]>::to_vec)
        .expect("TLS info")
}

#[tokio::test]
async fn https_over_http1_and_http2_with_a_ca_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let der = ca.issue(dir.path());
    let h = Herald::launch(&tls_launch(dir.path())).unwrap();
    assert!(h.url.starts_with("https://127.0.0.1:"), "{}", h.url);

    let r = ca.client(true).get(h.api("/health")).send().await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(peer_cert(&r), der);

    let r = ca
        .client(false)
        .get(h.api("/app"))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN picks HTTP/2");

    // The admin UI comes over the same TLS port.
    let ui = ca
        .client(false)
        .get(format!("{}/", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("/js/main.js"));

    // A client that does not trust the CA is refused.
    let untrusting = crate::support::http();
    assert!(untrusting.get(h.api("/health")).send().await.is_err());
}

#[tokio::test]
async fn the_certificate_is_swapped_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let first = ca.issue(dir.path());
    let h = Herald::launch(&tls_launch(dir.path())).unwrap();
    let r = ca.client(true).get(h.api("/health")).send().await.unwrap();
    assert_eq!(peer_cert(&r), first);

    let second = ca.issue(dir.path());
    assert_ne!(first, second);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &h.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(
        "the new certificate served",
        Duration::from_secs(15),
        || async {
            // A fresh client: a new connection, a new handshake.
            let r = ca.client(true).get(h.api("/health")).send().await.ok()?;
            (peer_cert(&r) == second).then_some(())
        },
    )
    .await;

    // A broken pair is refused and the current certificate stays.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &h.pid().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = ca.client(true).get(h.api("/health")).send().await.unwrap();
    assert_eq!(peer_cert(&r), second);
    assert!(h.logs().contains("reload failed"), "{}", h.logs());
}

#[tokio::test]
async fn plain_http_and_garbage_on_the_tls_port_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path());
    let h = Herald::launch(&tls_launch(dir.path())).unwrap();
    let addr = h.url.trim_start_matches("https://").to_string();

    let plain = crate::support::http()
        .get(format!("http://{addr}/api/v1/health"))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP must not be served"
    );

    for junk in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0x16, 0x03, 0x01, 0xff, 0xff][..],
    ] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(junk);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf); // closed by the server, or a TLS alert
    }
    let r = ca.client(false).get(h.api("/health")).send().await.unwrap();
    assert!(r.status().is_success(), "the server keeps serving");
}

#[tokio::test]
async fn a_self_signed_certificate_is_made_once_and_its_fingerprint_printed() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch {
        args: vec!["--tls-self-signed"],
        ..Launch::new(dir.path())
    };
    let mut h = Herald::launch(&launch).unwrap();
    let pem = std::fs::read(dir.path().join("tls/self-signed-cert.pem")).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let url = h.url.replace("127.0.0.1", "localhost");
    assert!(client
        .get(format!("{url}/api/v1/health"))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let logs = h.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("SHA-256 fingerprint"))
        .expect("fingerprint printed");
    let fp = line.rsplit(' ').next().unwrap();
    assert_eq!(fp.len(), 95, "{fp}");
    assert!(h.terminate().success());
    let h = Herald::launch(&launch).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("tls/self-signed-cert.pem")).unwrap(),
        pem,
        "kept across restarts"
    );
    eventually(
        "the same fingerprint printed again",
        Duration::from_secs(5),
        || async { h.logs().contains(fp).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_certificate_is_swapped_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    ca.issue(dir.path());
    let h = Herald::launch(&tls_launch(dir.path())).unwrap();
    // Let the watcher take its first look, then replace the files (no signal).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = ca.issue(dir.path());
    eventually(
        "the changed files served",
        Duration::from_secs(20),
        || async {
            let r = ca.client(true).get(h.api("/health")).send().await.ok()?;
            (peer_cert(&r) == second).then_some(())
        },
    )
    .await;
    assert!(h.logs().contains("file change"), "{}", h.logs());
}
