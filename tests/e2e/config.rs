//! `promrelay check-config` against hostile configs: it answers quickly, in bounded memory, with
//! the line of the problem.

use std::time::Duration;

use promrelay_tests::relay::check_config_bounded;

/// The "billion laughs" of the issue (612 bytes; its 632 had more spaces): nine `lol`s, then eight levels of nine aliases each to the
/// level before (9^9 strings once expanded: 8 GB and minutes before the bound).
fn alias_bomb() -> String {
    let mut text = format!("lol0: &lol0 [{}]\n", ["\"lol\""; 9].join(","));
    for level in 1..=8 {
        let aliases = vec![format!("*lol{}", level - 1); 9].join(",");
        text.push_str(&format!("lol{level}: &lol{level} [{aliases}]\n"));
    }
    text
}

#[test]
fn check_config_refuses_an_alias_bomb_naming_its_line_in_bounded_memory() {
    let bomb = alias_bomb();
    // 1 GiB of address space and a minute: far more than the bounded parse needs, far less
    // than the unbounded expansion took (8 GB, past 20 s).
    let check = check_config_bounded(&bomb, 1 << 30, Duration::from_secs(60));
    let status = check
        .status
        .unwrap_or_else(|| panic!("check-config still ran after 60 s:\n{}", check.output));
    assert_eq!(status.code(), Some(1), "{status}:\n{}", check.output);
    let expected = "promrelay.yaml:6: lol5: this anchor would copy 597871 nodes";
    assert!(
        check.output.contains(expected),
        "{expected:?} not in:\n{}",
        check.output
    );
    assert!(
        check.output.contains("against YAML alias bombs"),
        "{}",
        check.output
    );
}
