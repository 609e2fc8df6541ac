//! Families (the model's, or a batch's through [`BatchSource`]) → Prometheus text 0.0.4 that the
//! Pushgateway (Go's `expfmt` parser) accepts.
//!
//! 0.0.4 knows one family per name with at most one HELP and one TYPE line, so rendering first plans
//! *groups*: every rendered family name, in first-seen order, with the model families and children
//! that go under it. Same-named model families merge into one group. OpenMetrics shapes map the way
//! the Python client's 0.0.4 output does (gauge histograms excepted):
//! - a counter `foo` whose samples are `foo_total` renders as `# TYPE foo_total counter`;
//! - `_created` (counters, histograms, summaries) and `_gsum`/`_gcount` (gauge histograms) become
//!   their own `gauge` families;
//! - a gauge histogram's buckets render as an untyped `foo_bucket` family (as `histogram` the
//!   Pushgateway would invent `foo_sum 0` and `foo_count 0`), info as a `gauge` named `foo_info`,
//!   stateset as `gauge`;
//! - a sample whose name fits neither its family nor a child becomes its own untyped family.
//!
//! A series repeated with the same name and labels is written once (the first), as Prometheus keeps
//! the first of duplicated samples on a scrape: the Pushgateway answers 400 to a whole push with a
//! duplicate. Untyped groups get no TYPE line. Every NaN renders as `NaN`; floats use the shortest form that
//! parses back to the same bits.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use memchr::{memchr2, memchr3};

use promrelay_abi::{BatchReader, SeriesRecord, NAME_LABEL};

use super::scan::NameHasher;
use super::RenderOptions;
use crate::filter::codec::from_abi;
use crate::model::{Family, MetricType};

/// What the renderer reads: families and their series by index. The model's families and a
/// batch (the receiver's, rendered without building the model) both are one.
pub trait Source {
    fn family_count(&self) -> usize;
    fn family_name(&self, family: usize) -> &str;
    fn family_kind(&self, family: usize) -> MetricType;
    fn family_help(&self, family: usize) -> Option<&str>;
    fn family_unit(&self, family: usize) -> Option<&str>;
    fn series_count(&self, family: usize) -> usize;
    /// Hot path: the sample name of series `series` of family `family`.
    fn series_name(&self, family: usize, series: usize) -> &str;
    /// Hot path: its labels, `__name__` left out, sorted by name.
    fn series_labels(&self, family: usize, series: usize) -> impl Iterator<Item = (&str, &str)>;
    fn series_value(&self, family: usize, series: usize) -> f64;
    fn series_timestamp(&self, family: usize, series: usize) -> Option<i64>;
}

impl Source for [Family] {
    fn family_count(&self) -> usize {
        self.len()
    }
    fn family_name(&self, family: usize) -> &str {
        &self[family].name
    }
    fn family_kind(&self, family: usize) -> MetricType {
        self[family].kind
    }
    fn family_help(&self, family: usize) -> Option<&str> {
        self[family].help.as_deref()
    }
    fn family_unit(&self, family: usize) -> Option<&str> {
        self[family].unit.as_deref()
    }
    fn series_count(&self, family: usize) -> usize {
        self[family].series.len()
    }
    fn series_name(&self, family: usize, series: usize) -> &str {
        &self[family].series[series].name
    }
    fn series_labels(&self, family: usize, series: usize) -> impl Iterator<Item = (&str, &str)> {
        self[family].series[series]
            .labels
            .iter()
            .map(|label| (label.name.as_str(), label.value.as_str()))
    }
    fn series_value(&self, family: usize, series: usize) -> f64 {
        self[family].series[series].value
    }
    fn series_timestamp(&self, family: usize, series: usize) -> Option<i64> {
        self[family].series[series].timestamp_ms
    }
}

/// A valid batch as a [`Source`] (the receiver's: validated when it was read). Strings that are
/// not UTF-8 or records out of range (impossible in a valid batch) read as empty.
pub struct BatchSource<'a> {
    reader: BatchReader<'a>,
    families: Vec<promrelay_abi::FamilyRecord>,
    /// Each series' name (its `__name__` value), by batch series index: found once, since the
    /// renderer asks for it several times per series.
    names: Vec<&'a str>,
}

