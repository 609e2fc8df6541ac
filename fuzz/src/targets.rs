//! The fuzz targets: every input of the relay that comes from someone it does not control.
//!
//! - `text`: a scrape body (Prometheus text 0.0.4 / OpenMetrics) into the parser; what parses
//!   renders, and the render parses back to the same render (the wire depends on it).
//! - `batch`: what a guest filter hands back (ABI batch) into the host's batch reader; what
//!   decodes re-encodes and decodes to the same families.
//! - `wire`: a stream message (headers + body, or the original's JSON) into the receiver's
//!   decoder. The first byte picks how the rest is framed (see [`Wire`]), so mutations reach the
//!   parser behind the decompressor too.
//! - `config`: a config file into the loader.

use async_nats::HeaderMap;
use base64::Engine as _;
use promrelay::exposition::{self, RenderOptions};
use promrelay::filter::codec;
use promrelay::model::{Family, Scrape};

use crate::engine::{Outcome, Target};

const MIB: usize = 1024 * 1024;

/// Error text as the outcome class.
fn refused(error: impl std::fmt::Display) -> Outcome {
    Outcome::Refused(error.to_string())
}

fn render(families: &[Family]) -> Vec<u8> {
    let mut out = Vec::new();
    exposition::render(
        families,
        &RenderOptions {
            timestamps: true,
            omit_labels: &[],
        },
        &mut out,
    );
    out
}

fn shape(families: &[Family]) -> String {
    let series: usize = families.iter().map(|f| f.series.len()).sum();
    // Buckets, not counts: the class must not change with every extra series.
    let bucket = |n: usize| match n {
        0 => "none",
        1 => "one",
        2..=16 => "few",
        _ => "many",
    };
    format!(
        "families={} series={}",
        bucket(families.len()),
        bucket(series)
    )
}

pub struct Text;

impl Target for Text {
    fn name(&self) -> &'static str {
        "text"
    }

    fn run(&self, input: &[u8]) -> Outcome {
        let families = match exposition::parse(input) {
            Ok(families) => families,
            Err(error) => return refused(error),
        };
        let first = render(&families);
        match exposition::parse(&first) {
            Ok(again) => {
                let second = render(&again);
                if second != first {
                    return Outcome::Broken(format!(
                        "render → parse → render changed the text:\nfirst:  {}\nsecond: {}",
                        crate::engine::escape(&first, 600),
                        crate::engine::escape(&second, 600)
                    ));
                }
                Outcome::Accepted(shape(&families))
            }
            Err(error) => Outcome::Broken(format!(
                "the render of accepted input does not parse ({error}):\n{}",
                crate::engine::escape(&first, 600)
            )),
        }
    }

    fn allocation_bound(&self, len: usize) -> usize {
        16 * MIB + 64 * len
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"# HELP ",
            b"# TYPE ",
            b"# UNIT ",
            b"# EOF\n",
            b" counter\n",
            b" gauge\n",
            b" histogram\n",
            b" summary\n",
            b" untyped\n",
            b" info\n",
            b" stateset\n",
            b" gaugehistogram\n",
            b"{",
            b"}",
            b"=\"",
            b"\",",
            b"\"}",
            b"\\\"",
            b"\\n",
            b"\\\\",
            b"_total",
            b"_bucket",
            b"_sum",
            b"_count",
            b"_created",
            b"le=\"+Inf\"",
            b"quantile=\"",
            b" # {trace_id=\"x\"} 1 ",
            b" NaN",
            b" +Inf",
            b" -Inf",
            b" 1e3",
            b" 1700000000000",
            b"\n",
            b"__name__",
            b"\xc3\xa9",
            b"\xff\xfe",
            b"\r\n",
            b"\t",
        ]
    }
}

pub struct Batch;

/// The series cap and label limit the relay applies to a filter's output (1 000 input series).
const BATCH_SERIES_CAP: usize = 4096;
const BATCH_LABEL_LIMIT: usize = promrelay::model::DEFAULT_LABEL_LIMIT;

impl Target for Batch {
    fn name(&self) -> &'static str {
        "batch"
    }

    fn run(&self, input: &[u8]) -> Outcome {
        let families = match codec::decode(input, BATCH_SERIES_CAP, BATCH_LABEL_LIMIT) {
            Ok(families) => families,
            Err(error) => return refused(error),
        };
        let scrape = Scrape {
            families,
            ..Scrape::default()
        };
        let encoded = match codec::encode(&scrape) {
            Ok(encoded) => encoded,
            Err(error) => {
                return Outcome::Broken(format!("a decoded batch does not re-encode: {error}"))
            }
        };
        match codec::decode(&encoded, BATCH_SERIES_CAP, BATCH_LABEL_LIMIT) {
            Ok(again) if render(&again) == render(&scrape.families) => {
                Outcome::Accepted(shape(&again))
            }
            Ok(_) => Outcome::Broken("decode → encode → decode changed the families".into()),
            Err(error) => Outcome::Broken(format!("a re-encoded batch is refused: {error}")),
        }
    }

    fn allocation_bound(&self, len: usize) -> usize {
        16 * MIB + 64 * len
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            &promrelay_abi::MAGIC,
            &[0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 0],
            &[1, 0, 0, 0],
            &[0, 0, 0, 0, 0, 0, 0xf0, 0x7f],
            &[2, 0, 0, 0, 0, 0, 0xf0, 0x7f],
            b"__name__",
            b"\xff",
        ]
    }
}

/// Decoded bodies are capped at this (the relay's cap is 64 MiB; a smaller one keeps runs fast
/// and still shows the cap holds).
const WIRE_LIMIT: usize = 4 * MIB;

