//! The wire format on the stream: one JetStream message per scrape, and its JetStream stream.
//!
//! A message's subject is `<topic>.<publisher>.<job>`; its headers carry the routing facts
//! (publisher, job, instance, scrape time, body format, body encoding, sample count) and a
//! `Nats-Msg-Id` derived from publisher/job/instance/time, so a re-published scrape is
//! de-duplicated by JetStream. The body is the scrape as Prometheus text 0.0.4 *with* the
//! timestamps it had, compressed with zstd (chosen by measurement: `benches/codec.rs`,
//! `BENCHMARKS.md` "Wire codec"). `docs/wire-format.md` is the user-facing description; keep the
//! two in step.
//!
//! [`decode`] also reads the original prometheus-streams' JSON message (no `Promrelay-*`
//! headers), so a receiver can drain a stream fed by old pollers.
//!
//! **Invariant:** decoding never trusts the sender: every header is checked, a body never
//! decompresses past [`MAX_DECODED_BYTES`] (zip-bomb safe), and a malformed message is a
//! [`WireError`], never a panic. This module knows nothing about connections; `ensure_stream`
//! (in [`stream`]) is the one place that talks to the server, shared by publisher and receiver.

pub mod body;
pub mod parts;
pub mod stream;

pub use body::{WireFormat, FORMAT_BATCH};
pub use parts::{part_of, Part, HEADER_PART, HEADER_SCRAPE_ID};
pub use stream::{ensure_stream, SourceSettings, StreamSettings};

use std::io::Read;

use async_nats::header::HeaderValue;
use async_nats::HeaderMap;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::batch::ScrapeBatch;
use crate::exposition::{self, ParseError};
use crate::model::{Scrape, ScrapeMeta};

/// Header: the publishing poller's identity.
pub const HEADER_PUBLISHER: &str = "Promrelay-Publisher";
/// Header: the scrape job.
pub const HEADER_JOB: &str = "Promrelay-Job";
/// Header: the scraped instance (the `instance` label).
pub const HEADER_INSTANCE: &str = "Promrelay-Instance";
/// Header: when the scrape started, Unix milliseconds.
pub const HEADER_TIME: &str = "Promrelay-Time";
/// Header: the body's format before compression.
pub const HEADER_FORMAT: &str = "Promrelay-Format";
/// Header: the body's compression.
pub const HEADER_ENCODING: &str = "Promrelay-Encoding";
/// Header: number of samples in the body (informational).
pub const HEADER_SAMPLES: &str = "Promrelay-Samples";
/// Header: JetStream's de-duplication id.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";

/// The text body format (`poller_stream.format: text`; [`FORMAT_BATCH`] is the default).
pub const FORMAT_TEXT: &str = "text/plain; version=0.0.4";
/// zstd compression (what [`encode`] writes).
pub const ENCODING_ZSTD: &str = "zstd";
/// gzip compression (read only).
pub const ENCODING_GZIP: &str = "gzip";
/// No compression (read only).
pub const ENCODING_IDENTITY: &str = "identity";

/// zstd level used by [`encode`]; picked from the codec benchmark (see `BENCHMARKS.md`): with
/// the batch body, compression is the largest share of the poller's path, and level 1 costs a
/// third less than level 3 for ~3 % more bytes.
pub const ZSTD_LEVEL: i32 = 1;

/// Largest body [`decode`] decompresses: a message that inflates past this is refused.
pub const MAX_DECODED_BYTES: usize = 64 * 1024 * 1024;

/// One encoded scrape, ready for `jetstream.send_publish`.
#[derive(Debug, Clone)]
pub struct WireMessage {
    /// `<topic>.<publisher>.<job>`, each token made subject-safe by [`subject_token`].
    pub subject: String,
    /// All `Promrelay-*` headers plus `Nats-Msg-Id`.
    pub headers: HeaderMap,
    /// The compressed body.
    pub payload: Bytes,
    /// The same value as the `Nats-Msg-Id` header.
    pub msg_id: String,
}

