#!/usr/bin/env bash
# The long nemesis run (server/tests/e2e/nemesis.rs with more time and three
# brokers): 2 edges, 2 routers, 3 stores, 3 Kafka brokers (replication 3,
# min.insync.replicas 2) and Redis; 1:1 chats over WebSocket, QUIC and
# WebTransport and a group; every ~3 s a random process of any role, a
# broker, or Redis is killed -9 and started again. Prints the tally (the
# test fails on any acknowledged message lost, repeated or out of order).
#
#   bash bench/nemesis.sh                    # 300 s
#   NEMESIS_SECS=900 NEMESIS_SEED=42 bash bench/nemesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
bash scripts/kafka/install.sh
log=$(mktemp)
NEMESIS_SECS=${NEMESIS_SECS:-300} NEMESIS_BROKERS=${NEMESIS_BROKERS:-3} NEMESIS_PACE_MS=${NEMESIS_PACE_MS:-1} \
NEMESIS_CHATS=${NEMESIS_CHATS:-12} CLUSTER_LOG=${CLUSTER_LOG:-warn,samvad_store::role=info,samvad_bus=info} \
  cargo nextest run --release -p samvad --test e2e -E 'test(/^nemesis::/)' --no-capture >"$log" 2>&1 && ok=1 || ok=0
grep -A1 -E '^nemesis|panicked' "$log"
echo "full log: $log"
[ "$ok" = 1 ]
