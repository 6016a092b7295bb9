#!/usr/bin/env bash
# Installs what `sluice plugin build` needs for Zig plugins (language = "zig"):
#
#   bash plugins/toolchains/zig.sh
#
# - Zig from PyPI's `ziglang` wheel, in a venv at $SLUICE_TOOLS/zig/venv,
#   with a wrapper $SLUICE_TOOLS/bin/zig (Zig ships its own wasi-libc, so no
#   Debian packages are needed);
# - `wit-bindgen` (the C bindings, which Zig compiles and @cImports), by
#   `c.sh wit-bindgen`.
#
# SLUICE_TOOLS defaults to ~/.cache/sluice/tools. Idempotent: a second run
# only checks versions. Build scripts put $SLUICE_TOOLS/bin on PATH.
set -euo pipefail

zig_version=0.15.2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${SLUICE_TOOLS:-$HOME/.cache/sluice/tools}"
venv="$tools/zig/venv"
mkdir -p "$tools/bin"

if [[ "$("$venv/bin/python" -m ziglang version 2>/dev/null)" != "$zig_version" ]]; then
    python="$(command -v python3 || command -v python || true)"
    [[ -n $python ]] || { echo "zig.sh: python3 is needed to install the ziglang wheel" >&2; exit 1; }
    [[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "ziglang==$zig_version"
fi
# A wrapper, not a symlink: the wheel's binary lives in site-packages.
cat >"$tools/bin/zig.tmp" <<EOF
#!/bin/sh
exec "$venv/bin/python" -m ziglang "\$@"
EOF
chmod +x "$tools/bin/zig.tmp"
mv -f "$tools/bin/zig.tmp" "$tools/bin/zig"
echo "zig $("$tools/bin/zig" version) ($tools/bin/zig, PyPI ziglang==$zig_version)"

SLUICE_TOOLS="$tools" bash "$here/c.sh" wit-bindgen
