//! The end-to-end harness: RAII guards that run the real servers promrelay talks to (nats-server,
//! Pushgateway, Prometheus, node_exporter), an in-process scrape target with bad behaviours on demand,
//! and the `promrelay` binary itself — each on free loopback ports with its own temp directory.
//!
//! Every guard kills its process by PID when dropped, also when the test panics (and then prints the
//! tail of the process' log). Children are spawned with a parent-death signal, so even a test process
//! killed with SIGKILL leaves nothing behind.
//!
//! Waiting is done with [`poll_until`] / [`poll_until_async`], never with bare sleeps; a timeout
//! fails with a message naming what was awaited.
//!
//! **Invariant:** the harness binds and connects to 127.0.0.1 only.

pub mod browser;
pub mod http;
pub mod nats;
pub mod nats_jwt;
pub mod node_exporter;
pub mod pki;
pub mod process;
pub mod prometheus;
pub mod puppet_ca;
pub mod puppetserver;
pub mod pushgateway;
pub mod relay;
pub mod target;
pub mod text;
pub mod topology;

use std::collections::HashSet;
use std::future::Future;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use nats::NatsServer;
pub use node_exporter::NodeExporter;
pub use process::{pid_is_alive, ServerProcess};
pub use prometheus::Prometheus;
pub use pushgateway::Pushgateway;
pub use relay::{relay_binary, Relay, RelayConfig};
pub use target::{Behaviour, TargetServer};
pub use text::{parse_samples, Sample};

/// How often the poll helpers re-check their condition.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out before.
///
/// The OS picks the port (bind to port 0); remembering what was handed out keeps two servers of the
/// same test from racing for one port.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
        let port = listener
            .local_addr()
            .expect("local address of a bound listener")
            .port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Calls `check` until it returns `Some`, at most for `timeout`; panics naming `what` otherwise.
///
/// Blocks the calling thread: in async tests whose runtime must keep working meanwhile (a NATS
/// client, a spawned task), use [`poll_until_async`].
pub fn poll_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// The async twin of [`poll_until`]: awaits `check()` until it yields `Some`, at most for `timeout`.
pub async fn poll_until_async<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Like [`poll_until`], for checks that may legitimately fail while waiting: the last error is
/// included in the panic message, which usually says why the wait never ended.
pub fn poll_until_ok<T, E: std::fmt::Display>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return value,
            Err(error) if start.elapsed() >= timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last error: {error}")
            }
            Err(_) => std::thread::sleep(POLL_EVERY),
        }
    }
}
