#!/usr/bin/env bash
# A bounded load test of `herald serve` with wrk (Debian's), as CI runs it:
#
#   scripts/load-serve.sh                 # 20 s, 32 connections
#   DURATION=60 CONNECTIONS=64 scripts/load-serve.sh
#
# Then two attacks of issue 24, against the same server, with Python:
#
# - a mailbox provider: 1,000 valid one-click POSTs for 1,000 people from
#   one address (127.0.0.1, no X-Forwarded-For), 16 at a time, with 100
#   bad-token POSTs from that address among them. Every valid one must
#   get 200 and be in the journal; the bad ones must get 429 once the
#   address's budget (15 at once, 1 a second) is spent.
# - slow connections: 2,000 from 127.0.0.1 that send half a request and
#   wait (and come back 1 s after being closed), for 20 s; meanwhile a
#   visitor from 127.0.0.2 unsubscribes one person after another (up to
#   1,000). Every one must get 200 and be in the journal, and the p99 of
#   their answers must be under 1 s.
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
    for i in range(4000):
        f.write(f"reader{i}@example.org,Reader{i}\n")
PY
"$HERALD" send "$repo/examples/inside-open-infrastructure-example.md" --subscribers list.csv \
    --config "$repo/herald.example.yaml" --dry-run --quiet \
    --set "unsubscribe_url=http://$addr/unsubscribe" >/dev/null
# Each message's one-click link, as path?query, with its address: the
# first 2,000 for wrk, the next 1,000 for the provider, the last 1,000 for
# the visitor during the slow connections.
python3 - <<'PY'
import email, glob, re
links = []
for p in sorted(glob.glob("outbox/*/*.eml")):
    m = email.message_from_binary_file(open(p, "rb"))
    link = re.search(r"<https?://[^/]+(/[^>]+)>", m["List-Unsubscribe"]).group(1)
    to = re.search(r"<([^>]+)>|(\S+@\S+)", m["To"])
    links.append((link, (to.group(1) or to.group(2)).lower()))
links.sort(key=lambda x: int(re.search(r"reader(\d+)@", x[1]).group(1)))
with open("links.txt", "w") as out:
    for link, _ in links[:2000]:
        out.write(link + "\n")
