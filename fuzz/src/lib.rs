//! Fuzzing promrelay's untrusted inputs: the scrape parser, the batch a guest hands back, the
//! stream message decoder (including the original's JSON) and the config loader.
//!
//! [`targets`] says what each target feeds and checks, [`engine`] is a mutation fuzzer with a
//! watchdog (hangs) and a counting allocator ([`alloc`], unbounded allocation), [`seeds`] builds
//! each corpus from the repository. `tests/smoke.rs` runs every target a few seconds in the test
//! suite; `scripts/fuzz.sh` runs them longer. A finding is written to `fuzz/findings/` and, once
//! fixed, copied into `fuzz/regressions/TARGET/` so it runs on every test run.

pub mod alloc;
pub mod engine;
pub mod seeds;
pub mod targets;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

use std::path::{Path, PathBuf};

/// Runs one target from its seeds; a finding is also written under `findings` (when given) as
/// `TARGET-KIND-HASH` so it can be replayed (`promrelay-fuzz --replay FILE TARGET`).
pub fn run(
    target: &dyn engine::Target,
    options: &engine::Options,
    findings: Option<&Path>,
) -> Result<engine::Report, (engine::Finding, Option<PathBuf>)> {
    let seeds = seeds::seeds(target.name());
    engine::fuzz(target, seeds, options).map_err(|finding| {
        let written = findings.and_then(|dir| {
            std::fs::create_dir_all(dir).ok()?;
            let path = dir.join(format!(
                "{}-{}-{:016x}",
                finding.target,
                finding.kind,
                fnv(&finding.input)
            ));
            std::fs::write(&path, &finding.input).ok()?;
            Some(path)
        });
        (finding, written)
    })
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
