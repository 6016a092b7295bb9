#!/usr/bin/env bash
# Run the quickstart pipeline (no broker needed):
#
#   examples/quickstart.sh
#
# Builds the three plugins it runs and the `sluice` binary if needed
# (installing the Debian guest toolchain on first use), runs examples/quickstart.toml
# over examples/orders.jsonl, and shows where every record went.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sluice"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export SLUICE_PLUGIN_TARGET_DIR="${SLUICE_PLUGIN_TARGET_DIR:-$cache/plugins-target}"

bash plugins/build.sh rust json-filter order-transform country-router >&2
cargo build --locked -q -p sluice-cli --bin sluice >&2

"$CARGO_TARGET_DIR/debug/sluice" --log warn,sluice_core::engine=error run examples/quickstart.toml

echo
echo "input:  $(wc -l < examples/orders.jsonl) records in examples/orders.jsonl"
for f in europe americas dlq; do
    printf 'output: %6d records in examples/out/%s.jsonl\n' "$(wc -l < "examples/out/$f.jsonl")" "$f"
done
echo
echo "a dead-lettered record, with its sluice-error-* headers:"
head -n 1 examples/out/dlq.jsonl
