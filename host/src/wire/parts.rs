//! Scrapes larger than the server's max payload travel as parts of one scrape.
//!
//! [`split`] cuts a scrape's series into contiguous ranges whose encoded messages each fit;
//! every part is a scrape of its own (the families it touches, their metadata repeated), with
//! `Promrelay-Part: <index>/<count>` (1-based) and `Promrelay-Scrape-Id` (the whole scrape's
//! message id) beside the usual headers, and a `Nats-Msg-Id` of its own. The receiver
//! (`receive::parts`) keeps the parts until all are there and joins them with [`join`]; a
//! scrape never reaches a sink in pieces.

use crate::model::{Family, Scrape};

use super::WireError;

/// Header: `<index>/<count>` of a part, 1-based; absent on a whole scrape.
pub const HEADER_PART: &str = "Promrelay-Part";
/// Header: the `Nats-Msg-Id` the whole scrape would have had; the same on all its parts.
pub const HEADER_SCRAPE_ID: &str = "Promrelay-Scrape-Id";

/// The most parts of one scrape (a receiver refuses more).
pub const MAX_PARTS: u32 = 1024;

/// Room left for headers and the NATS protocol when a message's payload is sized.
pub const HEADER_ROOM: usize = 4096;

/// Where a message sits in its scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1-based.
    pub index: u32,
    pub count: u32,
    /// The whole scrape's id (`Promrelay-Scrape-Id`).
    pub scrape_id: String,
}

/// Reads `Promrelay-Part` and `Promrelay-Scrape-Id`; `Ok(None)` for a whole scrape.
pub fn part_of(headers: Option<&async_nats::HeaderMap>) -> Result<Option<Part>, WireError> {
    let Some(headers) = headers else {
        return Ok(None);
    };
    let Some(value) = headers.get(HEADER_PART).map(|v| v.as_str()) else {
        return Ok(None);
    };
    let bad = |reason: &str| WireError::BadHeader {
        name: HEADER_PART,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (index, count) = value
        .trim()
        .split_once('/')
        .ok_or_else(|| bad("not <index>/<count>"))?;
    let index: u32 = index
        .trim()
        .parse()
        .map_err(|_| bad("index is not a number"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| bad("count is not a number"))?;
    if count == 0 || index == 0 || index > count {
        return Err(bad("index must be 1 to count"));
    }
    if count > MAX_PARTS {
        return Err(bad(&format!("more than {MAX_PARTS} parts")));
    }
    let scrape_id = headers
        .get(HEADER_SCRAPE_ID)
        .map(|v| v.as_str().to_string())
        .ok_or(WireError::MissingHeader(HEADER_SCRAPE_ID))?;
    Ok(Some(Part {
        index,
        count,
        scrape_id,
    }))
}

/// Cuts `scrape` into `count` scrapes of about equal series counts, in order.
pub fn split(scrape: &Scrape, count: usize) -> Vec<Scrape> {
    let total = scrape.sample_count().max(1);
    let count = count.clamp(1, total);
    let per_part = total.div_ceil(count);
    let mut parts = Vec::with_capacity(count);
    let mut current = Scrape {
        meta: scrape.meta.clone(),
        families: Vec::new(),
    };
    let mut in_current = 0usize;
    for family in &scrape.families {
        if family.series.is_empty() {
            current.families.push(family.clone());
            continue;
        }
        let mut rest = &family.series[..];
        while !rest.is_empty() {
            let take = (per_part - in_current).min(rest.len());
            current.families.push(Family {
                series: rest[..take].to_vec(),
                ..metadata(family)
            });
            rest = &rest[take..];
            in_current += take;
            if in_current == per_part {
                parts.push(std::mem::replace(
                    &mut current,
                    Scrape {
                        meta: scrape.meta.clone(),
                        families: Vec::new(),
                    },
                ));
                in_current = 0;
            }
        }
    }
    if !current.families.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

fn metadata(family: &Family) -> Family {
    Family {
        name: family.name.clone(),
        help: family.help.clone(),
        unit: family.unit.clone(),
        kind: family.kind,
        series: Vec::new(),
    }
}

/// Joins the parts of one scrape (in part order) back into it: a family cut across parts is one
/// family again.
pub fn join(parts: Vec<Scrape>) -> Scrape {
    let mut parts = parts.into_iter();
    let mut whole = parts.next().unwrap_or_default();
    for part in parts {
        for family in part.families {
            match whole.families.last_mut() {
                Some(last)
                    if last.name == family.name
                        && last.kind == family.kind
                        && !family.series.is_empty() =>
                {
                    last.series.extend(family.series)
                }
                _ => whole.families.push(family),
            }
        }
    }
    whole
}
