//! `promrelay filter new`: writes a filter crate from the templates in `template/`, depending on
//! the promrelay-sdk sources by path.
//!
//! Where the SDK is: `--sdk`, else beside the running binary — the Debian package installs it
//! in `/usr/share/promrelay/guest-sdk` next to `/usr/bin/promrelay`, and a binary built in a
//! source checkout (`target/debug/promrelay`) finds the checkout's `guest-sdk`.
//!
//! **Invariant:** never a path fixed at compile time: an installed binary must not tie new crates
//! to the checkout it was built in, which may not exist on this machine. Without an SDK it
//! refuses and says to pass `--sdk`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Where the SDK is looked for, relative to the directory of the running binary: an installed
/// package's `share` directory (`/usr/bin` → `/usr/share/promrelay/guest-sdk`, any prefix), then
/// a source checkout's (`<checkout>/target/<profile>/promrelay` → `<checkout>/guest-sdk`).
pub const SDK_BESIDE_BINARY: [&str; 2] = ["../share/promrelay/guest-sdk", "../../guest-sdk"];

const TEMPLATE_CARGO: &str = include_str!("template/Cargo.toml.in");
const TEMPLATE_LIB: &str = include_str!("template/lib.rs.in");
const TEMPLATE_CONFIG: &str = include_str!("template/config.yaml.in");
const TEMPLATE_README: &str = include_str!("template/README.md.in");

/// Writes the crate `filter-NAME` into `dir/NAME`, depending on the SDK at `sdk` (or the one
/// beside this binary).
pub fn new_filter(name: &str, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if !valid {
        bail!("filter name {name:?}: use letters, digits, '-' and '_', starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            root.display()
        );
    }
    let sdk = match sdk {
        Some(path) => checked_sdk(path)?,
        None => sdk_beside_binary()?,
    };
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("creating {}", root.display()))?;
    let crate_dir =
        std::fs::canonicalize(&root).with_context(|| format!("resolving {}", root.display()))?;
    let ident = name.replace('-', "_");
    let type_name: String = name
        .split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let fill = |template: &str| {
        template
            .replace("{{Type}}", &type_name)
            .replace("{{name}}", name)
            .replace("{{ident}}", &ident)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{dir}}", &crate_dir.display().to_string())
    };
    for (path, template) in [
        ("Cargo.toml", TEMPLATE_CARGO),
        ("src/lib.rs", TEMPLATE_LIB),
        ("config.yaml", TEMPLATE_CONFIG),
        ("README.md", TEMPLATE_README),
    ] {
        let target = root.join(path);
        std::fs::write(&target, fill(template))
            .with_context(|| format!("writing {}", target.display()))?;
    }
    println!(
        "created {} (crate filter-{name}, promrelay-sdk from {}); next: cd {} && cargo test, \
         then see its README.md to build the .wasm",
        root.display(),
        sdk.display(),
        root.display()
    );
    Ok(())
}

/// Whether `dir` holds the promrelay-sdk crate (its manifest names the package).
fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|manifest| {
        manifest
            .lines()
            .any(|line| line.trim() == r#"name = "promrelay-sdk""#)
    })
}

/// `--sdk PATH`, made absolute, when it holds the SDK.
fn checked_sdk(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::fs::canonicalize(path).with_context(|| {
        format!(
            "--sdk {}: no such directory; give the guest-sdk directory of a promrelay checkout \
             or of the Debian package (/usr/share/promrelay/guest-sdk)",
            path.display()
        )
    })?;
    if !is_sdk(&absolute) {
        bail!(
            "--sdk {}: no promrelay-sdk crate there (no Cargo.toml with name = \"promrelay-sdk\"); \
             give the guest-sdk directory of a promrelay checkout or of the Debian package \
             (/usr/share/promrelay/guest-sdk)",
            absolute.display()
        );
    }
    Ok(absolute)
}

/// The SDK shipped beside the running binary (see [`SDK_BESIDE_BINARY`]).
fn sdk_beside_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context(
        "finding the running promrelay binary to look for the SDK beside it; pass --sdk PATH",
    )?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let bin_dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates: Vec<PathBuf> = SDK_BESIDE_BINARY
        .iter()
        .map(|relative| bin_dir.join(relative))
        .collect();
    if let Some(found) = candidates.iter().find(|dir| is_sdk(dir)) {
        return std::fs::canonicalize(found)
            .with_context(|| format!("resolving the SDK directory {}", found.display()));
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    bail!(
        "no promrelay-sdk found beside {} (looked in {}); pass --sdk PATH, the guest-sdk \
         directory of a promrelay source checkout, or install the promrelay Debian package, \
         which ships it in /usr/share/promrelay/guest-sdk",
        exe.display(),
        looked.join(" and ")
    )
}
