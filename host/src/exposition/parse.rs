//! Text exposition → samples handed to an [`Output`]: the model's families ([`parse`]) or a batch
//! (`exposition::batch`). One pass over the lines, `memchr` to find line ends and the ends of label
//! values, `fast-float2` for values; every name and label is borrowed from the input (a label
//! value is copied only to unescape it), so what is built is the output's choice.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use memchr::memchr;

use super::scan::{
    excerpt, is_blank, label_name_end, label_value, metric_name_end, parse_timestamp, parse_value,
    skip_blanks, token_end, unescape_help, NameHasher,
};
use super::ParseError;
use crate::model::{Family, Label, MetricType, Series, Str};

/// Child-sample suffixes a typed family may own, with the types that own each.
const SUFFIXES: [&str; 8] = [
    "_bucket", "_sum", "_count", "_created", "_total", "_info", "_gsum", "_gcount",
];

/// Parses a whole exposition. Fails as a whole on the first malformed line. No label limit:
/// for text that was already held to one (the receiver's, the tools').
pub fn parse(input: &[u8]) -> Result<Vec<Family>, ParseError> {
    parse_text(input, None)
}

/// The label limit a scrape is parsed under (Prometheus' `label_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelLimit<'l> {
    /// Most labels one series may carry, counting `__name__` and `added`.
    pub limit: usize,
    /// Labels the caller adds to every series after the parse (the target labels): counted now,
    /// so that the limit still holds once they are there.
    pub added: &'l [&'l str],
}

/// Parses a scrape like [`parse`], and fails it on the first sample with more labels than
/// `limit` allows: its written labels, plus `__name__`, plus `limit.added`.
///
/// ```
/// use promrelay::exposition::{parse_with_label_limit, LabelLimit};
///
/// let limit = LabelLimit { limit: 5, added: &["job", "instance"] };
/// assert!(parse_with_label_limit(b"a{x=\"1\",y=\"2\"} 1\n", limit).is_ok());
/// let error = parse_with_label_limit(b"a 1\nb{x=\"1\",y=\"2\",z=\"3\"} 1\n", limit)
///     .expect_err("six labels");
/// assert_eq!(error.line, 2);
/// ```
pub fn parse_with_label_limit(
    input: &[u8],
    limit: LabelLimit<'_>,
) -> Result<Vec<Family>, ParseError> {
    parse_text(input, Some(limit))
}

fn parse_text(input: &[u8], limit: Option<LabelLimit<'_>>) -> Result<Vec<Family>, ParseError> {
    let text = utf8(input)?;
    let mut out = ModelOutput::default();
    let heads = parse_into(text, limit, &mut out)?;
    Ok(out.families(heads))
}

/// The input as text, or the line of its first invalid UTF-8 byte.
pub(super) fn utf8(input: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(input).map_err(|error| {
        let before = &input[..error.valid_up_to()];
        ParseError {
            line: memchr::memchr_iter(b'\n', before).count() + 1,
            reason: "invalid UTF-8".to_string(),
        }
    })
}

/// Parses `text` into `out`; returns the families' metadata in the order they were first named
/// (families without samples included: outputs leave them out).
pub(super) fn parse_into<'a, O: Output<'a>>(
    text: &'a str,
    limit: Option<LabelLimit<'a>>,
    out: &mut O,
) -> Result<Vec<Head<'a>>, ParseError> {
    let mut parser = Parser::new(text, out);
    if let Some(limit) = limit {
        parser.written_labels = limit.limit.saturating_sub(1 + limit.added.len());
        parser.limit = Some(limit);
    }
    parser.run()
}

/// One label of a sample as the parser hands it out: borrowed from the input, the value copied
/// only when it had escapes.
#[derive(Debug, Clone)]
pub(super) struct Pair<'a> {
    pub(super) name: &'a str,
    pub(super) value: Cow<'a, str>,
}

