//! Configuration: embedded defaults < TOML file (`--config`) < `HERALD_<SECTION>__<KEY>` variables <
//! command-line flags, merged by figment and validated into typed values. An invalid or unknown key
//! is refused with a message that names it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::validate::Limits;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {key}: {msg}")]
    Invalid { key: &'static str, msg: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    pub delivery: DeliveryConfig,
    pub portal: PortalConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Allow plain HTTP on a non-loopback address.
    pub insecure_http: bool,
    /// Seconds that running deliveries and requests may take to finish at shutdown.
    #[serde(serialize_with = "whole_seconds")]
    pub shutdown_grace: f64,
    /// Seconds a client may take to send a request's headers; on HTTP/1 also the longest idle
    /// wait for the next request on a kept-alive connection.
    #[serde(serialize_with = "whole_seconds")]
    pub header_read_timeout: f64,
    /// Seconds a client may take to send a whole request body (408 beyond).
    #[serde(serialize_with = "whole_seconds")]
    pub body_read_timeout: f64,
    /// Seconds a connection may stay open with no request in progress (before its first byte,
    /// after a TLS handshake, between requests, HTTP/2 with no open stream).
    #[serde(serialize_with = "whole_seconds")]
    pub idle_timeout: f64,
    /// Most client connections open at once; more are closed at once. 0 derives it from the
    /// open-file limit.
    pub max_connections: usize,
    /// Which requests get an access-log line: `all`, `errors` (4xx and 5xx; the others at
    /// debug) or `off`.
    pub access_log: crate::server::AccessLog,
}

/// Built-in TLS: PEM files, or a self-signed certificate made on first start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Generate a certificate for `hostnames` on first start and keep it in the data directory.
    pub self_signed: bool,
    /// Names the self-signed certificate is made for.
    pub hostnames: Vec<String>,
    /// `Strict-Transport-Security: max-age=<seconds>` on every answer over TLS; 0 sends none.
    pub hsts: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            self_signed: false,
            hostnames: vec!["localhost".to_string()],
            hsts: 31_536_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// sled's page cache, in MiB.
    pub cache_capacity_mb: u64,
    /// Days messages (with their attempts) are kept; 0 keeps them forever.
    pub retention_days: u32,
    /// Days a background task's record is kept once it ended (finished or failed); 0 keeps them
    /// forever. Running tasks are never removed.
    pub task_retention_days: u32,
    /// The key that seals endpoint secrets [default: main.key in the data directory].
    pub main_key_file: Option<PathBuf>,
    /// MiB the data directory's file system keeps free: below it new records get 507 (delivery
    /// progress may use half of it); 0 turns the check off.
    pub min_free_mb: u64,
    /// MiB of emergency ballast kept in the data directory, released when the disk fills so that
    /// Herald can still start; 0 keeps none.
    pub ballast_mb: u64,
    /// The only directory backups are written to (each in a new sub-directory named by the
    /// request) [default: `backups` next to the data directory].
    pub backup_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_url_len: usize,
    pub max_headers: usize,
    pub max_header_value_len: usize,
    pub max_metadata_entries: usize,
    /// Payload bytes one page of a message list holds at most.
    pub max_list_bytes: usize,
    /// Records one page of a list reads at most.
    pub max_list_scan: usize,
    /// Least seconds ahead a message's `deliverAt` may be (Svix: 60; at most 86400).
    pub deliver_at_min_lead: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Seconds to wait before each retry; its length is the number of retries.
    #[serde(deserialize_with = "seconds_list", serialize_with = "seconds_csv")]
    pub retry_schedule: Vec<f64>,
    /// CIDRs that deliveries may reach despite the SSRF guard.
    #[serde(deserialize_with = "string_list")]
    pub allowed_cidrs: Vec<String>,
    /// Send deliveries through this `http://` or `https://` proxy. Without it no proxy is used,
    /// whatever the environment says.
    pub proxy: Option<String>,
    /// Hosts, domains, IP addresses or CIDRs that deliveries reach directly, not via `proxy`.
    #[serde(deserialize_with = "string_list")]
    pub no_proxy: Vec<String>,
    /// Seconds before a delivery request times out (at most 30).
    #[serde(serialize_with = "whole_seconds")]
    pub request_timeout: f64,
    /// Least seconds to wait before retrying after a timeout.
    #[serde(serialize_with = "whole_seconds")]
    pub timeout_retry_floor: f64,
    /// Most delivery requests in flight at once, in all.
    pub max_concurrency: usize,
    /// Most delivery requests in flight at once to one endpoint.
    pub endpoint_concurrency: usize,
    /// When a failing endpoint answers 2xx again, bring its waiting retries forward.
    pub fast_recovery: bool,
    /// Seconds of exhausted messages with no success after which an endpoint is disabled.
    #[serde(serialize_with = "whole_seconds")]
    pub disable_after: f64,
    /// Also send the signature headers under their `svix-` names.
    pub svix_headers: bool,
    /// Failed tries of a message after which the operational event `message.attempt.failing` is sent.
    pub failing_event_after: u32,
    /// Records a background task (recover, replay) reads per step.
    pub task_page_size: usize,
}

