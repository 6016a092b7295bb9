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
missing=()
for pkg in libssl-dev pkg-config make g++; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "ok"


step "brokers (Redis, RabbitMQ, SQS emulator if not running; the tansu Kafka broker installed once)"
# Start Redis, RabbitMQ and the SQS emulator if nothing listens on their
# ports; stop at the end
# only what this run started.
pids="${XDG_CACHE_HOME:-$HOME/.cache}/sluice/pids"
started=()
for broker in redis rabbitmq sqs; do
    had=false; [ -e "$pids/$broker.pid" ] && had=true
    bash tests/brokers.sh "$broker"
    if ! $had && [ -e "$pids/$broker.pid" ]; then started+=("$broker"); fi
done
if [ ${#started[@]} -gt 0 ]; then trap 'bash tests/brokers.sh stop "${started[@]}"' EXIT; fi
export SLUICE_TEST_REDIS="${SLUICE_TEST_REDIS:-redis://127.0.0.1:${SLUICE_REDIS_PORT:-6379}}"
export SLUICE_TEST_SQS="${SLUICE_TEST_SQS:-http://127.0.0.1:${SLUICE_SQS_PORT:-19324}}"
# Each Kafka test starts its own tansu process from this binary (isolated
# storage, restartable); set SLUICE_TEST_KAFKA=host:port to use a real Kafka.
export SLUICE_TANSU="${SLUICE_TANSU:-$(bash tests/brokers.sh tansu-bin)}"

step "host build"
# The whole workspace, so the binary's dependencies are built with the same
# features as the tests' and compiled once.
cargo build --locked --workspace

step "plugins (Rust, JavaScript, Python, C and Zig → components; toolchains installed once)"
# `sluice plugin build` (this build's binary) builds the non-Rust plugins;
# the template tests run it again, so the toolchains stay on PATH.
export SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice"
export SLUICE_TOOLS="${SLUICE_TOOLS:-$cache/tools}"
# Compiled components, kept between runs (named by content and engine
# settings): the JS and Python ones take a minute each to compile here.
export SLUICE_CACHE_DIR="${SLUICE_CACHE_DIR:-$cache/artifacts}"
bash plugins/build.sh
export PATH="$SLUICE_TOOLS/bin:$PATH"

step "tests"
cargo test --locked --workspace

step "quickstart"
examples/quickstart.sh >/dev/null
echo "quickstart ran"

echo
echo "all tests passed"
