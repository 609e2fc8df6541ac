//! A message body's format: the binary batch (written by default) or Prometheus text.
//!
//! The batch is the filter ABI's layout (`promrelay-abi`, `guest-sdk/ABI.md` §3): a string
//! table with each distinct string once, families, series with label ranges, values as raw f64
//! bits. It carries what text cannot: the staleness marker (a NaN with a bit pattern of its own)
//! and exact float bits, and it decodes without a text parser. Text 0.0.4 stays writable
//! (`poller_stream.format: text`) for receivers of promrelay versions before the batch.

use crate::filter::codec;
use crate::model::{self, Family, Scrape};

use super::WireError;

/// `Promrelay-Format` of a batch body.
pub const FORMAT_BATCH: &str = "application/vnd.promrelay.batch; version=1";

/// The most labels a series of a batch body may carry (a job's `label_limit` is at most this).
pub const MAX_LABELS: usize = 65_535;

/// Which body a poller writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// The binary batch (default).
    #[default]
    Batch,
    /// Prometheus text 0.0.4 with timestamps: readable by every promrelay receiver, but without
    /// staleness markers (they are left out: text cannot carry them).
    Text,
}

impl WireFormat {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WireFormat::Batch => "batch",
            WireFormat::Text => "text",
        }
    }

    /// The `Promrelay-Format` header value.
    pub fn header(self) -> &'static str {
        match self {
            WireFormat::Batch => FORMAT_BATCH,
            WireFormat::Text => super::FORMAT_TEXT,
        }
    }
}

/// Writes the families of `scrape` as `format` into `out` (cleared first).
pub fn encode(scrape: &Scrape, format: WireFormat, out: &mut Vec<u8>) -> anyhow::Result<()> {
    out.clear();
    match format {
        WireFormat::Batch => codec::encode_into(scrape, out)
            .map_err(|error| anyhow::anyhow!("encoding a scrape as a batch: {error}")),
        WireFormat::Text => {
            // Text has no staleness marker: a stale series would arrive as a plain NaN sample.
            let options = crate::exposition::RenderOptions {
                timestamps: true,
                omit_labels: &[],
            };
            crate::exposition::render_skipping(
                &scrape.families[..],
                &options,
                out,
                model::is_stale,
            );
            Ok(())
        }
    }
}

/// `application/vnd.promrelay.batch; version=1`, any spacing or case.
pub fn format_is_batch(format: &str) -> Result<bool, WireError> {
    let mut parts = format.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default();
    if !media.eq_ignore_ascii_case("application/vnd.promrelay.batch") {
        return Ok(false);
    }
    for parameter in parts {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if key.trim().eq_ignore_ascii_case("version") && value.trim() != "1" {
            return Err(WireError::UnsupportedFormat(format!(
                "{format} (this promrelay reads batch version 1: upgrade the receiver)"
            )));
        }
    }
    Ok(true)
}

/// Decodes a batch body: every structural rule of the ABI's reader, names checked, series
/// capped at the filter codec's hard cap, labels per series at [`MAX_LABELS`].
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Family>, WireError> {
    codec::decode(bytes, codec::MAX_SERIES, MAX_LABELS)
        .map_err(|error| WireError::Batch(error.to_string()))
}

/// Validates a batch body by the rules of [`decode_batch`] without decoding it.
pub fn validate_batch(bytes: &[u8]) -> Result<usize, WireError> {
    codec::validate(bytes, codec::MAX_SERIES, MAX_LABELS)
        .map_err(|error| WireError::Batch(error.to_string()))
}

/// A message body as an operator reads it (`promrelay decode`): zstd-compressed or not, a batch
/// or text; a batch is rendered as text 0.0.4 with timestamps, and each staleness marker as a
/// `# stale:` comment line (text has no value for it).
pub fn to_text(body: &[u8]) -> Result<String, WireError> {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    let plain = if body.starts_with(&ZSTD_MAGIC) {
        super::decompress(super::ENCODING_ZSTD, body, super::MAX_DECODED_BYTES)?
    } else {
        body.to_vec()
    };
    if !plain.starts_with(&promrelay_abi::MAGIC) {
        return String::from_utf8(plain)
            .map_err(|_| WireError::Batch("neither a batch nor UTF-8 text".into()));
    }
    let families = decode_batch(&plain)?;
    let options = crate::exposition::RenderOptions {
        timestamps: true,
        omit_labels: &[],
    };
    let mut out = Vec::new();
    crate::exposition::render_skipping(&families[..], &options, &mut out, model::is_stale);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    for family in &families {
        for series in family.series.iter().filter(|s| model::is_stale(s.value)) {
            let labels: Vec<String> = series
                .labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value.as_str()))
                .collect();
            text.push_str(&format!(
                "# stale: {}{{{}}}\n",
                series.name,
                labels.join(",")
            ));
        }
    }
    Ok(text)
}
