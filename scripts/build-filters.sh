#!/usr/bin/env bash
# Builds promrelay filters to target/filters/NAME.wasm (release: optimised, LTO, stripped,
# panic=abort; see filters/Cargo.toml).
#
#   scripts/build-filters.sh                 every filter crate under filters/ (fails if one fails)
#   scripts/build-filters.sh drop relabel    only these (directory names under filters/)
#   scripts/build-filters.sh ../my-filter    a crate of your own (any argument with a '/'),
#                                            e.g. one made by `promrelay filter new`
#
# Uses a rustup toolchain with the wasm32-unknown-unknown target when one is installed, else
# Debian's packaged toolchain (scripts/install-wasm-toolchain.sh sets up either; nothing here
# downloads a toolchain). Builds in target/wasm-build so it never fights the host's build.
# Environment: OUT_DIR (default: target/filters).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
filters_dir=$root/filters
out_dir=${OUT_DIR:-$root/target/filters}
build_dir=$root/target/wasm-build

route=$("$root/scripts/install-wasm-toolchain.sh")

# cargo_wasm MANIFEST PACKAGE...: one release build of these packages for wasm32.
cargo_wasm() {
    local manifest=$1
    shift
    local args=(build --release --target wasm32-unknown-unknown
        --manifest-path "$manifest" --target-dir "$build_dir")
    local package
    for package in "$@"; do
        args+=(-p "$package")
    done
    if [[ $route == rustup ]]; then
        env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS cargo "${args[@]}"
    else
        env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
            RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
            /usr/bin/cargo "${args[@]}" -Zbuild-std=std,panic_abort
    fi
}

# package_name MANIFEST: the [package] name.
package_name() {
    sed -n '/^\[package\]/,/^\[/{s/^name *= *"\(.*\)"/\1/p}' "$1" | head -n1
}

# install_module PACKAGE: copy its .wasm to OUT_DIR/NAME.wasm (NAME = PACKAGE minus "filter-").
install_module() {
    local package=$1
    local artifact="$build_dir/wasm32-unknown-unknown/release/${package//-/_}.wasm"
    local name=${package#filter-}
    if [[ ! -f "$artifact" ]]; then
        echo "build-filters: $artifact was not produced (is $package a cdylib?)" >&2
        exit 1
    fi
    mkdir -p "$out_dir"
    cp "$artifact" "$out_dir/$name.wasm"
    echo "build-filters: $out_dir/$name.wasm ($(stat -c %s "$out_dir/$name.wasm") bytes)" >&2
}

shipped=()
own=()
if (($# == 0)); then
    for manifest in "$filters_dir"/*/Cargo.toml; do
        [[ -e "$manifest" ]] || continue
        shipped+=("$(basename "$(dirname "$manifest")")")
    done
else
    for arg in "$@"; do
        if [[ $arg == */* ]]; then
            own+=("$arg")
        elif [[ -f "$filters_dir/$arg/Cargo.toml" ]]; then
            shipped+=("$arg")
        else
            echo "build-filters: no crate at filters/$arg (give a path with a '/' for your own)" >&2
            exit 1
        fi
    done
fi

if ((${#shipped[@]})); then
    packages=()
    for name in "${shipped[@]}"; do
        packages+=("$(package_name "$filters_dir/$name/Cargo.toml")")
    done
    echo "build-filters: building ${shipped[*]} ($route toolchain)" >&2
    cargo_wasm "$filters_dir/Cargo.toml" "${packages[@]}"
    for package in "${packages[@]}"; do
        install_module "$package"
    done
fi

for dir in "${own[@]+"${own[@]}"}"; do
    manifest=$(cd "$dir" && pwd)/Cargo.toml
    if [[ ! -f "$manifest" ]]; then
        echo "build-filters: no Cargo.toml in $dir" >&2
        exit 1
    fi
    package=$(package_name "$manifest")
    echo "build-filters: building $package from $dir ($route toolchain)" >&2
    cargo_wasm "$manifest" "$package"
    install_module "$package"
done
