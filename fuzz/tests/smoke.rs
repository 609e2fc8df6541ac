//! Every fuzz target for a few seconds (`PROMRELAY_FUZZ_SECONDS`, default 3) from its seeds and
//! regressions: no panic, no allocation above the target's bound, no broken invariant, no hang.
//! `scripts/fuzz.sh` runs the same targets for longer in release builds.

use std::time::Duration;

use promrelay_fuzz::engine::{Options, Outcome, Target};
use promrelay_fuzz::targets;

fn options() -> Options {
    let seconds = std::env::var("PROMRELAY_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    Options {
        duration: Duration::from_secs(seconds),
        // Debug builds: a slow input is reported by the long runs, a hang here.
        hang_limit: Duration::from_secs(60),
        ..Options::default()
    }
}

fn fuzz(target: &dyn Target) {
    let findings = promrelay_fuzz::seeds::root().join("target/fuzz-findings");
    match promrelay_fuzz::run(target, &options(), Some(&findings)) {
        Ok(report) => {
            println!("{report}");
            assert!(
                report.runs > report.seeds as u64,
                "mutated inputs ran: {report}"
            );
        }
        Err((finding, written)) => panic!(
            "{finding}\n(input written to {})",
            written.map_or("nowhere".into(), |p| p.display().to_string())
        ),
    }
}

#[test]
fn the_text_parser_survives_mutated_scrapes() {
    fuzz(&targets::Text);
}

#[test]
fn the_batch_reader_survives_mutated_guest_output() {
    fuzz(&targets::Batch);
}

#[test]
fn the_wire_decoder_survives_mutated_messages_and_old_json() {
    fuzz(&targets::Wire);
}

#[test]
fn the_config_loader_survives_mutated_configs() {
    fuzz(&targets::Config);
}

/// The fuzzer finds what it is meant to find: a target that panics on a token two mutations away
/// from its seed, and one that allocates without bound.
struct Fragile;

impl Target for Fragile {
    fn name(&self) -> &'static str {
        "fragile"
    }
    fn run(&self, input: &[u8]) -> Outcome {
        if input.windows(3).any(|w| w == b"{}}") {
            panic!("fragile: found the token");
        }
        if input.starts_with(b"big") && input.len() > 3 {
            let held = vec![1u8; 64 << 20];
            return Outcome::Accepted(format!("{}", held.len()));
        }
        Outcome::Refused("no".into())
    }
    fn allocation_bound(&self, _len: usize) -> usize {
        32 << 20
    }
    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"{", b"}"]
    }
}

#[test]
fn the_fuzzer_reports_a_panic_and_an_allocation_above_the_bound() {
    let options = Options {
        duration: Duration::from_secs(30),
        ..Options::default()
    };
    let finding = promrelay_fuzz::engine::fuzz(&Fragile, vec![b"a{".to_vec()], &options)
        .expect_err("the token is found");
    assert_eq!(finding.kind, "panic", "{finding}");
    assert!(finding.message.contains("found the token"), "{finding}");
    let finding = promrelay_fuzz::engine::fuzz(&Fragile, vec![b"bigger".to_vec()], &options)
        .expect_err("the seed allocates 64 MiB");
    assert_eq!(finding.kind, "allocation", "{finding}");
}
