use std::io::Write as _;

use super::*;
use crate::model::{Family, Label, MetricType, Series};

fn scrape() -> Scrape {
    Scrape {
        meta: ScrapeMeta {
            publisher: "dc1.example.net".into(),
            job: "node".into(),
            instance: "h1:9100".into(),
            time_ms: 1_700_000_000_123,
        },
        families: vec![Family {
            name: "node_load1".into(),
            help: Some("1m load average.".into()),
            unit: None,
            kind: MetricType::Gauge,
            series: vec![
                Series {
                    name: "node_load1".into(),
                    labels: vec![Label::new("instance", "h1:9100"), Label::new("job", "node")],
                    value: 0.25,
                    timestamp_ms: None,
                },
                Series {
                    name: "node_load1".into(),
                    labels: vec![Label::new("cpu", "a\"b\\c\nd")],
                    value: f64::INFINITY,
                    timestamp_ms: Some(1_700_000_000_000),
                },
            ],
        }],
    }
}

#[test]
fn encode_then_decode_is_the_identity() {
    let original = scrape();
    let message = encode(&original, "prometheus").expect("encodes");
    assert_eq!(message.subject, "prometheus.dc1_example_net.node");
    let headers = &message.headers;
    assert_eq!(
        headers.get(HEADER_ENCODING).map(|v| v.as_str()),
        Some("zstd")
    );
    assert_eq!(headers.get(HEADER_SAMPLES).map(|v| v.as_str()), Some("2"));
    assert_eq!(
        headers.get(HEADER_TIME).map(|v| v.as_str()),
        Some("1700000000123")
    );
    assert_eq!(
        headers.get(HEADER_MSG_ID).map(|v| v.as_str()),
        Some(message.msg_id.as_str())
    );
    let decoded = decode(Some(headers), &message.payload).expect("decodes");
    assert_eq!(decoded, original);
    assert_eq!(peek_meta(Some(headers)), Some(original.meta.clone()));
}

#[test]
fn message_id_is_stable_and_depends_on_every_fact() {
    let meta = scrape().meta;
    assert_eq!(message_id(&meta), message_id(&meta.clone()));
    assert_eq!(message_id(&meta).len(), 3 + 32);
    let variants = [
        ScrapeMeta {
            publisher: "other".into(),
            ..meta.clone()
        },
        ScrapeMeta {
            job: "other".into(),
            ..meta.clone()
        },
        ScrapeMeta {
            instance: "other".into(),
            ..meta.clone()
        },
        ScrapeMeta {
            time_ms: meta.time_ms + 1,
            ..meta.clone()
        },
        // Length prefixes: moving a character from one field to the next changes the id.
        ScrapeMeta {
            publisher: "dc1.example.netn".into(),
            job: "ode".into(),
            ..meta.clone()
        },
    ];
    for variant in variants {
        assert_ne!(message_id(&variant), message_id(&meta), "{variant:?}");
    }
}

/// Pinned: a change breaks de-duplication of re-published scrapes across an upgrade.
#[test]
fn message_id_is_pinned() {
    let meta = ScrapeMeta {
        publisher: "P".into(),
        job: "j".into(),
        instance: "i".into(),
        time_ms: 0,
    };
    // Computed independently (Python hashlib) from the documented construction.
    assert_eq!(message_id(&meta), "v1-ca4218fc53bd0b4c7eb2bc8a2ee2fa1e");
}

#[test]
fn subject_tokens_are_made_safe() {
    let cases = [
        ("host.example.net", "host_example_net"),
        ("a b", "a_b"),
        ("x*y>z", "x_y_z"),
        ("", "_"),
        ("plain-1", "plain-1"),
    ];
    for (input, expected) in cases {
        assert_eq!(subject_token(input), expected, "{input:?}");
    }
}

#[test]
fn a_header_with_a_newline_is_an_error_not_a_panic() {
    let mut bad = scrape();
    bad.meta.instance = "h1\r\nX: y".into();
    let error = encode(&bad, "prometheus").expect_err("refused").to_string();
    assert!(error.contains(HEADER_INSTANCE), "{error}");
}

