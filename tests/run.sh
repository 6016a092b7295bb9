#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine:
#
#   tests/run.sh
#
# Installs what is missing (the plugin toolchains for Rust, JavaScript, Python,
# C and Zig, Redis, the tansu Kafka broker), starts the brokers that are not running (and stops
# those it started when done), builds every plugin from source, builds the
# `sluice` binary, and runs every test of the workspace. Idempotent: a second run reuses everything built.
#
# Build outputs live outside the checkout (~/.cache/sluice by default) so a
# fresh clone on the same machine does not rebuild wasmtime or the wasm std.
# Override with CARGO_TARGET_DIR / SLUICE_PLUGIN_TARGET_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The host builds with rustup's toolchain, never Debian's /usr/bin/cargo.
export PATH="$HOME/.cargo/bin:$PATH"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sluice"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export SLUICE_PLUGIN_TARGET_DIR="${SLUICE_PLUGIN_TARGET_DIR:-$cache/plugins-target}"

step() { printf '\n== %s\n' "$*"; }

step "system packages for the host build"
# librdkafka (bundled by the rdkafka crate) links the system OpenSSL.
source scripts/apt.sh
# openssl: the TLS tests make their certificates with it.
apt_install_missing libssl-dev pkg-config make g++ openssl
echo "ok"


step "brokers (Redis, RabbitMQ, SQS emulator if not running; the tansu Kafka broker installed once)"
# Start Redis, RabbitMQ and the SQS emulator if nothing listens on their
# ports; stop at the end
# only what this run started.
pids="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/pids"
started=()
# Set before the first broker starts, so a failure half-way still stops
# what this run started (and only that).
stop_started() {
    # Background installs still running (the run failed early) stop too.
    local pids_left; pids_left="$(jobs -p)"; [ -z "$pids_left" ] || kill $pids_left 2>/dev/null || true
    if [ ${#started[@]} -gt 0 ]; then bash tests/brokers.sh stop "${started[@]}"; fi
}
trap stop_started EXIT
for broker in redis rabbitmq sqs; do
    had=false; [ -e "$pids/$broker.pid" ] && had=true
    rc=0; bash tests/brokers.sh "$broker" || rc=$?
    if ! $had && [ -e "$pids/$broker.pid" ]; then started+=("$broker"); fi
    [ "$rc" -eq 0 ] || exit "$rc"
done
export SLUICE_TEST_REDIS="${SLUICE_TEST_REDIS:-redis://127.0.0.1:${SLUICE_REDIS_PORT:-6379}}"
export SLUICE_TEST_SQS="${SLUICE_TEST_SQS:-http://127.0.0.1:${SLUICE_SQS_PORT:-19324}}"

step "one-time installs in the background (tansu, cargo-machete, plugin toolchains, chromium, promtool; logs in $cache/logs)"
# Each is a long cargo build on a new machine (tansu ~10 min, wit-bindgen-cli
# ~12 min); run beside the host build, they fill the cores its serial parts
# leave idle. A second run finds them installed at once.
export SLUICE_TOOLS="${SLUICE_TOOLS:-$cache/tools}"
mkdir -p "$cache/logs"
background() { # NAME COMMAND...: start; `finish NAME` waits and shows the log if it failed
    local name=$1; shift
    "$@" >"$cache/logs/$name.log" 2>&1 &
    eval "bg_$name=$!"
}
finish() {
    local name=$1 pid; eval "pid=\$bg_$name"
    if ! wait "$pid"; then
        echo "$name failed:" >&2; tail -n 40 "$cache/logs/$name.log" >&2; exit 1
    fi
}
install_machete() {
    local version=0.9.2
    [ "$(cat "$cache/tools/cargo-machete.version" 2>/dev/null)" != "$version" ] || return 0
    echo "installing cargo-machete $version (one-time, ~3 min)"
    CARGO_TARGET_DIR="$cache/machete-target" cargo install --locked --quiet cargo-machete \
        --version "$version" --root "$cache/tools"
    echo "$version" > "$cache/tools/cargo-machete.version"
    rm -rf "$cache/machete-target"
}
# What the observability tests look through: Debian's chromium (the status
# page) and promtool (`/metrics`), unpacked from Debian's prometheus package
# rather than installed, so no Prometheus server is set up or started.
install_observers() {
    apt_install_missing chromium
    local dir="$cache/tools/prometheus"
    [ ! -x "$dir/usr/bin/promtool" ] || return 0
    local tmp; tmp="$(mktemp -d)"
    (cd "$tmp" && { apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; })
    rm -rf "$dir" && dpkg-deb -x "$tmp"/prometheus_*.deb "$dir"
    rm -rf "$tmp"
}
background tansu bash tests/brokers.sh tansu-bin
background machete install_machete
background toolchains bash plugins/toolchains.sh
background observers install_observers
echo "started"

step "format"
cargo fmt --all --check
echo "ok"

step "host build"
# The whole workspace, so the binary's dependencies are built with the same
# features as the tests' and compiled once.
cargo build --locked --workspace

step "lints (clippy -D warnings, unused dependencies)"
cargo clippy --locked --workspace --all-targets -- -D warnings
finish machete
"$cache/tools/bin/cargo-machete"

step "plugins (Rust, JavaScript, Python, C and Zig → components; toolchains installed once)"
# `sluice plugin build` (this build's binary) builds the non-Rust plugins;
# the template tests run it again, so the toolchains stay on PATH.
export SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice"
finish toolchains
# Compiled components, kept between runs (named by content and engine
# settings): the JS and Python ones take a minute each to compile here.
export SLUICE_CACHE_DIR="${SLUICE_CACHE_DIR:-$cache/artifacts}"
bash plugins/build.sh
export PATH="$SLUICE_TOOLS/bin:$PATH"

step "tests"
# Each Kafka test starts its own tansu process from this binary (isolated
# storage, restartable); set SLUICE_TEST_KAFKA=host:port to use a real Kafka.
cargo test --locked --workspace --no-run
finish tansu
finish observers
export SLUICE_TANSU="${SLUICE_TANSU:-$(bash tests/brokers.sh tansu-bin)}"
cargo test --locked --workspace

step "quickstart"
examples/quickstart.sh >/dev/null
echo "quickstart ran"

echo
echo "all tests passed"
