//! Built-in TLS (rustls, ring): the server certificate from PEM files (chains; RSA, ECDSA or
//! Ed25519 keys) or a self-signed one generated on first start and kept in the data directory
//! (written crash-safely, the key with mode 0600).
//! The certificate is swapped without a restart on SIGHUP or when its files change; a reload that
//! fails keeps the certificate in use. ALPN offers HTTP/2 and HTTP/1.1.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// How often the certificate files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("the key in {path} is not a usable RSA, ECDSA or Ed25519 key: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificate in use, replaceable while connections are served.
#[derive(Debug)]
pub struct Reloadable {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl Reloadable {
    pub fn load(files: TlsFiles) -> Result<Arc<Reloadable>, TlsError> {
        let key = load_pair(&files)?;
        Ok(Arc::new(Reloadable {
            files,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Read the files again; on error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_pair(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// SHA-256 of the leaf certificate, as `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        let cur = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        cur.cert
            .first()
            .map(|c| fingerprint(c.as_ref()))
            .unwrap_or_default()
    }

    /// Reload on SIGHUP and whenever the files change, until the process ends.
    pub fn watch(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut seen = stamp(&me.files);
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let signalled = async {
                    match hup.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let signalled = std::future::pending::<()>();
                let why = tokio::select! {
                    () = signalled => "SIGHUP",
                    () = tokio::time::sleep(WATCH_EVERY) => {
                        let now = stamp(&me.files);
                        if now == seen { continue; }
                        seen = now;
                        "file change"
                    }
                };
                match me.reload() {
                    Ok(()) => {
                        tracing::info!(trigger = why, fingerprint = %me.fingerprint(), "TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(trigger = why, error = %e, "TLS certificate reload failed; keeping the current one")
                    }
                }
            }
        });
    }
}

fn stamp(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [&files.cert, &files.key]
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn load_pair(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| read(&files.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| read(&files.key, &e))?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: files.key.clone(),
            detail: e.to_string(),
        })?;
    let pair = CertifiedKey::new(certs, signer);
    pair.keys_match().map_err(|_| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?;
    Ok(pair)
}

/// The self-signed certificate under `dir` (made for `hostnames` on first use, then kept).
pub fn self_signed(dir: &Path, hostnames: &[String]) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles {
        cert: dir.join("self-signed-cert.pem"),
        key: dir.join("self-signed-key.pem"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let made = rcgen::generate_simple_self_signed(hostnames.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let gen_err = |e: std::io::Error| TlsError::Generate(e.to_string());
    crate::fsio::create_dir_all(dir).map_err(gen_err)?;
    // Each file appears whole or not at all; the certificate goes last, so a crash in between
    // leaves no certificate and the next start makes a new pair.
    let key = made.signing_key.serialize_pem();
    crate::fsio::write_atomic(&files.key, key.as_bytes(), 0o600).map_err(gen_err)?;
    crate::fsio::write_atomic(&files.cert, made.cert.pem().as_bytes(), 0o644).map_err(gen_err)?;
    Ok(files)
}

/// The acceptor serving `cert` with HTTP/2 and HTTP/1.1 offered by ALPN.
pub fn acceptor(cert: Arc<Reloadable>) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificates_are_made_once_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let files = self_signed(dir.path(), &["localhost".into()]).unwrap();
        let first = std::fs::read(&files.cert).unwrap();
        let again = self_signed(dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(
            std::fs::read(&again.cert).unwrap(),
            first,
            "kept, not remade"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let r = Reloadable::load(files).unwrap();
        assert_eq!(r.fingerprint().len(), 32 * 3 - 1);
    }

    #[test]
    fn ecdsa_and_ed25519_keys_load() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let files = TlsFiles {
                cert: dir.path().join("c.pem"),
                key: dir.path().join("k.pem"),
            };
            std::fs::write(&files.cert, cert.pem()).unwrap();
            std::fs::write(&files.key, key.serialize_pem()).unwrap();
            Reloadable::load(files).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
    }

    #[test]
    fn mismatched_or_missing_files_are_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let fa = self_signed(a.path(), &["a.example".into()]).unwrap();
        let fb = self_signed(b.path(), &["b.example".into()]).unwrap();
        let mixed = TlsFiles {
            cert: fa.cert.clone(),
            key: fb.key.clone(),
        };
        assert!(matches!(
            Reloadable::load(mixed),
            Err(TlsError::Mismatch { .. })
        ));
        let missing = TlsFiles {
            cert: a.path().join("nope.pem"),
            key: fa.key.clone(),
        };
        assert!(matches!(
            Reloadable::load(missing),
            Err(TlsError::Read { .. })
        ));
        let empty = a.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let none = TlsFiles {
            cert: empty,
            key: fa.key,
        };
        assert!(matches!(
            Reloadable::load(none),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
