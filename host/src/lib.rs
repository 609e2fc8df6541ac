//! promrelay: scrape Prometheus targets, filter every scrape through WebAssembly, relay it over NATS
//! JetStream and push it into a Pushgateway or a remote_write endpoint.
//!
//! Data flows down this list of modules; no stage reaches back into an earlier one.
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod model;
pub mod config;
pub mod exposition;
pub mod scrape;
pub mod filter;
pub mod nats;
pub mod tls;
pub mod lifecycle;
pub mod management;
pub mod wire;
pub mod publish;
pub mod receive;
pub mod sink;
pub mod admin;
pub mod telemetry;
pub mod daemon;
