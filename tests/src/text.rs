//! A deliberately simple, independent reader of Prometheus text exposition for test assertions.
//!
//! It is not the project's parser (`promrelay::exposition`): tests that check what promrelay
//! produced must not trust promrelay's own parser to read it. It reads samples only (comments are
//! skipped), understands label escapes, NaN and ±Inf, and an optional timestamp.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The identity of the series (`name{labels}`) without the labels in `without`, in a stable
    /// textual form, for comparing sets of series from two sources.
    pub fn key_without(&self, without: &[&str]) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(name, _)| !without.contains(&name.as_str()))
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }

    /// The identity of the series with all its labels.
    pub fn key(&self) -> String {
        self.key_without(&[])
    }

    /// Whether two values are equal, NaN equal to NaN.
    pub fn same_value(&self, other: &Sample) -> bool {
        self.value == other.value || self.value.is_nan() && other.value.is_nan()
    }
}

/// Reads every sample line of `text`; the error names the line.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample =
            parse_line(line).map_err(|reason| format!("line {}: {reason}: {line}", index + 1))?;
        samples.push(sample);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).ok_or("no value")?;
    let name = line[..name_end].to_string();
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    let timestamp_ms = match fields.next() {
        Some(ts) => Some(ts.parse().map_err(|_| format!("bad timestamp {ts:?}"))?),
        None => None,
    };
    if fields.next().is_some() {
        return Err("trailing text after the timestamp".into());
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `a="1",b="2"}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let equals = rest.find('=').ok_or("label without '='")?;
        let name = rest[..equals].trim().to_string();
        rest = rest[equals + 1..].trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or("label value without opening quote")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => return Err("unterminated escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.clone(), value).is_some() {
            return Err(format!("duplicate label {name}"));
        }
        rest = rest[end + 1..].trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

fn parse_value(word: &str) -> Result<f64, String> {
    match word {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => word.parse().map_err(|_| format!("bad value {word:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_escapes_special_values_and_timestamps() {
        let text = "# HELP x help\n# TYPE x counter\nx 1\ny{a=\"q\\\"\\\\\\n\",b=\"2\",} NaN 123\nz{} -Inf\n";
        let samples = parse_samples(text).expect("valid text");
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "x");
        assert_eq!(samples[1].label("a"), Some("q\"\\\n"));
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[1].timestamp_ms, Some(123));
        assert_eq!(samples[2].value, f64::NEG_INFINITY);
        assert_eq!(samples[1].key_without(&["a"]), "y{b=\"2\"}");
    }

    #[test]
    fn names_the_bad_line() {
        let error = parse_samples("ok 1\nbroken{a=\"1\" 2\n").expect_err("malformed");
        assert!(error.starts_with("line 2:"), "{error}");
    }
}
