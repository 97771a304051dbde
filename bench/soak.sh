#!/usr/bin/env bash
# A soak: SOAK_SECS (default 1800) of mixed traffic against one release
# `samvad serve` (fsync on, as by default), and its RSS, open files, disk
# use and CPU sampled every 10 s into bench/out/soak.csv, plotted to
# bench/out/soak.svg. Retention is set shorter than the soak (delivered
# inbox entries 5 minutes, histories 10) so that the disk's curve can level
# off inside it. The traffic, in rounds of ROUND seconds (default 60), each
# round on the next transport (ws, quic, wt):
#   - 1:1 chat, 50 pairs at 300 msg/s;
#   - 5 groups of 10 at 30 msg/s;
#   - a call: one room, 2 publishers, 2 subscribers (native participants);
#   - every other round, 300 sessions dropping and reconnecting at once, and
#     20 users coming back to a backlog of 100 each;
#   - all along, REST: history pages, a file up and down, logins.
# Users are the same every round (fixed prefixes), as real users would be.
# Every round's reports land in bench/out/soak-*.json; a round whose
# harness reports a loss, or a REST answer that is not the expected one,
# fails the soak.
#
# HEAPTRACK=FILE runs the server under heaptrack, its profile written to
# FILE.zst or .gz (`heaptrack_print FILE.zst`): a build with the
# `system-allocator` feature, since heaptrack hooks glibc's malloc and the
# release binary allocates with mimalloc. Its RSS and CPU are heaptrack's
# as much as the server's: take the curves from a run without it.
#
#   bash bench/soak.sh
#   SOAK_SECS=300 ROUND=30 bash bench/soak.sh
#   HEAPTRACK=/tmp/soak-heap SOAK_SECS=600 bash bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECS=${SOAK_SECS:-1800}
ROUND=${ROUND:-60}
source bench/lib.sh
start_bench
ulimit -n "$(ulimit -Hn)"

if [ -n "${HEAPTRACK:-}" ]; then
  build_system_allocator
  SAMVAD_BIN=$work/samvad-system-allocator
  PIN_SERVER="heaptrack -o $HEAPTRACK"
fi

# The harness signs its users up again every round (it reuses the taken
# names), all from one address: the per-address registration limit is
# for strangers, not for it.
start_samvad --inbox-retention-days 0.0035 --history-retention-days 0.007 \
  --registrations-per-address 100000000
server_pid=$PID
# Under heaptrack, $PID is its script's and the server is its child; the
# script waits for the server, so the server is the one to stop.
[ -n "${HEAPTRACK:-}" ] && server_pid=$(pgrep -P "$PID" -f "samvad-system-allocator serve")
deadline=$(( $(date +%s) + SOAK_SECS ))
csv=bench/out/soak.csv
echo "seconds,rss_kib,open_files,disk_bytes,cpu_seconds" >"$csv"
start=$(date +%s)
tick=$(getconf CLK_TCK)
(
  while kill -0 "$server_pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")
    fds=$(ls "/proc/$server_pid/fd" | wc -l)
    disk=$(du -sb "$work/samvad/db" | cut -f1)
    cpu=$(awk -v t="$tick" '{printf "%.2f", ($14 + $15) / t}' "/proc/$server_pid/stat")
    echo "$(( $(date +%s) - start )),$rss,$fds,$disk,$cpu" >>"$csv"
    sleep 10
  done
) &
sampler=$!

python3 bench/soak/rest_traffic.py "$SERVER" "$deadline" &
rest=$!

load() { ./target/release/samvad-load --server "$SERVER" "$@"; }
# Lost plus duplicated in a report; "missing" if the run wrote none.
lost() { [ -f "$1" ] || { echo missing; return; }; python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['tally']; print(t['lost'] + t['duplicates'])" "$1"; }
failed=0
round=0
transports=(ws quic wt)
while (( $(date +%s) + ROUND + 15 < deadline )); do
  t=${transports[$(( round % 3 ))]}
  out=bench/out/soak-$round
  jobs=()
  load --transport "$t" --prefix soakchat --out "$out-chat.json" chat --pairs 50 --rate 300 --duration "$ROUND" >/dev/null &
  jobs+=($!)
  load --transport "$t" --prefix soakgroup --out "$out-group.json" group --groups 5 -g 10 --rate 30 --duration "$ROUND" >/dev/null &
  jobs+=($!)
  load --prefix soakcall --out "$out-media.json" media --rooms 1 --publishers 2 --subscribers 2 --duration "$ROUND" >/dev/null &
  jobs+=($!)
  if (( round % 2 == 1 )); then
    sleep $(( ROUND / 3 ))
    load --transport "$t" --prefix soakstorm --out "$out-storm.json" storm -n 300 --rate 300 --users 30 >/dev/null || failed=1
    load --transport "$t" --prefix soakoff --out "$out-offline.json" offline --users 20 --backlog 100 >/dev/null || failed=1
  fi
  for j in "${jobs[@]}"; do wait "$j" || failed=1; done
  for f in "$out-chat.json" "$out-group.json"; do
    n=$(lost "$f"); [ "$n" = 0 ] || { echo "round $round: $f: $n lost or duplicated" >&2; failed=1; }
  done
  echo "round $round ($t) done at $(( $(date +%s) - start )) s: $(tail -1 "$csv")"
  round=$(( round + 1 ))
done
wait "$rest" || failed=1
sleep 10
kill "$sampler" 2>/dev/null || true
if [ -n "${HEAPTRACK:-}" ]; then
  kill "$server_pid"
  wait "$PID" || true
  profile=$HEAPTRACK.zst
  [ -f "$profile" ] || profile=$HEAPTRACK.gz
  heaptrack_print "$profile" >"$HEAPTRACK.txt" 2>/dev/null || true
  echo "heap profile: $profile (summary in $HEAPTRACK.txt)"
fi
./target/release/samvad-load soak-plot "$csv" --out bench/out/soak.svg
echo "samples: $csv; plot: bench/out/soak.svg"
exit "$failed"
