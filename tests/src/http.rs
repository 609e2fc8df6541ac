//! A tiny blocking HTTP/1.0 client for the harness' own checks (readiness, reading `/metrics`).
//!
//! It works the same from plain and async tests (no runtime inside, unlike `reqwest::blocking`,
//! which panics when dropped on a runtime thread). HTTP/1.0 makes servers answer close-delimited,
//! without chunking. Only `http://127.0.0.1`-style URLs; never use it for the relay's own traffic.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

/// How long one request may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP answer: status code and body as text (lossy UTF-8).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET url`.
pub fn get(url: &str) -> anyhow::Result<Answer> {
    request("GET", url, None)
}

/// `GET url`, and fail unless the status is 2xx; returns the body.
pub fn get_ok(url: &str) -> anyhow::Result<String> {
    let answer = get(url)?;
    if !(200..300).contains(&answer.status) {
        bail!(
            "GET {url} answered {}: {}",
            answer.status,
            answer.body.trim()
        );
    }
    Ok(answer.body)
}

/// Sends `method url` with an optional body and reads the whole answer.
pub fn request(method: &str, url: &str, body: Option<&[u8]>) -> anyhow::Result<Answer> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported, got {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)
        .with_context(|| format!("connect to {authority} for {url}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: promrelay-tests\r\n\
         Accept: */*\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .with_context(|| format!("send {method} {url}"))?;
    stream
        .write_all(body)
        .with_context(|| format!("send body of {method} {url}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("read answer of {method} {url}"))?;
    parse_answer(&raw).with_context(|| format!("answer of {method} {url}"))
}

fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = String::from_utf8_lossy(&raw[end + 4..]).into_owned();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters pass).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
