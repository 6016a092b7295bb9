#!/bin/bash
# What the private RabbitMQ nodes of tests/src/rabbitmq_node.rs hold right now
# (queues, channels, connections, consumers): run it while a test seems stuck.
# Finds each node by its RABBITMQ_NODENAME=sluice-test-* environment; read-only.
for p in $(pgrep -f beam.smp); do
  env=$(tr '\0' '\n' < /proc/$p/environ 2>/dev/null)
  name=$(echo "$env" | sed -n 's/^RABBITMQ_NODENAME=//p')
  case "$name" in sluice-test-*) ;; *) continue;; esac
  home=$(echo "$env" | sed -n 's/^HOME=//p')
  echo "### node $name pid $p $(date +%T)"
  for cmd in "list_queues name messages_ready messages_unacknowledged consumers" "list_channels connection number consumer_count messages_unacknowledged messages_unconfirmed prefetch_count" "list_connections name peer_port state channels recv_cnt send_cnt" "list_consumers queue_name channel_pid ack_required prefetch_count"; do
    HOME=$home /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$name" $cmd 2>&1
  done
done
