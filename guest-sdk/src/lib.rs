//! Write promrelay filters in Rust.
//!
//! A filter sees every scrape that passes through its chain in the relay, as a [`Batch`]: the
//! scrape's metric families and their series, read in place from the bytes the relay handed over.
//! It keeps, drops or rewrites series, and the SDK turns what it did into the cheapest answer the
//! ABI allows: nothing (PASS) when nothing changed, a keep bitmap (MASK) when series were only
//! dropped, a new batch (REPLACED) only when something was rewritten.
//!
//! ```
//! use promrelay_sdk::{export_filter, Batch, Error, Filter};
//! use serde::Deserialize;
//!
//! /// Drops every series whose metric name starts with a configured prefix.
//! struct DropPrefix {
//!     prefix: String,
//! }
//!
//! #[derive(Deserialize)]
//! struct Config {
//!     prefix: String,
//! }
//!
//! impl Filter for DropPrefix {
//!     type Config = Config;
//!
//!     fn init(config: Config) -> Result<Self, Error> {
//!         Ok(DropPrefix { prefix: config.prefix })
//!     }
//!
//!     fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
//!         batch.retain(|series| !series.name().starts_with(&self.prefix));
//!         Ok(())
//!     }
//! }
//!
//! export_filter!(DropPrefix);
//!
//! // On a native target the same filter runs in-process, for `cargo test`:
//! let output = promrelay_sdk::testing::run::<DropPrefix>(
//!     r#"{"prefix": "go_"}"#,
//!     "go_threads 8\nup 1\n",
//! )
//! .unwrap();
//! assert_eq!(output, "up 1\n");
//! ```
//!
//! Build it for the relay with `scripts/build-filters.sh` (or `cargo build --release --target
//! wasm32-unknown-unknown`); `guest-sdk/README.md` walks through the whole way to a live relay.
//!
//! **Invariant:** filter authors never see a pointer, a length or the byte layout. Every
//! `extern "C"` item and every `#[no_mangle]` lives in one private module (`abi`); the rest of
//! the crate is safe code that also runs natively, which is what [`testing`] relies on.

mod abi;
mod batch;
mod edit;
mod error;
mod logger;
pub mod memo;
mod runtime;
mod strings;
pub mod testing;
mod text;
mod trace;

#[cfg(test)]
mod tests;

pub use batch::{Batch, Family, Labels, Series};
pub use edit::{FamilyMut, SeriesMut};
pub use error::Error;
pub use promrelay_abi::MetricType;
pub use trace::{Explain, Trace};

/// The `log` crate: `log::set_max_level` changes which levels reach the relay (default: info).
pub use log;
/// Logging macros whose lines reach the relay's log under the filter's name.
pub use log::{debug, error, info, trace, warn};

/// A filter: built once per instance from its config, then called once per scrape.
///
/// Implement it and name the type in [`export_filter!`]. The relay creates an instance, calls
/// [`Filter::init`] with the `config:` value of the filter's entry in the relay config, and then
/// calls [`Filter::process`] for every scrape, one at a time. The relay may replace an instance
/// at any time (after an error, or after many calls), so `init` must only depend on the config.
///
/// A panic in either method becomes an error carrying the panic's message: the relay counts it,
/// applies the filter's `on_error` policy and builds a fresh instance.
///
/// ```
/// use promrelay_sdk::{Batch, Error, Filter};
///
/// /// Keeps everything (the smallest possible filter).
/// struct Identity;
///
/// impl Filter for Identity {
///     type Config = serde::de::IgnoredAny;
///
///     fn init(_config: Self::Config) -> Result<Self, Error> {
///         Ok(Identity)
///     }
///
///     fn process(&mut self, _batch: &mut Batch<'_>) -> Result<(), Error> {
///         Ok(())
///     }
/// }
/// # promrelay_sdk::testing::run::<Identity>("null", "up 1\n").unwrap();
/// ```
pub trait Filter: Sized + 'static {
    /// The filter's configuration, deserialized from the JSON form of its `config:` YAML. When
    /// the relay config has no `config:` the filter receives `{}`; the SDK also tries `null`, so
    /// both a struct whose fields all have `#[serde(default)]` and `()` work without one.
    type Config: serde::de::DeserializeOwned;

    /// Checks the config and prepares the filter (compile regexes, build tables). An error
    /// refuses the filter: it does not load, and on a hot swap the old chain keeps running.
    fn init(config: Self::Config) -> Result<Self, Error>;

    /// Looks at or changes one scrape. Returning an error fails this scrape only.
    fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error>;
}

/// Items the [`export_filter!`] macro expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::Runtime;
    pub use promrelay_abi::ABI_VERSION;
}
