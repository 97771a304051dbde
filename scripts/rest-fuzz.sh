#!/usr/bin/env bash
# Fuzzes every REST operation of a running `samvad serve` from its own
# /openapi.json with schemathesis (PyPI): generated and mutated requests,
# each answer checked for a 5xx, an undocumented status, a wrong content
# type or a body that breaks its schema.
#
#   scripts/rest-fuzz.sh [BINARY] [EXAMPLES PER OPERATION]
#
# The suite runs it with 25 examples per operation; bench/RESULTS.md has
# a long run. A real account, group and file exist before it starts (so
# path parameters name something), and an SMS sink stands in for the
# operator's gateway, so phone verification is exercised too.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/samvad}
examples=${2:-25}
bin=$(realpath "$bin")

venv=${SAMVAD_CACHE:-$HOME/.cache/samvad}/schemathesis
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The SMS gateway: takes every message.
sms_port=$(free_port)
python3 - "$sms_port" <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
pids+=($!)

http_port=$(free_port)
quic_port=$(free_port)
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$quic_port" \
  --http-listen "127.0.0.1:$http_port" --durability buffer \
  --registrations-per-address 1000000 --login-failures-per-address 1000000 \
  --login-failures-per-account 1000000 \
  --sms-webhook "http://127.0.0.1:$sms_port/" --sms-webhook-secret fuzz \
  --ready-file "$work/ready" >"$work/serve.log" 2>&1 &
pids+=($!)
base="http://127.0.0.1:$http_port"
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { cat "$work/serve.log"; echo "samvad serve did not start"; exit 1; }

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
post() { curl -sf -X POST "$base$1" -H 'content-type: application/json' "${@:3}" -d "$2"; }
for u in fuzzer other; do
  post /v1/register "{\"username\":\"$u\",\"password\":\"$u-password-1\"}" >/dev/null
done
token=$(post /v1/login '{"username":"fuzzer","password":"fuzzer-password-1"}' | json "['access_token']")
auth=(-H "authorization: Bearer $token")
group=$(post /v1/groups '{"name":"Fuzz room","members":["other"]}' "${auth[@]}" | json "['id']")
file=$(post /v1/files '{"conversation":"fuzzer:other","size":3,"content_type":"text/plain"}' "${auth[@]}" | json "['file_id']")

cat >"$work/schemathesis.toml" <<TOML
[parameters]
"path.id" = "$group"
"path.user" = "other"
"path.chatid" = "fuzzer:other"

[[operations]]
include-path-regex = "^/v1/files/"
parameters = { "path.id" = "$file" }
TOML

# /metrics is Prometheus text, not JSON, and has no schema to conform to.
"$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
  --url "$base" -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing --max-examples "$examples" --workers 2 \
  --exclude-path /metrics --seed 17 --warnings off