impl<'a> BatchSource<'a> {
    pub fn new(reader: BatchReader<'a>) -> BatchSource<'a> {
        let text = |index: u32| reader.str(index).unwrap_or_default();
        let names = (0..reader.series_count())
            .map(|index| {
                let Ok(record) = reader.series(index) else {
                    return "";
                };
                reader
                    .labels(&record)
                    .find(|label| reader.bytes(label.name) == Ok(NAME_LABEL.as_bytes()))
                    .map_or("", |label| text(label.value))
            })
            .collect();
        BatchSource {
            families: reader.families().collect(),
            reader,
            names,
        }
    }

    fn text(&self, index: u32) -> &'a str {
        self.reader.str(index).unwrap_or_default()
    }

    fn record(&self, family: usize, series: usize) -> Option<SeriesRecord> {
        let first = self.families[family].first_series;
        self.reader.series(first + series as u32).ok()
    }
}

impl Source for BatchSource<'_> {
    fn family_count(&self) -> usize {
        self.families.len()
    }
    fn family_name(&self, family: usize) -> &str {
        self.text(self.families[family].name)
    }
    fn family_kind(&self, family: usize) -> MetricType {
        from_abi(self.families[family].kind)
    }
    fn family_help(&self, family: usize) -> Option<&str> {
        self.reader
            .opt_str(self.families[family].help)
            .ok()
            .flatten()
    }
    fn family_unit(&self, family: usize) -> Option<&str> {
        self.reader
            .opt_str(self.families[family].unit)
            .ok()
            .flatten()
    }
    fn series_count(&self, family: usize) -> usize {
        self.families[family].series_count as usize
    }
    fn series_name(&self, family: usize, series: usize) -> &str {
        let index = self.families[family].first_series as usize + series;
        self.names.get(index).copied().unwrap_or_default()
    }
    fn series_labels(&self, family: usize, series: usize) -> impl Iterator<Item = (&str, &str)> {
        let labels = self
            .record(family, series)
            .map(|record| self.reader.labels(&record));
        labels
            .into_iter()
            .flatten()
            .filter(|label| self.reader.bytes(label.name) != Ok(NAME_LABEL.as_bytes()))
            .map(|label| (self.text(label.name), self.text(label.value)))
    }
    fn series_value(&self, family: usize, series: usize) -> f64 {
        self.record(family, series)
            .map_or(0.0, |record| record.value)
    }
    fn series_timestamp(&self, family: usize, series: usize) -> Option<i64> {
        self.record(family, series)
            .and_then(|record| record.timestamp_ms)
    }
}

/// Renders `families` as text 0.0.4, appending to `out`.
pub fn render(families: &[Family], options: &RenderOptions, out: &mut Vec<u8>) {
    render_skipping(families, options, out, |_| false);
}

