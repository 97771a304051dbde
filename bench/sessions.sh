#!/usr/bin/env bash
# Marginal server memory per idle session, per transport, on a fresh
# `samvad serve` each: (RSS with all N up − RSS with half up) / (N/2), as
# `samvad-load connect` reports it. With HEAP=1, also where the bytes go:
# heaptrack records a server holding 3 000 sessions of each transport and
# is killed while they are held, so what is still allocated is what the
# sessions hold; the top entries per session are printed (grouped by the
# innermost frame in quinn, rustls, ring, tokio or Samvad).
#
#   bash bench/sessions.sh                       # 15 000 per transport
#   N=6000 RATE=500 TRANSPORTS="quic wt" bash bench/sessions.sh
#   HEAP=1 TRANSPORTS=quic bash bench/sessions.sh  # needs heaptrack (Debian)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-15000}
RATE=${RATE:-1000}
TRANSPORTS=${TRANSPORTS:-"ws quic wt"}
source bench/lib.sh
start_bench

for t in $TRANSPORTS; do
  serve_fresh "$work/serve"
  ./target/release/samvad-load --server "$SERVER" --transport "$t" --out "bench/out/sessions-$t.json" \
    connect -n "$N" --rate "$RATE" --hold 3 >"$work/load.log" 2>&1
  python3 - "bench/out/sessions-$t.json" "$t" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:>4}: {r['connected']} up, {r['failed']} failed, {r['retried']} retried; "
      f"{r['server_bytes_per_session']} B marginal, {r['server_bytes_per_session_average']} B average per session")
PY
  stop_all
done

[ "${HEAP:-0}" = 1 ] || exit 0
command -v heaptrack >/dev/null || { echo "HEAP=1 needs heaptrack (apt-get install heaptrack)" >&2; exit 1; }
held=3000
build_system_allocator
for t in $TRANSPORTS; do
  dir="$work/heap-$t"; mkdir -p "$dir"
  http=$(free_port)
  heaptrack -o "$dir/heap" "$work/samvad-system-allocator" serve --data-dir "$dir/db" \
    --listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:$http" >"$dir/log" 2>&1 &
  wait_http "http://127.0.0.1:$http/healthz"
  ./target/release/samvad-load --server "http://127.0.0.1:$http" --transport "$t" \
    connect -n "$held" --rate 500 --hold 30 >"$dir/load.log" 2>&1 &
  load=$!
  # All are up after about 6 s at 500/s; kill the server while they are held.
  sleep 15
  pkill -9 -f "^$work/samvad-system-allocator serve --data-dir $dir/db" || true
  sleep 3; wait "$load" 2>/dev/null || true
  heaptrack_print "$dir/heap.zst" --flamegraph-cost-type leaked -F "$dir/folded" >/dev/null 2>&1
  echo "== $t: heap still allocated per session (top 20)"
  python3 - "$dir/folded" "$held" <<'PY'
import collections, re, sys
per, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(' ')
    n = int(n); total += n
    frames = stack.split(';')
    key = next((f for f in reversed(frames)
                if re.search(r'(quinn|rustls|ring|tokio|samvad|tungstenite|hyper|axum)', f)), frames[-1])
    per[re.sub(r'::h[0-9a-f]{16}', '', key)[:120]] += n
held = int(sys.argv[2])
print(f"{total / held:8.0f} B in all")
for k, v in per.most_common(20):
    print(f"{v / held:8.0f}  {k}")
PY
done
