//! Value syntaxes of the config: durations, byte sizes, NATS names and subject tokens. Pure
//! functions, no I/O; they return `None`/`Err(reason)` and leave reporting to the caller.

use std::time::Duration;

/// Parses a Go-style duration (`60s`, `1m30s`, `1.5h`, `500ms`, also `d` for days) or bare
/// seconds (`90`, `2.5`). `0` is zero. Negative values are refused.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::try_from_secs_f64(seconds).ok())
            .flatten();
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_end == 0 {
            return None;
        }
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Parses a byte size: a whole number of bytes, or a number with a unit: `B`, `KB`/`MB`/`GB`
/// (powers of 1000), `KiB`/`MiB`/`GiB` (powers of 1024); units are case-insensitive and may be
/// separated by a space.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier);
    }
    let fraction: f64 = number.parse().ok()?;
    let bytes = (fraction * multiplier as f64).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Checks a JetStream stream or consumer name: non-empty, at most 255 characters, no whitespace
/// or control characters, none of `.`, `*`, `>`, `/`, `\`.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.chars().count() > 255 {
        return Err(format!("{name:?} is longer than 255 characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "{name:?} is not a valid JetStream name: it contains {bad:?} \
             (spaces, '.', '*', '>', '/' and '\\' are not allowed)"
        ));
    }
    Ok(())
}

/// Checks one NATS subject token: non-empty, no whitespace or control characters, none of `.`,
/// `*`, `>`.
pub fn check_subject_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(bad) = token
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>'))
    {
        return Err(format!(
            "{token:?} cannot be used in a NATS subject: it contains {bad:?} \
             (spaces, '.', '*' and '>' are not allowed)"
        ));
    }
    Ok(())
}

/// Checks an identity or job name. Any printable text works: in a subject it travels as
/// `wire::subject_token` makes it (`.`, `*`, `>` and spaces become `_`), and exactly in the
/// message headers. An FQDN identity (the Puppet certificate name) stays as it is.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(bad) = name.chars().find(|c| c.is_control()) {
        return Err(format!("{name:?} contains the control character {bad:?}"));
    }
    Ok(())
}

/// Checks a subject prefix: one or more valid tokens joined by `.`.
pub fn check_subject_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".to_string());
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(format!(
                "{prefix:?} is not a valid subject prefix: empty token (leading, trailing or double '.')"
            ));
        }
        check_subject_token(token)
            .map_err(|reason| format!("{prefix:?} is not a valid subject prefix: {reason}"))?;
    }
    Ok(())
}

/// Levenshtein distance between `left` and `right` if it is at most `limit`, else `None`: for
/// "did you mean" suggestions on unknown keys, where only near misses matter.
///
/// Cost: O(len × limit). Only the diagonal band of width `2 × limit + 1` can hold a distance
/// within the limit, and a row whose every cell is past it ends the search early: a config with
/// 100 000 unknown keys compares each with a few dozen candidates, so this runs millions of
/// times.
///
/// ```
/// use promrelay::config::values::edit_distance_within;
///
/// assert_eq!(edit_distance_within("scrape_intervall", "scrape_interval", 2), Some(1));
/// assert_eq!(edit_distance_within("stie", "site", 2), Some(2));
/// assert_eq!(edit_distance_within("unknown_key_7", "scrape_interval", 3), None);
/// ```
pub fn edit_distance_within(left: &str, right: &str, limit: usize) -> Option<usize> {
    // The distance is at least the difference in length: most candidates end here.
    if left.chars().count().abs_diff(right.chars().count()) > limit {
        return None;
    }
    let left: Vec<char> = left.chars().collect();
    let right: Vec<char> = right.chars().collect();
    // Every cell holds min(distance, past): outside the band nothing is within the limit.
    let past = limit + 1;
    let mut previous: Vec<usize> = (0..=right.len()).map(|j| j.min(past)).collect();
    let mut current = vec![past; right.len() + 1];
    for (i, l) in left.iter().enumerate() {
        let row = i + 1;
        current.fill(past);
        current[0] = row.min(past);
        let mut best = current[0];
        for j in row.saturating_sub(limit).max(1)..=(row + limit).min(right.len()) {
            let substitution = previous[j - 1] + usize::from(*l != right[j - 1]);
            let cell = substitution
                .min(previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(past);
            current[j] = cell;
            best = best.min(cell);
        }
        if best > limit {
            return None;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    let distance = previous[right.len()];
    (distance <= limit).then_some(distance)
}
