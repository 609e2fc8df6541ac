//! Hostile and large configs: the alias bomb is refused at its line with bounded work, reading
//! costs a bounded number of key comparisons per key (never one per pair of keys), and configs
//! with 100 000 keys or 20 000 jobs load; every problem of a mutated sample names a real line.

use super::*;
use crate::config::yaml::{self, KEY_COMPARISONS};
use crate::mutations::{line_count, mutate, Rng};

const FULL: &str = include_str!("../../../../tests/data/config/full.yaml");

/// The "billion laughs" of the issue (612 bytes here; the 632 had more spaces): nine
/// `lol`s, then eight levels of nine aliases each to the level before: 9^9 scalars expanded.
fn alias_bomb() -> String {
    let mut text = format!("lol0: &lol0 [{}]\n", ["\"lol\""; 9].join(","));
    for level in 1..=8 {
        let aliases = vec![format!("*lol{}", level - 1); 9].join(",");
        text.push_str(&format!("lol{level}: &lol{level} [{aliases}]\n"));
    }
    text
}

#[test]
fn an_alias_bomb_is_refused_at_the_line_where_copies_pass_the_bound() {
    let bomb = alias_bomb();
    let problems = problems_of(&bomb);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    // lol5's anchor would keep a copy of 597 871 nodes after 747 320 copied by the levels above.
    assert_eq!(problems[0].line, Some(6), "{problems:#?}");
    assert_eq!(problems[0].key, "lol5");
    assert!(
        problems[0].message.starts_with(
            "this anchor would copy 597871 nodes, after 747320 copied already: anchors and \
             aliases may copy at most 1000000 nodes here"
        ),
        "{}",
        problems[0].message
    );
}

#[test]
fn the_copy_bound_names_the_alias_that_crosses_it() {
    let text = "a: &a [1, 2, 3]\nb: [*a, *a]\nc: [*a]\n";
    // Copies: 4 (anchor a), 4 + 4 (line 2), 4 (line 3) = 16.
    assert!(yaml::parse_with_copy_limits(text, 16, 0).is_ok());
    let errors = match yaml::parse_with_copy_limits(text, 15, 0) {
        Ok(_) => panic!("16 copies > 15"),
        Err(errors) => errors,
    };
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!((errors[0].line, errors[0].key.as_str()), (3, "c[0]"));
    assert!(
        errors[0]
            .message
            .starts_with("this alias would copy 4 nodes"),
        "{errors:#?}"
    );
}

#[test]
fn nested_anchors_count_their_copies_too() {
    // Each anchor keeps a copy of its subtree: five levels of 2 + 3 + 4 + 5 + 6 nodes = 20.
    let text = "a: &a1 [&a2 [&a3 [&a4 [&a5 [x]]]]]\n";
    assert!(yaml::parse_with_copy_limits(text, 20, 0).is_ok());
    assert!(yaml::parse_with_copy_limits(text, 19, 0).is_err());
}

#[test]
fn twenty_thousand_jobs_merging_one_anchored_job_load() {
    // Each job merges job0's 40-node mapping: 800 000 copies with the anchor's, within the bound.
    let text = many_jobs(20_000, true);
    let config = load_text(&text);
    assert_eq!(config.jobs.len(), 20_000);
    let last = &config.jobs[19_999];
    assert_eq!(
        last.scrape_timeout,
        Duration::from_secs(7),
        "merged from job0"
    );
    assert_eq!(last.label_limit, 200, "merged from job0");
    assert_eq!(last.filters.len(), 1, "merged from job0");
    assert_eq!(last.targets[0].name, "t19999", "the job's own targets win");
}

/// A valid poller config with `jobs` jobs of one target each; with `merge`, job0 is anchored
/// (a mapping of 40 nodes) and every other job merges it and sets its own targets.
fn many_jobs(jobs: usize, merge: bool) -> String {
    let mut text = String::from(
        "scrape_interval: 60s\npoller_stream: {cluster_id: site, urls: nats://127.0.0.1:4222}\n\
         jobs:\n",
    );
    for index in 0..jobs {
        let target =
            format!("    targets: [{{name: t{index}, url: 'http://127.0.0.1:9100/metrics'}}]\n");
        if !merge {
            text.push_str(&format!("  job{index}:\n{target}"));
        } else if index == 0 {
            text.push_str(&format!(
                "  job0: &job\n{target}    scrape_interval: 30s\n    scrape_timeout: 7s\n\
                 \x20   scrape_body_limit: 1MiB\n    label_limit: 200\n\
                 \x20   tls_config: {{ca_file: ca.pem, server_name: metrics, insecure_skip_verify: false}}\n\
                 \x20   filters:\n      - {{name: tag, module: tag.wasm, on_error: pass, \
                 limits: {{time: 20ms, memory: 16MiB}}}}\n"
            ));
        } else {
            text.push_str(&format!("  job{index}:\n    <<: *job\n{target}"));
        }
    }
    text
}

