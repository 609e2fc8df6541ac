//! The Prometheus remote_write 1.0 sink: one snappy-compressed protobuf `WriteRequest` per scrape.
//!
//! Every series becomes a time series with its labels plus `__name__`, `job` and `instance` from
//! the scrape (and `publisher` when configured), sorted by name as the protocol requires; a
//! sample without its own timestamp gets the scrape's time. The protobuf messages are written by
//! hand with `prost` derives (field numbers from Prometheus' `prompb/types.proto` and
//! `remote.proto`), so no build script or `protoc` is needed.
//!
//! **Invariant:** a 4xx is final. Prometheus answers 400 `out of order sample` (or `duplicate
//! sample for timestamp`) to data it already has, so retrying a 4xx could never succeed; only
//! 5xx, 429 and transport errors are retried. Those two answers mean the endpoint holds this
//! scrape or newer samples of its series — what a redelivered scrape (after a receiver crash)
//! gets — and are reported as [`Outcome::AlreadyStored`], not as a refusal. Prometheus applies a
//! request all or nothing, which is why each scrape travels in a request of its own: a re-sent
//! scrape refused whole never takes a new one down with it.

use std::time::Duration;

use super::{classify, describe, http_client, Outcome};
use crate::batch::ScrapeBatch;
#[cfg(test)]
use crate::model::Scrape;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// One remote_write endpoint.
#[derive(Debug, Clone)]
pub struct RemoteWrite {
    url: url::Url,
    name: String,
    publisher_label: bool,
    client: reqwest::Client,
}

impl RemoteWrite {
    /// A sink writing to `url` (e.g. `http://127.0.0.1:9090/api/v1/write`).
    pub fn new(
        url: url::Url,
        publisher_label: bool,
        timeout: Duration,
    ) -> anyhow::Result<RemoteWrite> {
        Ok(RemoteWrite::with_client(
            url,
            publisher_label,
            http_client(timeout)?,
        ))
    }

    /// Like [`RemoteWrite::new`] with a client built elsewhere (TLS, auth).
    pub fn with_client(
        url: url::Url,
        publisher_label: bool,
        client: reqwest::Client,
    ) -> RemoteWrite {
        let name = format!(
            "remote_write:{}",
            url.host_str()
                .map(|host| match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                })
                .unwrap_or_default()
        );
        RemoteWrite {
            url,
            name,
            publisher_label,
            client,
        }
    }

    /// From one `remote_write` entry; `publisher_label` follows the Pushgateway's setting.
    pub fn from_config(
        section: &crate::config::RemoteWriteConfig,
        publisher_label: bool,
    ) -> anyhow::Result<RemoteWrite> {
        Ok(RemoteWrite::with_client(
            section.url.clone(),
            publisher_label,
            super::http::client(section.timeout, &section.http)?,
        ))
    }

    /// `remote_write:<host:port>`: the `sink` label of the push metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one scrape.
    pub async fn push(&self, scrape: &ScrapeBatch) -> Outcome {
        let encoded = encode_batch(scrape, self.publisher_label);
        let compressed = match snap::raw::Encoder::new().compress_vec(&encoded) {
            Ok(compressed) => compressed,
            Err(error) => {
                return Outcome::Rejected {
                    status: 0,
                    body: format!("snappy compression failed: {error}"),
                }
            }
        };
        let request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(compressed);
        match request.send().await {
            Ok(response) => already_stored(classify(response).await),
            Err(error) => Outcome::Retry(describe(&error)),
        }
    }
}

/// Turns Prometheus' 400 for samples it already has (or has newer ones of) into
/// [`Outcome::AlreadyStored`]; every other answer stays as it is.
pub fn already_stored(outcome: Outcome) -> Outcome {
    // Prometheus' storage errors `ErrOutOfOrderSample` and `ErrDuplicateSampleForTimestamp`,
    // as its remote-write handler writes them into the 400's body.
    const STORED: [&str; 2] = ["out of order sample", "duplicate sample for timestamp"];
    match outcome {
        Outcome::Rejected { status: 400, body }
            if STORED
                .iter()
                .any(|text| body.to_ascii_lowercase().contains(text)) =>
        {
            Outcome::AlreadyStored(body)
        }
        other => other,
    }
}

