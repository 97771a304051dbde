#!/usr/bin/env bash
# Honest chat beside hostile clients: the p99 of 1:1 chat at 1 000 msg/s
# (50 pairs, WebSocket) alone, then with each kind of hostile client held
# open beside it (samvad-load hostile), on a fresh `samvad serve` each time.
# Also reports how long the server took to cut each hostile client off and
# its memory meanwhile. JSON in bench/out/hostile-*.json.
#
# As in bench/run.sh, the server is pinned to core 0 and the honest
# harness to core 1; the hostile harness runs on core 1 at SCHED_IDLE
# (`chrt -i 0`): it gets the core only when the honest harness does not
# want it, so what is measured is what the hostile clients cost the
# server, not what the attacker's own process takes from the others on a
# two-core machine (an attacker's CPU is not ours). Before 2026-12-07
# nothing was pinned and the hostile harness ran at the same priority as
# the rest. PIN_SERVER / PIN_LOAD / PIN_HOSTILE prefix the server, the
# honest harness and the hostile harness (PIN_SERVER= PIN_LOAD=
# PIN_HOSTILE="chrt -i 0" shares both cores; bench/RESULTS.md has both).
#
#   bash bench/hostile.sh
#   COUNT=2000 DURATION=20 bash bench/hostile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
COUNT=${COUNT:-1000}
PIN_SERVER=${PIN_SERVER-"taskset -c 0"}
PIN_LOAD=${PIN_LOAD-"taskset -c 1"}
PIN_HOSTILE=${PIN_HOSTILE-"taskset -c 1 chrt -i 0"}
DURATION=${DURATION:-20}
source bench/lib.sh
start_bench

load() { $PIN_LOAD ./target/release/samvad-load --server "$SERVER" "$@"; }
hostile() { $PIN_HOSTILE ./target/release/samvad-load --server "$SERVER" "$@"; }
p99() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['delivery']['p99_us']/1000)" "$1"; }

chat_run() { load --out "bench/out/hostile-chat-$1.json" chat --pairs 50 --rate 1000 --duration "$DURATION" >/dev/null; }

if [[ alone =~ ${ONLY:-.} ]]; then
  # The control: nothing hostile, but the same memory sampler beside.
  start_samvad --durability buffer
  hostile --out bench/out/hostile-none.json hostile --kind none -n 0 --timeout $((DURATION + 5)) &
  sampler=$!
  sleep 5
  chat_run alone
  wait "$sampler"
  echo "alone: chat p99 $(p99 bench/out/hostile-chat-alone.json) ms"
  stop_all
fi

# kind, count, transport, bytes flooded to each reader. The flood comes
# from one session at 1 MB/s, within the server's default byte allowance
# (--rate-limit-bytes, 1 MiB/s): 5 readers × 5 MB in 25 s. A reader must
# be sent more than the kernel holds for it (the server's send buffer
# grows to tcp_wmem's 4 MB), or one that stopped looks idle to the
# server: 200 KB each to 50 readers were all absorbed, none cut off.
# ONLY (a regex) picks runs by name.
for run in "half-open $COUNT ws 0" "silent $COUNT ws 0" "silent $COUNT quic 0" \
           "keep-up 5 ws 5000000" "stop-reading 5 ws 5000000" "slow-reader 5 ws 5000000" \
           "half-open 10000 ws 0"; do
  read -r kind count transport flood <<<"$run"
  name="$kind-$transport-$count"
  [[ "$name" =~ ${ONLY:-.} ]] || continue
  start_samvad --durability buffer
  hostile --transport "$transport" --out "bench/out/hostile-$name.json" \
    hostile --kind "$kind" -n "$count" --timeout 90 --flood "$flood" &
  hostile=$!
  sleep 5
  chat_run "$name"
  wait "$hostile"
  echo "$name: chat p99 $(p99 "bench/out/hostile-chat-$name.json") ms beside it"
  stop_all
done
