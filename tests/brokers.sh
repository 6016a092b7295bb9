#!/usr/bin/env bash
# Start the brokers the tests and the broker examples use, if they are not
# already running. Idempotent; binds to 127.0.0.1 only.
#
#   tests/brokers.sh              # Redis on 6379 and Kafka (tansu) on 19092
#   tests/brokers.sh redis        # only Redis
#   tests/brokers.sh rabbitmq     # only RabbitMQ (guest/guest on 5672)
#   tests/brokers.sh sqs          # only the SQS emulator (moto) on 19324
#   tests/brokers.sh kafka        # only Kafka
#   tests/brokers.sh stop         # stop what this script started (by PID)
#   tests/brokers.sh stop redis   # stop only Redis, if this script started it
#
# Redis: Debian's redis-server (installed with apt-get if missing), no
# persistence. Kafka: tansu, a Kafka-compatible broker from crates.io,
# installed once into ~/.cache/sluice/tools (a cold build takes ~10 min),
# storing in SQLite under ~/.cache/sluice/tansu. PIDs of what this script
# started are kept in ~/.cache/sluice/pids so `stop` only stops those.
set -euo pipefail

export PATH="$HOME/.cargo/bin:$PATH"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sluice"
tools="$cache/tools"
pids="$cache/pids"
mkdir -p "$tools" "$pids"

REDIS_PORT="${SLUICE_REDIS_PORT:-6379}"
AMQP_PORT=5672
SQS_PORT="${SLUICE_SQS_PORT:-19324}"
KAFKA_PORT="${SLUICE_KAFKA_PORT:-19092}"
TANSU_VERSION=0.6.0
MOTO_VERSION=5.2.5

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
    for _ in $(seq 1 $(($3 * 10))); do
        listening "$1" && return 0
        sleep 0.1
    done
    echo "$2 did not start on 127.0.0.1:$1 within $3 s" >&2
    return 1
}

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/apt.sh"

redis() {
    if listening "$REDIS_PORT"; then return 0; fi
    command -v redis-server >/dev/null || apt_install_missing --recommends redis-server
    echo "starting redis-server on 127.0.0.1:$REDIS_PORT"
    local dir="$cache/redis"
    mkdir -p "$dir"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$dir" --logfile "$dir/redis.log" --pidfile "$pids/redis.pid"
    wait_port "$REDIS_PORT" redis-server 20
}

rabbitmq() {
    if listening "$AMQP_PORT"; then return 0; fi
    command -v rabbitmq-server >/dev/null || apt_install_missing --recommends rabbitmq-server
    echo "starting rabbitmq-server on 127.0.0.1:$AMQP_PORT"
    export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1
    rabbitmq-server -detached
    # The node takes a few seconds to boot; await_startup fails until it
    # is reachable at all.
    for _ in $(seq 1 90); do
        rabbitmqctl -q -n rabbit@localhost await_startup >/dev/null 2>&1 && break
        sleep 1
    done
    wait_port "$AMQP_PORT" rabbitmq-server 30
    rabbitmqctl -q -n rabbit@localhost eval 'os:getpid().' | tr -d '"' > "$pids/rabbitmq.pid"
}

# SQS: moto's server from PyPI, in a virtualenv of its own.
sqs() {
    local venv="$tools/moto"
    if [ ! -x "$venv/bin/moto_server" ] || [ "$(cat "$venv/moto.version" 2>/dev/null)" != "$MOTO_VERSION" ]; then
        echo "installing moto[server]==$MOTO_VERSION into $venv" >&2
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
        echo "$MOTO_VERSION" > "$venv/moto.version"
    fi
    if listening "$SQS_PORT"; then return 0; fi
    echo "starting moto_server (SQS API) on 127.0.0.1:$SQS_PORT"
    local dir="$cache/moto"
    mkdir -p "$dir"
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$SQS_PORT" >"$dir/moto.log" 2>&1 &
    echo $! > "$pids/sqs.pid"
    wait_port "$SQS_PORT" moto_server 60
}

# The tansu binary, installed once. Prints its path.
tansu_bin() {
    local bin="$tools/bin/tansu"
    if [ ! -x "$bin" ] || [ "$(cat "$tools/tansu.version" 2>/dev/null)" != "$TANSU_VERSION" ]; then
        echo "installing tansu $TANSU_VERSION (one-time, ~10 min)" >&2
        CARGO_TARGET_DIR="$cache/tansu-target" cargo install tansu --version "$TANSU_VERSION" \
            --locked --features libsql --root "$tools" --force >&2
        echo "$TANSU_VERSION" > "$tools/tansu.version"
        rm -rf "$cache/tansu-target"
    fi
    echo "$bin"
}

kafka() {
    local bin
    bin="$(tansu_bin)"
    if listening "$KAFKA_PORT"; then return 0; fi
    echo "starting tansu (Kafka API) on 127.0.0.1:$KAFKA_PORT"
    local dir="$cache/tansu"
    mkdir -p "$dir"
    # tansu resolves the SQLite path against its working directory.
    (cd "$dir" && exec nohup "$bin" broker \
        --storage-engine "sqlite://tansu.db" \
        --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        >"$dir/tansu.log" 2>&1) &
    echo $! > "$pids/tansu.pid"
    wait_port "$KAFKA_PORT" tansu 60
}

stop() { # [name...]: default all
    local names=("$@")
    if [ ${#names[@]} -eq 0 ]; then
        for f in "$pids"/*.pid; do [ -e "$f" ] && names+=("$(basename "$f" .pid)"); done
    fi
    for name in "${names[@]}"; do
        local f="$pids/$name.pid"
        [ -e "$f" ] || continue
        local pid
        pid="$(cat "$f")"
        if kill -0 "$pid" 2>/dev/null; then
            echo "stopping $name (pid $pid)"
            kill "$pid"
        fi
        rm -f "$f"
    done
}

case "${1:-all}" in
    redis) redis ;;
    rabbitmq) rabbitmq ;;
    sqs) sqs ;;
    kafka) kafka ;;
    tansu-bin) tansu_bin ;;
    all) redis; rabbitmq; sqs; kafka ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 [all|redis|rabbitmq|sqs|kafka|tansu-bin|stop [names]]" >&2; exit 1 ;;
esac
