#!/usr/bin/env bash
# Installs the toolchains that build plugins in JavaScript, Python, C and Zig
# (Rust plugins use the toolchain plugins/build.sh installs):
#
#   bash plugins/toolchains.sh [js] [python] [c] [zig]     # default: every script in toolchains/
#   export PATH="$HOME/.cache/sluice/tools/bin:$PATH"       # then `sluice plugin build` finds them
#
# Each language's script (plugins/toolchains/<lang>.sh) pins exact versions,
# installs into $SLUICE_TOOLS (default ~/.cache/sluice/tools) and links the
# programs `sluice plugin build` runs into $SLUICE_TOOLS/bin. Idempotent: a
# rerun with everything installed takes a moment.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export SLUICE_TOOLS="${SLUICE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/tools}"
mkdir -p "$SLUICE_TOOLS/bin"
langs=("$@")
if ((${#langs[@]} == 0)); then
    for script in "$here"/toolchains/*.sh; do
        [[ -f $script ]] && langs+=("$(basename "$script" .sh)")
    done
fi
for lang in "${langs[@]}"; do
    script="$here/toolchains/$lang.sh"
    [[ -f $script ]] || { echo "toolchains.sh: no toolchain script for \`$lang\` (see plugins/toolchains/)" >&2; exit 1; }
    bash "$script"
done