/// The customer portal (`/portal/`): who may frame it, and the operator's branding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// CSP `frame-ancestors` of the portal's pages: the sites that may show it in an iframe,
    /// space-separated (`'none'`: none; `'self'`; `https://app.example.com`; `https://*.example.com`).
    pub frame_ancestors: String,
    /// Named on the portal's pages ("ask <name> for a new link").
    pub operator_name: Option<String>,
    /// An `https://` (or `http://`) image shown in the portal's header.
    pub logo_url: Option<String>,
    /// The portal's accent colour, `#rgb` or `#rrggbb`.
    pub accent: Option<String>,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            frame_ancestors: "'none'".into(),
            operator_name: None,
            logo_url: None,
            accent: None,
        }
    }
}

impl PortalConfig {
    /// The `frame-ancestors` sources, checked so that a value can never end the directive or add
    /// another one (no `;`, `,` or quotes beyond the two keywords).
    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, msg: String| Err(ConfigError::Invalid { key, msg });
        let sources: Vec<&str> = self.frame_ancestors.split_whitespace().collect();
        if sources.is_empty() {
            return bad(
                "portal.frame_ancestors",
                "must not be empty ('none' forbids every frame)".into(),
            );
        }
        for s in &sources {
            let keyword = matches!(*s, "'none'" | "'self'");
            let plain = s.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, '-' | '.' | '_' | '~' | ':' | '/' | '*' | '%')
            });
            if !(keyword || plain && s.chars().any(|c| c.is_ascii_alphanumeric())) {
                return bad(
                    "portal.frame_ancestors",
                    format!("{s:?} is not a source such as 'self' or https://app.example.com"),
                );
            }
        }
        if sources.len() > 1 && sources.contains(&"'none'") {
            return bad(
                "portal.frame_ancestors",
                "'none' cannot be combined with other sources".into(),
            );
        }
        if let Some(name) = &self.operator_name {
            let n = name.trim().chars().count();
            if n == 0 || n > 80 || name.chars().any(char::is_control) {
                return bad(
                    "portal.operator_name",
                    "must be 1 to 80 characters on one line".into(),
                );
            }
        }
        if let Some(logo) = &self.logo_url {
            let ok = url::Url::parse(logo).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            });
            if !ok || logo.len() > 2048 {
                return bad(
                    "portal.logo_url",
                    "must be an https:// (or http://) URL of an image".into(),
                );
            }
        }
        if let Some(c) = &self.accent {
            let hex = c.strip_prefix('#').unwrap_or("");
            if !(matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit())) {
                return bad(
                    "portal.accent",
                    format!("{c:?} is not a colour such as #3b5bdb or #35d"),
                );
            }
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./herald-data"),
            max_body_bytes: 1024 * 1024,
            insecure_http: false,
            shutdown_grace: 30.0,
            header_read_timeout: 30.0,
            body_read_timeout: 30.0,
            idle_timeout: 60.0,
            max_connections: 0,
            access_log: crate::server::AccessLog::default(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity_mb: 64,
            retention_days: 90,
            task_retention_days: 30,
            main_key_file: None,
            min_free_mb: 128,
            ballast_mb: 64,
            backup_dir: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_url_len: l.max_url_len,
            max_headers: l.max_headers,
            max_header_value_len: l.max_header_value_len,
            max_metadata_entries: l.max_metadata_entries,
            max_list_bytes: l.max_list_bytes,
            max_list_scan: l.max_list_scan,
            deliver_at_min_lead: l.deliver_at_min_lead_secs,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_schedule: vec![5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
            allowed_cidrs: Vec::new(),
            proxy: None,
            no_proxy: Vec::new(),
            request_timeout: 15.0,
            timeout_retry_floor: 60.0,
            max_concurrency: 512,
            endpoint_concurrency: 64,
            fast_recovery: true,
            disable_after: 5.0 * 86400.0,
            svix_headers: false,
            failing_event_after: 4,
            task_page_size: 1000,
        }
    }
}

/// Values given on the command line; they override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub insecure_http: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_self_signed: bool,
}