/// Framing of a `wire` input: byte 0 picks the mode, the rest is
/// - mode 0: a raw message body without headers (the original's JSON);
/// - mode 1: header lines `Name: value\n`, an empty line, then the raw body;
/// - mode 2: headers, empty line, a body the harness compresses with zstd first;
/// - mode 3: headers, empty line, a body the harness compresses with gzip first;
/// - mode 4: a scrape text the harness wraps as the original's JSON (gzip + base64).
pub struct Wire;

pub fn frame(mode: u8, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    if mode != 0 && mode != 4 {
        for (name, value) in headers {
            out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
        out.push(b'\n');
    }
    out.extend_from_slice(body);
    out
}

fn split_headers(rest: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let mut rest = rest;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        if let Some((name, value)) = line.split_once(':') {
            if let Ok(value) = value.trim().parse::<async_nats::header::HeaderValue>() {
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
                    headers.insert(name.trim(), value);
                }
            }
        }
    }
    (headers, rest)
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

pub fn legacy_json(body: &[u8]) -> Vec<u8> {
    let scrape = base64::engine::general_purpose::STANDARD.encode(gzip(body));
    serde_json::json!({
        "job": "node", "instance": "host:9100", "time": 1_700_000_000.5,
        "publisher": "site1", "scrape": scrape,
    })
    .to_string()
    .into_bytes()
}

impl Target for Wire {
    fn name(&self) -> &'static str {
        "wire"
    }

    fn run(&self, input: &[u8]) -> Outcome {
        let Some((&mode, rest)) = input.split_first() else {
            return refused("empty");
        };
        let decoded = match mode % 5 {
            0 => promrelay::wire::decode_with_limit(None, rest, WIRE_LIMIT),
            4 => promrelay::wire::decode_with_limit(None, &legacy_json(rest), WIRE_LIMIT),
            mode => {
                let (headers, body) = split_headers(rest);
                let body = match mode {
                    2 => zstd::bulk::compress(body, 1).unwrap_or_default(),
                    3 => gzip(body),
                    _ => body.to_vec(),
                };
                promrelay::wire::decode_with_limit(Some(&headers), &body, WIRE_LIMIT)
            }
        };
        match decoded {
            Ok(scrape) => Outcome::Accepted(shape(&scrape.families)),
            Err(error) => refused(error),
        }
    }

    fn allocation_bound(&self, len: usize) -> usize {
        // The decompressed body (capped) and what the parser builds from it.
        16 * MIB + 12 * WIRE_LIMIT + 64 * len
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"Promrelay-Format: text/plain; version=0.0.4\n",
            b"Promrelay-Encoding: zstd\n",
            b"Promrelay-Encoding: gzip\n",
            b"Promrelay-Encoding: identity\n",
            b"Promrelay-Time: 1700000000000\n",
            b"Promrelay-Publisher: site1\n",
            b"Promrelay-Job: node\n",
            b"Promrelay-Instance: host:9100\n",
            b"Promrelay-Samples: 3\n",
            b"\n",
            b"\x28\xb5\x2f\xfd",
            b"\x1f\x8b\x08\x00",
            b"{\"job\":\"a\",\"instance\":\"b\",\"time\":1,\"publisher\":\"c\",\"scrape\":\"\"}",
            b"\"scrape\":\"H4sIAAAAAAAA/w==\"",
            b"# TYPE a counter\na_total 1\n",
        ]
    }
}

pub struct Config;

impl Target for Config {
    fn name(&self) -> &'static str {
        "config"
    }

    fn run(&self, input: &[u8]) -> Outcome {
        let text = String::from_utf8_lossy(input);
        match promrelay::config::parse(&text, "fuzz.yaml") {
            Ok(config) => Outcome::Accepted(format!("jobs={}", config.jobs.len().min(3))),
            Err(error) => {
                // The first problem only: a file with many problems would make every input new.
                let text = error.to_string();
                refused(text.lines().next().unwrap_or_default())
            }
        }
    }

    fn allocation_bound(&self, len: usize) -> usize {
        // The loader's alias bound allows 1 000 000 copied nodes (docs/config.md).
        512 * MIB + 256 * len
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"jobs:\n",
            b"  - name: node\n",
            b"    targets:\n",
            b"      - name: a\n",
            b"        url: http://127.0.0.1:9100/metrics\n",
            b"poller_stream:\n",
            b"receiver_stream:\n",
            b"  topic: metrics\n",
            b"  replicas: 1\n",
            b"nats: nats://127.0.0.1:4222\n",
            b"&a ",
            b"*a",
            b"<<: *a\n",
            b"[*a, *a, *a, *a]",
            b"{",
            b"}",
            b"- ",
            b": ",
            b"'",
            b"\"",
            b"!!str ",
            b"!!binary ",
            b"|\n",
            b">-\n",
            b"---\n",
            b"...\n",
            b"~",
            b"null",
            b"true",
            b"1m30s",
            b"-1s",
            b"99999999999h",
            b"0x1F",
            b"\t",
            b"#",
            b"%YAML 1.2\n",
            b"? ",
            b"scrape_interval: ",
            b"scrape_timeout: ",
            b"filters:\n",
            b"label_limit: ",
            b"monitor_port: ",
            b"management:\n",
            b"tls:\n",
            b"max_age: ",
        ]
    }
}

/// Every target, by name.
pub fn all() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(Text),
        Box::new(Batch),
        Box::new(Wire),
        Box::new(Config),
    ]
}
