#!/usr/bin/env bash
# Builds every sluice plugin from source into plugins/dist/<name>.wasm.
#
#   bash plugins/build.sh            # every language
#   bash plugins/build.sh rust       # only the Rust workspace
#   bash plugins/build.sh rust json-filter order-transform   # only these Rust plugins
#
# Rust plugins (plugins/rust/*) are one cargo workspace, built here directly.
# Plugins in the other languages (plugins/{js,python,c,zig}/*, each with a
# sluice-plugin.toml) are built by `sluice plugin build` with the toolchains
# plugins/toolchains.sh installs; the `sluice` binary is $SLUICE_BIN, or built
# with the rustup cargo first. Such a plugin is rebuilt only when a file in
# its folder (or wit/) is newer than its component.
#
# The plugins are WebAssembly components for the wasm32-wasip2 target. The
# machine's rustup toolchain (the one that builds the host) has no std for
# that target, so the plugins are built with Debian's rustc-web toolchain,
# which ships std's source: std is compiled for wasm32-wasip2 with
# -Zbuild-std and linked against Debian's wasi-libc. This script installs
# those packages when they are missing (needs root or sudo, and apt), then
# builds the `plugins/` cargo workspace. It calls /usr/bin/cargo explicitly
# and changes nothing in the caller's environment: host builds keep using
# whatever `cargo` is first on PATH.
#
# A cold build takes a minute or two (most of it std); when nothing changed
# cargo's own check makes a rerun take a second or two.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
host_target_dir="${CARGO_TARGET_DIR:-}" # the caller's, for building `sluice` below
mode="${1:-all}"
only=("${@:2}") # Rust plugins to build when mode is `rust`; none named: all
target=wasm32-wasip2
apt_packages=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc)

# --- toolchain -------------------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/apt.sh"
apt_install_missing "${apt_packages[@]}"

cargo=/usr/bin/cargo
rustc=/usr/bin/rustc
wasi_libc=/usr/lib/wasm32-wasi
for f in "$cargo" "$rustc" "$wasi_libc/libc.a"; do
    [[ -e $f ]] || { echo "build.sh: $f is missing after installing ${apt_packages[*]}" >&2; exit 1; }
done

# --- build -----------------------------------------------------------------
# Everything below runs in this script's own process: the caller's shell is
# untouched. Flags a caller may have set for the host (RUSTFLAGS would take
# precedence over the target flags below, a wrapper would be the rustup one)
# are cleared for this build only.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTFLAGS
export RUSTC="$rustc"
export RUSTC_BOOTSTRAP=1 # -Zbuild-std is a nightly flag
export CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-L native=$wasi_libc"
# SLUICE_PLUGIN_TARGET_DIR lets CI keep the (slow to build) wasm std between
# fresh clones on the same machine; the default is plugins/target.
export CARGO_TARGET_DIR="${SLUICE_PLUGIN_TARGET_DIR:-$here/target}"

packages=()
for name in "${only[@]}"; do
    [[ -f $here/rust/$name/Cargo.toml ]] || { echo "build.sh: no Rust plugin plugins/rust/$name" >&2; exit 1; }
    packages+=(-p "$name")
done
(
    cd "$here"
    "$cargo" build --release --locked --target "$target" -Zbuild-std=std,panic_abort "${packages[@]}"
)

# --- collect ---------------------------------------------------------------
mkdir -p "$here/dist"
wasm_tools="$(command -v wasm-tools || true)"
count=0
manifests=("$here"/rust/*/Cargo.toml)
if [[ ${#only[@]} -gt 0 ]]; then
    manifests=()
    for name in "${only[@]}"; do manifests+=("$here/rust/$name/Cargo.toml"); done
fi
for manifest in "${manifests[@]}"; do
    name="$(basename "$(dirname "$manifest")")"
    built="$CARGO_TARGET_DIR/$target/release/${name//-/_}.wasm"
    out="$here/dist/$name.wasm"
    if [[ ! -f $built ]]; then
        echo "build.sh: $name was not built (is it a member of plugins/Cargo.toml?)" >&2
        exit 1
    fi
    # Copy only what changed, so an unchanged component keeps its mtime.
    cmp -s "$built" "$out" 2>/dev/null || cp "$built" "$out"
    check="not validated (no wasm-tools)"
    if [[ -n $wasm_tools ]]; then
        "$wasm_tools" validate "$out"
        check="valid component"
    fi
    printf '%-16s %8d bytes  %s  %s\n' "$name" "$(stat -c %s "$out")" "plugins/dist/$name.wasm" "$check"
    count=$((count + 1))
done
echo "build.sh: $count Rust components in plugins/dist/"
[[ $mode == rust ]] && exit 0

# --- the other languages ---------------------------------------------------
bash "$here/toolchains.sh"
export PATH="${SLUICE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/tools}/bin:$PATH"
unset RUSTC RUSTC_BOOTSTRAP CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS CARGO_TARGET_DIR
[[ -n $host_target_dir ]] && export CARGO_TARGET_DIR="$host_target_dir"
sluice="${SLUICE_BIN:-}"
if [[ -z $sluice ]]; then
    host_cargo="$HOME/.cargo/bin/cargo"
    [[ -x $host_cargo ]] || host_cargo=cargo
    (cd "$here/.." && "$host_cargo" build --quiet --locked -p sluice-cli)
    sluice="$(cd "$here/.." && "$host_cargo" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/sluice"
fi
count=0
for manifest in "$here"/{js,python,c,zig}/*/sluice-plugin.toml; do
    [[ -f $manifest ]] || continue
    dir="$(dirname "$manifest")"
    name="$(sed -n 's/^name *= *"\(.*\)".*/\1/p' "$manifest")"
    out="$here/dist/$name.wasm"
    if [[ -f $out && -z $(find "$dir" "$here/../wit" -type f -newer "$out" -not -path "$dir/build/*" -not -path "$dir/dist/*" -print -quit) ]]; then
        printf '%-16s %8d bytes  %s  up to date\n' "$name" "$(stat -c %s "$out")" "plugins/dist/$name.wasm"
    else
        "$sluice" plugin build "$dir" --out "$out"
    fi
    count=$((count + 1))
done
echo "build.sh: $count components in other languages in plugins/dist/"