/// Why a message could not be decoded. The receiver counts these as `decode_error` and acks.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header {name} has an invalid value {value:?}: {reason}")]
    BadHeader {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "unsupported body format {0:?} (this promrelay reads {FORMAT_BATCH:?} and {FORMAT_TEXT:?})"
    )]
    UnsupportedFormat(String),
    #[error("unsupported body encoding {0:?} (this promrelay reads zstd, gzip, identity)")]
    UnsupportedEncoding(String),
    #[error("body decompresses to more than {limit} bytes; refused")]
    TooLarge { limit: usize },
    #[error("body does not decompress as {encoding}: {source}")]
    Decompress {
        encoding: &'static str,
        source: std::io::Error,
    },
    #[error("body is not a valid batch: {0}")]
    Batch(String),
    #[error("body is not Prometheus text: {0}")]
    Parse(#[from] ParseError),
    #[error("message has no Promrelay headers and is not a prometheus-streams JSON message: {0}")]
    Legacy(String),
}

/// Encodes one scrape for the stream under `topic` as a batch body (the default format).
pub fn encode(scrape: &Scrape, topic: &str) -> anyhow::Result<WireMessage> {
    encode_as(scrape, topic, WireFormat::Batch)
}

/// Encodes one scrape as one message with a `format` body.
///
/// Fails only when a routing fact cannot travel in a header (it contains CR or LF) or when
/// encoding or compression fails.
pub fn encode_as(scrape: &Scrape, topic: &str, format: WireFormat) -> anyhow::Result<WireMessage> {
    encode_whole(scrape, topic, format, None)
}

/// `on_batch` sees the uncompressed batch body (only for [`WireFormat::Batch`]).
fn encode_whole(
    scrape: &Scrape,
    topic: &str,
    format: WireFormat,
    on_batch: Option<OnBatch<'_>>,
) -> anyhow::Result<WireMessage> {
    BODY.with(|buffer| {
        let mut body = buffer.borrow_mut();
        body::encode(scrape, format, &mut body)?;
        if let (WireFormat::Batch, Some(on_batch)) = (format, on_batch) {
            on_batch(&body);
        }
        let payload = compress(&body)
            .map_err(|error| anyhow::anyhow!("zstd compression of a scrape failed: {error}"))?;
        if body.capacity() > 16 * 1024 * 1024 {
            // A one-off huge scrape does not pin its buffer for ever.
            *body = Vec::new();
        }
        message(
            scrape.into(),
            topic,
            format,
            payload,
            message_id(&scrape.meta),
            None,
        )
    })
}

/// Encodes the poller's scrape as messages whose payloads each fit `max_payload` bytes: with
/// the batch format (the default) one message whose body is the scrape's own batch, compressed
/// (no encoding step); a scrape too large for one message, or the text format, through
/// [`encode_parts`] on its model (rare paths).
pub fn encode_batch(
    scrape: &ScrapeBatch,
    topic: &str,
    format: WireFormat,
    max_payload: usize,
) -> anyhow::Result<Vec<WireMessage>> {
    if format == WireFormat::Batch {
        let payload = compress(scrape.bytes())
            .map_err(|error| anyhow::anyhow!("zstd compression of a scrape failed: {error}"))?;
        let limit = max_payload.saturating_sub(parts::HEADER_ROOM).max(1);
        if payload.len() <= limit {
            let facts = Facts {
                meta: &scrape.meta,
                samples: scrape.sample_count(),
            };
            return Ok(vec![message(
                facts,
                topic,
                format,
                payload,
                message_id(&scrape.meta),
                None,
            )?]);
        }
    }
    encode_parts(&scrape.to_scrape(), topic, format, max_payload)
}

/// The routing facts of a message.
#[derive(Clone, Copy)]
struct Facts<'a> {
    meta: &'a ScrapeMeta,
    samples: usize,
}

impl<'a> From<&'a Scrape> for Facts<'a> {
    fn from(scrape: &'a Scrape) -> Facts<'a> {
        Facts {
            meta: &scrape.meta,
            samples: scrape.sample_count(),
        }
    }
}

thread_local! {
    // One zstd context per (blocking) thread: a context's set-up and its tables cost more
    // than compressing a small scrape.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd at [`ZSTD_LEVEL`], with this thread's reused context.
fn compress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match &mut *cell {
            Some(compressor) => compressor,
            empty => empty.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        compressor.compress(bytes)
    })
}

