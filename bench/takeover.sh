#!/usr/bin/env bash
# How long a store with an empty disk takes to take over a partition that
# holds TAKEOVER_MESSAGES messages (default 1 000 000): server/tests/e2e/takeover.rs,
# release build, one broker.
#
#   bash bench/takeover.sh
#   TAKEOVER_MESSAGES=100000 bash bench/takeover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
bash scripts/kafka/install.sh
CLUSTER_LOG=${CLUSTER_LOG:-warn,samvad_store::role=info} \
  cargo nextest run --release -p samvad --test e2e -E 'test(/^takeover::/)' --run-ignored only --no-capture \
  2>&1 | grep --line-buffered -E '^takeover|restored from the changelog|PASS|FAIL|panicked'
