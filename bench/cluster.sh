#!/usr/bin/env bash
# Measures the cluster (samvad edge + router + store over Apache Kafka and
# redis-server, all on this machine's 2 cores) with the chat scenario of
# bench/embedded.sh, so the two can be compared. JSON in bench/out/.
#
#   bash bench/cluster.sh                       # the default runs
#   RUNS="50:2000:15 200:20000:20" bash bench/cluster.sh
#   CLUSTER_ARGS="--linger-ms 0" bash bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release -q -p samvad -p samvad-load
mkdir -p bench/out
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; echo "logs: $dir" >&2; }
trap cleanup EXIT
fail() { echo "$1" >&2; for f in "$dir"/*.log; do echo "== $f" >&2; tail -n 5 "$f" >&2; done; exit 1; }

source bench/lib.sh
wait_file() { for _ in $(seq 300); do [ -f "$1" ] && return; sleep 0.1; done; fail "no $1"; }

start_kafka "$dir/kafka"
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly yes --appendfsync everysec \
  >"$dir/redis.log" 2>&1 &
pids+=($!)
sleep 1
# shellcheck disable=SC2206
common=(--kafka "$KAFKA" --redis "redis://127.0.0.1:$rport/" ${CLUSTER_ARGS:-})
"$SAMVAD_BIN" store "${common[@]}" --data-dir "$dir/store" --ready-file "$dir/store.json" >"$dir/store.log" 2>&1 &
pids+=($!)
"$SAMVAD_BIN" router "${common[@]}" --ready-file "$dir/router.json" >"$dir/router.log" 2>&1 &
pids+=($!)
"$SAMVAD_BIN" edge "${common[@]}" --node e0 --listen 127.0.0.1:4433 --http-listen 127.0.0.1:8080 \
  --ready-file "$dir/edge.json" >"$dir/edge.log" 2>&1 &
pids+=($!)
wait_file "$dir/store.json"; wait_file "$dir/router.json"; wait_file "$dir/edge.json"
sleep 3   # the groups have assigned their partitions

# A fresh broker JVM compiles its hot paths for its first minute or so and
# answers slowly meanwhile (its requests' round trips fall several-fold):
# a warm-up run, not reported, comes first. WARMUP= skips it.
for run in ${WARMUP-50:1000:40}; do
  IFS=: read -r pairs rate duration <<<"$run"
  ./target/release/samvad-load --server http://127.0.0.1:8080 --transport "${TRANSPORT:-quic}" \
    --out "$dir/warmup.json" chat --pairs "$pairs" --rate "$rate" --duration "$duration" >/dev/null
done

# pairs:rate:seconds per run
for run in ${RUNS:-50:2000:15 200:20000:20}; do
  IFS=: read -r pairs rate duration <<<"$run"
  ./target/release/samvad-load --server http://127.0.0.1:8080 --transport "${TRANSPORT:-quic}" \
    --out "bench/out/cluster-chat-$rate-${TRANSPORT:-quic}.json" chat --pairs "$pairs" --rate "$rate" --duration "$duration"
done