/// A family's metadata as parsed: what HELP, TYPE and UNIT said, and how many samples it got.
#[derive(Debug, Clone)]
pub(super) struct Head<'a> {
    pub(super) name: &'a str,
    pub(super) help: Option<Cow<'a, str>>,
    pub(super) unit: Option<&'a str>,
    pub(super) kind: MetricType,
    pub(super) samples: usize,
    seen: Seen,
}

/// Where the parser's samples go.
pub(super) trait Output<'a> {
    /// Hot path: one sample of family `family` (an index into the heads [`parse_into`] returns),
    /// named `name`, its labels strictly sorted by name (no `__name__`, no duplicates).
    fn sample(
        &mut self,
        family: usize,
        family_name: &'a str,
        name: &'a str,
        labels: &[Pair<'a>],
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), String>;
}

/// The model's families: the editing view (the receiver's text messages, the tools, tests).
#[derive(Default)]
struct ModelOutput {
    series: Vec<Vec<Series>>,
}

impl<'a> Output<'a> for ModelOutput {
    fn sample(
        &mut self,
        family: usize,
        _family_name: &'a str,
        name: &'a str,
        labels: &[Pair<'a>],
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), String> {
        if family >= self.series.len() {
            self.series.resize_with(family + 1, Vec::new);
        }
        let series = &mut self.series[family];
        let name = match series.last() {
            Some(previous) if previous.name == name => previous.name.clone(),
            _ => Str::from(name),
        };
        series.push(Series {
            name,
            labels: labels
                .iter()
                .map(|pair| Label::new(pair.name, pair.value.as_ref()))
                .collect(),
            value,
            timestamp_ms,
        });
        Ok(())
    }
}

impl ModelOutput {
    fn families(mut self, heads: Vec<Head<'_>>) -> Vec<Family> {
        self.series.resize_with(heads.len(), Vec::new);
        heads
            .into_iter()
            .zip(self.series)
            .filter(|(_, series)| !series.is_empty())
            .map(|(head, series)| Family {
                name: Str::from(head.name),
                help: head.help.map(|help| Str::from(help.as_ref())),
                unit: head.unit.map(Str::from),
                kind: head.kind,
                series,
            })
            .collect()
    }
}

/// What the model does not record about a family while it is being parsed.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    help: bool,
    kind: bool,
    unit: bool,
}

struct Parser<'a, 'o, O> {
    text: &'a str,
    out: &'o mut O,
    heads: Vec<Head<'a>>,
    by_name: HashMap<&'a str, usize, BuildHasherDefault<NameHasher>>,
    /// The family the last HELP/TYPE/UNIT line named: its samples usually follow.
    declared: Option<usize>,
    /// The family the previous sample went to: the next sample almost always goes there too.
    current: Option<usize>,
    /// Labels of the sample being parsed, reused across samples.
    scratch: Vec<Pair<'a>>,
    after_eof: bool,
    /// The label limit, for its message.
    limit: Option<LabelLimit<'a>>,
    /// Most labels a sample may write between its braces under `limit`.
    written_labels: usize,
}

