#!/usr/bin/env bash
# A bounded load test of `herald serve` with wrk (Debian's), as CI runs it:
#
#   scripts/load-serve.sh                 # 20 s, 32 connections
#   DURATION=60 CONNECTIONS=64 scripts/load-serve.sh
#
# The server answers real unsubscribe links (from a dry run of 2,000
# recipients) on 127.0.0.1: three GETs of the page for every one-click POST,
# from 5,000 visitors named by X-Forwarded-For as the HTTPS proxy names
# them, each with the default budget of 60 requests a minute. Prints
# requests per second, p50/p99 latency, the answers by status, transport
# errors and the server's peak memory (VmHWM).
#
# Fails when any request errs (connection, read, write, timeout) or gets
# an answer other than 200 or 429 (over a visitor's budget), when the
# server does not stop cleanly on SIGTERM, or when the journal does not
# hold every address that got a 200 to its POST. No timing is asserted:
# this machine is shared and noisy.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-32}
HERALD=${HERALD:-$repo/target/release/herald}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet

work=$(mktemp -d)
serve_pid=
cleanup() { [[ -n $serve_pid ]] && kill "$serve_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
export HERALD_UNSUBSCRIBE_SECRET=load-test-secret

"$HERALD" serve --listen 127.0.0.1:0 --config "$repo/herald.example.yaml" \
    >serve.out 2>serve.err &
serve_pid=$!
for _ in $(seq 100); do
    grep -q "listening on http://" serve.err 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' serve.err | head -1)
[[ -n $addr ]] || { cat serve.err >&2; echo "herald serve did not start" >&2; exit 1; }

python3 - <<'PY'
with open("list.csv", "w") as f:
    f.write("email,first_name\n")
    for i in range(2000):
        f.write(f"reader{i}@example.org,Reader{i}\n")
PY
"$HERALD" send "$repo/examples/inside-open-infrastructure-example.md" --subscribers list.csv \
    --config "$repo/herald.example.yaml" --dry-run --quiet \
    --set "unsubscribe_url=http://$addr/unsubscribe" >/dev/null
# Each message's one-click link, as path?query.
python3 - <<'PY'
import email, glob, re
with open("links.txt", "w") as out:
    for p in sorted(glob.glob("outbox/*/*.eml")):
        m = email.message_from_binary_file(open(p, "rb"))
        link = re.search(r"<https?://[^/]+(/[^>]+)>", m["List-Unsubscribe"]).group(1)
        out.write(link + "\n")
PY

cat >mix.lua <<'LUA'
-- Three GETs to one POST, over every link; the visitor (X-Forwarded-For)
-- changes with each request, among 5,000.
local links = {}
for line in io.lines("links.txt") do links[#links + 1] = line end
local threads = {}
local n = 0
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  statuses = {}
  n = id * 1000003
end
function request()
  n = n + 1
  local link = links[(n % #links) + 1]
  local visitor = n % 5000
  local headers = { ["X-Forwarded-For"] = "10.0." .. math.floor(visitor / 250) .. "." .. (visitor % 250) }
  if n % 4 == 0 then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return wrk.format("POST", link, headers, "List-Unsubscribe=One-Click")
  end
  return wrk.format("GET", link, headers)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("statuses")) do
      all[status] = (all[status] or 0) + count
    end
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d seconds=%.2f p50_ms=%.2f p99_ms=%.2f transport_errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout))
  for status, count in pairs(all) do
    io.write(string.format("STATUS %d %d\n", status, count))
  end
end
LUA

echo "wrk: ${DURATION}s, $CONNECTIONS connections, GET:POST 3:1, against herald serve on $addr"
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s mix.lua "http://$addr" >wrk.out
cat wrk.out
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")
kill -TERM "$serve_pid"
code=0
wait "$serve_pid" || code=$?
serve_pid=
[[ $code == 0 ]] || { cat serve.err >&2; echo "herald serve exited with $code after SIGTERM" >&2; exit 1; }

result=$(grep '^RESULT' wrk.out)
requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$result")
seconds=$(sed 's/.*seconds=\([0-9.]*\).*/\1/' <<<"$result")
transport=$(sed 's/.*transport_errors=\([0-9]*\).*/\1/' <<<"$result")
ok=$(awk '$1 == "STATUS" && $2 == 200 {print $3}' wrk.out)
limited=$(awk '$1 == "STATUS" && $2 == 429 {print $3}' wrk.out)
other=$(awk '$1 == "STATUS" && $2 != 200 && $2 != 429 {s += $3} END {print s + 0}' wrk.out)
suppressed=$(HERALD_UNSUBSCRIBE_SECRET= "$HERALD" suppress list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')

awk -v r="$requests" -v s="$seconds" 'BEGIN { printf "requests: %d in %ss = %.0f req/s\n", r, s, r / s }'
echo "$result" | sed 's/.*p50_ms=\([0-9.]*\) p99_ms=\([0-9.]*\).*/latency: p50 \1 ms, p99 \2 ms/'
echo "answers: ${ok:-0} x 200, ${limited:-0} x 429 (over a visitor's budget), $other other"
echo "transport errors: $transport"
echo "server peak memory (VmHWM): $((hwm_kb / 1024)) MB"
echo "unsubscribed in the journal: $suppressed (of $(wc -l <links.txt) links)"
echo "server's own count: $(cat serve.out)"

fail=0
((transport == 0)) || { echo "FAIL: $transport transport errors" >&2; fail=1; }
((other == 0)) || { echo "FAIL: $other answers other than 200 and 429" >&2; fail=1; }
((suppressed > 0)) || { echo "FAIL: no unsubscribe reached the journal" >&2; fail=1; }
exit $fail
