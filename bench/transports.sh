#!/usr/bin/env bash
# Samvad's chat over each of its transports (native QUIC, WebTransport,
# WebSocket), server pinned to core 0 and harness to core 1, a fresh
# `samvad serve` per run. Reports: bench/out/transports/*.json.
#
#   bash bench/transports.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p samvad -p samvad-load
work=$(mktemp -d); pids=()
source bench/lib.sh
PIN_SERVER="taskset -c 0"
trap 'stop_all; rm -rf "$work"' EXIT
mkdir -p bench/out/transports
for transport in quic wt ws; do
  for rate in 1000 5000 10000; do
    serve_fresh "$work/s"
    taskset -c 1 ./target/release/samvad-load --system samvad --label "samvad/$transport" --server "$SERVER" --server-pid "$PID" \
      --transport $transport --out bench/out/transports/chat-$rate-$transport.json \
      chat --pairs 50 --rate $rate --duration 10 --drain 10 2>&1 | grep -E "^chat with|^send → delivery|^sent"
    stop_all
  done
done
