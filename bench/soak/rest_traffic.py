"""REST side of the soak (bench/soak.sh): until DEADLINE (unix seconds),
two users log in, page their conversation's history, upload a small file
to it and download it back; any answer other than the one expected is
counted and printed, and the script exits non-zero if there was one.

    python3 bench/soak/rest_traffic.py http://127.0.0.1:8080 DEADLINE
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

base, deadline = sys.argv[1], float(sys.argv[2])
errors = 0
rounds = 0


def call(method, path, body=None, token=None, raw=None, content_type=None):
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if raw is not None:
        data = raw
        headers["content-type"] = content_type
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            payload = r.read()
            return r.status, payload
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def expect(what, status, payload, ok=(200, 201)):
    global errors
    if status not in ok:
        errors += 1
        print(f"rest soak: {what}: HTTP {status} {payload[:200]!r}", file=sys.stderr)
        return None
    return json.loads(payload) if payload else None


def account(name):
    status, payload = call("POST", "/v1/register", {"username": name, "password": "soak-password-1"})
    if status not in (200, 201):  # taken: the soak's earlier run
        status, payload = call("POST", "/v1/login", {"username": name, "password": "soak-password-1"})
    return expect(f"account {name}", status, payload)["access_token"]


alice, bob = account("soakresta"), account("soakrestb")
content = os.urandom(2048)
while time.time() < deadline:
    rounds += 1
    for token in (alice, bob):
        status, payload = call("GET", "/v1/conversations/soakresta:soakrestb/messages?limit=50", token=token)
        expect("history page", status, payload)
    status, payload = call("POST", "/v1/files",
                           {"conversation": "soakresta:soakrestb", "size": len(content),
                            "content_type": "application/octet-stream"}, token=alice)
    created = expect("new file", status, payload)
    if created:
        status, payload = call("PUT", created["upload_url"], raw=content,
                               content_type="application/octet-stream")
        if expect("upload", status, payload):
            status, payload = call("POST", f"/v1/files/{created['file_id']}/download-url", {}, token=bob)
            grant = expect("download url", status, payload)
            if grant:
                status, payload = call("GET", grant["url"])
                if status != 200 or payload != content:
                    errors += 1
                    print(f"rest soak: download: HTTP {status}, {len(payload)} bytes", file=sys.stderr)
    # A login now and then, as clients whose tokens expired do.
    if rounds % 10 == 0:
        alice, bob = account("soakresta"), account("soakrestb")
    time.sleep(2)
print(f"rest soak: {rounds} rounds, {errors} unexpected answers")
sys.exit(1 if errors else 0)
