//! Composition root: check the configuration ([`check`], shared with `herald check-config`), bind,
//! open the store, make sure an admin token exists, serve the API until shutdown, then close the
//! store. Tests and `main` both call [`run`]. The offline commands that need the store opened as
//! `serve` opens it (`herald check`, `herald migrate`) start here too.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, auth::Auth, ApiState};
use crate::config::Config;
use crate::delivery::{ClientError, Delivery};
use crate::domain::{token, Timestamp};
use crate::store::{Store, StoreError, StoreOptions};

/// Name under which the `HERALD_ADMIN_TOKEN` token is stored; a new value replaces the old one.
const ENV_TOKEN_NAME: &str = "admin (HERALD_ADMIN_TOKEN)";
const GENERATED_TOKEN_NAME: &str = "admin (generated)";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("refusing plain HTTP on the non-loopback address {0}: pass --insecure-http (or set server.insecure_http) to allow it")]
    InsecureHttp(SocketAddr),
    #[error("HERALD_ADMIN_TOKEN must be at least {0} characters")]
    WeakAdminToken(usize),
    #[error("cannot generate a token: {0}")]
    Random(String),
    #[error("start-up task failed: {0}")]
    Join(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    MainKey(#[from] crate::main_key::MainKeyError),
    #[error(transparent)]
    Migrate(#[from] crate::migrate::MigrateError),
    #[error(transparent)]
    Remote(#[from] crate::delivery::remote::RemoteError),
    #[error("the data directory {0} is in use by a running Herald: stop it first (migrate writes into a stopped store), then start it again afterwards")]
    InUse(std::path::PathBuf),
}

/// How often expired idempotency records are swept.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Run Herald with `config` until `shutdown` completes. `admin_token` is `HERALD_ADMIN_TOKEN`.
pub async fn run(
    config: Config,
    admin_token: Option<String>,
    main_key: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    let addr = config.server.listen;
    check(&config, admin_token.as_deref(), main_key.as_deref())?;
    // Before anything is written: files made from here on (sled's included) are private.
    crate::fsio::restrict_umask();
    // Bind before anything is made: a first start on a port that is taken must not print an
    // admin token (and store its hash) that no server ever accepted, or leave a key behind.
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| AppError::Bind { addr, source })?;
    tighten_data_dir(&config.server.data_dir)?;
    let tls = load_tls(&config)?;
    let main_key = crate::main_key::load(&config, main_key)?;
    let opts = store_options(&config, main_key);
    let dir = config.server.data_dir.clone();
    // sled replays its log on open, which can take a while on a large store.
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, &opts))
        .await
        .map_err(|e| AppError::Join(e.to_string()))??;
    bootstrap_admin_token(&store, admin_token).await?;
    // One crypto provider for every TLS user in the process (delivery now, the server later).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let delivery = Delivery::start(store.clone(), config.delivery(), metrics.clone())?;
    let sweeper = tokio::spawn(sweep(store.clone(), config.store.clone()));
    let expiry = tokio::spawn(expire_payloads(store.clone()));
    let ticker = tokio::spawn(tick_minutes(metrics.clone()));
    let disk = tokio::spawn(watch_disk(store.clone()));

    let state = Arc::new(ApiState {
        auth: Auth::load(&store)?,
        store: store.clone(),
        metrics: metrics.clone(),
        delivery: delivery.clone(),
        limits: config.limits(),
        max_body_bytes: config.server.max_body_bytes,
        in_flight: Default::default(),
        creating: Default::default(),
        body_read_timeout: std::time::Duration::from_secs_f64(config.server.body_read_timeout),
        backup_dir: config.backup_dir(),
        https: tls.is_some(),
        portal: config.portal.clone(),
    });
    let acceptor = match &tls {
        Some(cert) => {
            cert.watch();
            Some(crate::tls::acceptor(cert.clone())?)
        }
        None => None,
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!("listening on {scheme}://{local}");
    crate::systemd::notify("READY=1");
    let options = config.serve_options();
    let routes = api::routes(state);
    crate::server::serve(listener, routes, acceptor, options, metrics, shutdown).await;
    crate::systemd::notify("STOPPING=1");
    tracing::info!("shutting down: letting running deliveries finish");
    let grace = std::time::Duration::from_secs_f64(config.server.shutdown_grace);
    if !delivery.shutdown(grace).await {
        tracing::warn!("deliveries still running at the end of the grace period will be retried");
    }
    sweeper.abort();
    expiry.abort();
    ticker.abort();
    disk.abort();
    store.close()?;
    Ok(())
}

/// The store's settings from the configuration.
fn store_options(config: &Config, main_key: [u8; 32]) -> StoreOptions {
    StoreOptions {
        cache_capacity_bytes: config.store.cache_capacity_mb * 1024 * 1024,
        main_key,
        min_free_bytes: config.store.min_free_mb * 1024 * 1024,
        ballast_bytes: config.store.ballast_mb * 1024 * 1024,
    }
}

/// `herald migrate`: copy what the Svix-API server at `from` holds into the stopped store of
/// `config` (see `migrate`). Writing offline, not through the running server's API, is what lets
/// every record keep its source id: the API makes new ids, and ids are what operators keep.
/// A dry run on a directory without a store makes none (nor a main key).
pub async fn migrate(
    config: &Config,
    main_key: Option<String>,
    from: &str,
    token: &str,
    ca: Option<&[u8]>,
    dry_run: bool,
) -> Result<crate::migrate::Summary, AppError> {
    let source = crate::delivery::remote::SvixSource::new(from, token, ca)?;
    let dir = config.server.data_dir.clone();
    let has_store = dir.join(crate::store::FORMAT_DIR).is_dir();
    let store = if dry_run && !has_store {
        None
    } else {
        crate::fsio::restrict_umask();
        let opts = store_options(config, crate::main_key::load(config, main_key)?);
        let at = dir.clone();
        let opened = tokio::task::spawn_blocking(move || Store::open(&at, &opts))
            .await
            .map_err(|e| AppError::Join(e.to_string()))?;
        match opened {
            Ok(s) => Some(s),
            Err(StoreError::Locked(p)) => return Err(AppError::InUse(p)),
            Err(e) => return Err(e.into()),
        }
    };
    let opts = crate::migrate::Options {
        dry_run,
        limits: config.limits(),
    };
    let result = crate::migrate::run(&source, store.as_ref(), &opts).await;
    if let Some(s) = store {
        s.close()?;
    }
    Ok(result?)
}

/// `herald check`: verify (and with `repair`, fix) the stopped store in `data_dir`.
pub fn check_store(
    data_dir: &std::path::Path,
    repair: bool,
) -> Result<crate::store::CheckReport, AppError> {
    Ok(crate::store::check(data_dir, repair)?)
}

/// Every check `serve` makes before it binds or writes anything, beyond the configuration's own
/// rules (applied when it was loaded): the one validation `herald check-config` runs too. It
/// reads (the main key, TLS files) but makes nothing.
pub fn check(
    config: &Config,
    admin_token: Option<&str>,
    main_key: Option<&str>,
) -> Result<(), AppError> {
    if admin_token.is_some_and(|t| !t.is_empty() && t.len() < token::MIN_OPERATOR_TOKEN_LEN) {
        return Err(AppError::WeakAdminToken(token::MIN_OPERATOR_TOKEN_LEN));
    }
    crate::main_key::check(config, main_key.map(str::to_string))?;
    let t = &config.tls;
    if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
        crate::tls::Reloadable::load(crate::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })?;
    }
    let addr = config.server.listen;
    let tls = t.cert_file.is_some() || t.self_signed;
    if !tls && !addr.ip().is_loopback() && !config.server.insecure_http {
        return Err(AppError::InsecureHttp(addr));
    }
    Ok(())
}

