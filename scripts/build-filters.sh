#!/usr/bin/env bash
# Builds the filters under filters/ to target/filters/NAME.wasm (release: optimised, LTO,
# stripped, panic=abort; see filters/Cargo.toml).
#
#   scripts/build-filters.sh              every filter crate (fails if any fails)
#   scripts/build-filters.sh drop relabel only these (directory names under filters/)
#
# Uses a rustup toolchain with the wasm32-unknown-unknown target when one is installed, else
# Debian's packaged toolchain (scripts/install-wasm-toolchain.sh sets up either; it never
# downloads a toolchain). Builds in target/wasm-build so it never fights the host's build.
# Environment: FILTERS_DIR (default: filters/), OUT_DIR (default: target/filters).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
filters_dir=${FILTERS_DIR:-$root/filters}
out_dir=${OUT_DIR:-$root/target/filters}
build_dir=$root/target/wasm-build

route=$("$root/scripts/install-wasm-toolchain.sh")

names=("$@")
if ((${#names[@]} == 0)); then
    for manifest in "$filters_dir"/*/Cargo.toml; do
        [[ -e "$manifest" ]] || continue
        dir=$(dirname "$manifest")
        [[ $(basename "$dir") == target ]] && continue
        names+=("$(basename "$dir")")
    done
fi
if ((${#names[@]} == 0)); then
    echo "build-filters: no filter crates under $filters_dir" >&2
    exit 1
fi

package_args=()
for name in "${names[@]}"; do
    if [[ ! -f "$filters_dir/$name/Cargo.toml" ]]; then
        echo "build-filters: no crate at $filters_dir/$name" >&2
        exit 1
    fi
    package_args+=(-p "filter-$name")
done

common=(build --release --target wasm32-unknown-unknown
    --manifest-path "$filters_dir/Cargo.toml" --target-dir "$build_dir" "${package_args[@]}")

echo "build-filters: building ${names[*]} via $route toolchain" >&2
if [[ $route == rustup ]]; then
    env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS cargo "${common[@]}"
else
    env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
        RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
        /usr/bin/cargo "${common[@]}" -Zbuild-std=std,panic_abort
fi

mkdir -p "$out_dir"
for name in "${names[@]}"; do
    artifact="$build_dir/wasm32-unknown-unknown/release/filter_${name//-/_}.wasm"
    if [[ ! -f "$artifact" ]]; then
        echo "build-filters: $artifact was not produced (is filters/$name a cdylib?)" >&2
        exit 1
    fi
    cp "$artifact" "$out_dir/$name.wasm"
    echo "build-filters: $out_dir/$name.wasm ($(stat -c %s "$out_dir/$name.wasm") bytes)" >&2
done