impl Config {
    /// Where backups go: `store.backup_dir`, else `backups` beside the data directory (outside
    /// it, so a backup is never inside the store it copies).
    pub fn backup_dir(&self) -> PathBuf {
        if let Some(d) = &self.store.backup_dir {
            return d.clone();
        }
        let data = std::path::absolute(&self.server.data_dir)
            .unwrap_or_else(|_| self.server.data_dir.clone());
        match data.parent() {
            Some(p) => p.join("backups"),
            None => data.join("backups"),
        }
    }

    /// Merge defaults, the file, the environment (`vars`) and the flags, then validate.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        // Where each key not from the file came from, so that an error can name it.
        let mut origin = Origins::default();
        // Only HERALD_<SECTION>__<KEY>: single-word variables such as HERALD_ADMIN_TOKEN are not
        // config. Values are parsed as figment parses environment values ("25" is a number).
        for (k, v) in vars {
            let Some(rest) = k.strip_prefix("HERALD_") else {
                continue;
            };
            if !rest.contains("__") {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace("__", ".");
            let value: figment::value::Value = v.parse().unwrap_or_else(|never| match never {});
            origin.insert(key.clone(), k.clone());
            fig = fig.merge((key, value));
        }
        let mut given: Vec<(&str, &str, figment::value::Value)> = Vec::new();
        if let Some(listen) = flags.listen {
            given.push(("server.listen", "--listen", listen.to_string().into()));
        }
        if let Some(dir) = &flags.data_dir {
            given.push(("server.data_dir", "--data-dir", path_value(dir)));
        }
        if flags.insecure_http {
            given.push(("server.insecure_http", "--insecure-http", true.into()));
        }
        if let Some(p) = &flags.tls_cert {
            given.push(("tls.cert_file", "--tls-cert", path_value(p)));
        }
        if let Some(p) = &flags.tls_key {
            given.push(("tls.key_file", "--tls-key", path_value(p)));
        }
        if flags.tls_self_signed {
            given.push(("tls.self_signed", "--tls-self-signed", true.into()));
        }
        for (key, name, value) in given {
            origin.insert(key.to_string(), name.to_string());
            fig = fig.merge((key, value));
        }
        let config: Config = fig
            .extract()
            .map_err(|e| ConfigError::Parse(describe(e, &origin)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, msg: &str| {
            Err(ConfigError::Invalid {
                key,
                msg: msg.to_string(),
            })
        };
        if !(1024..=64 * 1024 * 1024).contains(&self.server.max_body_bytes) {
            return bad("server.max_body_bytes", "must be between 1024 and 67108864");
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return bad("server.data_dir", "must not be empty");
        }
        if !(1..=65536).contains(&self.store.cache_capacity_mb) {
            return bad("store.cache_capacity_mb", "must be between 1 and 65536");
        }
        if self.store.min_free_mb > 1024 * 1024 {
            return bad("store.min_free_mb", "must be at most 1048576 (1 TiB)");
        }
        if self
            .store
            .backup_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return bad("store.backup_dir", "must not be empty");
        }
        if self.store.ballast_mb > 1024 * 1024 {
            return bad("store.ballast_mb", "must be at most 1048576 (1 TiB)");
        }
        if !(16..=65536).contains(&self.limits.max_url_len) {
            return bad("limits.max_url_len", "must be between 16 and 65536");
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.limits.max_list_bytes) {
            return bad(
                "limits.max_list_bytes",
                "must be between 65536 and 1073741824",
            );
        }
        if self.limits.deliver_at_min_lead > 86_400 {
            return bad("limits.deliver_at_min_lead", "must be at most 86400");
        }
        if !(10..=1_000_000).contains(&self.limits.max_list_scan) {
            return bad("limits.max_list_scan", "must be between 10 and 1000000");
        }
        let d = &self.delivery;
        if d.retry_schedule.is_empty() {
            return bad("delivery.retry_schedule", "must hold at least one delay");
        }
        if d.retry_schedule
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0 && *s <= 30.0 * 86400.0))
        {
            return bad(
                "delivery.retry_schedule",
                "delays must be seconds in (0, 2592000]",
            );
        }
        if !(d.request_timeout.is_finite() && d.request_timeout > 0.0 && d.request_timeout <= 30.0)
        {
            return bad("delivery.request_timeout", "must be seconds in (0, 30]");
        }
        if !(d.timeout_retry_floor.is_finite() && (0.0..=86400.0).contains(&d.timeout_retry_floor))
        {
            return bad(
                "delivery.timeout_retry_floor",
                "must be seconds in [0, 86400]",
            );
        }
        if !(1..=65536).contains(&d.max_concurrency) {
            return bad("delivery.max_concurrency", "must be between 1 and 65536");
        }
        if !(1..=4096).contains(&d.endpoint_concurrency) {
            return bad(
                "delivery.endpoint_concurrency",
                "must be between 1 and 4096",
            );
        }
        if !(d.disable_after.is_finite() && d.disable_after >= 0.0) {
            return bad("delivery.disable_after", "must be a number of seconds");
        }
        if d.failing_event_after == 0 {
            return bad("delivery.failing_event_after", "must be at least 1");
        }
        if !(1..=100_000).contains(&d.task_page_size) {
            return bad("delivery.task_page_size", "must be between 1 and 100000");
        }
        if !(self.server.shutdown_grace.is_finite()
            && (0.0..=3600.0).contains(&self.server.shutdown_grace))
        {
            return bad("server.shutdown_grace", "must be seconds in [0, 3600]");
        }
        let read_timeout = |t: f64| t.is_finite() && t > 0.0 && t <= 3600.0;
        if !read_timeout(self.server.header_read_timeout) {
            return bad("server.header_read_timeout", "must be seconds in (0, 3600]");
        }
        if !read_timeout(self.server.body_read_timeout) {
            return bad("server.body_read_timeout", "must be seconds in (0, 3600]");
        }
        if !read_timeout(self.server.idle_timeout) {
            return bad("server.idle_timeout", "must be seconds in (0, 3600]");
        }
        if self.server.max_connections > 1_048_576 {
            return bad(
                "server.max_connections",
                "must be at most 1048576 (0 derives it from the open-file limit)",
            );
        }
        let t = &self.tls;
        if t.cert_file.is_some() != t.key_file.is_some() {
            return bad(
                "tls.cert_file",
                "tls.cert_file and tls.key_file go together",
            );
        }
        if t.self_signed && t.cert_file.is_some() {
            return bad(
                "tls.self_signed",
                "choose certificate files or a self-signed certificate, not both",
            );
        }
        if t.self_signed && t.hostnames.is_empty() {
            return bad(
                "tls.hostnames",
                "a self-signed certificate needs at least one hostname",
            );
        }
        for c in &d.allowed_cidrs {
            if c.parse::<ipnet::IpNet>().is_err() {
                return Err(ConfigError::Invalid {
                    key: "delivery.allowed_cidrs",
                    msg: format!("{c:?} is not a CIDR such as 127.0.0.0/8"),
                });
            }
        }
        if let Some(p) = &d.proxy {
            let ok = url::Url::parse(p).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            });
            if !ok {
                return bad(
                    "delivery.proxy",
                    "must be an http:// or https:// URL such as http://proxy.internal:3128",
                );
            }
        } else if !d.no_proxy.is_empty() {
            return bad("delivery.no_proxy", "has no effect without delivery.proxy");
        }
        if let Some(h) = d.no_proxy.iter().find(|h| h.contains(char::is_whitespace)) {
            return Err(ConfigError::Invalid {
                key: "delivery.no_proxy",
                msg: format!("{h:?} is not a host, domain, IP address or CIDR"),
            });
        }
        self.portal.check()
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_url_len: self.limits.max_url_len,
            max_headers: self.limits.max_headers,
            max_header_value_len: self.limits.max_header_value_len,
            max_metadata_entries: self.limits.max_metadata_entries,
            max_list_bytes: self.limits.max_list_bytes,
            max_list_scan: self.limits.max_list_scan,
            deliver_at_min_lead_secs: self.limits.deliver_at_min_lead,
        }
    }

    /// Delivery settings as the delivery engine takes them (validated already).
    pub fn delivery(&self) -> crate::delivery::DeliveryOptions {
        let d = &self.delivery;
        let secs = std::time::Duration::from_secs_f64;
        crate::delivery::DeliveryOptions {
            retry_schedule: d.retry_schedule.iter().map(|s| secs(*s)).collect(),
            request_timeout: secs(d.request_timeout),
            timeout_retry_floor: secs(d.timeout_retry_floor),
            allowed_cidrs: d
                .allowed_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            proxy: d.proxy.as_ref().map(|url| crate::delivery::ProxyOptions {
                url: url.clone(),
                no_proxy: d.no_proxy.clone(),
            }),
            max_concurrency: d.max_concurrency,
            endpoint_concurrency: d.endpoint_concurrency,
            fast_recovery: d.fast_recovery,
            disable_after: secs(d.disable_after),
            svix_headers: d.svix_headers,
            failing_event_after: d.failing_event_after,
            task_page_size: d.task_page_size,
        }
    }

    /// Limits on HTTP clients and their connections (validated already).
    pub fn serve_options(&self) -> crate::server::ServeOptions {
        let secs = std::time::Duration::from_secs_f64;
        crate::server::ServeOptions {
            header_read_timeout: secs(self.server.header_read_timeout),
            idle_timeout: secs(self.server.idle_timeout),
            max_connections: self.server.max_connections,
            hsts_max_age: Some(self.tls.hsts).filter(|s| *s > 0),
            access_log: self.server.access_log,
        }
    }

    /// The effective configuration as TOML (every key; unset ones commented out), with the
    /// proxy's password (the one secret a value may hold) masked.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if let Some(p) = shown.delivery.proxy.as_mut() {
            if let Ok(mut u) = url::Url::parse(p) {
                if u.password().is_some() && u.set_password(Some("REDACTED")).is_ok() {
                    *p = u.to_string();
                }
            }
        }
        let mut out = String::from(
            "# Herald's effective configuration (defaults < --config file < HERALD_<SECTION>__<KEY>\n\
             # variables < flags). Also read from the environment, never printed: HERALD_ADMIN_TOKEN\n\
             # (admin API token), HERALD_MAIN_KEY (main key), HERALD_LOG (log filter), and for\n\
             # `herald backup` HERALD_TOKEN (an API token; else HERALD_ADMIN_TOKEN).\n\n",
        );
        render_section(&mut out, "server", &shown.server);
        render_section(&mut out, "tls", &shown.tls);
        render_section(&mut out, "store", &shown.store);
        render_section(&mut out, "limits", &shown.limits);
        render_section(&mut out, "delivery", &shown.delivery);
        render_section(&mut out, "portal", &shown.portal);
        out
    }
}

