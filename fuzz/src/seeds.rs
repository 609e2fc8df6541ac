//! The seed corpus of each target, built from what the repository already holds: the real
//! scrapes and parser fixtures (`tests/data/`), every string literal of the parser's own tests,
//! the config files and every YAML block of the docs, encodings of those scrapes in each wire
//! form, and `fuzz/regressions/TARGET/` (inputs that once found a bug; they run first, always).

use std::path::{Path, PathBuf};

use promrelay::filter::codec;
use promrelay::model::{Scrape, ScrapeMeta};

use crate::targets::{frame, legacy_json};

/// The repository's root (this crate lives in `fuzz/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The seeds of a target, by its name; regressions first.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut seeds = files_in(&root().join("fuzz/regressions").join(target));
    seeds.extend(match target {
        "text" => text(),
        "batch" => batch(),
        "wire" => wire(),
        "config" => config(),
        _ => Vec::new(),
    });
    seeds
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// Scrape texts: the committed captures, then every literal of the parser's tests.
pub fn text() -> Vec<Vec<u8>> {
    let root = root();
    let mut seeds: Vec<Vec<u8>> = ["node_exporter.prom", "parser/openmetrics.prom"]
        .iter()
        .filter_map(|name| std::fs::read(root.join("tests/data").join(name)).ok())
        .collect();
    for file in ["tests.rs", "error_tests.rs", "roundtrip_tests.rs"] {
        let source = std::fs::read_to_string(root.join("host/src/exposition").join(file))
            .unwrap_or_default();
        seeds.extend(
            string_literals(&source)
                .into_iter()
                .filter(|s| s.len() >= 2)
                .map(String::into_bytes),
        );
    }
    seeds
}

/// Small scrapes: big ones make each batch run slow without reaching new code.
fn small_scrapes() -> Vec<Scrape> {
    text()
        .iter()
        .filter_map(|t| promrelay::exposition::parse(t).ok())
        .map(|families| Scrape {
            meta: ScrapeMeta {
                publisher: "site1".into(),
                job: "node".into(),
                instance: "host:9100".into(),
                time_ms: 1_700_000_000_000,
            },
            families: families.into_iter().take(40).collect(),
        })
        .collect()
}

fn batch() -> Vec<Vec<u8>> {
    small_scrapes()
        .iter()
        .filter_map(|scrape| codec::encode(scrape).ok())
        .collect()
}

fn wire() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (index, scrape) in small_scrapes().iter().enumerate().take(60) {
        let Ok(message) = promrelay::wire::encode(scrape, "metrics") else {
            continue;
        };
        let headers: Vec<(String, String)> = message
            .headers
            .iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| (name.to_string(), v.as_str().to_string()))
            })
            .collect();
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let text = rendered(scrape);
        seeds.push(frame(1, &pairs, &message.payload));
        if index % 3 == 0 {
            let plain: Vec<(&str, &str)> = pairs
                .iter()
                .map(|&(n, v)| {
                    if n == "Promrelay-Encoding" {
                        (n, "identity")
                    } else {
                        (n, v)
                    }
                })
                .collect();
            seeds.push(frame(2, &pairs, &text));
            seeds.push(frame(1, &plain, &text));
            seeds.push(frame(0, &[], &legacy_json(&text)));
            seeds.push(frame(4, &[], &text));
        }
    }
    seeds
}

fn rendered(scrape: &Scrape) -> Vec<u8> {
    let mut out = Vec::new();
    promrelay::exposition::render(
        &scrape.families,
        &promrelay::exposition::RenderOptions {
            timestamps: true,
            omit_labels: &[],
        },
        &mut out,
    );
    out
}

/// Config files, then every ```yaml block of README.md and docs/*.md.
fn config() -> Vec<Vec<u8>> {
    let root = root();
    let mut seeds = files_in(&root.join("tests/data/config"));
    let mut docs = vec![root.join("README.md")];
    if let Ok(entries) = std::fs::read_dir(root.join("docs")) {
        let mut more: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        docs.extend(
            more.into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "md")),
        );
    }
    for doc in docs {
        let text = std::fs::read_to_string(doc).unwrap_or_default();
        seeds.extend(yaml_blocks(&text).into_iter().map(String::into_bytes));
    }
    seeds
}

fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```yaml") || fence.starts_with("```yml") => {
                current = Some(String::new());
            }
            Some(block) if fence.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The string literals of Rust source (plain and raw), unescaped. Comments and char literals are
/// skipped; it need not be a full lexer, only good enough for test files.
pub fn string_literals(source: &str) -> Vec<String> {
    let bytes = source.as_bytes();
    let mut literals = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' => {
                // 'x', '\n', '\u{..}' — or a lifetime, which has no closing quote nearby.
                let close = bytes[i + 1..].iter().take(12).position(|&b| b == b'\'');
                i += match close {
                    Some(p) if bytes.get(i + 1) == Some(&b'\\') || p == 1 => p + 2,
                    _ => 1,
                };
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'#') | Some(b'"'))
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|&&b| b == b'#').count();
                let open = i + 1 + hashes;
                if bytes.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let closing = format!("\"{}", "#".repeat(hashes));
                match source[open + 1..].find(&closing) {
                    Some(end) => {
                        literals.push(source[open + 1..open + 1 + end].to_string());
                        i = open + 1 + end + closing.len();
                    }
                    None => break,
                }
            }
            b'"' => {
                let (literal, next) = unescape(source, i + 1);
                literals.push(literal);
                i = next;
            }
            _ => i += 1,
        }
    }
    literals
}

/// Reads a plain string literal's body from `start`; returns it and the index after its quote.
fn unescape(source: &str, start: usize) -> (String, usize) {
    let mut out = String::new();
    let mut chars = source[start..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => return (out, start + offset + 1),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('x') => {
                    let hex: String = (0..2)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    if let Some(c) = u8::from_str_radix(&hex, 16).ok().map(char::from) {
                        out.push(c);
                    }
                }
                Some('u') => {
                    let mut hex = String::new();
                    for (_, c) in chars.by_ref() {
                        match c {
                            '{' => {}
                            '}' => break,
                            c => hex.push(c),
                        }
                    }
                    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(c);
                    }
                }
                Some('\n') => {
                    // A line continuation: the next line's leading whitespace is not part of it.
                    while chars.clone().next().is_some_and(|(_, c)| c.is_whitespace()) {
                        chars.next();
                    }
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    (out, source.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_are_read_unescaped_from_plain_raw_and_continued_strings() {
        let source = "let a = \"x\\n\\\"y\\\"\"; // \"comment\"\nlet c = 'q'; let l: &'a str = r#\"raw \"here\"#; \
                      let d = \"one \\\n        two\"; let e = '\\'';\"\\u{e9}\"";
        assert_eq!(
            string_literals(source),
            vec!["x\n\"y\"", "raw \"here", "one two", "é"]
        );
    }

    #[test]
    fn every_target_has_seeds_from_the_repository() {
        for target in ["text", "batch", "wire", "config"] {
            assert!(seeds(target).len() >= 5, "{target} has few seeds");
        }
        assert!(text().len() > 100, "the parser tests' literals are seeds");
    }
}