/// Renders any [`Source`] as text 0.0.4, appending to `out`, leaving out the series whose
/// value `skip` returns true for (staleness markers, which text cannot carry); a family left
/// without a series gets no HELP or TYPE line either.
pub fn render_skipping<S: Source + ?Sized>(
    source: &S,
    options: &RenderOptions,
    out: &mut Vec<u8>,
    skip: impl Fn(f64) -> bool,
) {
    let groups = plan(source, &skip);
    let series_count: usize = (0..source.family_count())
        .map(|family| source.series_count(family))
        .sum();
    out.reserve(series_count * 64 + groups.len() * 96);
    let mut seen = Seen::with_capacity(series_count, options.omit_labels);
    for group in &groups {
        if let Some(help) = group.help {
            out.extend_from_slice(b"# HELP ");
            out.extend_from_slice(group.name.as_bytes());
            out.push(b' ');
            write_escaped_help(out, help);
            out.push(b'\n');
        }
        if let Some(unit) = group.unit {
            out.extend_from_slice(b"# UNIT ");
            out.extend_from_slice(group.name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(unit.as_bytes());
            out.push(b'\n');
        }
        if group.kind != MetricType::Untyped {
            out.extend_from_slice(b"# TYPE ");
            out.extend_from_slice(group.name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(group.kind.as_str().as_bytes());
            out.push(b'\n');
        }
        for member in &group.members {
            let family = member.family;
            for series in 0..source.series_count(family) {
                let name = source.series_name(family, series);
                if role(source, family, name) == member.role
                    && (member.role != Role::Stray || name == group.name.as_ref())
                    && !skip(source.series_value(family, series))
                    && seen.first(source, family, series)
                {
                    write_series(out, source, family, series, options);
                }
            }
        }
    }
}

/// [`render`] into a fresh `String`.
pub fn render_to_string(families: &[Family], options: &RenderOptions) -> String {
    let mut out = Vec::new();
    render(families, options, &mut out);
    String::from_utf8(out)
        .expect("the model holds only UTF-8 strings and render writes ASCII around them")
}

/// Where a series goes relative to its family's rendered groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The family's own group (`foo`, `foo_bucket`, `foo_sum`...).
    Main,
    /// An OpenMetrics child with a group of its own: `foo_total`, `foo_info`.
    Renamed(&'static str),
    /// `_created`, `_gsum`, `_gcount`: a gauge family of its own.
    Gauge(&'static str),
    /// A name that fits neither the family nor a child: an untyped family of its own.
    Stray,
}

struct Group<'a> {
    name: Cow<'a, str>,
    kind: MetricType,
    help: Option<&'a str>,
    unit: Option<&'a str>,
    members: Vec<Member>,
}

struct Member {
    family: usize,
    role: Role,
}

/// Hot path (per series, no allocation): which group of its family a series named `name`
/// renders under.
fn role<S: Source + ?Sized>(source: &S, family: usize, name: &str) -> Role {
    let suffix = match name.strip_prefix(source.family_name(family)) {
        Some("") => return Role::Main,
        Some(suffix) => suffix,
        None => return Role::Stray,
    };
    match (source.family_kind(family), suffix) {
        (MetricType::Histogram, "_bucket" | "_sum" | "_count") => Role::Main,
        (MetricType::Summary, "_sum" | "_count") => Role::Main,
        (MetricType::Counter, "_total") => Role::Renamed("_total"),
        (MetricType::GaugeHistogram, "_bucket") => Role::Renamed("_bucket"),
        (MetricType::Info, "_info") => Role::Renamed("_info"),
        (MetricType::Histogram | MetricType::Summary | MetricType::Counter, "_created") => {
            Role::Gauge("_created")
        }
        (MetricType::GaugeHistogram, "_gsum") => Role::Gauge("_gsum"),
        (MetricType::GaugeHistogram, "_gcount") => Role::Gauge("_gcount"),
        _ => Role::Stray,
    }
}

/// The 0.0.4 type a family's main group renders as.
fn main_kind(kind: MetricType) -> MetricType {
    match kind {
        MetricType::GaugeHistogram => MetricType::Untyped,
        MetricType::Info | MetricType::StateSet => MetricType::Gauge,
        other => other,
    }
}

/// Groups in first-seen order; allocates per family, never per series.
fn plan<'a, S: Source + ?Sized>(source: &'a S, skip: &impl Fn(f64) -> bool) -> Vec<Group<'a>> {
    let families = source.family_count();
    let mut groups: Vec<Group<'_>> = Vec::with_capacity(families);
    let mut by_name: HashMap<Cow<'_, str>, usize> = HashMap::with_capacity(families);
    let mut roles: Vec<Role> = Vec::with_capacity(4);
    for index in 0..families {
        roles.clear();
        let family_name = source.family_name(index);
        for series in 0..source.series_count(index) {
            if skip(source.series_value(index, series)) {
                continue;
            }
            let series_name = source.series_name(index, series);
            let role = role(source, index, series_name);
            let name = match role {
                Role::Stray => Cow::Borrowed(series_name),
                _ if roles.contains(&role) => continue,
                Role::Main => Cow::Borrowed(family_name),
                Role::Renamed(suffix) | Role::Gauge(suffix) => {
                    Cow::Owned(format!("{family_name}{suffix}"))
                }
            };
            if role != Role::Stray {
                roles.push(role);
            }
            // HELP carries over to every child group (as the Python client does), the unit only to
            // groups that still measure it; a stray sample is not the family's and gets neither.
            let help = source.family_help(index);
            let unit = source.family_unit(index);
            let (kind, help, unit) = match role {
                Role::Main | Role::Renamed(_) => (main_kind(source.family_kind(index)), help, unit),
                Role::Gauge(_) => (MetricType::Gauge, help, None),
                Role::Stray => (MetricType::Untyped, None, None),
            };
            let group = Group {
                name,
                kind,
                help,
                unit,
                members: Vec::new(),
            };
            join(
                &mut groups,
                &mut by_name,
                group,
                Member {
                    family: index,
                    role,
                },
            );
        }
    }
    groups
}

/// Adds `member` to the group named like `group`, creating it from `group` if new.
fn join<'a>(
    groups: &mut Vec<Group<'a>>,
    by_name: &mut HashMap<Cow<'a, str>, usize>,
    group: Group<'a>,
    member: Member,
) {
    if let Some(&index) = by_name.get(group.name.as_ref()) {
        let existing = &mut groups[index];
        existing.help = existing.help.or(group.help);
        existing.unit = existing.unit.or(group.unit);
        if existing.kind == MetricType::Untyped {
            existing.kind = group.kind;
        }
        let duplicate = existing
            .members
            .iter()
            .any(|other| other.family == member.family && other.role == member.role);
        if !duplicate {
            existing.members.push(member);
        }
        return;
    }
    by_name.insert(group.name.clone(), groups.len());
    groups.push(Group {
        members: vec![member],
        ..group
    });
}