/// Which variable or flag set a key (`server.listen` -> `HERALD_SERVER__LISTEN`).
type Origins = std::collections::HashMap<String, String>;

fn path_value(p: &Path) -> figment::value::Value {
    p.to_string_lossy().into_owned().into()
}

/// figment's errors in an operator's words: the key as written in herald.toml, where its value
/// came from, and the form expected; never a Rust type name.
fn describe(e: figment::Error, origin: &Origins) -> String {
    e.into_iter()
        .map(|e| describe_one(&e, origin))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_one(e: &figment::Error, origin: &Origins) -> String {
    use figment::error::Kind;
    let mut path = e.path.clone();
    if let Kind::UnknownField(field, _) = &e.kind {
        if path.last() != Some(field) {
            path.push(field.clone());
        }
    }
    let key = path.join(".");
    // An unknown section is reported by its name alone; the variable named a key within it.
    let set_by = origin.get(&key).or_else(|| {
        let within = format!("{key}.");
        origin
            .iter()
            .find(|(k, _)| k.starts_with(&within))
            .map(|(_, v)| v)
    });
    let from = match (set_by, e.metadata.as_ref().and_then(|m| m.source.as_ref())) {
        (Some(var), _) => format!(" (from {var})"),
        (None, Some(figment::Source::File(f))) => format!(" in {}", f.display()),
        _ => String::new(),
    };
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            let section = &path[..path.len() - 1];
            let known = |name: &str| {
                section
                    .iter()
                    .map(String::as_str)
                    .chain([name])
                    .collect::<Vec<_>>()
                    .join(".")
            };
            let hint = expected
                .iter()
                .map(|c| (strsim::jaro_winkler(field, c), *c))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, c)| format!(" (did you mean {}?)", known(c)))
                .unwrap_or_else(|| {
                    let all: Vec<String> = expected.iter().map(|c| known(c)).collect();
                    format!(" (known settings here: {})", all.join(", "))
                });
            format!("unknown setting {key}{from}{hint}")
        }
        kind => {
            if key.is_empty() {
                return format!("{kind}{from}");
            }
            let found = match kind {
                Kind::InvalidType(actual, _) | Kind::InvalidValue(actual, _) => {
                    Some(format!("found {actual}"))
                }
                // An untagged list that matched no form says nothing the expected form does not.
                Kind::Message(m) if !m.contains("untagged enum") => Some(m.clone()),
                _ => None,
            };
            let wanted = expected_form(&key).map(String::from).or(match kind {
                Kind::InvalidType(_, exp) | Kind::InvalidValue(_, exp) => Some(in_words(exp)),
                _ => None,
            });
            match (found, wanted) {
                (Some(f), Some(w)) => format!("invalid {key}{from}: {f}; expected {w}"),
                (None, Some(w)) => format!("invalid {key}{from}: expected {w}"),
                (Some(f), None) => format!("invalid {key}{from}: {f}"),
                (None, None) => format!("invalid {key}{from}: {kind}"),
            }
        }
    }
}

