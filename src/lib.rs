//! Herald: a self-hosted webhook delivery server in one binary.
//!
//! Where a request goes, outside in:
//! - `cli` and `config` turn flags, `HERALD_*` variables and the TOML file into a typed [`config::Config`];
//! - `app` is the composition root: it opens the store, bootstraps the admin token and serves;
//! - `server` accepts connections (TLS from `tls` when configured) and hands them to the `api`
//!   (warp filters per resource);
//! - `api` authenticates, validates and maps every error to JSON once; it calls
//! - `store`, the only module that knows sled, which persists the records of
//! - `domain`: ids, timestamps, records and validation rules, pure code.
//!
//! Beside serving, `migrate` copies another Svix-API server's records into the store (`herald
//! migrate`), reading through `delivery::remote`.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod fsio;
pub mod main_key;
pub mod metrics;
pub mod migrate;
pub mod ops;
pub mod server;
pub mod store;
pub mod systemd;
pub mod tls;
