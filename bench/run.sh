#!/usr/bin/env bash
# Samvad side by side with what a user would pick instead, on this machine,
# in one run: Centrifugo (memory engine, a personal channel per user with
# history and recovery), ejabberd (XMPP over WebSocket, offline storage and
# stream management on) and nats-server (WebSocket, plain pub/sub, no
# persistence).
# Each server runs on loopback, alone, fresh for every measurement; the same
# samvad-load scenarios (connect, chat at a ladder of rates, group) run
# against each over WebSocket. Then `samvad-load compare` writes the table
# of Samvad / peer ratios and a latency plot.
#
#   bash bench/run.sh                       # about an hour (REPEAT=3)
#   RATES="1000 5000" DURATION=5 bash bench/run.sh
#
# Output: bench/out/side-by-side/*.json, compare.md, compare.svg. A run of
# some SYSTEMS replaces their reports and keeps the others'.
set -euo pipefail
cd "$(dirname "$0")/.."
# The server on one core and the harness on the other, so neither steals
# the other's CPU (PIN_SERVER= PIN_LOAD= to share both cores).
PIN_SERVER=${PIN_SERVER-"taskset -c 0"}
PIN_LOAD=${PIN_LOAD-"taskset -c 1"}
RATES=${RATES:-"1000 2000 5000 10000 20000"}
COMPARE_RATE=${COMPARE_RATE:-1000}
P99_BOUND_MS=${P99_BOUND_MS:-25}
DURATION=${DURATION:-10}
PAIRS=${PAIRS:-50}
SESSIONS=${SESSIONS:-2000}
GROUPS_N=${GROUPS_N:-20}
GROUP_SIZE=${GROUP_SIZE:-20}
GROUP_RATES=${GROUP_RATES:-"100 500"}
# samvad_buffered: Samvad with `--durability buffer` (written to the OS per
# batch, no fsync: survives kill -9, not power loss), the durability ejabberd
# and NATS offer, for a like-for-like row.
SYSTEMS=${SYSTEMS:-"samvad samvad_buffered centrifugo ejabberd nats"}
# Each chat and group run is repeated; `compare` takes the median.
REPEAT=${REPEAT:-3}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need ejabberdctl || ! need nats-server; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq ejabberd nats-server >/dev/null
fi
# The Debian package starts a system ejabberd where there is an init
# system; ours runs on its own node name and port, so both can coexist.
cargo build --release -q -p samvad -p samvad-load
out=bench/out/side-by-side
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"
pids=()
trap 'stop_all; rm -rf "$work"' EXIT

source bench/lib.sh
need_centrifugo

# Runs samvad-load against the system started last.
load() {
  $PIN_LOAD ./target/release/samvad-load --system "$KIND" --label "$LABEL" --server "$SERVER" \
    --server-pid "$PID" --transport ws "$@"
}

for system in $SYSTEMS; do
  echo "== $system"
  rm -f "$out"/*-"$system".json "$out"/*-"$system"-*.json
  "start_$system"
  load --out "$out/connect-$system.json" connect -n "$SESSIONS" --rate 200 --users 100 --hold 5
  stop_all
  for i in $(seq "$REPEAT"); do
    for rate in $RATES; do
      "start_$system"
      load --out "$out/chat-$rate-$system-$i.json" \
        chat --pairs "$PAIRS" --rate "$rate" --duration "$DURATION" --drain 10 || true
      stop_all
    done
    for rate in $GROUP_RATES; do
      "start_$system"
      load --out "$out/group-$rate-$system-$i.json" \
        group --groups "$GROUPS_N" --size "$GROUP_SIZE" --rate "$rate" --duration "$DURATION" --drain 10 || true
      stop_all
    done
  done
done

./target/release/samvad-load compare --ours samvad --rate "$COMPARE_RATE" --group-rate 500 \
  --p99-bound-ms "$P99_BOUND_MS" --markdown "$out/compare.md" --plot "$out/compare.svg" \
  "$out"/*.json
{
  echo
  echo "Machine: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); \
ejabberd $(dpkg-query -W -f='${Version}' ejabberd), nats-server $(dpkg-query -W -f='${Version}' nats-server), \
Centrifugo v6.9.1; server pinned: '${PIN_SERVER:-none}', harness pinned: '${PIN_LOAD:-none}'."
} | tee -a "$out/compare.md"
