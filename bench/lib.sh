# Helpers the bench scripts share (sourced, not run). They expect `pids`
# (an array the caller's cleanup kills) to exist.

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
  ./target/release/samvad serve --data-dir "$dir/db" --listen "127.0.0.1:$(free_port)" \
    --http-listen "127.0.0.1:$http" "$@" >"$dir/log" 2>&1 &
  pids+=($!); PID=$!; SERVER="http://127.0.0.1:$http"
  wait_http "$SERVER/healthz"
}
