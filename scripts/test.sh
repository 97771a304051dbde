#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need
# (Chromium, the web client's npm packages), builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Chromium (browser tests), redis-server (cluster tests),
# nats-server and ejabberd (the harness's side-by-side clients), janus (its
# media comparison).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v ejabberdctl >/dev/null 2>&1 || missing+=(ejabberd)
command -v janus >/dev/null 2>&1 || missing+=(janus)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# The test runner: a fresh machine has cargo but not cargo-nextest.
if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
# Apache Kafka (KRaft) for the cluster tests: its jars from Maven Central,
# cached in ~/.cache/samvad; the tests start brokers with the machine's Java.
bash scripts/kafka/install.sh
# Centrifugo, the harness's main yardstick (its client is tested against it).
# The machine's Go lives in /usr/local/go, which a bare environment may
# not have on its PATH.
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
export PATH="$PATH:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
if ! command -v centrifugo >/dev/null 2>&1; then
  go install github.com/centrifugal/centrifugo/v6@v6.9.1
fi
# npm: on PATH, or the copy that ships with the machine's Node.js.
if command -v npm >/dev/null 2>&1; then NPM=(npm); else NPM=(node /usr/lib/node_modules/npm/bin/npm-cli.js); fi

# The web app and its SDK: the protocol layer generated from the .proto
# (buf + protoc-gen-es), type-checked, bundled by Vite into web/dist, which
# the server embeds. Both outputs are committed and must match the sources.
(cd web && "${NPM[@]}" ci --no-audit --no-fund && "${NPM[@]}" run gen && "${NPM[@]}" run build)
git diff --exit-code web/sdk/gen web/dist || {
  echo "web/sdk/gen or web/dist is stale: run 'npm run gen && npm run build' in web/ and commit"; exit 1; }

# Architecture invariant: the core does no I/O. Its dependency tree must
# hold no runtime, socket, disk, broker or HTTP crate.
io_crates='^(tokio|mio|socket2|fjall|lsm-tree|redis|rdkafka|axum|hyper|reqwest|quinn|str0m)$'
if cargo tree -p samvad-core -e normal --prefix none | awk '{print $1}' | grep -E "$io_crates"; then
  echo "samvad-core depends on the I/O crates above: move that code to a driver crate"; exit 1
fi

# Only the cluster's wiring builds the Kafka client; the REST API and the
# SFU are free of the session transports (no QUIC, no broker under them).
for crate in samvad-api samvad-media samvad-edge samvad-router samvad-store samvad-push; do
  if cargo tree -p "$crate" -e normal --prefix none | awk '{print $1}' | grep -E '^rdkafka$'; then
    echo "$crate builds rdkafka: only the samvad binary may (samvad-bus's kafka feature)"; exit 1
  fi
done
for crate in samvad-api samvad-media; do
  if cargo tree -p "$crate" -e normal --prefix none | awk '{print $1}' | grep -E '^(quinn|wtransport|samvad-edge)$'; then
    echo "$crate depends on a session transport: it must not"; exit 1
  fi
done

# The server's tests reach it through the native client and the testkit,
# not through the load harness (plots, peers' clients).
if cargo tree -p samvad -e normal,dev --prefix none | awk '{print $1}' | grep -E '^(samvad-load|plotters|quick-xml)$'; then
  echo "the samvad crate's (dev-)dependencies pull in the load harness: use samvad-client"; exit 1
fi

cargo build --workspace
cargo nextest run --workspace --no-fail-fast
# Every REST operation fuzzed from /openapi.json (schemathesis, PyPI).
bash scripts/rest-fuzz.sh target/debug/samvad 25
# The SDK against the Rust side's vectors and a real server, then the app
# in Chromium (screenshots in web/test-results/).
(cd web && SAMVAD_BIN="$PWD/../target/debug/samvad" node --experimental-websocket --test tests/)
