//! The batch a [`ScrapeWriter`] builds is the model's scrape, series for series.

use super::{parse_with_label_limit, LabelLimit, ScrapeWriter};
use crate::filter::codec;
use crate::model::{Family, Label, Scrape, ScrapeMeta};

const NODE_EXPORTER: &str = include_str!("../../../tests/data/node_exporter.prom");
const OPENMETRICS: &str = include_str!("../../../tests/data/parser/openmetrics.prom");

fn limit() -> LabelLimit<'static> {
    LabelLimit {
        limit: 64,
        added: &["job", "instance", "dc"],
    }
}

/// The model's way: parse, then the target labels.
fn by_model(text: &str, extra: &[Label]) -> Vec<Family> {
    let families = parse_with_label_limit(text.as_bytes(), limit()).expect("parses");
    let mut scrape = Scrape {
        meta: ScrapeMeta::default(),
        families,
    };
    scrape.add_target_labels_with("node", "h:9100", extra);
    sorted(scrape.families)
}

fn sorted(mut families: Vec<Family>) -> Vec<Family> {
    families.sort_by(|a, b| a.name.cmp(&b.name));
    families
}

fn target(extra: &[Label]) -> Vec<(&str, &str)> {
    let mut target = vec![("job", "node"), ("instance", "h:9100")];
    target.extend(extra.iter().map(|l| (l.name.as_str(), l.value.as_str())));
    target
}

fn by_batch(writer: &mut ScrapeWriter, text: &str, extra: &[Label]) -> Vec<Family> {
    writer.begin(target(extra));
    writer.parse(text.as_bytes(), limit()).expect("parses");
    let mut bytes = Vec::new();
    writer.finish_into(&mut bytes);
    sorted(codec::decode(&bytes, codec::MAX_SERIES, 1024).expect("a valid batch"))
}

#[test]
fn a_scrape_written_as_a_batch_is_the_models_scrape_with_target_labels() {
    let collisions = "# TYPE a counter\n\
        a_total{job=\"inner\",instance=\"i\",exported_job=\"old\"} 1\n\
        a_total{dc=\"x\"} 2\n\
        b{le=\"1\",z=\"\\\"q\\\"\\n\"} 3 1700000000000\n\
        # HELP c never sampled\n\
        # TYPE d gauge\n\
        e 1\n\
        d 4\n\
        e{x=\"1\"} 5\n\
        a_total{y=\"2\"} 6\n\
        f{instance=\"a\",exported_instance=\"b\",zz=\"1\"} 1\n\
        f{code=\"200\",instance=\"web-01:8080\",job=\"web\",method=\"GET\"} 2\n";
    let extra = [Label::new("dc", "west")];
    let group_job = [Label::new("job", "from-group"), Label::new("zone", "z1")];
    let mut writer = ScrapeWriter::new();
    for text in [NODE_EXPORTER, OPENMETRICS, collisions] {
        for extra in [&[][..], &extra[..], &group_job[..]] {
            // Twice: the second scrape finds the first one's strings in the table.
            for round in 0..2 {
                // Debug text: NaN samples compare equal that way.
                assert_eq!(
                    format!("{:?}", by_batch(&mut writer, text, extra)),
                    format!("{:?}", by_model(text, extra)),
                    "extra labels {extra:?}, round {round}"
                );
            }
        }
    }
}

#[test]
fn the_synthetic_series_carry_the_target_labels_and_a_failed_parse_leaves_only_them() {
    let mut writer = ScrapeWriter::new();
    writer.begin(target(&[Label::new("dc", "west")]));
    let error = writer
        .parse(b"ok 1\nbad{ 2\n", limit())
        .expect_err("malformed");
    assert_eq!(error.line, 2);
    writer.add_synthetic("up", "up help", 0.0).expect("added");
    let mut bytes = Vec::new();
    writer.finish_into(&mut bytes);
    let families = codec::decode(&bytes, codec::MAX_SERIES, 1024).expect("valid");
    assert_eq!(families.len(), 1, "{families:?}");
    let up = &families[0].series[0];
    assert_eq!((up.name.as_str(), up.value), ("up", 0.0));
    assert_eq!(up.label("job"), Some("node"));
    assert_eq!(up.label("instance"), Some("h:9100"));
    assert_eq!(up.label("dc"), Some("west"));

    // A target exposing `up` itself keeps its own.
    writer.begin(target(&[]));
    writer.parse(b"up 7\n", limit()).expect("parses");
    writer.add_synthetic("up", "up help", 1.0).expect("added");
    writer.finish_into(&mut bytes);
    let families = codec::decode(&bytes, codec::MAX_SERIES, 1024).expect("valid");
    assert_eq!(families.len(), 1);
    assert_eq!(families[0].series[0].value, 7.0);
}

#[test]
fn a_churning_label_value_does_not_grow_the_string_table_without_bound() {
    let mut writer = ScrapeWriter::new();
    let mut sizes = Vec::new();
    for scrape in 0..50 {
        writer.begin(target(&[]));
        let text = format!("a{{request=\"{scrape}\"}} 1\nb 2\n");
        writer.parse(text.as_bytes(), limit()).expect("parses");
        let mut bytes = Vec::new();
        writer.finish_into(&mut bytes);
        sizes.push(bytes.len());
        let families = codec::decode(&bytes, codec::MAX_SERIES, 1024).expect("valid");
        assert_eq!(
            families[0].series[0].label("request"),
            Some(&*scrape.to_string())
        );
    }
    let largest = sizes.iter().max().copied().unwrap_or_default();
    assert!(
        largest < 2 * sizes[0] + 64,
        "batch sizes grew with the scrapes: {sizes:?}"
    );
}
