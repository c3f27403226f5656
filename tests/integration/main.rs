//! One integration binary: every test drives the real `herald` binary (started on 127.0.0.1:0 with a
//! temporary data directory) through the official `svix` SDK or plain HTTP.

mod app_tokens;
mod apps;
mod backup_load;
mod check;
mod cli;
mod connections;
mod crash;
mod delivery;
mod delivery_failures;
mod disk_full;
mod egress;
mod endpoints;
mod errors;
mod event_types;
mod files;
mod first_hour;
mod headers;
mod idempotency;
mod isolation;
mod lifecycle;
mod lists;
mod metrics;
mod migrate;
mod openapi;
mod operational;
mod power_loss;
mod slow_clients;
mod support;
mod tls;
mod ui_api;
mod ui_forms;
mod ui_filters;
mod upgrade;