/// Make the data directory and what Herald keeps in it private (0700 directories, 0600 files),
/// as an earlier run under a wider umask, or a copy, may have left them. Only Herald's own
/// entries are walked: the directory may hold other things (or be a home directory).
fn tighten_data_dir(dir: &std::path::Path) -> Result<(), AppError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let io = |e: std::io::Error| AppError::Store(StoreError::Io(e));
    let mut changed =
        crate::fsio::restrict_tree(&dir.join(crate::store::FORMAT_DIR)).map_err(io)?;
    for name in DATA_DIR_FILES {
        changed += crate::fsio::restrict_tree(&dir.join(name)).map_err(io)?;
    }
    // The directory itself, without walking whatever else it holds.
    let meta = std::fs::metadata(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o777 != crate::fsio::PRIVATE_DIR {
            std::fs::set_permissions(
                dir,
                std::fs::Permissions::from_mode(crate::fsio::PRIVATE_DIR),
            )
            .map_err(io)?;
            changed += 1;
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    if changed > 0 {
        tracing::warn!(
            dir = %dir.display(),
            entries = changed,
            "made the data directory private: directories are now 0700, files 0600"
        );
    }
    Ok(())
}

/// What Herald keeps in the data directory besides the store: the main key (when kept there),
/// the self-signed certificate's directory and the emergency ballast.
const DATA_DIR_FILES: [&str; 3] = ["main.key", "tls", crate::store::BALLAST_FILE];

/// The server certificate, if TLS is configured (files, or self-signed under the data directory).
fn load_tls(config: &Config) -> Result<Option<Arc<crate::tls::Reloadable>>, AppError> {
    let t = &config.tls;
    let files = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => crate::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ if t.self_signed => {
            crate::tls::self_signed(&config.server.data_dir.join("tls"), &t.hostnames)?
        }
        _ => return Ok(None),
    };
    let cert = crate::tls::Reloadable::load(files)?;
    tracing::info!(sha256 = %cert.fingerprint(), "TLS certificate loaded");
    if t.self_signed {
        eprintln!(
            "Self-signed TLS certificate, SHA-256 fingerprint: {}",
            cert.fingerprint()
        );
    }
    Ok(Some(cert))
}

