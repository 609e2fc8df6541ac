//! Own metrics and logging set-up.
//!
//! Every stage registers its metrics in the one process-wide registry returned by [`registry`],
//! under the `promrelay_` prefix, usually from a `LazyLock` in its own module. `/metrics` on the
//! monitor port renders [`encode`].

use std::sync::{LazyLock, Mutex, MutexGuard};

use prometheus_client::registry::Registry;

static REGISTRY: LazyLock<Mutex<Registry>> =
    LazyLock::new(|| Mutex::new(Registry::with_prefix("promrelay")));

/// The process-wide registry; hold the guard only while registering.
pub fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Renders every registered metric in the OpenMetrics text format.
pub fn encode() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry())
        .expect("writing to a String cannot fail");
    out
}
