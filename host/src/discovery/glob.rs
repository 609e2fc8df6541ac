//! The file patterns of `file_sd_configs`: wildcards `*` (any run of characters) and `?` (one
//! character) in the file name only, as Prometheus allows them; the directory is literal.
//! A name starting with `.` is matched only by a pattern starting with `.` (editors' and
//! Puppet's temporary files are hidden ones).

use std::path::{Path, PathBuf};

/// Whether a pattern's file name has a wildcard.
pub fn has_wildcard(pattern: &Path) -> bool {
    pattern
        .file_name()
        .is_some_and(|name| name.to_string_lossy().contains(['*', '?']))
}

/// Whether `name` matches the file-name pattern `pattern`.
///
/// ```
/// use promrelay::discovery::glob::matches;
///
/// assert!(matches("*.json", "node.json"));
/// assert!(matches("node-?.yml", "node-1.yml"));
/// assert!(!matches("*.json", "node.json.tmp"));
/// assert!(!matches("*.json", ".node.json"));
/// ```
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // Iterative wildcard match with one backtrack point: linear-ish, no recursion.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some('?') => {
                p += 1;
                n += 1;
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The files a pattern names now, sorted: for a pattern with wildcards, the matching regular
/// files of its directory (none when the directory cannot be listed); for a literal path, the
/// path itself whether or not it exists (its absence is the reader's error to report).
pub fn expand(pattern: &Path) -> Vec<PathBuf> {
    if !has_wildcard(pattern) {
        return vec![pattern.to_path_buf()];
    }
    let Some(name_pattern) = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return Vec::new();
    };
    let directory = directory_of(pattern);
    let Ok(entries) = std::fs::read_dir(&directory) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| matches(&name_pattern, &entry.file_name().to_string_lossy()))
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// The directory a pattern's files are in (`.` for a bare file name).
pub fn directory_of(pattern: &Path) -> PathBuf {
    match pattern.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
