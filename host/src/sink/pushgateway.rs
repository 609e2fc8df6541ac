//! The Prometheus Pushgateway sink: one `PUT` per scrape, replacing the scrape's group.
//!
//! The group is `job/<job>/instance/<instance>[/publisher/<publisher>]`; a value that contains
//! `/` or is empty travels in the Pushgateway's `@base64` form (URL-safe base64), anything else
//! percent-encoded. The body is Prometheus text 0.0.4 *without* timestamps (the Pushgateway
//! answers 400 to a timestamped sample), one HELP/TYPE per family name, and without the labels
//! the grouping key supplies (the Pushgateway would overwrite them anyway; a `publisher` label
//! in the body and in the key would conflict). `exported_*` labels stay as they are.
//!
//! **Invariant:** `PUT`, never `POST`: a scrape replaces its group whole, so a series that
//! disappeared from the target disappears from the Pushgateway too.

use std::time::Duration;

use base64::Engine as _;

use super::{classify, describe, http_client, Outcome};
use crate::batch::ScrapeBatch;
use crate::exposition::{self, RenderOptions};
#[cfg(test)]
use crate::model::Scrape;

/// The Pushgateway's content type for text 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A Pushgateway at one base URL.
#[derive(Debug, Clone)]
pub struct Pushgateway {
    base: url::Url,
    publisher_label: bool,
    client: reqwest::Client,
}

impl Pushgateway {
    /// A sink pushing to `base` (e.g. `http://127.0.0.1:9091`), adding `publisher/<identity>` to
    /// the grouping key when `publisher_label` is set.
    pub fn new(
        base: url::Url,
        publisher_label: bool,
        timeout: Duration,
    ) -> anyhow::Result<Pushgateway> {
        Ok(Pushgateway::with_client(
            base,
            publisher_label,
            http_client(timeout)?,
        ))
    }

    /// Like [`Pushgateway::new`] with a client built elsewhere (TLS, auth).
    pub fn with_client(
        base: url::Url,
        publisher_label: bool,
        client: reqwest::Client,
    ) -> Pushgateway {
        Pushgateway {
            base,
            publisher_label,
            client,
        }
    }

    /// From the config's `push_gateway` section.
    pub fn from_config(section: &crate::config::PushGatewayConfig) -> anyhow::Result<Pushgateway> {
        Ok(Pushgateway::with_client(
            section.url.clone(),
            section.publisher_label,
            super::http::client(section.timeout, &section.http)?,
        ))
    }

    /// Whether the grouping key includes the publisher.
    pub fn publisher_label(&self) -> bool {
        self.publisher_label
    }

    /// The group URL of a scrape.
    pub fn group_url(&self, meta: &crate::model::ScrapeMeta) -> url::Url {
        let mut pairs = vec![
            ("job", meta.job.as_str()),
            ("instance", meta.instance.as_str()),
        ];
        if self.publisher_label {
            pairs.push(("publisher", meta.publisher.as_str()));
        }
        group_url(&self.base, &pairs)
    }

    fn options(&self) -> RenderOptions {
        const GROUPING: &[&str] = &["instance", "job"];
        const GROUPING_WITH_PUBLISHER: &[&str] = &["instance", "job", "publisher"];
        RenderOptions {
            timestamps: false,
            omit_labels: if self.publisher_label {
                GROUPING_WITH_PUBLISHER
            } else {
                GROUPING
            },
        }
    }

    /// The body of a push of the receiver's batch, rendered straight from it: text 0.0.4, no
    /// timestamps, no grouping-key labels, no staleness markers (a push replaces the whole
    /// group: a series left out is gone), a repeated series once. The same bytes as [`body`]
    /// of the scrape's model.
    ///
    /// [`body`]: Pushgateway::body
    pub fn body_of_batch(&self, scrape: &ScrapeBatch) -> Vec<u8> {
        let mut out = Vec::with_capacity(scrape.bytes().len() + 4096);
        if let Some(reader) = scrape.reader() {
            let source = exposition::BatchSource::new(reader);
            exposition::render_skipping(&source, &self.options(), &mut out, crate::model::is_stale);
        }
        out
    }

    /// The body of a push of a model scrape (the tests' reference for [`body_of_batch`]).
    ///
    /// [`body_of_batch`]: Pushgateway::body_of_batch
    #[cfg(test)]
    pub fn body(&self, scrape: &Scrape) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * 1024);
        let families = &scrape.families[..];
        exposition::render_skipping(families, &self.options(), &mut out, crate::model::is_stale);
        out
    }

    /// Replaces the scrape's group in the Pushgateway.
    pub async fn push(&self, scrape: &ScrapeBatch) -> Outcome {
        let request = self
            .client
            .put(self.group_url(&scrape.meta))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(self.body_of_batch(scrape));
        match request.send().await {
            Ok(response) => classify(response).await,
            Err(error) => Outcome::Retry(describe(&error)),
        }
    }
}