impl<'a, 'o, O: Output<'a>> Parser<'a, 'o, O> {
    fn new(text: &'a str, out: &'o mut O) -> Self {
        // node_exporter averages ~200 bytes per family; over-reserving a little is cheaper than growing.
        let families = text.len() / 128 + 4;
        Parser {
            text,
            out,
            heads: Vec::with_capacity(families),
            by_name: HashMap::with_capacity_and_hasher(families, BuildHasherDefault::default()),
            declared: None,
            current: None,
            scratch: Vec::with_capacity(16),
            after_eof: false,
            limit: None,
            written_labels: usize::MAX,
        }
    }

    fn run(mut self) -> Result<Vec<Head<'a>>, ParseError> {
        let bytes = self.text.as_bytes();
        let mut start = 0;
        let mut line_number = 0;
        while start < bytes.len() {
            line_number += 1;
            let end = memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |offset| start + offset);
            let mut content_end = end;
            if content_end > start && bytes[content_end - 1] == b'\r' {
                content_end -= 1;
            }
            let line = &self.text[start..content_end];
            if let Err(reason) = self.line(line) {
                return Err(ParseError {
                    line: line_number,
                    reason,
                });
            }
            start = end + 1;
        }
        Ok(self.heads)
    }

    /// Hot path: called once per line.
    fn line(&mut self, line: &'a str) -> Result<(), String> {
        let start = skip_blanks(line.as_bytes(), 0);
        if start == line.len() {
            return Ok(());
        }
        if self.after_eof {
            return Err("content after # EOF".to_string());
        }
        let line = &line[start..];
        if line.as_bytes()[0] == b'#' {
            self.comment(line)
        } else {
            self.sample(line)
        }
    }

    fn comment(&mut self, line: &'a str) -> Result<(), String> {
        let bytes = line.as_bytes();
        let keyword_start = skip_blanks(bytes, 1);
        let keyword_end = token_end(bytes, keyword_start);
        let rest_start = skip_blanks(bytes, keyword_end);
        let rest = &line[rest_start..];
        match &line[keyword_start..keyword_end] {
            "HELP" => self.help(rest),
            "TYPE" => self.kind(rest),
            "UNIT" => self.unit(rest),
            "EOF" if rest.is_empty() => {
                self.after_eof = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn help(&mut self, rest: &'a str) -> Result<(), String> {
        let Some((name, text)) = metadata_name(rest, "HELP")? else {
            return Ok(());
        };
        let index = self.family_by_exact_name(name);
        let head = &mut self.heads[index];
        if head.seen.help {
            return Err(format!("second HELP line for {name}"));
        }
        head.seen.help = true;
        head.help = Some(unescape_help(text));
        Ok(())
    }

    fn kind(&mut self, rest: &'a str) -> Result<(), String> {
        let Some((name, word)) = metadata_name(rest, "TYPE")? else {
            return Ok(());
        };
        let word_end = token_end(word.as_bytes(), 0);
        if word_end == 0 {
            return Err(format!("missing type in TYPE line for {name}"));
        }
        if skip_blanks(word.as_bytes(), word_end) != word.len() {
            return Err(format!(
                "unexpected text after the type in TYPE line for {name}"
            ));
        }
        let word = &word[..word_end];
        let kind = MetricType::parse(word)
            .ok_or_else(|| format!("unknown metric type {word:?} for {name}"))?;
        let index = self.family_by_exact_name(name);
        let head = &mut self.heads[index];
        if head.seen.kind {
            return Err(format!("second TYPE line for {name}"));
        }
        if head.samples > 0 {
            return Err(format!("TYPE for {name} after its samples"));
        }
        head.seen.kind = true;
        head.kind = kind;
        Ok(())
    }

    fn unit(&mut self, rest: &'a str) -> Result<(), String> {
        let Some((name, unit)) = metadata_name(rest, "UNIT")? else {
            return Ok(());
        };
        let unit = unit.trim_end_matches([' ', '\t']);
        let index = self.family_by_exact_name(name);
        let head = &mut self.heads[index];
        if head.seen.unit {
            return Err(format!("second UNIT line for {name}"));
        }
        head.seen.unit = true;
        if !unit.is_empty() {
            head.unit = Some(unit);
        }
        Ok(())
    }

    /// The family declared under exactly `name` (HELP/TYPE/UNIT name families, not children).
    fn family_by_exact_name(&mut self, name: &'a str) -> usize {
        let index = match self.declared {
            Some(index) if self.heads[index].name == name => index,
            _ => self.create_family(name),
        };
        self.declared = Some(index);
        index
    }

    /// The family named exactly `name`, created (untyped, without metadata) if there is none.
    fn create_family(&mut self, name: &'a str) -> usize {
        match self.by_name.entry(name) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let index = self.heads.len();
                entry.insert(index);
                self.heads.push(Head {
                    name,
                    help: None,
                    unit: None,
                    kind: MetricType::Untyped,
                    samples: 0,
                    seen: Seen::default(),
                });
                index
            }
        }
    }

    /// The family a sample named `name` belongs to, created untyped if there is none.
    /// Like Prometheus' parser, a typed parent (`foo` for `foo_bucket`) wins over an exact name.
    fn family_for_sample(&mut self, name: &'a str) -> usize {
        if let Some(current) = self.current {
            if belongs(&self.heads[current], name) {
                return current;
            }
        }
        if let Some(declared) = self.declared {
            if belongs(&self.heads[declared], name) {
                return declared;
            }
        }
        for suffix in SUFFIXES {
            if let Some(parent) = name.strip_suffix(suffix) {
                if let Some(&index) = self.by_name.get(parent) {
                    if allows_suffix(self.heads[index].kind, suffix) {
                        return index;
                    }
                }
            }
        }
        if let Some(&index) = self.by_name.get(name) {
            return index;
        }
        self.create_family(name)
    }

    /// Hot path: one sample line, `name{labels} value [timestamp]`.
    fn sample(&mut self, line: &'a str) -> Result<(), String> {
        let bytes = line.as_bytes();
        let name_end = metric_name_end(bytes, 0);
        if name_end == 0 {
            return Err(format!("invalid metric name at {:?}", excerpt(line)));
        }
        let name = &line[..name_end];
        let mut position = skip_blanks(bytes, name_end);
        let has_labels = bytes.get(position) == Some(&b'{');
        if !has_labels && position == name_end && position < bytes.len() {
            return Err(format!("invalid metric name at {:?}", excerpt(line)));
        }
        let index = self.family_for_sample(name);
        self.current = Some(index);
        self.scratch.clear();
        if has_labels {
            position = labels(line, position + 1, name, &mut self.scratch)?;
            position = skip_blanks(bytes, position);
            if self.scratch.len() > self.written_labels {
                return Err(self.too_many_labels(name));
            }
        }
        let value_end = token_end(bytes, position);
        if value_end == position {
            return Err(format!("missing value for sample {name}"));
        }
        let value = parse_value(&line[position..value_end]).ok_or_else(|| {
            format!(
                "invalid value {:?} for sample {name}",
                &line[position..value_end]
            )
        })?;
        position = skip_blanks(bytes, value_end);
        let mut timestamp_ms = None;
        if position < bytes.len() {
            let timestamp_end = token_end(bytes, position);
            let token = &line[position..timestamp_end];
            timestamp_ms = Some(
                parse_timestamp(token)
                    .ok_or_else(|| format!("invalid timestamp {token:?} for sample {name}"))?,
            );
            if skip_blanks(bytes, timestamp_end) != bytes.len() {
                return Err(format!(
                    "unexpected text after the timestamp of sample {name}"
                ));
            }
        }
        self.sort_labels(name)?;
        let head = &mut self.heads[index];
        head.samples += 1;
        self.out
            .sample(index, head.name, name, &self.scratch, value, timestamp_ms)
    }

    /// The message for a sample over the label limit (cold: at most once per parse).
    #[cold]
    fn too_many_labels(&self, metric: &str) -> String {
        let written = self.scratch.len();
        let Some(limit) = self.limit else {
            return format!("sample {metric} has {written} labels");
        };
        let mut counted = vec!["__name__"];
        counted.extend_from_slice(limit.added);
        let counted = match counted.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        format!(
            "sample {metric} has {written} labels, {} with {counted}: more than the label_limit \
             of {} (raise the job's label_limit, or drop labels at the target)",
            written + 1 + limit.added.len(),
            limit.limit
        )
    }

    /// Hot path: sorts the scratch labels by name and refuses duplicates.
    fn sort_labels(&mut self, metric: &str) -> Result<(), String> {
        // Exporters mostly write labels sorted, except histograms' `le` last: check before sorting.
        if self
            .scratch
            .windows(2)
            .all(|pair| pair[0].name < pair[1].name)
        {
            return Ok(());
        }
        self.scratch
            .sort_unstable_by(|left, right| left.name.cmp(right.name));
        if let Some(pair) = self
            .scratch
            .windows(2)
            .find(|pair| pair[0].name == pair[1].name)
        {
            return Err(format!(
                "duplicate label name {} in sample {metric}",
                pair[0].name
            ));
        }
        Ok(())
    }
}