/// Mark minute boundaries in the dashboard's per-minute counts, also when nobody is looking.
async fn tick_minutes(metrics: Arc<crate::metrics::Metrics>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        every.tick().await;
        metrics.tick(Timestamp::now().millis());
    }
}

/// How often the disk is looked after (ballast, recovery after a full disk).
const DISK_CARE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keep the emergency ballast, and notice the store failing to commit (or working again) even
/// when no writer is waiting, so readiness tells the truth on an idle server.
async fn watch_disk(store: Store) {
    loop {
        store.maintain_storage().await;
        tokio::time::sleep(DISK_CARE_EVERY).await;
    }
}

/// Periodic housekeeping: drop expired idempotency records, messages past retention with
/// their attempts, and the records of background tasks ended longer ago than theirs.
async fn sweep(store: Store, config: crate::config::StoreConfig) {
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    loop {
        let s = store.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let keys = s.purge_expired_idempotency()?;
            let tokens = s.purge_expired_app_tokens(Timestamp::now())?;
            if tokens > 0 {
                tracing::info!(app_tokens = tokens, "expired application tokens removed");
            }
            let days_ago = |days: u32| Timestamp::now().plus_seconds(-86400 * i64::from(days));
            let msgs = match config.retention_days {
                0 => 0,
                days => s.purge_messages_before(days_ago(days))?,
            };
            let tasks = match config.task_retention_days {
                0 => 0,
                days => s.purge_tasks_ended_before(days_ago(days))?,
            };
            if tasks > 0 {
                tracing::info!(background_tasks = tasks, "ended background tasks removed");
            }
            Ok::<_, StoreError>((keys, msgs))
        })
        .await;
        match swept {
            Ok(Ok((keys, msgs))) if keys + msgs > 0 => {
                tracing::info!(idempotency_keys = keys, messages = msgs, "retention sweep")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "retention sweep failed"),
            _ => {}
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// How often payloads whose own retention ended are expunged, and how many per store call.
const EXPIRY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const EXPIRY_BATCH: usize = 1000;

/// Expunge the payloads of messages sent with a retention of their own
/// (`payloadRetentionHours`, `payloadRetentionPeriod`) once it ends: within a minute after.
async fn expire_payloads(store: Store) {
    loop {
        tokio::time::sleep(EXPIRY_EVERY).await;
        loop {
            let s = store.clone();
            let done = tokio::task::spawn_blocking(move || {
                s.expunge_expired_payloads(Timestamp::now(), EXPIRY_BATCH)
            })
            .await;
            match done {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => tracing::info!(messages = n, "expired payloads expunged"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "expunging expired payloads failed");
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

/// Make sure some admin token can reach the API: the one from `HERALD_ADMIN_TOKEN` (its length
/// checked already), or, on first start without it, a generated one printed once to stderr (never
/// logged). Later starts say how to get a token, since the printed one cannot be shown again.
async fn bootstrap_admin_token(store: &Store, from_env: Option<String>) -> Result<(), AppError> {
    let existing = store.tokens()?;
    if let Some(t) = from_env.filter(|t| !t.is_empty()) {
        let record = token::record_for(&t, ENV_TOKEN_NAME);
        let current = existing.iter().any(|k| k.hash == record.hash);
        if !current {
            store.revoke_token(ENV_TOKEN_NAME).await?;
            store.add_token(&record).await?;
        }
        return Ok(());
    }
    if existing.is_empty() {
        let (t, record) =
            token::generate(GENERATED_TOKEN_NAME).map_err(|e| AppError::Random(e.to_string()))?;
        store.add_token(&record).await?;
        eprintln!(
            "\nHerald admin API token (shown once, store it now):\n\n    {t}\n\n\
             Use it as `Authorization: Bearer <token>`. Set HERALD_ADMIN_TOKEN to choose your own.\n"
        );
    } else {
        tracing::info!(
            tokens = existing.len(),
            "API tokens exist (the generated admin token was printed once, at first start); \
             to get a new one, stop Herald and run `herald token create --name NAME`, or start it \
             with HERALD_ADMIN_TOKEN set"
        );
    }
    Ok(())
}