/// The protobuf `WriteRequest` of the receiver's batch, written straight from its records (the
/// bytes [`write_request`] would encode for the same scrape): one time series per series, its
/// labels those of the batch with `job`/`instance`(/`publisher`) taken from the scrape's routing
/// facts, the sample at the series' own timestamp or the scrape's time. Staleness markers are
/// included. Hot path: no allocation per series or label.
pub fn encode_batch(scrape: &ScrapeBatch, publisher_label: bool) -> Vec<u8> {
    let Some(reader) = scrape.reader() else {
        return Vec::new();
    };
    let meta = &scrape.meta;
    let routing_all = [
        ("instance", meta.instance.as_bytes()),
        ("job", meta.job.as_bytes()),
        ("publisher", meta.publisher.as_bytes()),
    ];
    let routing = &routing_all[..if publisher_label { 3 } else { 2 }];
    let mut out = Vec::with_capacity(scrape.bytes().len() * 2);
    let mut labels: Vec<(&[u8], &[u8])> = Vec::with_capacity(32);
    let text = |index: u32| reader.bytes(index).unwrap_or_default();
    for index in 0..reader.series_count() {
        let Ok(series) = reader.series(index) else {
            continue;
        };
        // The batch's labels are sorted: merge the routing labels in at their places.
        labels.clear();
        let mut next = 0;
        for label in reader.labels(&series) {
            let name = text(label.name);
            while next < routing.len() && routing[next].0.as_bytes() < name {
                labels.push((routing[next].0.as_bytes(), routing[next].1));
                next += 1;
            }
            if routing.iter().any(|(routed, _)| routed.as_bytes() == name) {
                continue;
            }
            labels.push((name, text(label.value)));
        }
        for (name, value) in &routing[next..] {
            labels.push((name.as_bytes(), value));
        }
        let timestamp = series.timestamp_ms.unwrap_or(meta.time_ms);
        let sample_len = if series.value != 0.0 { 9 } else { 0 }
            + if timestamp != 0 {
                1 + varint_len(timestamp as u64)
            } else {
                0
            };
        let series_len: usize = labels
            .iter()
            .map(|(name, value)| {
                let len = label_len(name, value);
                1 + varint_len(len as u64) + len
            })
            .sum::<usize>()
            + 1
            + varint_len(sample_len as u64)
            + sample_len;
        out.push(0x0a);
        put_varint(&mut out, series_len as u64);
        for (name, value) in &labels {
            out.push(0x0a);
            put_varint(&mut out, label_len(name, value) as u64);
            put_bytes(&mut out, 0x0a, name);
            put_bytes(&mut out, 0x12, value);
        }
        out.push(0x12);
        put_varint(&mut out, sample_len as u64);
        if series.value != 0.0 {
            out.push(0x09);
            out.extend_from_slice(&series.value.to_le_bytes());
        }
        if timestamp != 0 {
            out.push(0x10);
            put_varint(&mut out, timestamp as u64);
        }
    }
    out
}