/// Hot path: the label set after `{`, into `scratch`. Returns the position after `}`.
fn labels<'a>(
    line: &'a str,
    mut position: usize,
    metric: &str,
    scratch: &mut Vec<Pair<'a>>,
) -> Result<usize, String> {
    let bytes = line.as_bytes();
    loop {
        position = skip_blanks(bytes, position);
        match bytes.get(position) {
            Some(b'}') => return Ok(position + 1),
            None => return Err(format!("unterminated label set for sample {metric}")),
            _ => {}
        }
        let name_end = label_name_end(bytes, position);
        if name_end == position {
            return Err(format!(
                "invalid label name at {:?} in sample {metric}",
                excerpt(&line[position..])
            ));
        }
        let label = &line[position..name_end];
        if label == "__name__" {
            return Err(format!(
                "label name \"__name__\" is reserved (sample {metric})"
            ));
        }
        position = skip_blanks(bytes, name_end);
        if bytes.get(position) != Some(&b'=') {
            return Err(format!(
                "expected '=' after label name {label} in sample {metric}"
            ));
        }
        position = skip_blanks(bytes, position + 1);
        if bytes.get(position) != Some(&b'"') {
            return Err(format!(
                "expected '\"' to open the value of label {label} in sample {metric}"
            ));
        }
        let (value, after) = label_value(line, position + 1)
            .map_err(|reason| format!("{reason} for label {label} in sample {metric}"))?;
        scratch.push(Pair { name: label, value });
        position = skip_blanks(bytes, after);
        match bytes.get(position) {
            Some(b',') => position += 1,
            Some(b'}') => return Ok(position + 1),
            None => return Err(format!("unterminated label set for sample {metric}")),
            _ => {
                return Err(format!(
                    "expected ',' or '}}' after the value of label {label} in sample {metric}"
                ))
            }
        }
    }
}

