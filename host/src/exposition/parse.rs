//! Text exposition → `model` families. One pass over the lines, `memchr` to find line ends and the
//! ends of label values, `fast-float2` for values; strings are built only for what the model keeps.

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
    let text = std::str::from_utf8(input).map_err(|error| {
        let before = &input[..error.valid_up_to()];
        ParseError {
            line: memchr::memchr_iter(b'\n', before).count() + 1,
            reason: "invalid UTF-8".to_string(),
        }
    })?;
    let mut parser = Parser::new(text);
    if let Some(limit) = limit {
        parser.written_labels = limit.limit.saturating_sub(1 + limit.added.len());
        parser.limit = Some(limit);
    }
    parser.run()
}

/// What the model does not record about a family while it is being parsed.
#[derive(Default, Clone, Copy)]
struct Seen {
    help: bool,
    kind: bool,
    unit: bool,
}

struct Parser<'a> {
    text: &'a str,
    families: Vec<Family>,
    seen: Vec<Seen>,
    by_name: HashMap<&'a str, usize, BuildHasherDefault<NameHasher>>,
    /// The family the last HELP/TYPE/UNIT line named: its samples usually follow.
    declared: Option<usize>,
    /// The family the previous sample went to: the next sample almost always goes there too.
    current: Option<usize>,
    /// Labels of the sample being parsed, reused across samples.
    scratch: Vec<Label>,
    /// Input positions of the scratch labels in sorted order (reused buffer).
    sorted: Vec<usize>,
    /// For the previous sample: input label position → position in its sorted labels; empty when
    /// it was written sorted.
    order: Vec<usize>,
    after_eof: bool,
    /// The label limit, for its message.
    limit: Option<LabelLimit<'a>>,
    /// Most labels a sample may write between its braces under `limit`.
    written_labels: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        // node_exporter averages ~200 bytes per family; over-reserving a little is cheaper than growing.
        let families = text.len() / 128 + 4;
        Parser {
            text,
            families: Vec::with_capacity(families),
            seen: Vec::with_capacity(families),
            by_name: HashMap::with_capacity_and_hasher(families, BuildHasherDefault::default()),
            declared: None,
            current: None,
            scratch: Vec::with_capacity(16),
            sorted: Vec::with_capacity(16),
            order: Vec::with_capacity(16),
            after_eof: false,
            limit: None,
            written_labels: usize::MAX,
        }
    }

    fn run(mut self) -> Result<Vec<Family>, ParseError> {
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
        let mut families = self.families;
        families.retain(|family| !family.series.is_empty());
        Ok(families)
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
        if self.seen[index].help {
            return Err(format!("second HELP line for {name}"));
        }
        self.seen[index].help = true;
        self.families[index].help = Some(unescape_help(text));
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
        if self.seen[index].kind {
            return Err(format!("second TYPE line for {name}"));
        }
        if !self.families[index].series.is_empty() {
            return Err(format!("TYPE for {name} after its samples"));
        }
        self.seen[index].kind = true;
        self.families[index].kind = kind;
        Ok(())
    }

    fn unit(&mut self, rest: &'a str) -> Result<(), String> {
        let Some((name, unit)) = metadata_name(rest, "UNIT")? else {
            return Ok(());
        };
        let unit = unit.trim_end_matches([' ', '\t']);
        let index = self.family_by_exact_name(name);
        if self.seen[index].unit {
            return Err(format!("second UNIT line for {name}"));
        }
        self.seen[index].unit = true;
        if !unit.is_empty() {
            self.families[index].unit = Some(Str::from(unit));
        }
        Ok(())
    }

    /// The family declared under exactly `name` (HELP/TYPE/UNIT name families, not children).
    fn family_by_exact_name(&mut self, name: &'a str) -> usize {
        let index = match self.declared {
            Some(index) if self.families[index].name == name => index,
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
                let index = self.families.len();
                entry.insert(index);
                self.families.push(Family {
                    name: Str::from(name),
                    ..Family::default()
                });
                self.seen.push(Seen::default());
                index
            }
        }
    }

    /// The family a sample named `name` belongs to, created untyped if there is none.
    /// Like Prometheus' parser, a typed parent (`foo` for `foo_bucket`) wins over an exact name.
    fn family_for_sample(&mut self, name: &'a str) -> usize {
        if let Some(current) = self.current {
            if belongs(&self.families[current], name) {
                return current;
            }
        }
        if let Some(declared) = self.declared {
            if belongs(&self.families[declared], name) {
                return declared;
            }
        }
        for suffix in SUFFIXES {
            if let Some(parent) = name.strip_suffix(suffix) {
                if let Some(&index) = self.by_name.get(parent) {
                    if allows_suffix(self.families[index].kind, suffix) {
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
            // Consecutive samples of a family mostly repeat label names and many values: cloning
            // the previous sample's inline strings is cheaper than building them again.
            let previous = self.families[index]
                .series
                .last()
                .map_or(&[][..], |series| &series.labels[..]);
            position = labels(
                line,
                position + 1,
                name,
                previous,
                &self.order,
                &mut self.scratch,
            )?;
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
        let labels = self.sorted_labels(name)?;
        let family = &mut self.families[index];
        let name = match family.series.last() {
            Some(previous) if previous.name == name => previous.name.clone(),
            _ => Str::from(name),
        };
        family.series.push(Series {
            name,
            labels,
            value,
            timestamp_ms,
        });
        Ok(())
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

    /// Hot path: moves the scratch labels into an exactly sized, sorted, duplicate-free vector,
    /// and records in `self.order` where each input position went (for the next sample's reuse).
    fn sorted_labels(&mut self, metric: &str) -> Result<Vec<Label>, String> {
        let count = self.scratch.len();
        // Exporters mostly write labels sorted, except histograms' `le` last: check before sorting.
        if self
            .scratch
            .windows(2)
            .all(|pair| pair[0].name < pair[1].name)
        {
            self.order.clear();
            let mut labels = Vec::with_capacity(count);
            labels.append(&mut self.scratch);
            return Ok(labels);
        }
        let scratch = &mut self.scratch;
        let sorted = &mut self.sorted;
        sorted.clear();
        sorted.extend(0..count);
        sorted.sort_unstable_by(|&left, &right| scratch[left].name.cmp(&scratch[right].name));
        if let Some(pair) = sorted
            .windows(2)
            .find(|pair| scratch[pair[0]].name == scratch[pair[1]].name)
        {
            return Err(format!(
                "duplicate label name {} in sample {metric}",
                scratch[pair[0]].name
            ));
        }
        self.order.clear();
        self.order.resize(count, 0);
        let mut labels = Vec::with_capacity(count);
        for (position, &input) in sorted.iter().enumerate() {
            self.order[input] = position;
            labels.push(std::mem::replace(
                &mut scratch[input],
                Label {
                    name: Str::default(),
                    value: Str::default(),
                },
            ));
        }
        scratch.clear();
        Ok(labels)
    }
}

/// Hot path: the label set after `{`, into `scratch`. Returns the position after `}`. `previous`
/// holds the labels of the family's previous sample, whose strings are reused when equal; `order`
/// maps an input position to its place there.
fn labels(
    line: &str,
    mut position: usize,
    metric: &str,
    previous: &[Label],
    order: &[usize],
    scratch: &mut Vec<Label>,
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
        let slot = if order.is_empty() {
            Some(scratch.len())
        } else {
            order.get(scratch.len()).copied()
        };
        let reuse = slot.and_then(|slot| previous.get(slot));
        let (value, after) = label_value(line, position + 1, reuse.map(|label| &label.value))
            .map_err(|reason| format!("{reason} for label {label} in sample {metric}"))?;
        let name = match reuse {
            Some(reused) if reused.name == label => reused.name.clone(),
            _ => Str::from(label),
        };
        scratch.push(Label { name, value });
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
fn belongs(family: &Family, name: &str) -> bool {
    match name.strip_prefix(family.name.as_str()) {
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