/// Sees a whole scrape's uncompressed batch body (see [`encode_parts_with`]).
pub type OnBatch<'a> = &'a mut dyn FnMut(&[u8]);

thread_local! {
    // The uncompressed body, reused across scrapes.
    static BODY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes one scrape as messages whose payloads each fit `max_payload` bytes (with
/// [`parts::HEADER_ROOM`] left for headers): one message when it fits, else the parts of
/// [`parts::split`], as few as fit. Fails when even one series per part is too large.
pub fn encode_parts(
    scrape: &Scrape,
    topic: &str,
    format: WireFormat,
    max_payload: usize,
) -> anyhow::Result<Vec<WireMessage>> {
    encode_parts_with(scrape, topic, format, max_payload, None)
}

/// [`encode_parts`], handing the whole scrape's uncompressed batch body to `on_batch` when the
/// format is the batch (the staleness tracker keeps it instead of encoding the scrape again).
pub fn encode_parts_with(
    scrape: &Scrape,
    topic: &str,
    format: WireFormat,
    max_payload: usize,
    on_batch: Option<OnBatch<'_>>,
) -> anyhow::Result<Vec<WireMessage>> {
    let whole = encode_whole(scrape, topic, format, on_batch)?;
    let limit = max_payload.saturating_sub(parts::HEADER_ROOM).max(1);
    if whole.payload.len() <= limit {
        return Ok(vec![whole]);
    }
    let series = scrape.sample_count();
    // Compression ratios differ little between parts of one scrape: start from the ratio.
    let mut count = whole.payload.len().div_ceil(limit) + 1;
    let scrape_id = message_id(&scrape.meta);
    loop {
        if count > parts::MAX_PARTS as usize || count > series.max(1) {
            anyhow::bail!(
                "a scrape of {series} series does not fit in {} parts of {max_payload} bytes",
                count.min(parts::MAX_PARTS as usize)
            );
        }
        let pieces = parts::split(scrape, count);
        let total = pieces.len() as u32;
        let mut messages = Vec::with_capacity(pieces.len());
        let mut fits = true;
        for (index, piece) in pieces.iter().enumerate() {
            let mut body = Vec::new();
            body::encode(piece, format, &mut body)?;
            let payload = compress(&body)
                .map_err(|error| anyhow::anyhow!("zstd compression of a part failed: {error}"))?;
            if payload.len() > limit {
                fits = false;
                break;
            }
            let part = Part {
                index: index as u32 + 1,
                count: total,
                scrape_id: scrape_id.clone(),
            };
            let id = format!("{scrape_id}-{}of{total}", part.index);
            messages.push(message(
                piece.into(),
                topic,
                format,
                payload,
                id,
                Some(&part),
            )?);
        }
        if fits {
            return Ok(messages);
        }
        count *= 2;
    }
}

fn message(
    facts: Facts<'_>,
    topic: &str,
    format: WireFormat,
    payload: Vec<u8>,
    msg_id: String,
    part: Option<&Part>,
) -> anyhow::Result<WireMessage> {
    let meta = facts.meta;
    let mut headers = HeaderMap::new();
    let mut facts: Vec<(&'static str, String)> = vec![
        (HEADER_PUBLISHER, meta.publisher.clone()),
        (HEADER_JOB, meta.job.clone()),
        (HEADER_INSTANCE, meta.instance.clone()),
        (HEADER_TIME, meta.time_ms.to_string()),
        (HEADER_FORMAT, format.header().to_string()),
        (HEADER_ENCODING, ENCODING_ZSTD.to_string()),
        (HEADER_SAMPLES, facts.samples.to_string()),
        (HEADER_MSG_ID, msg_id.clone()),
    ];
    if let Some(part) = part {
        facts.push((HEADER_PART, format!("{}/{}", part.index, part.count)));
        facts.push((HEADER_SCRAPE_ID, part.scrape_id.clone()));
    }
    for (name, value) in facts {
        let header_value: HeaderValue = value.parse().map_err(|_| {
            anyhow::anyhow!("{name} {value:?} cannot be sent in a NATS header (CR or LF)")
        })?;
        headers.insert(name, header_value);
    }
    Ok(WireMessage {
        subject: subject(topic, &meta.publisher, &meta.job),
        headers,
        payload: Bytes::from(payload),
        msg_id,
    })
}

/// The subject a scrape of `job` by `publisher` is published on.
pub fn subject(topic: &str, publisher: &str, job: &str) -> String {
    format!(
        "{topic}.{}.{}",
        subject_token(publisher),
        subject_token(job)
    )
}

/// Makes `value` usable as one subject token: `.`, `*`, `>`, whitespace and control characters
/// become `_`; an empty value becomes `_`. The exact value always travels in the headers.
pub fn subject_token(value: &str) -> String {
    if value.is_empty() {
        return "_".to_string();
    }
    value
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// The `Nats-Msg-Id` of a scrape: `v1-` and the first 128 bits (hex) of SHA-256 over the
/// length-prefixed publisher, job, instance and scrape time. Stable across releases: changing it
/// breaks de-duplication of re-published scrapes during an upgrade.
pub fn message_id(meta: &ScrapeMeta) -> String {
    let mut hasher = Sha256::new();
    for part in [
        meta.publisher.as_bytes(),
        meta.job.as_bytes(),
        meta.instance.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.update(meta.time_ms.to_le_bytes());
    let digest = hasher.finalize();
    format!("v1-{}", hex::encode(&digest[..16]))
}

/// Decodes a message read from the stream (see the module doc), with the default size cap, into
/// the model (tools and tests; the receiver reads [`decode_batch_with_limit`]).
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Scrape, WireError> {
    decode_with_limit(headers, payload, MAX_DECODED_BYTES)
}

/// [`decode`] with an explicit cap on the decompressed body size.
pub fn decode_with_limit(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    limit: usize,
) -> Result<Scrape, WireError> {
    Ok(match read_body(headers, payload, limit)? {
        Body::Batch(meta, bytes) => Scrape {
            meta,
            families: body::decode_batch(&bytes)?,
        },
        Body::Model(scrape) => scrape,
    })
}

/// Decodes a message into the batch the receiver's sinks render from: a batch body is
/// validated and kept as it is (no decoding into the model); text and the original's JSON
/// are parsed and written as a batch.
pub fn decode_batch_with_limit(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    limit: usize,
) -> Result<ScrapeBatch, WireError> {
    match read_body(headers, payload, limit)? {
        Body::Batch(meta, bytes) => {
            body::validate_batch(&bytes)?;
            Ok(ScrapeBatch::new(meta, bytes))
        }
        Body::Model(scrape) => {
            ScrapeBatch::from_scrape(&scrape).map_err(|error| WireError::Batch(error.to_string()))
        }
    }
}

/// A message's body once decompressed: a batch (not validated yet) or a parsed scrape.
enum Body {
    Batch(ScrapeMeta, Vec<u8>),
    Model(Scrape),
}

fn read_body(headers: Option<&HeaderMap>, payload: &[u8], limit: usize) -> Result<Body, WireError> {
    let headers = match headers {
        Some(headers) if headers.get(HEADER_FORMAT).is_some() => headers,
        _ => return decode_legacy(payload, limit).map(Body::Model),
    };
    let format = header(headers, HEADER_FORMAT)?;
    let batch = body::format_is_batch(format)?;
    if !batch && !format_is_text(format) {
        return Err(WireError::UnsupportedFormat(format.to_string()));
    }
    let encoding = headers
        .get(HEADER_ENCODING)
        .map(HeaderValue::as_str)
        .unwrap_or(ENCODING_IDENTITY);
    let text = decompress(encoding, payload, limit)?;
    let time = header(headers, HEADER_TIME)?;
    let time_ms = time
        .trim()
        .parse::<i64>()
        .map_err(|error| WireError::BadHeader {
            name: HEADER_TIME,
            value: time.to_string(),
            reason: error.to_string(),
        })?;
    let meta = ScrapeMeta {
        publisher: header(headers, HEADER_PUBLISHER)?.to_string(),
        job: header(headers, HEADER_JOB)?.to_string(),
        instance: header(headers, HEADER_INSTANCE)?.to_string(),
        time_ms,
    };
    if batch {
        return Ok(Body::Batch(meta, text));
    }
    let families = exposition::parse(&text)?;
    Ok(Body::Model(Scrape { meta, families }))
}

/// Reads only the routing facts of a message, without decompressing or parsing the body.
/// `None` when the headers are not promrelay's (a legacy message must be decoded to know).
pub fn peek_meta(headers: Option<&HeaderMap>) -> Option<ScrapeMeta> {
    let headers = headers?;
    Some(ScrapeMeta {
        publisher: headers.get(HEADER_PUBLISHER)?.as_str().to_string(),
        job: headers.get(HEADER_JOB)?.as_str().to_string(),
        instance: headers.get(HEADER_INSTANCE)?.as_str().to_string(),
        time_ms: headers.get(HEADER_TIME)?.as_str().trim().parse().ok()?,
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, WireError> {
    headers
        .get(name)
        .map(HeaderValue::as_str)
        .ok_or(WireError::MissingHeader(name))
}

/// `text/plain; version=0.0.4` with any spacing or case, or plain `text/plain`.
fn format_is_text(format: &str) -> bool {
    let mut parts = format.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|media| media.eq_ignore_ascii_case("text/plain"))
    {
        return false;
    }
    parts.all(|parameter| {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match key.trim().to_ascii_lowercase().as_str() {
            "version" => value.trim() == "0.0.4",
            "charset" => value.trim().eq_ignore_ascii_case("utf-8"),
            _ => true,
        }
    })
}

/// Decompresses `payload`, refusing to produce more than `limit` bytes.
pub fn decompress(encoding: &str, payload: &[u8], limit: usize) -> Result<Vec<u8>, WireError> {
    match encoding.trim().to_ascii_lowercase().as_str() {
        ENCODING_ZSTD => {
            let decoder = zstd::stream::read::Decoder::new(payload).map_err(|source| {
                WireError::Decompress {
                    encoding: ENCODING_ZSTD,
                    source,
                }
            })?;
            read_capped(decoder, ENCODING_ZSTD, limit)
        }
        ENCODING_GZIP => read_capped(
            flate2::read::MultiGzDecoder::new(payload),
            ENCODING_GZIP,
            limit,
        ),
        ENCODING_IDENTITY | "" => {
            if payload.len() > limit {
                return Err(WireError::TooLarge { limit });
            }
            Ok(payload.to_vec())
        }
        other => Err(WireError::UnsupportedEncoding(other.to_string())),
    }
}

fn read_capped(
    reader: impl Read,
    encoding: &'static str,
    limit: usize,
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|source| WireError::Decompress { encoding, source })?;
    if out.len() > limit {
        return Err(WireError::TooLarge { limit });
    }
    Ok(out)
}

/// The original prometheus-streams message: JSON with the raw scrape gzipped and base64-encoded
/// (Go's `[]byte` in JSON). Go matches JSON keys case-insensitively, hence the aliases.
#[derive(Deserialize)]
struct LegacyMessage {
    #[serde(alias = "Job")]
    job: String,
    #[serde(alias = "Instance")]
    instance: String,
    #[serde(alias = "Time")]
    time: f64,
    #[serde(alias = "Publisher")]
    publisher: String,
    #[serde(alias = "Scrape")]
    scrape: String,
}

fn decode_legacy(payload: &[u8], limit: usize) -> Result<Scrape, WireError> {
    let message: LegacyMessage =
        serde_json::from_slice(payload).map_err(|error| WireError::Legacy(error.to_string()))?;
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(message.scrape.as_bytes())
        .map_err(|error| WireError::Legacy(format!("scrape is not base64: {error}")))?;
    let text = decompress(ENCODING_GZIP, &compressed, limit)?;
    let families = exposition::parse(&text)?;
    Ok(Scrape {
        meta: ScrapeMeta {
            publisher: message.publisher,
            job: message.job,
            instance: message.instance,
            time_ms: (message.time * 1000.0) as i64,
        },
        families,
    })
}

#[cfg(test)]
mod tests;
