#!/usr/bin/env bash
# Installs the Python plugin toolchain for `sluice plugin build`:
# componentize-py (CPython built for WASI, plus the standard library,
# bundled with the plugin's own modules into one component), from PyPI,
# into the venv $SLUICE_TOOLS/python/venv, with a link at
# $SLUICE_TOOLS/bin/componentize-py.
#
#   bash plugins/toolchains/python.sh
#   export PATH="${SLUICE_TOOLS:-$HOME/.cache/sluice/tools}/bin:$PATH"
#
# Needs python3 (>= 3.10, with venv). Idempotent: a rerun with the pinned
# version in place does nothing. After the install it works offline.
set -euo pipefail

version=0.25.1
tools="${SLUICE_TOOLS:-$HOME/.cache/sluice/tools}"
venv="$tools/python/venv"
bin="$tools/bin"
python="${PYTHON:-python3}"

command -v "$python" >/dev/null || { echo "python.sh: \`$python\` is not on PATH; install Python 3.10 or newer (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }

installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("componentize-py"))' 2>/dev/null || true)"
if [[ $installed != "$version" ]]; then
    [[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$version"
fi

mkdir -p "$bin"
ln -sfn "$venv/bin/componentize-py" "$bin/componentize-py"
echo "componentize-py $version: $bin/componentize-py"