/// The encoded length of a `Label` (proto3: an empty string is left out).
fn label_len(name: &[u8], value: &[u8]) -> usize {
    let field = |bytes: &[u8]| {
        if bytes.is_empty() {
            0
        } else {
            1 + varint_len(bytes.len() as u64) + bytes.len()
        }
    };
    field(name) + field(value)
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    if !bytes.is_empty() {
        out.push(tag);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The model's way, kept as the reference [`encode_batch`] is tested against: converts a
/// scrape: one time series per series, `job`/`instance`(/`publisher`) from the
/// scrape's routing facts (overriding a same-named series label, as the Pushgateway does).
#[cfg(test)]
pub fn write_request(scrape: &Scrape, publisher_label: bool) -> WriteRequest {
    let meta = &scrape.meta;
    let mut routing = vec![
        ("instance", meta.instance.as_str()),
        ("job", meta.job.as_str()),
    ];
    if publisher_label {
        routing.push(("publisher", meta.publisher.as_str()));
    }
    let mut timeseries = Vec::with_capacity(scrape.sample_count());
    // Hot path: one allocation per label string; this runs once per scrape per sample.
    for family in &scrape.families {
        for series in &family.series {
            let mut labels = Vec::with_capacity(series.labels.len() + 1 + routing.len());
            labels.push(Label {
                name: "__name__".to_string(),
                value: series.name.to_string(),
            });
            for label in &series.labels {
                if routing.iter().any(|(name, _)| *name == label.name.as_str()) {
                    continue;
                }
                labels.push(Label {
                    name: label.name.to_string(),
                    value: label.value.to_string(),
                });
            }
            for (name, value) in &routing {
                labels.push(Label {
                    name: (*name).to_string(),
                    value: (*value).to_string(),
                });
            }
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            timeseries.push(TimeSeries {
                labels,
                samples: vec![Sample {
                    value: series.value,
                    timestamp: series.timestamp_ms.unwrap_or(meta.time_ms),
                }],
            });
        }
    }
    WriteRequest { timeseries }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::model::{Family, Label as ModelLabel, ScrapeMeta, Series};

    #[test]
    fn the_request_written_from_the_batch_is_the_bytes_prost_encodes_for_the_model() {
        let series = |name: &str, labels: &[(&str, &str)], value: f64, timestamp_ms| Series {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(n, v)| ModelLabel::new(*n, *v))
                .collect(),
            value,
            timestamp_ms,
        };
        let scrape = Scrape {
            meta: ScrapeMeta {
                publisher: "dc1".into(),
                job: "node".into(),
                instance: "h:9100".into(),
                time_ms: 1_700_000_000_123,
            },
            families: vec![Family {
                name: "x".into(),
                series: vec![
                    series("x", &[("a", "1"), ("job", "inner")], 1.5, None),
                    series("x", &[("Zone", "z"), ("b", "")], 0.0, Some(-5)),
                    series(
                        "x",
                        &[("instance", "other"), ("zz", "1")],
                        crate::model::stale_nan(),
                        Some(0),
                    ),
                    series(
                        "x",
                        &[("publisher", "p"), ("ü", "é".repeat(100).as_str())],
                        -2.0,
                        None,
                    ),
                ],
                ..Family::default()
            }],
        };
        let batch = ScrapeBatch::from_scrape(&scrape).expect("encodes");
        for publisher_label in [false, true] {
            assert_eq!(
                encode_batch(&batch, publisher_label),
                write_request(&scrape, publisher_label).encode_to_vec(),
                "publisher_label {publisher_label}"
            );
        }
    }

    #[test]
    fn a_400_for_samples_prometheus_already_has_is_already_stored_other_4xx_stay_rejected() {
        let rejected = |status, body: &str| Outcome::Rejected {
            status,
            body: body.to_string(),
        };
        let cases = [
            (rejected(400, "out of order sample"), "already_stored"),
            (
                rejected(400, "duplicate sample for timestamp"),
                "already_stored",
            ),
            (rejected(400, "out of bounds"), "rejected"),
            (rejected(404, "out of order sample"), "rejected"),
            (rejected(400, "invalid label name"), "rejected"),
            (Outcome::Retry("HTTP 503".into()), "retry"),
            (Outcome::Ok, "ok"),
        ];
        for (answer, expected) in cases {
            let shown = format!("{answer:?}");
            assert_eq!(already_stored(answer).label(), expected, "{shown}");
        }
    }

    #[test]
    fn series_become_sorted_time_series_with_routing_labels() {
        let scrape = Scrape {
            meta: ScrapeMeta {
                publisher: "P1".into(),
                job: "node".into(),
                instance: "h:9100".into(),
                time_ms: 1_000,
            },
            families: vec![Family {
                name: "x".into(),
                series: vec![
                    Series {
                        name: "x".into(),
                        labels: vec![ModelLabel::new("Zone", "z"), ModelLabel::new("job", "old")],
                        value: 2.5,
                        timestamp_ms: None,
                    },
                    Series {
                        name: "x".into(),
                        labels: vec![],
                        value: f64::NAN,
                        timestamp_ms: Some(7),
                    },
                ],
                ..Family::default()
            }],
        };
        let request = write_request(&scrape, true);
        let first = &request.timeseries[0];
        let names: Vec<&str> = first.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["Zone", "__name__", "instance", "job", "publisher"]);
        assert_eq!(first.labels[3].value, "node");
        assert_eq!(first.samples[0].timestamp, 1_000);
        assert_eq!(request.timeseries[1].samples[0].timestamp, 7);
        assert!(request.timeseries[1].samples[0].value.is_nan());
        let bytes = request.encode_to_vec();
        assert_eq!(
            WriteRequest::decode(bytes.as_slice())
                .expect("decodes")
                .timeseries
                .len(),
            2
        );
    }
}