/// `<base>/metrics/<name>/<value>/...`, each value in the form the Pushgateway expects.
pub fn group_url(base: &url::Url, pairs: &[(&str, &str)]) -> url::Url {
    let mut url = base.clone();
    {
        let mut segments = url
            .path_segments_mut()
            .expect("a Pushgateway URL is http(s), which has a path");
        segments.pop_if_empty().push("metrics");
        for (name, value) in pairs {
            if value.is_empty() || value.contains('/') {
                // The Pushgateway's form for values a path segment cannot carry; an empty value
                // is spelled `=` (one padding character), as its README says.
                let encoded = if value.is_empty() {
                    "=".to_string()
                } else {
                    base64::engine::general_purpose::URL_SAFE.encode(value)
                };
                segments.push(&format!("{name}@base64")).push(&encoded);
            } else {
                segments.push(name).push(value);
            }
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, Label, MetricType, ScrapeMeta, Series};

    fn base() -> url::Url {
        url::Url::parse("http://127.0.0.1:9091").expect("valid URL")
    }

    #[test]
    fn group_url_table() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("job", "node"), ("instance", "h1:9100")],
                "http://127.0.0.1:9091/metrics/job/node/instance/h1:9100",
            ),
            (
                &[("job", "node"), ("instance", "http://h/x")],
                "http://127.0.0.1:9091/metrics/job/node/instance@base64/aHR0cDovL2gveA==",
            ),
            (
                &[("job", "node"), ("instance", "")],
                "http://127.0.0.1:9091/metrics/job/node/instance@base64/=",
            ),
            (
                &[("job", "a b?"), ("instance", "i")],
                "http://127.0.0.1:9091/metrics/job/a%20b%3F/instance/i",
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(group_url(&base(), pairs).as_str(), *expected, "{pairs:?}");
        }
    }

    #[test]
    fn group_url_keeps_a_base_path() {
        let base = url::Url::parse("http://h:9091/pgw/").expect("valid URL");
        assert_eq!(
            group_url(&base, &[("job", "j")]).as_str(),
            "http://h:9091/pgw/metrics/job/j"
        );
    }

    #[test]
    fn body_drops_grouping_labels_and_duplicates() {
        let series = |labels: Vec<Label>| Series {
            name: "x".into(),
            labels,
            value: 1.0,
            timestamp_ms: Some(5),
        };
        let scrape = Scrape {
            meta: ScrapeMeta {
                publisher: "P".into(),
                job: "j".into(),
                instance: "i".into(),
                time_ms: 1,
            },
            families: vec![Family {
                name: "x".into(),
                kind: MetricType::Gauge,
                series: vec![
                    series(vec![Label::new("a", "1"), Label::new("instance", "i")]),
                    series(vec![Label::new("a", "1"), Label::new("instance", "other")]),
                    series(vec![
                        Label::new("exported_job", "e"),
                        Label::new("job", "j"),
                    ]),
                ],
                ..Family::default()
            }],
        };
        crate::tls::install_crypto_provider();
        let sink = Pushgateway::with_client(base(), true, reqwest::Client::new());
        let body = String::from_utf8(sink.body(&scrape)).expect("utf-8");
        let samples: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            ["x{a=\"1\"} 1", "x{exported_job=\"e\"} 1"],
            "{body}"
        );
        assert!(!body.contains("instance="), "{body}");
        assert!(!body.contains(" 5\n"), "no timestamps: {body}");
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use crate::model::{Family, Label, ScrapeMeta, Series};

    #[test]
    fn the_body_rendered_from_the_batch_is_the_models_without_markers() {
        let sink = |publisher_label| {
            Pushgateway::new(
                "http://127.0.0.1:9091".parse().expect("a URL"),
                publisher_label,
                Duration::from_secs(1),
            )
            .expect("a client")
        };
        let texts = [
            include_str!("../../../tests/data/node_exporter.prom"),
            include_str!("../../../tests/data/parser/openmetrics.prom"),
            "# TYPE a counter\na_total{job=\"x\",instance=\"i\",k=\"1\"} 1\n\
             a_total{job=\"y\",instance=\"j\",k=\"1\"} 2\nstray 3\n# HELP b B.\nb{le=\"1\"} 4\n",
        ];
        for text in texts {
            let mut families = crate::exposition::parse(text.as_bytes()).expect("parses");
            // A family that vanished whole: only markers, so no HELP or TYPE line either.
            families.push(Family {
                name: "all_gone".into(),
                help: Some("Gone.".into()),
                kind: crate::model::MetricType::Gauge,
                series: vec![Series {
                    name: "all_gone".into(),
                    labels: vec![],
                    value: crate::model::stale_nan(),
                    timestamp_ms: None,
                }],
                ..Family::default()
            });
            families.push(Family {
                name: "gone".into(),
                series: vec![
                    Series {
                        name: "gone".into(),
                        labels: vec![Label::new("job", "node")],
                        value: crate::model::stale_nan(),
                        timestamp_ms: None,
                    },
                    Series {
                        name: "gone".into(),
                        labels: vec![Label::new("x", "kept")],
                        value: f64::NAN,
                        timestamp_ms: Some(5),
                    },
                ],
                ..Family::default()
            });
            let scrape = Scrape {
                meta: ScrapeMeta {
                    publisher: "p".into(),
                    job: "node".into(),
                    instance: "h:1".into(),
                    time_ms: 1,
                },
                families,
            };
            let batch = ScrapeBatch::from_scrape(&scrape).expect("encodes");
            for publisher_label in [false, true] {
                let sink = sink(publisher_label);
                let from_batch = String::from_utf8(sink.body_of_batch(&batch)).expect("UTF-8");
                let from_model = String::from_utf8(sink.body(&scrape)).expect("UTF-8");
                assert_eq!(from_batch, from_model);
                assert!(
                    from_batch.contains("gone{x=\"kept\"} NaN\n"),
                    "{from_batch}"
                );
                assert!(!from_batch.contains("gone{job"), "markers left out");
                assert!(!from_batch.contains("all_gone"), "{from_batch}");
            }
        }
    }
}