for name, part in (("provider.txt", links[2000:3000]), ("visitor.txt", links[3000:4000])):
    with open(name, "w") as out:
        for link, to in part:
            out.write(f"{link} {to}\n")
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
# --- A provider's one-click POSTs from one address, bad tokens among them.
cat >provider.py <<'PY'
import concurrent.futures, http.client, sys, time
host, port = sys.argv[1].rsplit(":", 1)
rows = [l.split() for l in open("provider.txt")]
def post(path, bad):
    if bad:
        # The same link with its token changed: fails the check.
        path = path.replace("token=", "token=A", 1)
    start = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=30, source_address=("127.0.0.1", 0))
        c.request("POST", path, body="List-Unsubscribe=One-Click",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse(); r.read(); c.close()
        status = r.status
    except Exception:
        status = 0
    return bad, status, time.monotonic() - start, time.monotonic()
jobs = []
for i, (path, _) in enumerate(rows):
    jobs.append((path, False))
    if i % 10 == 5:
        jobs.append((path, True))
t0 = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    results = list(pool.map(lambda j: post(*j), jobs))
elapsed = time.monotonic() - t0
good = [r for r in results if not r[0]]
bad = sorted((r for r in results if r[0]), key=lambda r: r[3])
ok = sum(1 for r in good if r[1] == 200)
lost = len(good) - ok
bad400 = sum(1 for r in bad if r[1] == 400)
bad429 = sum(1 for r in bad if r[1] == 429)
other = len(bad) - bad400 - bad429
lat = sorted(r[2] for r in good)
p99 = lat[int(len(lat) * 0.99) - 1]
print(f"PROVIDER valid={len(good)} ok={ok} lost={lost} seconds={elapsed:.2f} p99_ms={p99 * 1000:.0f} "
      f"bad={len(bad)} bad400={bad400} bad429={bad429} badother={other}")
PY
python3 provider.py "$addr" | tee provider.out

# --- 2,000 slow connections from one address, a visitor from another.
cat >slow.py <<'PY'
import asyncio, sys, time
host, port = sys.argv[1].rsplit(":", 1)
WANT, SECONDS = 2000, 20
opened = closed = 0
async def one(stop):
    global opened, closed
    while time.monotonic() < stop:
        try:
            r, w = await asyncio.open_connection(host, int(port), local_addr=("127.0.0.1", 0))
            opened += 1
            w.write(b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\n")
            await w.drain()
            # Wait, a header byte now and then, until the server lets go.
            while time.monotonic() < stop:
                try:
                    if await asyncio.wait_for(r.read(1024), 1.0) == b"":
                        break
                except asyncio.TimeoutError:
                    w.write(b"X")
                    await w.drain()
            w.close()
        except (OSError, ConnectionError):
            pass
        closed += 1
        await asyncio.sleep(1.0)
async def main():
    stop = time.monotonic() + SECONDS
    tasks = []
    for _ in range(WANT):
        tasks.append(asyncio.create_task(one(stop)))
        await asyncio.sleep(0.001)
    open("slow.ready", "w").close()
    await asyncio.gather(*tasks)
    print(f"SLOW connections={WANT} seconds={SECONDS} opened={opened}")
asyncio.run(main())
PY
cat >visitor.py <<'PY'
import http.client, os, sys, time
host, port = sys.argv[1].rsplit(":", 1)
rows = [l.split() for l in open("visitor.txt")]
while not os.path.exists("slow.ready"):
    time.sleep(0.05)
stop = time.monotonic() + 15
lat, statuses, done = [], {}, []
for path, to in rows:
    if time.monotonic() > stop:
        break
    start = time.monotonic()
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=30, source_address=("127.0.0.2", 0))
        c.request("POST", path, body="List-Unsubscribe=One-Click",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse(); r.read(); c.close()
        status = r.status
    except Exception:
        status = 0
    lat.append(time.monotonic() - start)
    statuses[status] = statuses.get(status, 0) + 1
    if status == 200:
        done.append(to)
    # Spread over the attack rather than over in its first seconds.
    time.sleep(0.01)
open("visitor.done", "w").write("\n".join(done) + "\n")
lat.sort()
p = lambda q: lat[max(0, int(len(lat) * q) - 1)] * 1000
print(f"VISITOR requests={len(lat)} ok={statuses.get(200, 0)} lost={len(lat) - statuses.get(200, 0)} "
      f"p50_ms={p(0.5):.0f} p99_ms={p(0.99):.0f} max_ms={lat[-1] * 1000:.0f}")
PY
rm -f slow.ready
python3 slow.py "$addr" >slow.out &
slow_pid=$!
python3 visitor.py "$addr" | tee visitor.out
wait "$slow_pid"
cat slow.out

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
echo "unsubscribed in the journal: $suppressed (wrk's $(wc -l <links.txt) links, the provider's 1,000, the visitor's)"
echo "server's own count: $(cat serve.out)"

# Every valid POST of the provider and of the visitor is in the journal.
HERALD_UNSUBSCRIBE_SECRET= "$HERALD" suppress list --json >list.json
python3 - <<'PY' >recorded.out
import json
on = {p["email"] for p in json.load(open("list.json"))}
provider = [l.split()[1] for l in open("provider.txt")]
visitor = [l for l in open("visitor.done").read().split()]
print(f"RECORDED provider={sum(1 for e in provider if e in on)}/{len(provider)} "
      f"visitor={sum(1 for e in visitor if e in on)}/{len(visitor)}")
PY
cat recorded.out
num() { sed -n "s/.*[ ]$2=\([0-9.]*\).*/\1/p" "$1"; }

fail=0
[[ $(num provider.out lost) == 0 ]] || { echo "FAIL: $(num provider.out lost) valid one-click POSTs from one address were not honoured" >&2; fail=1; }
[[ $(num provider.out badother) == 0 ]] || { echo "FAIL: bad-token POSTs got answers other than 400 and 429" >&2; fail=1; }
# The budget: 15 at once and one a second; the rest of the 100 get 429.
awk -v b="$(num provider.out bad400)" -v s="$(num provider.out seconds)" 'BEGIN { exit !(b <= 15 + s + 1) }' \
    || { echo "FAIL: $(num provider.out bad400) bad-token POSTs were answered past the budget" >&2; fail=1; }
(( $(num provider.out bad429) > 0 )) || { echo "FAIL: no bad-token POST got 429" >&2; fail=1; }
grep -q "provider=1000/1000" recorded.out || { echo "FAIL: not every provider unsubscribe is in the journal" >&2; fail=1; }
[[ $(num visitor.out lost) == 0 ]] || { echo "FAIL: $(num visitor.out lost) of the visitor's unsubscribes failed during the slow connections" >&2; fail=1; }
(( $(num visitor.out requests) > 0 )) || { echo "FAIL: the visitor made no request" >&2; fail=1; }
v=$(sed -n 's/.*visitor=\([0-9]*\)\/\([0-9]*\).*/\1 \2/p' recorded.out)
[[ ${v% *} == "${v#* }" ]] || { echo "FAIL: not every visitor unsubscribe is in the journal ($v)" >&2; fail=1; }
(( $(num visitor.out p99_ms) < 1000 )) || { echo "FAIL: the visitor's p99 was $(num visitor.out p99_ms) ms during the slow connections (want under 1,000)" >&2; fail=1; }
((transport == 0)) || { echo "FAIL: $transport transport errors" >&2; fail=1; }
((other == 0)) || { echo "FAIL: $other answers other than 200 and 429" >&2; fail=1; }
((suppressed > 0)) || { echo "FAIL: no unsubscribe reached the journal" >&2; fail=1; }
exit $fail
