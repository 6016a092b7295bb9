#!/usr/bin/env bash
# Installs what `sluice plugin build` needs for C plugins (language = "c"):
#
#   bash plugins/toolchains/c.sh            # clang + wasi-libc + wit-bindgen
#   bash plugins/toolchains/c.sh wit-bindgen  # wit-bindgen only (zig.sh uses it)
#
# - Debian packages clang-22, lld-22 (wasm-ld), libclang-rt-22-dev-wasm32
#   (compiler-rt builtins for wasm32) and wasi-libc (headers in
#   /usr/include/wasm32-wasi, libc in /usr/lib/wasm32-wasi), installed with
#   apt-get only when missing (needs root or sudo);
# - `wit-bindgen` (crates.io wit-bindgen-cli, C generator only), built with
#   cargo into $SLUICE_TOOLS/c/wit-bindgen and linked into $SLUICE_TOOLS/bin.
#
# SLUICE_TOOLS defaults to ~/.cache/sluice/tools. Idempotent: a second run
# only checks versions. Build scripts put $SLUICE_TOOLS/bin on PATH.
set -euo pipefail

wit_bindgen_version=0.63.0
clang_version=22
apt_packages=("clang-$clang_version" "lld-$clang_version" "libclang-rt-$clang_version-dev-wasm32" wasi-libc)

tools="${SLUICE_TOOLS:-$HOME/.cache/sluice/tools}"
mkdir -p "$tools/bin"

install_apt() {
    # shellcheck source=../../scripts/apt.sh
    source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/apt.sh"
    apt_install_missing "${apt_packages[@]}"
    local f
    for f in "/usr/bin/clang-$clang_version" "/usr/bin/wasm-ld-$clang_version" /usr/lib/wasm32-wasi/libc.a /usr/include/wasm32-wasi/stdlib.h \
        "/usr/lib/llvm-$clang_version/lib/clang/$clang_version/lib/wasi/libclang_rt.builtins-wasm32.a"; do
        [[ -e $f ]] || { echo "c.sh: $f is missing after installing ${apt_packages[*]}" >&2; exit 1; }
    done
    echo "clang-$clang_version $(dpkg-query -W -f='${Version}' "clang-$clang_version"), wasi-libc $(dpkg-query -W -f='${Version}' wasi-libc) (apt)"
}

install_wit_bindgen() {
    local root="$tools/c/wit-bindgen"
    if [[ "$("$root/bin/wit-bindgen" --version 2>/dev/null)" != "wit-bindgen-cli $wit_bindgen_version"* ]]; then
        # The rustup cargo (the one that builds the host), else any cargo.
        local cargo="$HOME/.cargo/bin/cargo"
        [[ -x $cargo ]] || cargo="$(command -v cargo || true)"
        [[ -n $cargo ]] || { echo "c.sh: cargo is needed to build wit-bindgen-cli (install Rust with rustup)" >&2; exit 1; }
        echo "c.sh: building wit-bindgen-cli $wit_bindgen_version with cargo (5 to 20 minutes on 2 busy cores)" >&2
        "$cargo" install --quiet --locked --force "wit-bindgen-cli@$wit_bindgen_version" --no-default-features --features c --root "$root"
    fi
    ln -sfn "$root/bin/wit-bindgen" "$tools/bin/wit-bindgen"
    echo "$("$tools/bin/wit-bindgen" --version) ($tools/bin/wit-bindgen)"
}

case "${1:-all}" in
    all) install_apt; install_wit_bindgen ;;
    wit-bindgen) install_wit_bindgen ;;
    *) echo "usage: c.sh [wit-bindgen]" >&2; exit 1 ;;
esac