/// Splits `name rest` of a HELP/TYPE/UNIT line. `None` when there is no name at all (a comment).
fn metadata_name<'a>(rest: &'a str, keyword: &str) -> Result<Option<(&'a str, &'a str)>, String> {
    if rest.is_empty() {
        return Ok(None);
    }
    let bytes = rest.as_bytes();
    let name_end = metric_name_end(bytes, 0);
    if name_end == 0 || (name_end < bytes.len() && !is_blank(bytes[name_end])) {
        return Err(format!(
            "invalid metric name in {keyword} line at {:?}",
            excerpt(rest)
        ));
    }
    let text_start = skip_blanks(bytes, name_end);
    Ok(Some((&rest[..name_end], &rest[text_start..])))
}

/// Whether a sample named `name` belongs to `family` (its own name or a child its type allows).
fn belongs(family: &Head<'_>, name: &str) -> bool {
    match name.strip_prefix(family.name) {
        Some("") => true,
        Some(suffix) => allows_suffix(family.kind, suffix),
        None => false,
    }
}

fn allows_suffix(kind: MetricType, suffix: &str) -> bool {
    match kind {
        MetricType::Histogram => matches!(suffix, "_bucket" | "_sum" | "_count" | "_created"),
        MetricType::Summary => matches!(suffix, "_sum" | "_count" | "_created"),
        MetricType::Counter => matches!(suffix, "_total" | "_created"),
        MetricType::GaugeHistogram => matches!(suffix, "_bucket" | "_gsum" | "_gcount"),
        MetricType::Info => suffix == "_info",
        MetricType::Gauge | MetricType::StateSet | MetricType::Untyped => false,
    }
}
