#!/usr/bin/env bash
# Installs the JavaScript plugin toolchain for `sluice plugin build`:
# componentize-js (SpiderMonkey embedded in a Wasm component; the ES module
# is evaluated ahead of time and snapshotted), from npm, into
# $SLUICE_TOOLS/js, with a wrapper at $SLUICE_TOOLS/bin/componentize-js.
#
#   bash plugins/toolchains/js.sh
#   export PATH="${SLUICE_TOOLS:-$HOME/.cache/sluice/tools}/bin:$PATH"
#
# Needs node (>= 18) and npm. Idempotent: a rerun with the pinned version
# in place does nothing. After the install it works offline.
set -euo pipefail

version=0.23.0
tools="${SLUICE_TOOLS:-$HOME/.cache/sluice/tools}"
prefix="$tools/js"
bin="$tools/bin"
cli="$prefix/node_modules/@bytecodealliance/componentize-js/src/cli.js"

for t in node npm; do
    command -v "$t" >/dev/null || { echo "js.sh: \`$t\` is not on PATH; install Node.js 18 or newer (Debian: apt-get install nodejs npm)" >&2; exit 1; }
done

installed="$(node -p "require('$prefix/node_modules/@bytecodealliance/componentize-js/package.json').version" 2>/dev/null || true)"
if [[ $installed != "$version" ]]; then
    mkdir -p "$prefix"
    # A package.json of our own, so npm installs here and not in a parent project.
    [[ -f $prefix/package.json ]] || echo '{"name": "sluice-js-toolchain", "private": true}' >"$prefix/package.json"
    npm install --prefix "$prefix" --save-exact --no-audit --no-fund --loglevel=error \
        "@bytecodealliance/componentize-js@$version" >/dev/null
fi

mkdir -p "$bin"
wrapper="$bin/componentize-js"
want="#!/bin/sh
exec node \"$cli\" \"\$@\""
if [[ ! -x $wrapper || "$(cat "$wrapper")" != "$want" ]]; then
    printf '%s\n' "$want" >"$wrapper"
    chmod +x "$wrapper"
fi
echo "componentize-js $version: $wrapper"