#[test]
fn a_zstd_bomb_is_refused() {
    let zeros = vec![0u8; 4 * 1024 * 1024];
    let bomb = zstd::bulk::compress(&zeros, 19).expect("compresses");
    assert!(bomb.len() < 4096);
    let message = encode(&scrape(), "prometheus").expect("encodes");
    match decode_with_limit(Some(&message.headers), &bomb, 1024 * 1024) {
        Err(WireError::TooLarge { limit }) => assert_eq!(limit, 1024 * 1024),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_gzip_bomb_is_refused() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(&vec![b'a'; 2 * 1024 * 1024])
        .expect("writes");
    let bomb = encoder.finish().expect("finishes");
    assert!(matches!(
        decompress("gzip", &bomb, 1024),
        Err(WireError::TooLarge { limit: 1024 })
    ));
}

#[test]
fn decode_errors_name_what_is_wrong() {
    let message = encode(&scrape(), "prometheus").expect("encodes");
    let mut headers = message.headers.clone();
    headers.insert(HEADER_ENCODING, "brotli");
    let error = decode(Some(&headers), &message.payload).expect_err("unknown encoding");
    assert!(matches!(error, WireError::UnsupportedEncoding(ref e) if e == "brotli"));

    let mut headers = message.headers.clone();
    headers.insert(HEADER_TIME, "yesterday");
    let error = decode(Some(&headers), &message.payload).expect_err("bad time");
    assert!(error.to_string().contains(HEADER_TIME), "{error}");

    let error = decode(Some(&message.headers), b"not zstd").expect_err("corrupt body");
    assert!(matches!(error, WireError::Decompress { .. }), "{error}");

    let error = decode(None, b"\x00garbage").expect_err("neither format");
    assert!(matches!(error, WireError::Legacy(_)), "{error}");

    let mut headers = message.headers.clone();
    headers.insert(HEADER_FORMAT, "application/openmetrics-text");
    let error = decode(Some(&headers), &message.payload).expect_err("format");
    assert!(matches!(error, WireError::UnsupportedFormat(_)), "{error}");
}

#[test]
fn a_prometheus_streams_json_message_is_read() {
    let text = b"# TYPE up gauge\nup 1\n";
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text).expect("writes");
    let gzipped = encoder.finish().expect("finishes");
    let json = serde_json::json!({
        "job": "choria",
        "instance": "choria1",
        "time": 1_600_000_000,
        "publisher": "USDC1",
        "scrape": base64::engine::general_purpose::STANDARD.encode(gzipped),
    });
    let payload = serde_json::to_vec(&json).expect("serialises");
    let decoded = decode(None, &payload).expect("decodes the legacy message");
    assert_eq!(decoded.meta.publisher, "USDC1");
    assert_eq!(decoded.meta.job, "choria");
    assert_eq!(decoded.meta.instance, "choria1");
    assert_eq!(decoded.meta.time_ms, 1_600_000_000_000);
    assert_eq!(decoded.families[0].series[0].value, 1.0);
}

#[test]
fn format_header_variants() {
    assert!(format_is_text("text/plain; version=0.0.4"));
    assert!(format_is_text("text/plain;version=0.0.4; charset=utf-8"));
    assert!(format_is_text("text/plain"));
    assert!(!format_is_text("text/plain; version=1.0.0"));
    assert!(!format_is_text("application/json"));
}

fn big_scrape(series: usize) -> Scrape {
    let mut scrape = scrape();
    scrape.families = (0..4)
        .map(|family| Family {
            name: format!("metric_{family}").into(),
            help: Some("Help.".into()),
            unit: None,
            kind: MetricType::Counter,
            series: (0..series / 4)
                .map(|i| Series {
                    name: format!("metric_{family}").into(),
                    labels: vec![
                        Label::new(
                            "id",
                            format!("{i:08}-{}", i.wrapping_mul(2_654_435_761) % 9973),
                        ),
                        Label::new("job", "node"),
                    ],
                    value: i as f64 * 1.5,
                    timestamp_ms: None,
                })
                .collect(),
        })
        .collect();
    scrape
}

#[test]
fn the_default_body_is_a_batch_and_keeps_staleness_markers_and_float_bits() {
    let mut original = scrape();
    original.families[0].series[0].value = crate::model::stale_nan();
    original.families[0].series[1].value = f64::from_bits(0x7ff8_0000_0000_0001);
    let message = encode(&original, "prometheus").expect("encodes");
    assert_eq!(
        message.headers.get(HEADER_FORMAT).map(|v| v.as_str()),
        Some(FORMAT_BATCH)
    );
    let decoded = decode(Some(&message.headers), &message.payload).expect("decodes");
    let values: Vec<u64> = decoded.families[0]
        .series
        .iter()
        .map(|s| s.value.to_bits())
        .collect();
    assert_eq!(
        values,
        [crate::model::STALE_NAN_BITS, 0x7ff8_0000_0000_0001]
    );
    assert_eq!(
        decoded.families[0].series[1].timestamp_ms,
        Some(1_700_000_000_000)
    );
}

