#!/usr/bin/env bash
# Measures `samvad serve` (embedded mode) on this machine: idle memory per
# session and 1:1 chat latency, over each transport. Every run gets a fresh
# server and data directory. Results: stdout and bench/out/*.json.
#
#   bash bench/embedded.sh            # full run (a few minutes)
#   SESSIONS=2000 bash bench/embedded.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${SESSIONS:-6000}
CONNECT_RATE=${CONNECT_RATE:-300}
cargo build --release -q -p samvad -p samvad-load
mkdir -p bench/out
data=$(mktemp -d)
server_pid=
stop() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true; }
trap 'stop; rm -rf "$data"' EXIT

fresh() {
  stop
  rm -rf "$data"/*
  ./target/release/samvad serve --data-dir "$data/db" --listen 127.0.0.1:4433 \
    --http-listen 127.0.0.1:8080 --ready-file "$data/ready.json" "$@" >"$data/serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do [ -f "$data/ready.json" ] && return; sleep 0.1; done
  echo "server did not start" >&2; cat "$data/serve.log" >&2; exit 1
}

load() { ./target/release/samvad-load --server http://127.0.0.1:8080 "$@"; }

for t in ws quic wt; do
  fresh
  load --transport "$t" --out "bench/out/connect-$t.json" connect -n "$SESSIONS" --rate "$CONNECT_RATE" --hold 3
done
fresh
load --transport quic --out bench/out/offline-quic.json offline --users 200 --backlog 500
for t in ws quic wt; do
  fresh
  load --transport "$t" --out "bench/out/storm-$t.json" storm -n 2000 --rate 500
done
for run in "50 1000 15" "100 5000 20"; do
  read -r pairs rate duration <<<"$run"
  for t in ws quic wt; do
    fresh
    load --transport "$t" --out "bench/out/chat-$rate-$t.json" \
      chat --pairs "$pairs" --rate "$rate" --duration "$duration"
  done
done
