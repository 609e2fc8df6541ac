//! End-to-end tests: one test binary, one module per area. Add a module with one `mod x;` line.
//!
//! Every test starts the real servers it needs through the `promrelay_tests` harness (free loopback
//! ports, temp dirs, killed on drop) and waits with `poll_until`, never with sleeps.

mod authoring;
mod cluster;
mod config;
mod demo;
mod diagnostics;
mod discovery;
mod docs;
mod enroll;
mod explain;
mod filter_reload;
mod filters;
mod filters_large;
mod harness;
mod https;
mod in_process;
mod large;
mod leaf;
mod management;
mod outage;
mod packaging;
mod pause;
mod pipeline;
mod receiver;
mod remote_write;
mod scale_out;
mod security;
mod spool;
mod staleness;
mod status_page;
mod web_config;