#[test]
fn a_text_body_is_still_written_on_request_without_staleness_markers_and_read() {
    let mut original = scrape();
    original.families[0].series[0].value = crate::model::stale_nan();
    let message = encode_as(&original, "prometheus", WireFormat::Text).expect("encodes");
    assert_eq!(
        message.headers.get(HEADER_FORMAT).map(|v| v.as_str()),
        Some(FORMAT_TEXT)
    );
    let text = decompress(ENCODING_ZSTD, &message.payload, 1 << 20).expect("test input");
    assert!(
        !String::from_utf8_lossy(&text).contains("NaN"),
        "no marker in text"
    );
    let decoded = decode(Some(&message.headers), &message.payload).expect("decodes");
    assert_eq!(decoded.families[0].series.len(), 1);
}

#[test]
fn a_batch_of_another_version_or_a_broken_batch_is_refused_with_a_clear_error() {
    let message = encode(&scrape(), "prometheus").expect("test input");
    let mut headers = message.headers.clone();
    headers.insert(HEADER_FORMAT, "application/vnd.promrelay.batch; version=2");
    let error = decode(Some(&headers), &message.payload)
        .expect_err("must fail")
        .to_string();
    assert!(error.contains("version 1"), "{error}");
    let garbage = zstd::bulk::compress(b"PRB1 but not really a batch", 3).expect("test input");
    let error = decode(Some(&message.headers), &garbage)
        .expect_err("must fail")
        .to_string();
    assert!(error.contains("not a valid batch"), "{error}");
}

#[test]
fn split_and_join_give_back_the_scrape_and_every_part_is_a_scrape() {
    let original = big_scrape(1_000);
    for count in [1, 2, 3, 7, 1_000, 5_000] {
        let parts = parts::split(&original, count);
        assert_eq!(parts.len(), count.min(1_000));
        assert!(parts.iter().all(|part| part.meta == original.meta));
        assert_eq!(parts::join(parts), original, "{count} parts");
    }
}

#[test]
fn a_scrape_larger_than_the_max_payload_goes_in_parts_that_each_fit_and_join_back() {
    let original = big_scrape(40_000);
    let max_payload = 64 * 1024;
    let whole = encode(&original, "prometheus").expect("test input");
    assert!(whole.payload.len() > max_payload, "{}", whole.payload.len());
    let messages =
        encode_parts(&original, "prometheus", WireFormat::Batch, max_payload).expect("test input");
    assert!(messages.len() > 1);
    let count = messages.len();
    let mut decoded = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (index, message) in messages.iter().enumerate() {
        assert!(message.payload.len() + parts::HEADER_ROOM <= max_payload);
        let part = part_of(Some(&message.headers))
            .expect("test input")
            .expect("a part");
        assert_eq!((part.index, part.count), (index as u32 + 1, count as u32));
        assert_eq!(part.scrape_id, whole.msg_id);
        assert!(
            ids.insert(message.msg_id.clone()),
            "each part has its own Nats-Msg-Id"
        );
        decoded.push(decode(Some(&message.headers), &message.payload).expect("test input"));
    }
    assert_eq!(parts::join(decoded), original);
    // Small enough: one message, no part headers.
    let one =
        encode_parts(&scrape(), "prometheus", WireFormat::Batch, max_payload).expect("test input");
    assert_eq!(one.len(), 1);
    assert_eq!(part_of(Some(&one[0].headers)).expect("test input"), None);
}

#[test]
fn bad_part_headers_are_errors() {
    let message = encode(&scrape(), "prometheus").expect("test input");
    for value in ["0/3", "4/3", "x/3", "3", "1/0", "1/100000"] {
        let mut headers = message.headers.clone();
        headers.insert(HEADER_PART, value);
        headers.insert(HEADER_SCRAPE_ID, "v1-x");
        assert!(part_of(Some(&headers)).is_err(), "{value}");
    }
    let mut headers = message.headers.clone();
    headers.insert(HEADER_PART, "1/2");
    assert!(matches!(
        part_of(Some(&headers)),
        Err(WireError::MissingHeader(HEADER_SCRAPE_ID))
    ));
}

#[test]
fn decode_for_the_nats_cli_prints_a_batch_body_as_text_with_its_markers() {
    let mut original = scrape();
    original.families[0].series[0].value = crate::model::stale_nan();
    let message = encode(&original, "prometheus").expect("test input");
    let text = body::to_text(&message.payload).expect("test input");
    assert!(text.contains("# TYPE node_load1 gauge"), "{text}");
    assert!(
        text.contains("node_load1{cpu=\"a\\\"b\\\\c\\nd\"} +Inf 1700000000000"),
        "{text}"
    );
    assert!(
        text.contains("# stale: node_load1{instance=\"h1:9100\",job=\"node\"}"),
        "{text}"
    );
    let plain = encode_as(&original, "p", WireFormat::Text).expect("test input");
    assert!(body::to_text(&plain.payload)
        .expect("test input")
        .contains("node_load1"));
}
