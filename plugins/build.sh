#!/usr/bin/env bash
# Builds every sluice plugin from source into plugins/dist/<name>.wasm.
#
#   bash plugins/build.sh
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
target=wasm32-wasip2
apt_packages=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc)

# --- toolchain -------------------------------------------------------------
missing=()
for pkg in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    echo "build.sh: installing ${missing[*]}" >&2
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null; then
        sudo=(sudo)
    else
        echo "build.sh: need root (or sudo) to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

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

(
    cd "$here"
    "$cargo" build --release --locked --target "$target" -Zbuild-std=std,panic_abort
)

# --- collect ---------------------------------------------------------------
mkdir -p "$here/dist"
wasm_tools="$(command -v wasm-tools || true)"
count=0
for manifest in "$here"/rust/*/Cargo.toml; do
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
echo "build.sh: $count components in plugins/dist/"
