//! Puppet's `ssl_dir` layout for one identity: the name check, the directories and their modes,
//! and writing files so that a reader never sees one half written or, for a key, readable by
//! others.
//!
//! **Invariant:** a private key file is created with mode 0640 from its first byte (never
//! created wider and narrowed later), and no existing file is ever overwritten.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Mode of `ssl_dir` itself, as Puppet makes it.
const SSL_DIR_MODE: u32 = 0o771;
/// Mode of `certs` and `certificate_requests`.
const PUBLIC_DIR_MODE: u32 = 0o755;
/// Mode of `private_keys`: no access for others.
const PRIVATE_DIR_MODE: u32 = 0o750;
/// Mode of the private key file (Puppet's own).
pub const KEY_MODE: u32 = 0o640;
/// Mode of certificates and the certificate request.
pub const PUBLIC_MODE: u32 = 0o644;

/// Why a name cannot be a Puppet certificate name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the identity is empty: give it as the first argument")]
    Empty,
    #[error(
        "identity {name:?}: Certificate names must be lower case (the Puppet CA refuses it); \
         use {lower:?}"
    )]
    UpperCase { name: String, lower: String },
    #[error(
        "identity {name:?}: only printable ASCII without '/' or spaces may be in a certificate \
         name, and it cannot be '.' or '..'"
    )]
    Invalid { name: String },
}

/// Checks `name` as the Puppet CA would (lower case, printable ASCII, no `/`), and refuses what
/// would not make a plain file name under `ssl_dir` (spaces, `.`, `..`).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let printable = name.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if !printable || name == "." || name == ".." {
        return Err(NameError::Invalid {
            name: name.to_owned(),
        });
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(NameError::UpperCase {
            name: name.to_owned(),
            lower: name.to_ascii_lowercase(),
        });
    }
    Ok(())
}

/// The paths of one identity's files under `ssl_dir`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub ssl_dir: PathBuf,
    pub certs: PathBuf,
    pub private_keys: PathBuf,
    pub requests: PathBuf,
    /// `certs/ca.pem`.
    pub ca: PathBuf,
    /// `certs/<identity>.pem`.
    pub cert: PathBuf,
    /// `private_keys/<identity>.pem`.
    pub key: PathBuf,
    /// `certificate_requests/<identity>.pem`.
    pub request: PathBuf,
}

impl Layout {
    /// The layout for `identity`, which must have passed [`check_name`].
    pub fn new(ssl_dir: &Path, identity: &str) -> Layout {
        let certs = ssl_dir.join("certs");
        let private_keys = ssl_dir.join("private_keys");
        let requests = ssl_dir.join("certificate_requests");
        let file = format!("{identity}.pem");
        Layout {
            ssl_dir: ssl_dir.to_path_buf(),
            ca: certs.join("ca.pem"),
            cert: certs.join(&file),
            key: private_keys.join(&file),
            request: requests.join(&file),
            certs,
            private_keys,
            requests,
        }
    }

    /// Creates the missing directories with Puppet's modes; refuses a `private_keys` directory
    /// that others may read or enter.
    pub fn create_dirs(&self) -> anyhow::Result<()> {
        create_dir(&self.ssl_dir, SSL_DIR_MODE)?;
        create_dir(&self.certs, PUBLIC_DIR_MODE)?;
        create_dir(&self.requests, PUBLIC_DIR_MODE)?;
        create_dir(&self.private_keys, PRIVATE_DIR_MODE)?;
        let mode = std::fs::metadata(&self.private_keys)
            .with_context(|| format!("reading {}", self.private_keys.display()))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o007 == 0,
            "{} is open to others (mode {:o}): make it 0750 (chmod 0750 {}) before enrolling",
            self.private_keys.display(),
            mode & 0o7777,
            self.private_keys.display()
        );
        Ok(())
    }
}

/// Creates `path` (and missing parents) with exactly `mode` if it does not exist yet.
fn create_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating the directory {}", path.display()))?;
    // The umask may have narrowed the mode; Puppet's modes are what other tools expect.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", path.display()))
}

/// Writes `contents` to `path`, which must not exist, with `mode` (narrowed by the umask only):
/// through a temporary file in the same directory renamed into place, so a reader sees the whole
/// file or none.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    anyhow::ensure!(
        !path.exists(),
        "{} exists already; not overwriting it",
        path.display()
    );
    let directory = path.parent().context("a file path has a directory")?;
    let name = path
        .file_name()
        .context("a file path has a file name")?
        .to_string_lossy();
    let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temporary.display()))?;
        // hard_link fails if `path` appeared meanwhile, where rename would replace it.
        std::fs::hard_link(&temporary, path)
            .with_context(|| format!("moving {} into place", path.display()))
    })();
    let _ = std::fs::remove_file(&temporary);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_the_puppet_ca_does() {
        let cases: &[(&str, Option<&str>)] = &[
            ("site1.example.net", None),
            ("relay-01_a", None),
            ("", Some("empty")),
            (
                "Site1.example.net",
                Some("Certificate names must be lower case"),
            ),
            ("a/b", Some("without '/'")),
            ("a b", Some("without '/'")),
            ("..", Some("'..'")),
            ("caf\u{e9}", Some("printable ASCII")),
        ];
        for (name, expected) in cases {
            match (check_name(name), expected) {
                (Ok(()), None) => {}
                (Err(error), Some(text)) => {
                    assert!(error.to_string().contains(text), "{name:?}: {error}")
                }
                (outcome, _) => panic!("{name:?}: unexpected {outcome:?}"),
            }
        }
    }

    #[test]
    fn directories_get_puppet_modes_and_keys_are_never_world_readable() {
        let temp = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(&temp.path().join("ssl"), "site1");
        layout.create_dirs().expect("create dirs");
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode(&layout.ssl_dir), 0o771);
        assert_eq!(mode(&layout.certs), 0o755);
        assert_eq!(mode(&layout.private_keys), 0o750);
        assert_eq!(mode(&layout.requests), 0o755);
        write_new(&layout.key, b"key", KEY_MODE).expect("write key");
        assert_eq!(mode(&layout.key) & 0o007, 0);
        assert!(write_new(&layout.key, b"other", KEY_MODE).is_err());
        assert_eq!(std::fs::read(&layout.key).expect("read"), b"key");
        let leftovers: Vec<_> = std::fs::read_dir(&layout.private_keys)
            .expect("list")
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn an_open_private_keys_directory_is_refused() {
        let temp = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(temp.path(), "site1");
        std::fs::create_dir(&layout.private_keys).expect("mkdir");
        std::fs::set_permissions(&layout.private_keys, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let error = layout.create_dirs().expect_err("refused");
        assert!(error.to_string().contains("chmod 0750"), "{error}");
    }
}
