//! What a step did to a series' labels: the labels added, removed and changed between two
//! sorted label lists (`__name__` included, so a rename is a changed `__name__`).

use serde::Serialize;

/// A series' labels, sorted by name, `__name__` included.
pub type Labels = Vec<(String, String)>;

/// The labels of `series`, as a filter sees them (`__name__` in its sorted place).
pub fn labels_of(series: &crate::model::Series) -> Labels {
    let mut labels: Labels = series
        .labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    let at = labels.partition_point(|(name, _)| name.as_str() < "__name__");
    labels.insert(at, ("__name__".to_owned(), series.name.to_string()));
    labels
}

/// Added, removed and changed labels from one label list to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LabelDiff {
    pub added: Vec<(String, String)>,
    pub removed: Vec<(String, String)>,
    /// (name, old value, new value)
    pub changed: Vec<(String, String, String)>,
}

impl LabelDiff {
    /// The difference from `before` to `after` (both sorted by name, as [`Labels`] are).
    pub fn between(before: &[(String, String)], after: &[(String, String)]) -> LabelDiff {
        let mut diff = LabelDiff::default();
        let (mut i, mut j) = (0, 0);
        while i < before.len() || j < after.len() {
            match (before.get(i), after.get(j)) {
                (Some(old), Some(new)) if old.0 == new.0 => {
                    if old.1 != new.1 {
                        diff.changed
                            .push((old.0.clone(), old.1.clone(), new.1.clone()));
                    }
                    i += 1;
                    j += 1;
                }
                (Some(old), Some(new)) if old.0 < new.0 => {
                    diff.removed.push(old.clone());
                    i += 1;
                }
                (Some(_), Some(new)) => {
                    diff.added.push(new.clone());
                    j += 1;
                }
                (Some(old), None) => {
                    diff.removed.push(old.clone());
                    i += 1;
                }
                (None, Some(new)) => {
                    diff.added.push(new.clone());
                    j += 1;
                }
                (None, None) => break,
            }
        }
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Labels both lists have with the same value: how alike two series are.
    pub fn common(before: &[(String, String)], after: &[(String, String)]) -> usize {
        before.iter().filter(|label| after.contains(label)).count()
    }
}

impl std::fmt::Display for LabelDiff {
    /// `+core="c0" -cpu="0" ~__name__: "a" -> "b"`, or `no label changed`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::selector::quote;
        if self.is_empty() {
            return f.write_str("no label changed");
        }
        let mut parts = Vec::new();
        for (name, value) in &self.added {
            parts.push(format!("+{name}={}", quote(value)));
        }
        for (name, value) in &self.removed {
            parts.push(format!("-{name}={}", quote(value)));
        }
        for (name, old, new) in &self.changed {
            parts.push(format!("~{name}: {} -> {}", quote(old), quote(new)));
        }
        f.write_str(&parts.join(" "))
    }
}

/// `name{a="1",b="2"}` of a label list (exposition syntax, values escaped).
pub fn render_series(labels: &[(String, String)]) -> String {
    let name = labels
        .iter()
        .find(|(n, _)| n == "__name__")
        .map_or("", |(_, v)| v.as_str());
    let rest: Vec<String> = labels
        .iter()
        .filter(|(n, _)| n != "__name__")
        .map(|(n, v)| format!("{n}={}", super::selector::quote(v)))
        .collect();
    if rest.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", rest.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_diff_lists_added_removed_and_changed_labels() {
        let before = labels(&[("__name__", "node_cpu"), ("cpu", "0"), ("mode", "idle")]);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("__name__", "node_cpu"), ("cpu", "0"), ("mode", "idle")],
                "no label changed",
            ),
            (
                &[
                    ("__name__", "node_cpu"),
                    ("core", "c0"),
                    ("cpu", "0"),
                    ("mode", "idle"),
                ],
                "+core=\"c0\"",
            ),
            (&[("__name__", "node_cpu"), ("mode", "idle")], "-cpu=\"0\""),
            (
                &[("__name__", "host_cpu"), ("cpu", "0"), ("mode", "idle")],
                "~__name__: \"node_cpu\" -> \"host_cpu\"",
            ),
            (
                &[
                    ("__name__", "node_cpu"),
                    ("core", "c0"),
                    ("mode", "busy"),
                    ("z", "\"q\""),
                ],
                "+core=\"c0\" +z=\"\\\"q\\\"\" -cpu=\"0\" ~mode: \"idle\" -> \"busy\"",
            ),
            (&[], "-__name__=\"node_cpu\" -cpu=\"0\" -mode=\"idle\""),
        ];
        for (after, expected) in cases {
            let diff = LabelDiff::between(&before, &labels(after));
            assert_eq!(diff.to_string(), *expected, "{after:?}");
        }
    }

    #[test]
    fn labels_of_a_series_put_the_name_in_its_sorted_place() {
        let series = crate::model::Series {
            name: "up".into(),
            labels: vec![
                crate::model::Label::new("Zone", "a"),
                crate::model::Label::new("job", "node"),
            ],
            value: 1.0,
            timestamp_ms: None,
        };
        assert_eq!(
            labels_of(&series),
            labels(&[("Zone", "a"), ("__name__", "up"), ("job", "node")])
        );
        assert_eq!(
            render_series(&labels_of(&series)),
            "up{Zone=\"a\",job=\"node\"}"
        );
    }
}
