//! The raw ABI: the one `promrelay.log` import and the `export_filter!` macro that emits the
//! module's exports. Every `extern "C"` item and every `#[no_mangle]` of the SDK is in this file;
//! `guest-sdk/ABI.md` is the contract they implement.
//!
//! **Invariant:** the exports only move integers between the host and a [`Runtime`]
//! (`crate::runtime::Runtime`); all logic lives in safe code elsewhere.

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "promrelay")]
unsafe extern "C" {
    /// `promrelay.log(level, ptr, len)`: the host copies the text out before returning.
    #[link_name = "log"]
    fn promrelay_log(level: i32, ptr: i32, len: i32);
}

/// Sends one log line to the relay (to stderr and the test capture on native targets).
pub(crate) fn host_log(level: i32, text: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        // Pointers and lengths are 32-bit on wasm32, so these casts are lossless.
        let (ptr, len) = (text.as_ptr() as usize as i32, text.len() as i32);
        // SAFETY: the import only reads `len` bytes at `ptr` in this module's memory during the
        // call, and `text` is a live, initialised `&str` of exactly that length.
        unsafe { promrelay_log(level, ptr, len) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::logger::native_log(level, text);
}

/// Makes a type implementing [`Filter`](crate::Filter) the filter of this wasm module.
///
/// Use it once, at the crate root of a `cdylib` crate. On `wasm32` it emits the exports of ABI v1
/// (`promrelay_abi_version`, `promrelay_reserve`, `promrelay_init`, `promrelay_process`,
/// `promrelay_output_ptr`, `promrelay_output_len`); on other targets it emits nothing, and
/// [`testing`](crate::testing) runs the filter in-process instead.
///
/// `export_filter!(Type, explain)` also exports the optional `promrelay_trace` (ABI.md §10) for
/// a type that implements [`Explain`](crate::Explain), so `promrelay filter run --explain` and
/// the monitor port's `/explain` show its steps series by series.
///
/// ```
/// use promrelay_sdk::{export_filter, Batch, Error, Filter};
///
/// struct KeepAll;
///
/// impl Filter for KeepAll {
///     type Config = serde::de::IgnoredAny;
///     fn init(_: Self::Config) -> Result<Self, Error> {
///         Ok(KeepAll)
///     }
///     fn process(&mut self, _: &mut Batch<'_>) -> Result<(), Error> {
///         Ok(())
///     }
/// }
///
/// export_filter!(KeepAll);
/// ```
#[macro_export]
macro_rules! export_filter {
    ($filter:ty, explain) => {
        $crate::export_filter!(@exports $filter, {
            #[unsafe(no_mangle)]
            pub extern "C" fn promrelay_trace(len: i32) -> i32 {
                RUNTIME.with_borrow_mut(|runtime| runtime.trace(len as u32 as usize))
            }
        });
    };
    ($filter:ty) => {
        $crate::export_filter!(@exports $filter, {});
    };
    (@exports $filter:ty, { $($extra:item)* }) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use ::std::cell::RefCell;
            use $crate::__private::Runtime;

            ::std::thread_local! {
                static RUNTIME: RefCell<Runtime<$filter>> = RefCell::new(Runtime::new());
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn promrelay_abi_version() -> i32 {
                $crate::__private::ABI_VERSION
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn promrelay_reserve(len: i32) -> i32 {
                let Ok(len) = usize::try_from(len) else {
                    return 0;
                };
                RUNTIME.with_borrow_mut(|runtime| match runtime.reserve(len) {
                    // Addresses are 32-bit on wasm32: the cast is lossless.
                    Some(buffer) => buffer.as_mut_ptr() as usize as i32,
                    None => 0,
                })
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn promrelay_init(len: i32) -> i32 {
                RUNTIME.with_borrow_mut(|runtime| runtime.init(len as u32 as usize))
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn promrelay_process(len: i32) -> i32 {
                RUNTIME.with_borrow_mut(|runtime| runtime.process(len as u32 as usize))
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn promrelay_output_ptr() -> i32 {
                RUNTIME.with_borrow(|runtime| runtime.output().as_ptr() as usize as i32)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn promrelay_output_len() -> i32 {
                RUNTIME.with_borrow(|runtime| runtime.output().len() as i32)
            }

            $($extra)*
        };
    };
}
