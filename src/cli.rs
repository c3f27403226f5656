//! Command-line interface (clap): the subcommands and their flags, parsed into plain values that
//! `main` turns into a configuration and a run.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Self-hosted webhook delivery server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Check everything `serve` checks before starting (the configuration file, HERALD_* variables
    /// and the flags below; HERALD_ADMIN_TOKEN, HERALD_MAIN_KEY or the main key file, TLS files),
    /// without starting or writing anything; exit 0 when `serve` would accept it.
    CheckConfig(SettingsArgs),
    /// Print the effective configuration as TOML: every key, unset ones commented out.
    PrintConfig(SettingsArgs),
    /// Manage API tokens (on a stopped server: the data directory is used by one process at a time).
    Token(TokenArgs),
    /// Probe a running Herald: exit 0 when its health endpoint answers 2xx, i.e. it is ready to take
    /// writes (for systemd, Docker); point it at /api/v1/health/live for liveness only.
    Healthcheck(HealthcheckArgs),
    /// Run a local test receiver that prints each delivery and whether its signature verifies (and
    /// if not, why).
    Listen(ListenArgs),
    /// Have the running server write a consistent copy of its store to NAME in its backup
    /// directory (store.backup_dir, on its machine).
    Backup(BackupArgs),
    /// Verify a stopped store offline: every payload's checksum, each message record against its
    /// payload, each queued task against its message, and payloads nothing points at. Exit 0 when
    /// consistent, 1 when problems remain.
    Check(CheckArgs),
    /// Copy event types (with schemas), applications and endpoints (with their signing secrets,
    /// headers, filters, channels, rate limits, metadata and disabled state) from a server that
    /// speaks the Svix API (Svix's cloud, svix-server, another Herald) into this Herald's store.
    /// Ids are kept, so receivers and stored ids keep working. Run it while this Herald is stopped
    /// (the data directory is used by one process at a time). Idempotent and resumable: a record
    /// already here (same id, or same uid; event types by name) is left as it is, so running it
    /// again copies only what is missing. Exit 1 when something could not be copied.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The source server's base URL, e.g. https://api.eu.svix.com or http://old-herald:8080.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// An API token of the source, with read access to everything (Svix: an organization's API
    /// key; Herald: an admin token).
    #[arg(long, env = "HERALD_MIGRATE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Read the source and print what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also trust this CA certificate (PEM) when connecting to the source.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The stopped server's data directory [default: from the configuration, ./herald-data]. It
    /// must exist; a store (and main key) is made in it when there is none yet.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The stopped server's data directory (the one holding `store-v1`).
    pub data_dir: PathBuf,
    /// Fix what was found: cut torn tails, remove messages whose payload is lost and queued tasks
    /// without a message, and release unreferenced payloads.
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new backup's name (A-Z a-z 0-9 . _ -, not starting with a dot): the copy goes to
    /// <store.backup_dir>/NAME; start Herald on that directory (same main key) to restore.
    pub name: String,
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API token [default: $HERALD_TOKEN, else $HERALD_ADMIN_TOKEN].
    #[arg(long)]
    pub token: Option<String>,
    /// Also trust this CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The stopped server's data directory [default: from the configuration, ./herald-data]. It
    /// must exist (list and revoke: hold a store); none is made here.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once and stored only as a hash.
    Create {
        /// A name to tell it by (for list and revoke).
        #[arg(long)]
        name: String,
    },
    /// List tokens: name, creation time, short id.
    List,
    /// Revoke every token with this name.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Health URL. That route answers 2xx while Herald can accept writes (readiness, as /api/v1/health/ready); give
    /// .../api/v1/health/live to check only that the process serves HTTP.
    #[arg(default_value = "http://127.0.0.1:8080/api/v1/health")]
    pub url: String,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Also trust this CA certificate (PEM), e.g. for a self-signed certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The endpoint's signing secret (whsec_...), to verify signatures with.
    #[arg(long)]
    pub secret: String,
    /// Status to answer every delivery with.
    #[arg(long, default_value_t = 200)]
    pub status: u16,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The configuration file and the flags that override it, shared by `serve`, `check-config` and
/// `print-config` so that the two see what `serve` would.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./herald-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    pub insecure_http: bool,
    /// Serve HTTPS with this certificate chain (PEM); goes with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate made on first start (kept in the data directory).
    #[arg(long, conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
