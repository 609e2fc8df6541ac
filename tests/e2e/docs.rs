//! docs/guarantees.md names, per fault, the end-to-end test that shows it: every test it names
//! exists, so the table cannot point at a test that was renamed or removed.

use std::path::Path;

#[test]
fn every_test_named_in_guarantees_md_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/guarantees.md")).expect("docs/guarantees.md");
    let mut named = 0;
    for quoted in doc.split('`').skip(1).step_by(2) {
        let Some((module, function)) = quoted.split_once("::") else {
            continue;
        };
        if !module.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            || !function
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        let file = root.join("tests/e2e").join(format!("{module}.rs"));
        let source = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("guarantees.md names {quoted}: {}: {e}", file.display()));
        assert!(
            source.contains(&format!("fn {function}(")),
            "guarantees.md names {quoted}, which {} does not define",
            file.display()
        );
        named += 1;
    }
    assert!(named >= 20, "guarantees.md names {named} tests");
}
