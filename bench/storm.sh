#!/usr/bin/env bash
# Reconnect storms: N sessions up, then all of them drop and come back at
# once, per transport, on a fresh `samvad serve` each. Prints the storm
# report (all back in, failed and retried handshakes with their causes,
# per-session reconnect latency, server and harness CPU per reconnect) and
# the UDP datagrams the kernel dropped meanwhile (`/proc/net/snmp`).
#
#   bash bench/storm.sh                              # 10 000 per transport
#   N=50000 RATE=2000 TRANSPORTS="quic wt" bash bench/storm.sh
#   SAMVAD_ARGS="--handshakes-at-once 64" N=20000 TRANSPORTS=quic bash bench/storm.sh
#
# A process may open 20 000 files here: a WebSocket storm past about
# 18 000 sessions meets that limit on both sides (QUIC sessions share
# the endpoints' few UDP sockets).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
RATE=${RATE:-1000}
TRANSPORTS=${TRANSPORTS:-"quic wt ws"}
source bench/lib.sh
start_bench

udp_errors() { awk '/^Udp:/ { if (h) { print $4 } else h = 1 }' /proc/net/snmp; }

for t in $TRANSPORTS; do
  serve_fresh "$work/serve" $SAMVAD_ARGS
  before=$(udp_errors)
  ./target/release/samvad-load --server "$SERVER" --transport "$t" --endpoints 8 --ws-sources 8 \
    --out "bench/out/storm-$t.json" storm -n "$N" --rate "$RATE" --users 500 >"$work/load.log" 2>&1 \
    || { cat "$work/load.log" >&2; exit 1; }
  grep -A3 "^storm over" "$work/load.log" || cat "$work/load.log"
  echo "UDP datagrams dropped by the kernel (InErrors): $(( $(udp_errors) - before ))"
  stop_all
done
