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

# componentize-js asks for its dependencies with ^ranges: pin the ones
# this was tested with too, so a fresh machine gets the same tools. Its
# lib/spidermonkey-embedding-splicer.js imports preview2-shim without
# declaring it: name it here, or npm may prune it and every build fails
# with ERR_MODULE_NOT_FOUND.
manifest='{
  "name": "sluice-js-toolchain",
  "private": true,
  "dependencies": {
    "@bytecodealliance/componentize-js": "'"$version"'",
    "@bytecodealliance/preview2-shim": "0.25.0"
  },
  "overrides": {
    "@bytecodealliance/jco": "1.35.0",
    "@bytecodealliance/weval": "0.5.0",
    "@bytecodealliance/wizer": "10.0.0",
    "es-module-lexer": "1.7.0",
    "oxc-parser": "0.76.0"
  }
}'
installed="$(node -p "require('$prefix/node_modules/@bytecodealliance/componentize-js/package.json').version" 2>/dev/null || true)"
if [[ $installed != "$version" || "$(cat "$prefix/package.json" 2>/dev/null)" != "$manifest" ]]; then
    mkdir -p "$prefix"
    # A package.json of our own, so npm installs here and not in a parent project.
    printf '%s\n' "$manifest" >"$prefix/package.json"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error >/dev/null
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