/// Hot path: one sample line.
fn write_series<S: Source + ?Sized>(
    out: &mut Vec<u8>,
    source: &S,
    family: usize,
    series: usize,
    options: &RenderOptions,
) {
    out.extend_from_slice(source.series_name(family, series).as_bytes());
    let mut labels = kept_labels(source, family, series, options.omit_labels).peekable();
    if labels.peek().is_some() {
        out.push(b'{');
        for (index, (name, value)) in labels.enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"=\"");
            write_escaped_label_value(out, value);
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b' ');
    write_value(out, source.series_value(family, series));
    if options.timestamps {
        if let Some(timestamp) = source.series_timestamp(family, series) {
            out.push(b' ');
            out.extend_from_slice(itoa::Buffer::new().format(timestamp).as_bytes());
        }
    }
    out.push(b'\n');
}

/// Hot path: the shortest text that parses back to the same bits; integers without a fraction.
pub(super) fn write_value(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value.fract() == 0.0
        && value.abs() < 1e15
        && !(value == 0.0 && value.is_sign_negative())
    {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    }
}

/// Hot path: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn write_escaped_label_value(out: &mut Vec<u8>, value: &str) {
    let mut rest = value.as_bytes();
    // Most values are short and clean: a plain scan beats memchr3's per-call set-up there.
    if rest.len() <= 32
        && !rest
            .iter()
            .any(|&byte| matches!(byte, b'\\' | b'"' | b'\n'))
    {
        out.extend_from_slice(rest);
        return;
    }
    while let Some(offset) = memchr3(b'\\', b'"', b'\n', rest) {
        out.extend_from_slice(&rest[..offset]);
        out.extend_from_slice(match rest[offset] {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            _ => b"\\n",
        });
        rest = &rest[offset + 1..];
    }
    out.extend_from_slice(rest);
}

/// `\` → `\\`, newline → `\n` (all HELP text can carry).
fn write_escaped_help(out: &mut Vec<u8>, help: &str) {
    let mut rest = help.as_bytes();
    while let Some(offset) = memchr2(b'\\', b'\n', rest) {
        out.extend_from_slice(&rest[..offset]);
        out.extend_from_slice(if rest[offset] == b'\\' {
            b"\\\\"
        } else {
            b"\\n"
        });
        rest = &rest[offset + 1..];
    }
    out.extend_from_slice(rest);
}

/// Which series identities (name and labels) have been written, by hash, pointing at the first.
struct Seen {
    first: HashMap<u64, (usize, usize), BuildHasherDefault<PassThrough>>,
    omit: &'static [&'static str],
}

impl Seen {
    fn with_capacity(capacity: usize, omit: &'static [&'static str]) -> Self {
        Seen {
            first: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            omit,
        }
    }

    /// Hot path: whether the series is the first with its rendered identity (name and the
    /// labels not omitted). A hash collision between two different identities counts as first,
    /// so nothing distinct is ever dropped.
    fn first<S: Source + ?Sized>(&mut self, source: &S, family: usize, series: usize) -> bool {
        let mut hasher = NameHasher::default();
        let name = source.series_name(family, series);
        hasher.write(name.as_bytes());
        for (label, value) in kept_labels(source, family, series, self.omit) {
            hasher.write(label.as_bytes());
            hasher.write(value.as_bytes());
        }
        let omit = self.omit;
        match self.first.entry(hasher.finish()) {
            Entry::Vacant(entry) => {
                entry.insert((family, series));
                true
            }
            Entry::Occupied(entry) => {
                let &(earlier_family, earlier) = entry.get();
                source.series_name(earlier_family, earlier) != name
                    || !kept_labels(source, earlier_family, earlier, omit)
                        .eq(kept_labels(source, family, series, omit))
            }
        }
    }
}

/// Hot path: the labels of a series that are rendered.
fn kept_labels<'s, S: Source + ?Sized>(
    source: &'s S,
    family: usize,
    series: usize,
    omit: &'static [&'static str],
) -> impl Iterator<Item = (&'s str, &'s str)> + 's {
    source
        .series_labels(family, series)
        .filter(move |(name, _)| !omit.contains(name))
}

/// The keys of [`Seen`] are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}
