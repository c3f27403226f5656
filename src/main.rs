//! The `herald` binary: parse the command line, set up logging, load the configuration and run.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use herald::cli::{Cli, Command, ConfigArgs, LogFormat, SettingsArgs, TokenCommand};
use herald::config::{Config, Overrides};
use herald::ops;

fn main() -> anyhow::Result<()> {
    // Whatever a command writes (the store, keys, certificates) is private to Herald's user.
    herald::fsio::restrict_umask();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_format);
            let config = load_settings(&args.settings)?;
            let admin_token = std::env::var("HERALD_ADMIN_TOKEN").ok();
            let main_key = std::env::var("HERALD_MAIN_KEY").ok();
            runtime()?.block_on(herald::app::run(
                config,
                admin_token,
                main_key,
                shutdown_signal(),
            ))?;
            Ok(())
        }
        Command::Check(args) => {
            let report = herald::app::check_store(&args.data_dir, args.repair)?;
            print!("{}", report.render());
            if !report.is_clean() && report.repaired.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::CheckConfig(args) => {
            let config = load_settings(&args)?;
            herald::app::check(
                &config,
                std::env::var("HERALD_ADMIN_TOKEN").ok().as_deref(),
                std::env::var("HERALD_MAIN_KEY").ok().as_deref(),
            )?;
            println!("configuration is valid");
            Ok(())
        }
        Command::PrintConfig(args) => {
            print!("{}", load_settings(&args)?.to_toml());
            Ok(())
        }
        Command::Token(args) => {
            let overrides = Overrides {
                data_dir: args.data_dir.clone(),
                ..Default::default()
            };
            let config = load(&args.config, &overrides)?;
            let dir = config.server.data_dir.clone();
            // Before the main key, which would otherwise be made in a directory that may be wrong.
            let creates = matches!(args.command, TokenCommand::Create { .. });
            ops::require_data_dir(&dir, creates)?;
            let key = herald::main_key::load(&config, std::env::var("HERALD_MAIN_KEY").ok())?;
            let rt = runtime()?;
            match args.command {
                TokenCommand::Create { name } => {
                    let t = rt.block_on(ops::token_create(&dir, key, &name))?;
                    eprintln!("API token {name:?} (shown once, store it now):");
                    println!("{t}");
                }
                TokenCommand::List => {
                    for (name, created, id) in ops::token_list(&dir, key)? {
                        println!("{id}  {}  {name}", created.to_rfc3339());
                    }
                }
                TokenCommand::Revoke { name } => {
                    let n = rt.block_on(ops::token_revoke(&dir, key, &name))?;
                    println!("revoked {n} token(s) named {name:?}");
                }
            }
            Ok(())
        }
        Command::Healthcheck(args) => {
            let ca = args
                .ca
                .as_ref()
                .map(std::fs::read)
                .transpose()
                .context("reading --ca")?;
            let timeout = std::time::Duration::from_secs_f64(args.timeout.clamp(0.1, 300.0));
            let _ = rustls::crypto::ring::default_provider().install_default();
            match runtime()?.block_on(herald::delivery::probe(&args.url, timeout, ca.as_deref())) {
                Ok(s) if (200..300).contains(&s) => {
                    println!("healthy ({s})");
                    Ok(())
                }
                Ok(s) => anyhow::bail!("unhealthy: {} answered {s}", args.url),
                Err(e) => anyhow::bail!("unhealthy: {e}"),
            }
        }
        Command::Backup(args) => {
            let token = args
                .token
                .or_else(|| std::env::var("HERALD_TOKEN").ok())
                .or_else(|| std::env::var("HERALD_ADMIN_TOKEN").ok())
                .context("no token: pass --token or set HERALD_TOKEN")?;
            let ca = args
                .ca
                .as_ref()
                .map(std::fs::read)
                .transpose()
                .context("reading --ca")?;
            let body = serde_json::json!({ "name": args.name }).to_string();
            let url = format!("{}/api/v1/admin/backup", args.url.trim_end_matches('/'));
            let _ = rustls::crypto::ring::default_provider().install_default();
            let timeout = std::time::Duration::from_secs(3600);
            let (status, text) = runtime()?
                .block_on(herald::delivery::post_json(
                    &url,
                    &token,
                    body,
                    timeout,
                    ca.as_deref(),
                ))
                .map_err(|e| anyhow::anyhow!("backup request failed: {e}"))?;
            if !(200..300).contains(&status) {
                anyhow::bail!("backup refused ({status}): {text}");
            }
            println!("{text}");
            Ok(())
        }
        Command::Migrate(args) => {
            let overrides = Overrides {
                data_dir: args.data_dir.clone(),
                ..Default::default()
            };
            let config = load(&args.config, &overrides)?;
            ops::require_data_dir(&config.server.data_dir, true)?;
            let ca = args
                .ca
                .as_ref()
                .map(std::fs::read)
                .transpose()
                .context("reading --ca")?;
            let _ = rustls::crypto::ring::default_provider().install_default();
            let summary = runtime()?.block_on(herald::app::migrate(
                &config,
                std::env::var("HERALD_MAIN_KEY").ok(),
                &args.from,
                &args.token,
                ca.as_deref(),
                args.dry_run,
            ))?;
            print!("{}", summary.render());
            if summary.skipped() > 0 {
                eprintln!(
                    "migration incomplete: {} record(s) not copied (see the warnings); \
                     fix them at the source and run again to copy the rest",
                    summary.skipped()
                );
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Listen(args) => {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
            runtime()?.block_on(ops::listen(addr, &args.secret, args.status))?;
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The configuration as `serve` would see it with these flags.
fn load_settings(args: &SettingsArgs) -> anyhow::Result<Config> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        insecure_http: args.insecure_http,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        tls_self_signed: args.tls_self_signed,
    };
    load(&args.config, &overrides)
}

fn load(args: &ConfigArgs, overrides: &Overrides) -> anyhow::Result<Config> {
    Ok(Config::load(
        args.config.as_deref(),
        std::env::vars(),
        overrides,
    )?)
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("HERALD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
