//! A small Prometheus text-format (0.0.4) reader and writer for the test harness: enough to
//! write test inputs by hand and compare outputs as text. The relay uses its own parser.

use std::fmt::Write as _;

use promrelay_abi::{BatchReader, BatchWriter, MetricType, NAME_LABEL};

use crate::batch::SAMPLE_SUFFIXES;
use crate::error::Error;

struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

struct TextFamily {
    name: String,
    help: Option<String>,
    kind: MetricType,
    samples: Vec<Sample>,
}

/// Encodes Prometheus text as a batch.
pub(crate) fn parse(text: &str) -> Result<Vec<u8>, Error> {
    let mut families: Vec<TextFamily> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = |e: String| Error::new(format!("line {}: {e}", number + 1));
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let (keyword, name, rest) = (words.next(), words.next(), words.next().unwrap_or(""));
            let (Some(keyword @ ("HELP" | "TYPE")), Some(name)) = (keyword, name) else {
                continue;
            };
            let family = family_for_metadata(&mut families, name);
            if keyword == "HELP" {
                family.help = Some(unescape(rest, false));
            } else {
                family.kind =
                    parse_kind(rest.trim()).ok_or_else(|| at(format!("unknown type {rest:?}")))?;
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let belongs = families.last().is_some_and(|f| {
            sample.name == f.name
                || sample
                    .name
                    .strip_prefix(f.name.as_str())
                    .is_some_and(|suffix| SAMPLE_SUFFIXES.contains(&suffix))
        });
        if !belongs {
            families.push(TextFamily {
                name: sample.name.clone(),
                help: None,
                kind: MetricType::Untyped,
                samples: Vec::new(),
            });
        }
        families
            .last_mut()
            .expect("a family exists: pushed above if needed")
            .samples
            .push(sample);
    }
    let mut writer = BatchWriter::new();
    let encode = |e: promrelay_abi::WriteError| Error::new(format!("cannot encode: {e}"));
    for family in &families {
        writer
            .begin_family(&family.name, family.help.as_deref(), None, family.kind)
            .map_err(encode)?;
        for sample in &family.samples {
            let labels = sample.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()));
            writer
                .add_series_named(&sample.name, labels, sample.value, sample.timestamp_ms)
                .map_err(|e| Error::new(format!("series {}: {}", sample.name, encode(e))))?;
        }
    }
    Ok(writer.finish())
}

fn family_for_metadata<'f>(families: &'f mut Vec<TextFamily>, name: &str) -> &'f mut TextFamily {
    let reuse = families
        .last()
        .is_some_and(|f| f.name == name && f.samples.is_empty());
    if !reuse {
        families.push(TextFamily {
            name: name.to_owned(),
            help: None,
            kind: MetricType::Untyped,
            samples: Vec::new(),
        });
    }
    families
        .last_mut()
        .expect("a family exists: pushed above if needed")
}

fn parse_kind(word: &str) -> Option<MetricType> {
    Some(match word {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "gaugehistogram" => MetricType::GaugeHistogram,
        "info" => MetricType::Info,
        "stateset" => MetricType::StateSet,
        "untyped" | "unknown" => MetricType::Untyped,
        _ => return None,
    })
}

fn kind_word(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::GaugeHistogram => "gaugehistogram",
        MetricType::Info => "info",
        MetricType::StateSet => "stateset",
        MetricType::Untyped => "untyped",
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("missing metric name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let label = rest[..eq].trim().to_owned();
            let quoted = rest[eq + 1..]
                .trim_start()
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let (value, after) = quoted_value(quoted)?;
            if label == NAME_LABEL {
                return Err("use the metric name, not a __name__ label".to_owned());
            }
            labels.push((label, value));
            rest = after;
        }
    }
    labels.sort();
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("missing value")?;
    let value = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    let timestamp_ms = match fields.next() {
        Some(ts) => Some(
            ts.parse::<i64>()
                .map_err(|_| format!("bad timestamp {ts:?}"))?,
        ),
        None => None,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// The value of a quoted label (after the opening quote) and the text after its closing quote.
fn quoted_value(text: &str) -> Result<(String, &str), String> {
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match (escaped, c) {
            (false, '\\') => escaped = true,
            (false, '"') => return Ok((unescape(&text[..index], true), &text[index + 1..])),
            _ => escaped = false,
        }
    }
    Err("unterminated label value".to_owned())
}

fn unescape(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

/// Renders a batch as Prometheus text: `# HELP`/`# TYPE` only for families that have them
/// (untyped families without help print samples only), labels in stored order.
pub(crate) fn render(bytes: &[u8]) -> Result<String, Error> {
    let reader =
        BatchReader::new(bytes).map_err(|e| Error::new(format!("unreadable batch: {e}")))?;
    let text = |index| reader.str(index).map_err(|e| Error::new(e.to_string()));
    let mut out = String::new();
    for family in reader.families() {
        let name = text(family.name)?;
        if let Some(help) = reader
            .opt_str(family.help)
            .map_err(|e| Error::new(e.to_string()))?
        {
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}");
        }
        if family.kind != MetricType::Untyped {
            let _ = writeln!(out, "# TYPE {name} {}", kind_word(family.kind));
        }
        for index in family.first_series..family.first_series + family.series_count {
            let series = reader
                .series(index)
                .map_err(|e| Error::new(e.to_string()))?;
            let mut sample_name = "";
            let mut labels = Vec::new();
            for label in reader.labels(&series) {
                let (label_name, value) = (text(label.name)?, text(label.value)?);
                if label_name == NAME_LABEL {
                    sample_name = value;
                } else {
                    let value = value
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    labels.push(format!("{label_name}=\"{value}\""));
                }
            }
            out.push_str(sample_name);
            if !labels.is_empty() {
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = write!(out, " {}", format_value(series.value));
            if let Some(ts) = series.timestamp_ms {
                let _ = write!(out, " {ts}");
            }
            out.push('\n');
        }
    }
    Ok(out)
}
