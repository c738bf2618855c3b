#!/bin/bash
# The measurement of issue 30 (`cargo build --release && bash benches/poll_flood.sh`): one
# client fills a room with 1000 messages of 60 KiB, then sends four GET /api/v1/poll?limit=1000
# naming the room 32 times, at once. Prints each answer, a /healthz timed meanwhile, and the
# server's RSS before and at its peak. The server listens on 127.0.0.1 only, in a directory of
# its own, and is stopped by its pid. BIN=… measures another build.
set -euo pipefail
BIN=${BIN:-"$(cd "$(dirname "$0")/.." && pwd)/target/release/lookout"}
DIR=$(mktemp -d)
LOOKOUT_LIMITS__MESSAGES_PER_SECOND=100000 LOOKOUT_LIMITS__MESSAGE_BURST=100000 \
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$DIR/data" > "$DIR/out" 2>/dev/null &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$DIR/out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o "listening on https://[0-9.:]*" "$DIR/out" | sed 's|listening on https://||')
TOKEN=$("$BIN" token --data-dir "$DIR/data" --sub hog --org acme --role service --ttl 1h)
CA="$DIR/data/tls/ca.pem"
ROOM=/topic/org/acme/room/ops
python3 - "$ADDR" "$TOKEN" "$CA" "$ROOM" <<'PY'
import sys, json, ssl, http.client
addr, token, ca, room = sys.argv[1:]
host, port = addr.rsplit(":", 1)
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx)
pad = "x" * (60 * 1024)
for n in range(1000):
    body = json.dumps({"channel": room, "data": {"n": n, "pad": pad}})
    c.request("POST", "/api/v1/publish", body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
BEFORE=$(rss)
CH=$(python3 -c "print(','.join(['$ROOM']*32))")
URL="https://127.0.0.1:${ADDR##*:}/api/v1/poll?limit=1000&timeout=1&channels=$CH"
START=$(date +%s.%N)
POLLS=()
for i in 1 2 3 4; do
  curl -s --cacert "$CA" -H "Authorization: Bearer $TOKEN" -o "$DIR/poll$i" -w "poll: %{http_code}, %{size_download} bytes in %{time_total} s\n" "$URL" &
  POLLS+=($!)
done
PEAK=$BEFORE
# Another client meanwhile: how long /healthz takes while the polls run.
(sleep 0.3; curl -s --cacert "$CA" -o /dev/null -w "healthz during the polls: %{http_code} in %{time_total} s\n" "https://127.0.0.1:${ADDR##*:}/healthz") &
POLLS+=($!)
running() { for p in "${POLLS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while running; do R=$(rss); [ "$R" -gt "$PEAK" ] && PEAK=$R; sleep 0.05; done
wait "${POLLS[@]}"
END=$(date +%s.%N)
echo "RSS before polls: ${BEFORE} KiB; peak during: ${PEAK} KiB; grew by $((PEAK - BEFORE)) KiB; polls took $(echo "$END - $START" | bc) s"
