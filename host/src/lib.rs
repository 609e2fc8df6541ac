//! promrelay: scrape Prometheus targets, filter every scrape through WebAssembly, relay it over NATS
//! JetStream and push it into a Pushgateway or a remote_write endpoint.
//!
//! Data flows down this list of modules; no stage reaches back into an earlier one.
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod admin;
pub mod batch;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod enroll;
pub mod exposition;
pub mod file_events;
pub mod filter;
pub mod lifecycle;
pub mod management;
pub mod model;
pub mod nats;
pub mod pause;
pub mod publish;
pub mod receive;
pub mod scrape;
pub mod shutdown;
pub mod sink;
pub mod spool;
pub mod stale;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod web;
pub mod wire;

#[cfg(test)]
mod mutations;