/// The form of the keys whose values are more than a number or a word.
fn expected_form(key: &str) -> Option<&'static str> {
    Some(match key {
        "delivery.retry_schedule" => {
            "seconds before each retry, comma-separated such as 5,300,1800 (or a TOML array [5, 300, 1800])"
        }
        "delivery.allowed_cidrs" => "CIDRs, comma-separated such as 127.0.0.0/8,::1/128",
        "delivery.no_proxy" => "hosts, domains, IP addresses or CIDRs, comma-separated",
        "tls.hostnames" => "host names, a TOML array such as [\"localhost\", \"herald.example.com\"]",
        "server.listen" => "an address and port such as 127.0.0.1:8080",
        _ => return None,
    })
}

/// serde's names for what it expected, as an operator would say them.
fn in_words(expected: &str) -> String {
    match expected {
        "f64" | "f32" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        e if e.starts_with('u') && e[1..].chars().all(|c| c.is_ascii_digit()) => {
            "a whole number (0 or more)".into()
        }
        e if e.starts_with("usize") => "a whole number (0 or more)".into(),
        e if e.starts_with('i') && e[1..].chars().all(|c| c.is_ascii_digit()) => {
            "a whole number".into()
        }
        e => e.to_string(),
    }
}

/// Durations are seconds: whole ones print as integers (`30`, not `30.0`), as the README shows.
fn whole_seconds<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// The retry schedule in the README's form, `5,300,1800`.
fn seconds_csv<S: serde::Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    let text = v
        .iter()
        .map(|x| {
            if x.fract() == 0.0 && x.abs() < 9.0e15 {
                format!("{}", *x as i64)
            } else {
                format!("{x}")
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    s.serialize_str(&text)
}

/// One `[section]` of `print-config`: its set keys, then its unset ones commented out so that
/// every key can be found.
fn render_section<T: Serialize>(out: &mut String, name: &str, section: &T) {
    use std::fmt::Write;
    let _ = writeln!(out, "[{name}]");
    match toml::to_string_pretty(section) {
        Ok(text) => out.push_str(&text),
        Err(e) => {
            let _ = writeln!(out, "# cannot render: {e}");
        }
    }
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(section) {
        for (key, _) in fields.iter().filter(|(_, v)| v.is_null()) {
            let _ = writeln!(out, "# {key} =    (unset)");
        }
    }
    out.push('\n');
}

/// A list given as a TOML array or as one comma-separated string (the form env variables take).
#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrString<T> {
    List(Vec<T>),
    One(T),
    Text(String),
}

fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match ListOrString::<String>::deserialize(d)? {
        ListOrString::List(v) => v,
        ListOrString::One(s) | ListOrString::Text(s) => split_commas(&s),
    })
}