/// The key comparisons one parse makes.
fn comparisons_of(text: &str) -> u64 {
    KEY_COMPARISONS.with(|count| count.set(0));
    let _ = parse(text, "scale.yaml");
    KEY_COMPARISONS.with(std::cell::Cell::get)
}

#[test]
fn reading_a_config_costs_a_bounded_number_of_key_comparisons_per_key() {
    // Before: every unknown key was compared with every other key (n²/2), and every key of a
    // mapping with every key before it. Now a few dozen per key, whatever their number.
    for keys in [1_000, 10_000] {
        let mut text = String::from("scrape_interval: 60s\n");
        for index in 0..keys {
            text.push_str(&format!("unknown_{index}: 1\n"));
        }
        let per_key = comparisons_of(&text) / keys as u64;
        assert!(
            per_key <= 64,
            "{per_key} comparisons per key with {keys} keys"
        );
    }
    for jobs in [1_000, 5_000] {
        let per_job = comparisons_of(&many_jobs(jobs, false)) / jobs as u64;
        assert!(
            per_job <= 64,
            "{per_job} comparisons per job with {jobs} jobs"
        );
    }
}

#[test]
fn a_config_with_100_000_unknown_keys_is_read_and_every_key_reported() {
    // Before, 100 000 keys took 86 s (issue 11; each unknown key was compared with every
    // other): a regression to quadratic makes this test time out. The keys are long, so the
    // "did you mean" search (measured above with short keys) ends at the length check and a
    // debug build stays quick.
    let mut text = String::from("scrape_interval: 60s\n");
    for index in 0..100_000 {
        text.push_str(&format!("generated_by_a_tool_key_{index:06}: {index}\n"));
    }
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 100_000);
    assert_eq!(problems[99_999].line, Some(100_001));
    assert_eq!(problems[99_999].key, "generated_by_a_tool_key_099999");
    assert_eq!(
        problems[0].message,
        "unknown key \"generated_by_a_tool_key_000000\" at the top level"
    );
}

#[test]
fn a_job_with_20_000_targets_loads_and_duplicate_instances_are_still_found() {
    let mut text = String::from(
        "scrape_interval: 60s\npoller_stream: {cluster_id: site, urls: nats://127.0.0.1:4222}\n\
         jobs:\n  node:\n    targets:\n",
    );
    for index in 0..20_000 {
        text.push_str(&format!(
            "      - http://10.0.{}.{}:9100/metrics\n",
            index / 250,
            index % 250
        ));
    }
    assert_eq!(load_text(&text).jobs[0].targets.len(), 20_000);
    text.push_str("      - http://10.0.0.7:9100/metrics\n");
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].message.contains("already used by target [7]"),
        "{problems:#?}"
    );
}

#[test]
fn every_problem_of_thousands_of_mutated_samples_names_a_line_of_the_file() {
    let samples = [ORIGINAL.as_bytes(), FULL.as_bytes()];
    let mut rng = Rng::new(6);
    let mut refused = 0;
    for case in 0..2_000 {
        let input = mutate(samples[case % samples.len()], &mut rng);
        let text = String::from_utf8_lossy(&input);
        let Err(error) = parse(&text, "fuzz.yaml") else {
            continue;
        };
        refused += 1;
        let lines = line_count(text.as_bytes());
        for problem in &error.problems {
            assert!(
                problem.line.is_some_and(|line| (1..=lines).contains(&line)),
                "case {case}: {problem:?} names no line of the {lines}-line file:\n{text}"
            );
        }
    }
    assert!(
        refused > 500,
        "only {refused} of 2000 mutated samples were refused"
    );
}

/// Plain Levenshtein over the whole matrix: the reference the banded one must agree with.
fn reference_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (i, l) in left.chars().enumerate() {
        let mut current = vec![i + 1; right.len() + 1];
        for (j, r) in right.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(l != *r))
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[right.len()]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// The banded, early-exit distance is the full distance whenever that is within the limit.
    #[test]
    fn the_bounded_edit_distance_agrees_with_the_full_one(
        left in "[a-cé_]{0,12}",
        right in "[a-cé_]{0,12}",
        limit in 0usize..6,
    ) {
        let full = reference_distance(&left, &right);
        let expected = (full <= limit).then_some(full);
        proptest::prop_assert_eq!(values::edit_distance_within(&left, &right, limit), expected);
    }
}
