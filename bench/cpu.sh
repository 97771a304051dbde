#!/usr/bin/env bash
# Server CPU and context switches per delivered 1:1 message, for Samvad and
# the peers, with the server pinned to core 0 and the harness to core 1.
#
# The figure is marginal: for each system and rate, one fresh server runs
# the chat scenario for SHORT seconds and another for LONG seconds; the
# difference in the server's CPU time (utime + stime from /proc/PID/stat)
# and in its context switches (voluntary + nonvoluntary, summed over
# /proc/PID/task/*/status) is divided by the difference in delivered
# messages, so that start-up, connecting and draining cancel out. For
# Samvad every message also has its recipient's ack and the DELIVERED
# receipt back to the sender in it. The harness's own CPU per message is
# measured the same way (bash's `time` of the samvad-load process).
#
#   bash bench/cpu.sh
#   RATES="1000 10000" SYSTEMS="samvad nats" bash bench/cpu.sh
#
# Output: bench/out/cpu/*.json (the harness reports), cpu.md (the table).
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"1000 10000"}
SYSTEMS=${SYSTEMS:-"samvad centrifugo ejabberd nats"}
PAIRS=${PAIRS:-50}
SHORT=${SHORT:-5}
LONG=${LONG:-15}
TRANSPORT=${TRANSPORT:-ws}
PIN_SERVER=${PIN_SERVER-"taskset -c 0"}
PIN_LOAD=${PIN_LOAD-"taskset -c 1"}

cargo build --release -q -p samvad -p samvad-load
out=bench/out/cpu
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"
pids=()
trap 'stop_all; rm -rf "$work"' EXIT
source bench/lib.sh
need_centrifugo

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s}'; }

# One measurement: fresh server, chat at RATE for SECONDS; prints
# "server_ticks ctx harness_seconds" and leaves the report in $3.
measure() {
  local system=$1 rate=$2 report=$3 seconds=$4
  "start_$system"
  local t0 c0; t0=$(cpu_ticks "$PID"); c0=$(ctx_switches "$PID")
  local TIMEFORMAT='%U %S'
  local harness
  harness=$( { time $PIN_LOAD ./target/release/samvad-load --system "$KIND" --label "$LABEL" \
    --server "$SERVER" --server-pid "$PID" --transport "$TRANSPORT" --out "$report" \
    chat --pairs "$PAIRS" --rate "$rate" --duration "$seconds" --drain 10 >/dev/null 2>&1 || true; } 2>&1 )
  local t1 c1; t1=$(cpu_ticks "$PID"); c1=$(ctx_switches "$PID")
  stop_all
  echo "$((t1 - t0)) $((c1 - c0)) $(echo "$harness" | awk '{print $1 + $2}')"
}

rows=()
for system in $SYSTEMS; do
  for rate in $RATES; do
    short=$(measure "$system" "$rate" "$out/$system-$rate-short.json" "$SHORT")
    long=$(measure "$system" "$rate" "$out/$system-$rate-long.json" "$LONG")
    rows+=("$(python3 - "$out/$system-$rate-short.json" "$out/$system-$rate-long.json" $short $long <<'PY'
import json, os, sys
short, long = (json.load(open(p)) for p in sys.argv[1:3])
ts, cs, hs, tl, cl, hl = (float(x) for x in sys.argv[3:9])
hz = os.sysconf("SC_CLK_TCK")
d = long["tally"]["delivered"] - short["tally"]["delivered"]
if d <= 0:
    print(f"| {long['system']} | {long['target_rate']} | — | — | — | — | — |")
    sys.exit()
cpu_us = (tl - ts) / hz / d * 1e6
ctx = (cl - cs) / d
harness_us = (hl - hs) / d * 1e6
lat = long["delivery"]
lost = long["tally"]["lost"]
print(f"| {long['system']} | {long['target_rate']} | {cpu_us:.1f} µs | {ctx:.2f} | {harness_us:.1f} µs "
      f"| {lat['p50_us']/1000:.2f} / {lat['p99_us']/1000:.2f} ms | {lost} |")
PY
)")
  done
done
{
  echo "| system | msg/s | server CPU per delivered message | context switches per message | harness CPU per message | delivery p50 / p99 (long run) | lost |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Marginal between a ${SHORT} s and a ${LONG} s run, ${PAIRS} pairs over $TRANSPORT; server pinned: '${PIN_SERVER:-none}', harness: '${PIN_LOAD:-none}'; $(nproc) vCPU, $(uname -sr)."
} | tee "$out/cpu.md"