fn seconds_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    match ListOrString::<f64>::deserialize(d)? {
        ListOrString::List(v) => Ok(v),
        ListOrString::One(x) => Ok(vec![x]),
        ListOrString::Text(s) => split_commas(&s)
            .iter()
            .map(|p| {
                p.parse::<f64>().map_err(|_| {
                    serde::de::Error::custom(format!("{p:?} is not a number of seconds"))
                })
            })
            .collect(),
    }
}

fn split_commas(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.data_dir, PathBuf::from("./herald-data"));
        assert_eq!(c.server.max_body_bytes, 1024 * 1024);
        assert_eq!(c.delivery.retry_schedule.len(), 7);
        assert_eq!(c.delivery.request_timeout, 15.0);
        assert_eq!((c.store.min_free_mb, c.store.ballast_mb), (128, 64));
        assert_eq!(c.server.idle_timeout, 60.0);
        assert_eq!(c.server.max_connections, 0, "derived from the file limit");
        assert_eq!(c.tls.hsts, 31_536_000);
        assert_eq!(c.serve_options().hsts_max_age, Some(31_536_000));
        let off = Config::load(
            None,
            env(&[("HERALD_TLS__HSTS", "0")]),
            &Overrides::default(),
        );
        assert_eq!(off.unwrap().serve_options().hsts_max_age, None);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1111\"\ndata_dir = \"/from-file\"\nmax_body_bytes = 2048\n\
             [delivery]\nrequest_timeout = 20\n",
        )
        .unwrap();
        let vars = env(&[
            ("HERALD_SERVER__LISTEN", "127.0.0.1:2222"),
            ("HERALD_DELIVERY__REQUEST_TIMEOUT", "25"),
            ("HERALD_DELIVERY__RETRY_SCHEDULE", "0.5,1,2"),
            ("HERALD_DELIVERY__ALLOWED_CIDRS", "127.0.0.0/8,::1/128"),
            ("HERALD_ADMIN_TOKEN", "not-a-config-key"),
            ("PATH", "/usr/bin"),
        ]);
        let flags = Overrides {
            listen: Some("127.0.0.1:3333".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), vars.clone(), &flags).unwrap();
        assert_eq!(
            c.server.listen.to_string(),
            "127.0.0.1:3333",
            "flag beats env"
        );
        assert_eq!(
            c.server.data_dir,
            PathBuf::from("/from-file"),
            "file beats default"
        );
        assert_eq!(c.server.max_body_bytes, 2048);
        assert_eq!(c.delivery.request_timeout, 25.0, "env beats file");
        assert_eq!(c.delivery.retry_schedule, vec![0.5, 1.0, 2.0]);
        assert_eq!(c.delivery.allowed_cidrs, vec!["127.0.0.0/8", "::1/128"]);
        let c = Config::load(Some(&file), vars, &Overrides::default()).unwrap();
        assert_eq!(
            c.server.listen.to_string(),
            "127.0.0.1:2222",
            "env beats file"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "HERALD_DELIVERY__REQUEST_TIMEOUT",
                "45",
                "delivery.request_timeout",
            ),
            (
                "HERALD_DELIVERY__REQUEST_TIMEOUT",
                "soon",
                "request_timeout",
            ),
            ("HERALD_DELIVERY__RETRY_SCHEDULE", "1,x", "retry_schedule"),
            (
                "HERALD_DELIVERY__ALLOWED_CIDRS",
                "10.0.0.0/99",
                "delivery.allowed_cidrs",
            ),
            (
                "HERALD_DELIVERY__PROXY",
                "socks5://127.0.0.1:1080",
                "delivery.proxy",
            ),
            ("HERALD_DELIVERY__PROXY", "proxy:3128", "delivery.proxy"),
            ("HERALD_DELIVERY__NO_PROXY", "internal", "delivery.no_proxy"),
            ("HERALD_SERVER__LISTEN", "nowhere", "listen"),
            ("HERALD_SERVER__LISTNE", "127.0.0.1:1", "listne"),
            (
                "HERALD_SERVER__BODY_READ_TIMEOUT",
                "0",
                "server.body_read_timeout",
            ),
            ("HERALD_SERVER__IDLE_TIMEOUT", "0", "server.idle_timeout"),
            (
                "HERALD_SERVER__MAX_CONNECTIONS",
                "2000000",
                "server.max_connections",
            ),
            ("HERALD_TLS__HSTS", "yes", "hsts"),
        ];
        for (k, v, key) in cases {
            let err = Config::load(None, env(&[(k, v)]), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{k}={v}: {err}");
        }
    }

    #[test]
    fn a_proxy_is_configured_only_explicitly_and_its_password_is_not_printed() {
        let c = Config::load(
            None,
            env(&[("HTTP_PROXY", "http://p:1")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.delivery().proxy,
            None,
            "the environment's proxy is not Herald's"
        );
        let vars = env(&[
            (
                "HERALD_DELIVERY__PROXY",
                "http://user:s3cret@proxy.internal:3128",
            ),
            ("HERALD_DELIVERY__NO_PROXY", "internal.example, 10.0.0.0/8"),
        ]);
        let c = Config::load(None, vars, &Overrides::default()).unwrap();
        let p = c.delivery().proxy.unwrap();
        assert_eq!(p.url, "http://user:s3cret@proxy.internal:3128");
        assert_eq!(p.no_proxy, vec!["internal.example", "10.0.0.0/8"]);
        let shown = c.to_toml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("http://user:REDACTED@proxy.internal:3128"),
            "{shown}"
        );
    }

    #[test]
    fn backups_go_beside_the_data_directory_unless_configured() {
        let flags = Overrides {
            data_dir: Some(PathBuf::from("/srv/herald/data")),
            ..Default::default()
        };
        let c = Config::load(None, env(&[]), &flags).unwrap();
        assert_eq!(c.backup_dir(), PathBuf::from("/srv/herald/backups"));
        let c = Config::load(
            None,
            env(&[("HERALD_STORE__BACKUP_DIR", "/var/lib/herald/backups")]),
            &flags,
        )
        .unwrap();
        assert_eq!(c.backup_dir(), PathBuf::from("/var/lib/herald/backups"));
        assert!(Config::load(None, env(&[("HERALD_STORE__BACKUP_DIR", "")]), &flags).is_err());
    }

    #[test]
    fn portal_settings_are_checked_so_they_cannot_break_the_policy() {
        let load = |vars: &[(&str, &str)]| Config::load(None, env(vars), &Overrides::default());
        assert_eq!(load(&[]).unwrap().portal.frame_ancestors, "'none'");
        let c = load(&[
            (
                "HERALD_PORTAL__FRAME_ANCESTORS",
                "'self' https://app.example.com https://*.example.org:8443",
            ),
            ("HERALD_PORTAL__OPERATOR_NAME", "Acme Cloud"),
            (
                "HERALD_PORTAL__LOGO_URL",
                "https://cdn.example.com/logo.svg",
            ),
            ("HERALD_PORTAL__ACCENT", "#0a7d5a"),
        ])
        .unwrap();
        assert_eq!(c.portal.operator_name.as_deref(), Some("Acme Cloud"));
        assert_eq!(
            c.portal.frame_ancestors,
            "'self' https://app.example.com https://*.example.org:8443"
        );
        assert_eq!(
            load(&[("HERALD_PORTAL__FRAME_ANCESTORS", "'none'")])
                .unwrap()
                .portal
                .frame_ancestors,
            "'none'"
        );
        for (key, value) in [
            (
                "HERALD_PORTAL__FRAME_ANCESTORS",
                "https://a.example; script-src *",
            ),
            (
                "HERALD_PORTAL__FRAME_ANCESTORS",
                "https://a.example, https://b",
            ),
            ("HERALD_PORTAL__FRAME_ANCESTORS", "'none' https://a.example"),
            ("HERALD_PORTAL__FRAME_ANCESTORS", "'unsafe-inline'"),
            ("HERALD_PORTAL__FRAME_ANCESTORS", " "),
            ("HERALD_PORTAL__ACCENT", "red"),
            ("HERALD_PORTAL__ACCENT", "#12345"),
            ("HERALD_PORTAL__LOGO_URL", "javascript:alert(1)"),
            ("HERALD_PORTAL__OPERATOR_NAME", "two\nlines"),
        ] {
            let e = load(&[(key, value)]).unwrap_err().to_string();
            assert!(e.contains("portal."), "{value:?}: {e}");
        }
    }

    #[test]
    fn the_packaged_config_documents_exactly_the_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/herald.toml");
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn errors_are_in_words_with_their_source_and_the_expected_form() {
        let err = |vars: &[(&str, &str)]| {
            Config::load(None, env(vars), &Overrides::default())
                .unwrap_err()
                .to_string()
        };
        // The variables set, and what the message must say.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                &[("HERALD_SERVER__LISTN", "127.0.0.1:1")],
                &["unknown setting server.listn (from HERALD_SERVER__LISTN) (did you mean server.listen?)"],
            ),
            (
                &[("HERALD_SERVR__LISTEN", "127.0.0.1:1")],
                &["unknown setting servr (from HERALD_SERVR__LISTEN)", "did you mean server?"],
            ),
            (
                &[("HERALD_DELIVERY__RETRY_SCHEDULE", "5m,300")],
                &["invalid delivery.retry_schedule (from HERALD_DELIVERY__RETRY_SCHEDULE)", "\"5m\"", "5,300,1800"],
            ),
            (
                &[("HERALD_DELIVERY__RETRY_SCHEDULE", "true")],
                &["invalid delivery.retry_schedule", "5,300,1800"],
            ),
            (
                &[("HERALD_DELIVERY__REQUEST_TIMEOUT", "soon")],
                &["invalid delivery.request_timeout (from HERALD_DELIVERY__REQUEST_TIMEOUT): found string \"soon\"; expected a number"],
            ),
            (
                &[("HERALD_SERVER__LISTEN", "nowhere")],
                &["invalid server.listen (from HERALD_SERVER__LISTEN)", "such as 127.0.0.1:8080"],
            ),
            (&[("HERALD_TLS__HSTS", "yes")], &["invalid tls.hsts", "a whole number"]),
        ];
        for (vars, wanted) in cases {
            let e = err(vars);
            for w in *wanted {
                assert!(e.contains(w), "{vars:?}: {e}");
            }
            for internal in [
                "alloc::", "figment", "Value", "untagged", "u64", "f64", "global.",
            ] {
                assert!(!e.contains(internal), "{vars:?}: {e}");
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, "[server]\nlistn = \"127.0.0.1:1\"\n").unwrap();
        let e = Config::load(Some(&file), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        let wanted = format!(
            "unknown setting server.listn in {} (did you mean server.listen?)",
            file.display()
        );
        assert!(e.contains(&wanted), "{e}");
    }

    #[test]
    fn print_config_shows_every_key_in_the_readme_forms_and_loads_back() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        let text = c.to_toml();
        for line in [
            "shutdown_grace = 30\n",
            "disable_after = 432000\n",
            "retry_schedule = \"5,300,1800,7200,18000,36000,36000\"\n",
            "# cert_file =",
            "# key_file =",
            "# main_key_file =",
            "# backup_dir =",
            "# proxy =",
            "HERALD_TOKEN",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(!text.contains(".0\n"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("printed.toml");
        std::fs::write(&file, &text).unwrap();
        let again = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(again, c);
        let c = Config::load(
            None,
            env(&[("HERALD_DELIVERY__RETRY_SCHEDULE", "0.5,2")]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(c.to_toml().contains("retry_schedule = \"0.5,2\"\n"));
    }

    #[test]
    fn unknown_file_keys_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(&file, "[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let err = Config::load(
            Some(&dir.path().join("nope.toml")),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }
}
