# Helpers the bench scripts share (sourced, not run). They expect `pids`
# (an array the caller's cleanup kills) and `work` (a scratch directory)
# to exist. PIN_SERVER (e.g. `taskset -c 0`) prefixes every server's
# command; SAMVAD_ARGS is added to every `samvad serve`; SAMVAD_BIN is
# the server binary (the release build by default).
PIN_SERVER=${PIN_SERVER:-}
SAMVAD_ARGS=${SAMVAD_ARGS:-}
SAMVAD_BIN=${SAMVAD_BIN:-./target/release/samvad}
# The key bench/peers/centrifugo.json signs connection tokens with.
export CENTRIFUGO_KEY=samvad-load-centrifugo-key

# What a bench script of Samvad alone starts with: the release binaries
# built, a scratch directory `work` and the `pids` to stop, both cleaned
# up on exit, and bench/out for the reports.
start_bench() {
  cargo build --release -q -p samvad -p samvad-load
  work=$(mktemp -d)
  pids=()
  trap 'stop_all; rm -rf "$work"' EXIT
  mkdir -p bench/out
}

# Builds the server with glibc's malloc (the `system-allocator` feature:
# heaptrack hooks malloc, and the release binary allocates with mimalloc)
# as $work/samvad-system-allocator, then the release binary as it was.
build_system_allocator() {
  cargo build --release -q -p samvad --features system-allocator
  cp target/release/samvad "$work/samvad-system-allocator"
  cargo build --release -q -p samvad
}

# Stops every server started so far.
stop_all() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  # ejabberd's VM runs under su, outside the pids we hold; an overloaded
  # one takes a while to go, and its node name must be free again.
  pkill -9 -f "beam.smp.*ejbench" 2>/dev/null || true
  for _ in $(seq 100); do pgrep -f "beam.smp.*ejbench" >/dev/null || break; sleep 0.2; done
  pids=()
  sleep 1
}

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until URL answers over HTTP (up to a minute).
wait_http() { for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "$1 did not come up" >&2; return 1; }

# Starts a fresh release `samvad serve` with its data and log in DIR and
# any further arguments; sets PID and SERVER (its plain-HTTP URL).
serve_fresh() {
  local dir=$1; shift
  rm -rf "$dir"; mkdir -p "$dir"
  local http; http=$(free_port)
  $PIN_SERVER "$SAMVAD_BIN" serve --data-dir "$dir/db" --listen "127.0.0.1:$(free_port)" \
    --http-listen "127.0.0.1:$http" "$@" >"$dir/log" 2>&1 &
  pids+=($!); PID=$!; SERVER="http://127.0.0.1:$http"
  wait_http "$SERVER/healthz"
}

# Starts one system fresh; sets SERVER and PID for samvad-load.
start_samvad() {
  serve_fresh "$work/samvad" $SAMVAD_ARGS "$@"
  KIND=samvad; LABEL=samvad/ws
}
start_samvad_buffered() {
  start_samvad --durability buffer
  LABEL=samvad-buffered/ws
}
start_ejabberd() {
  rm -rf "$work/ejabberd"; mkdir -p "$work/ejabberd"/{cfg,spool,logs}
  local port; port=$(free_port)
  sed "s/@PORT@/$port/" bench/peers/ejabberd.yml >"$work/ejabberd/cfg/ejabberd.yml"
  printf 'ERLANG_NODE=ejbench%s@localhost\n' "$port" >"$work/ejabberd/cfg/ejabberdctl.cfg"
  id ejabberd >/dev/null 2>&1 && chown -R ejabberd "$work/ejabberd"
  $PIN_SERVER ejabberdctl --config-dir "$work/ejabberd/cfg" --spool "$work/ejabberd/spool" \
    --logs "$work/ejabberd/logs" foreground >"$work/ejabberd/fg.log" 2>&1 &
  pids+=($!)
  SERVER="http://127.0.0.1:$port"; KIND=ejabberd; LABEL=ejabberd/ws
  wait_http "$SERVER/api/status" || { cat "$work/ejabberd/fg.log" >&2; return 1; }
  PID=$(pgrep -f "beam.smp.*ejbench$port" | head -1)
}
start_nats() {
  local port ws; port=$(free_port); ws=$(free_port)
  printf 'listen: 127.0.0.1:%s\nwebsocket { listen: "127.0.0.1:%s", no_tls: true }\nmax_payload: 1MB\n' \
    "$port" "$ws" >"$work/nats.conf"
  $PIN_SERVER nats-server -c "$work/nats.conf" >"$work/nats.log" 2>&1 &
  pids+=($!); PID=$!; SERVER="ws://127.0.0.1:$ws"; KIND=nats; LABEL=nats/ws
  for _ in $(seq 100); do grep -q "Server is ready" "$work/nats.log" && return 0; sleep 0.1; done
  cat "$work/nats.log" >&2; return 1
}

start_centrifugo() {
  rm -rf "$work/centrifugo"; mkdir -p "$work/centrifugo"
  local port; port=$(free_port)
  sed "s/\"port\": 8000/\"port\": $port/" bench/peers/centrifugo.json >"$work/centrifugo/config.json"
  $PIN_SERVER centrifugo --config "$work/centrifugo/config.json" >"$work/centrifugo/log" 2>&1 &
  pids+=($!); PID=$!; SERVER="ws://127.0.0.1:$port/connection/websocket"; KIND=centrifugo; LABEL=centrifugo/ws
  wait_http "http://127.0.0.1:$port/health" || { cat "$work/centrifugo/log" >&2; return 1; }
}

# Centrifugo from the Go module proxy when it is missing.
need_centrifugo() {
  command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
  export PATH="$PATH:$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
  command -v centrifugo >/dev/null 2>&1 || go install github.com/centrifugal/centrifugo/v6@v6.9.1
}


# Starts one Apache Kafka broker (KRaft, broker and controller in one JVM)
# from the jars scripts/kafka/install.sh fetches, its data in DIR; sets
# KAFKA (its bootstrap address). JVM heap: KAFKA_HEAP (default 1g);
# KAFKA_EXTRA: more server.properties lines, for experiments.
start_kafka() {
  local dir=$1 port cport libs version
  bash scripts/kafka/install.sh
  version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
  libs=${KAFKA_LIBS:-$HOME/.cache/samvad/kafka-$version/libs}
  port=$(free_port); cport=$(free_port)
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
${KAFKA_EXTRA:-}
PROPS
  printf 'Configuration:\n  Appenders:\n    Console:\n      name: E\n      target: SYSTEM_ERR\n      PatternLayout:\n        pattern: "[%%d] %%p %%m (%%c)%%n"\n  Loggers:\n    Root:\n      level: WARN\n      AppenderRef:\n        - ref: E\n' >"$dir/log4j2.yaml"
  local java=(java "-Dlog4j2.configurationFile=$dir/log4j2.yaml" -cp "$libs/*")
  "${java[@]}" kafka.tools.StorageTool format -t "$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
    -c "$dir/server.properties" >/dev/null 2>&1
  $PIN_SERVER "${java[@]}" "-Xmx${KAFKA_HEAP:-1g}" -XX:+UseG1GC kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  KAFKA=127.0.0.1:$port
}
