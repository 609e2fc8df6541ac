#!/usr/bin/env bash
# Makes a Rust toolchain that targets wasm32-unknown-unknown available, without ever downloading
# a toolchain itself:
#   1. a rustup toolchain that already has the target installed is used as it is;
#   2. otherwise Debian's packaged toolchain is used, installing the missing packages with apt-get
#      (rustc-web, cargo-web, rust-web-src, rust-web-llvm, lld-22, wasi-libc; Debian 12 with
#      bookworm-updates / security). Its std is built from source with -Zbuild-std.
# Idempotent: a second run changes nothing. Prints the route it chose ("rustup" or "debian").
# With rustup you can instead run `rustup target add wasm32-unknown-unknown` yourself.
set -euo pipefail

if command -v rustup >/dev/null 2>&1 \
    && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo rustup
    exit 0
fi

packages=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-wasm-toolchain: no rustup wasm32-unknown-unknown target and no apt-get." >&2
        echo "  With rustup: rustup target add wasm32-unknown-unknown" >&2
        exit 1
    fi
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "install-wasm-toolchain: need root to install: ${missing[*]}" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "install-wasm-toolchain: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2 || {
        "${sudo[@]}" apt-get update >&2
        "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2
    }
fi

# rustc-web and rust-web-src must be the same version, or -Zbuild-std fails in odd ways.
rustc_version=$(dpkg-query -W -f='${Version}' rustc-web)
src_version=$(dpkg-query -W -f='${Version}' rust-web-src)
if [[ "$rustc_version" != "$src_version" ]]; then
    echo "install-wasm-toolchain: rustc-web $rustc_version and rust-web-src $src_version differ;" >&2
    echo "  install matching versions: apt-get install rustc-web=$rustc_version rust-web-src=$rustc_version" >&2
    exit 1
fi
if ! /usr/bin/rustc --print target-list | grep -qx wasm32-unknown-unknown; then
    echo "install-wasm-toolchain: /usr/bin/rustc cannot target wasm32-unknown-unknown" >&2
    exit 1
fi
echo debian
