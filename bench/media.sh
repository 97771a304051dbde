#!/usr/bin/env bash
# The SFU side by side with Janus (Debian's janus, videoroom plugin), in one
# run: for each room shape, a fresh `samvad serve` and a fresh Janus, and
# `samvad-load media --janus …` drives the same synthetic publishers and
# subscribers through both, counting on the receiving side.
#
#   bash bench/media.sh                        # the shapes below, 10 s each
#   SHAPES="4x3+6" DURATION=5 bash bench/media.sh
#
# Output: bench/out/media/<shape>.json (both reports and the ratios), and
# the table of ratios on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
SHAPES=${SHAPES:-"2x2+4 4x3+6 10x2+8"}
DURATION=${DURATION:-10}
TRANSPORT=${TRANSPORT:-quic}

if ! command -v janus >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq janus >/dev/null
fi
cargo build --release -q -p samvad -p samvad-load
out=bench/out/media
mkdir -p "$out"
work=$(mktemp -d)
pids=()
trap 'stop_all; rm -rf "$work"' EXIT

source bench/lib.sh
start_janus() {
  rm -rf "$work/janus"; mkdir -p "$work/janus"
  local port; port=$(free_port)
  for f in bench/peers/janus/*.jcfg; do
    sed -e "s|@DIR@|$work/janus|" -e "s|@PORT@|$port|" "$f" >"$work/janus/$(basename "$f")"
  done
  janus --configs-folder "$work/janus" --config "$work/janus/janus.jcfg" >"$work/janus/log" 2>&1 &
  pids+=($!); JANUS_PID=$!; JANUS="http://127.0.0.1:$port/janus"
  for _ in $(seq 100); do curl -s -o /dev/null -X POST "$JANUS" -d '{}' && return 0; sleep 0.1; done
  echo "janus did not come up" >&2; cat "$work/janus/log" >&2; return 1
}

for shape in $SHAPES; do
  rooms=${shape%%x*}; rest=${shape#*x}; publishers=${rest%%+*}; subscribers=${rest#*+}
  serve_fresh "$work/samvad"
  start_janus
  ./target/release/samvad-load --server "$SERVER" --transport "$TRANSPORT" --out "$out/$shape.json" \
    media --rooms "$rooms" --publishers "$publishers" --subscribers "$subscribers" \
    --duration "$DURATION" --janus "$JANUS" --janus-pid "$JANUS_PID"
  stop_all
done
