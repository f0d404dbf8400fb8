#!/usr/bin/env bash
# Several senders on one PostgreSQL store, against one sender on the SQLite
# journal, in the same run (these machines are noisy: compare ratios).
#
#   scripts/bench-shared.sh                 # 10,000 recipients
#   N=20000 scripts/bench-shared.sh
#   BASELINE=/path/to/other/herald scripts/bench-shared.sh   # both, side by side
#
# Fast relay: each case sends the example issue to N recipients through the
# same Postfix smtp-sink on 127.0.0.1, 4 connections per sender, no rate:
#   sqlite      1 herald send, journal on disk
#   postgres/1  1 herald send with database_url
#   postgres/2  2 herald send at once on the same campaign and database
#   postgres/3  3 herald send at once
# and prints messages per second for each and its ratio to sqlite (goal:
# postgres/1 at least 0.9x).
#
# Slow relay: what several hosts gain. A relay that takes 100 ms to answer
# each message's DATA (tests/tools/smtp_server.py --delay 0.1), SLOW_N
# recipients (600), 4 connections per sender and a shared `--rate` of
# SLOW_RATE (150/s, above what 3 senders reach: every message still goes
# through the shared rate window in the database). Prints 1 and 3 senders
# and their ratio (goal: at least 2.7x). Then 3 senders with a rate that
# binds (BOUND_RATE, 40/s, on 200 recipients). Rates here are the relay's:
# from the first message it accepted to the last. For each, the most
# messages the relay accepted in any one second against the configured
# rate: the shared rate is exact when that is never above it.
#
# After the table, CPU per message of the fast 1-sender cases: herald's
# (its processes' user+system time), smtp-sink's and, when the PostgreSQL
# server runs on this machine, the server's (its backends and background
# processes), each over the whole case as timed (set-up, import, send).
# On two shared cores a server's CPU per message comes out of the send
# rate, so these say where a PostgreSQL send's time goes beside SQLite's
# (they move less with the machine's load than the rates; a server other
# sessions use at the same time counts their work too).
#
# With BASELINE (another herald binary, e.g. the one of today's main) each
# case runs with both binaries, one after the other, and the figures are
# printed side by side. Last, the database's own rate for claims
# (examples/bench_claims.rs: claim, mark sending, mark sent, with 3
# claimers and no SMTP): the library of this tree, whatever the binaries.
#
# Uses the PostgreSQL server of HERALD_TEST_DATABASE_URL (with
# HERALD_TEST_DATABASE_PASSWORD) when set, else starts a throwaway cluster
# with scripts/pg-cluster.sh and stops it at the end. The machine has few
# cores: senders, PostgreSQL and the sink share them, so more senders on one
# machine show the cost of sharing more than the gain of more hosts; the
# slow relay shows the gain.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
N=${N:-10000}
SLOW_N=${SLOW_N:-600}
SLOW_RATE=${SLOW_RATE:-150}
BOUND_N=${BOUND_N:-200}
BOUND_RATE=${BOUND_RATE:-40}
HERALD=${HERALD:-$repo/target/release/herald}
BASELINE=${BASELINE:-}
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[[ -x $SINK ]] || { echo "needs Postfix's smtp-sink (apt-get install postfix)" >&2; exit 1; }
python3 -c 'import aiosmtpd' 2>/dev/null ||
    { echo "needs aiosmtpd for the slow relay (pip install aiosmtpd, or .venv-ci)" >&2; exit 1; }
# The claims example is this tree's, built here whatever HERALD and
# BASELINE name (binaries of other trees); found where cargo puts it.
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet --bin herald --example bench_claims
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
claims=$target_dir/release/examples/bench_claims
for bin in "$HERALD" ${BASELINE:+"$BASELINE"}; do
    [[ -x $bin ]] || { echo "$bin: no such herald binary" >&2; exit 1; }
done

work=$(mktemp -d)
pids_to_stop=()
own_pg=
cleanup() {
    local p
    for p in "${pids_to_stop[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -n $own_pg ]] && scripts/pg-cluster.sh stop "$own_pg"
    rm -rf "$work"
}
trap cleanup EXIT
if [[ -z ${HERALD_TEST_DATABASE_URL:-} ]]; then
    own_pg=$work/pg
    while IFS='=' read -r name value; do export "$name=$value"; done < <(scripts/pg-cluster.sh start "$own_pg")
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
"$SINK" -u nobody "127.0.0.1:$port" 256 >/dev/null 2>&1 &
sink_pid=$!
pids_to_stop+=($!)
sleep 0.3

make_list() { # count file
    python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("email,first_name\n")
    for i in range(n):
        f.write(f"reader{i}@example{i % 97}.org,Reader{i}\n")
PY
}
make_list "$N" "$work/list.csv"
make_list "$SLOW_N" "$work/slow.csv"
make_list "$BOUND_N" "$work/bound.csv"
export HERALD_UNSUBSCRIBE_SECRET=bench-secret-not-a-real-one
admin=$HERALD_TEST_DATABASE_URL
base=${admin%/*}
psql_admin() { PGPASSWORD=$HERALD_TEST_DATABASE_PASSWORD psql "$admin" -q -v ON_ERROR_STOP=1 "$@"; }

# CPU time in clock ticks: ticks PID... (user+system, plus that of the
# children it has reaped when CHILDREN is set), 0 for a process not there.
tck=$(getconf CLK_TCK)
ticks() {
    local p total=0 f
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -ra f <<<"${f##*) }"
        total=$((total + f[11] + f[12]))
        [[ -n ${CHILDREN:-} ]] && total=$((total + f[13] + f[14]))
    done
    echo "$total"
}
# The server's processes, when it runs on this machine: the postmaster
# (whose reaped children are the backends of a finished send) and its
# background processes (WAL writer, checkpointer...), found as the parent
# of the server's processes it lists.
pg_master=
for p in $(psql_admin -Atc "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()" 2>/dev/null); do
    [[ -r /proc/$p/stat ]] || continue
    read -ra st <<<"$(sed 's/.*) //' "/proc/$p/stat")"
    [[ $(cat "/proc/${st[1]}/comm" 2>/dev/null) == postgres* ]] && pg_master=${st[1]} && break
done
server_ticks() {
    [[ -n $pg_master ]] || { echo 0; return; }
    # The postmaster and its own children's (reaped) time, then each living child.
    echo $(($(CHILDREN=1 ticks "$pg_master") + $(ticks $(pgrep -P "$pg_master" 2>/dev/null))))
}

# One send: binary, senders, database url or "" for SQLite, relay, list,
# then extra flags; prints seconds from the first start to the last end.
run_case() {
    local bin=$1 senders=$2 url=$3 relay=$4 list=$5 pids=() i start
    shift 5
    rm -rf "$work/journal"
    local sink0 herald0 me=$BASHPID
    sink0=$(ticks "$sink_pid")
    herald0=$(CHILDREN=1 ticks "$me")
    start=$(date +%s.%N)
    for i in $(seq "$senders"); do
        HERALD_DATABASE_URL=$url HERALD_DATABASE_PASSWORD=$HERALD_TEST_DATABASE_PASSWORD \
            "$bin" send examples/inside-open-infrastructure-example.md --subscribers "$list" \
            --config herald.example.yaml --smtp "$relay" --connections 4 --yes --journal "$work/journal" \
            --json "$@" >"$work/report-$i.json" 2>"$work/err-$i" &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { echo "sender $((i + 1)) failed:" >&2; cat "$work/err-$((i + 1))" >&2; exit 1; }
    done
    local end
    end=$(date +%s.%N)
    # This shell's reaped children: the senders (and date, seq: nothing much).
    echo "$(($(CHILDREN=1 ticks "$me") - herald0)) $(($(ticks "$sink_pid") - sink0))" >"$work/cpu-last"
    python3 -c "print($end - $start)"
}

sent_in() { # binary, database url or "": how many the campaign's journal says were sent
    HERALD_DATABASE_URL=$2 HERALD_DATABASE_PASSWORD=$HERALD_TEST_DATABASE_PASSWORD \
        "$1" status --journal "$work/journal" --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["campaign"]["counts"]["sent"])'
}

# A case on a database of its own; records "label case seconds [max-per-second]".
db_case() { # label bin senders count relay list [flags...]
    local label=$1 bin=$2 k=$3 count=$4 relay=$5 list=$6 db secs
    shift 6
    db="herald_bench_$$_$RANDOM$RANDOM"
    psql_admin -c "CREATE DATABASE $db"
    local server0
    server0=$(server_ticks)
    secs=$(run_case "$bin" "$k" "$base/$db" "$relay" "$list" "$@")
    # The send's backends end when herald has gone: let the postmaster reap them.
    sleep 0.3
    echo "$(cat "$work/cpu-last") $(($(server_ticks) - server0))" >"$work/cpu-last"
    [[ $(sent_in "$bin" "$base/$db") == "$count" ]] || { echo "$label postgres/$k: not all sent" >&2; exit 1; }
    # Updates of recipient written in place (HOT), on stderr: what the
    # queue index costs the marks (schema v8 measured with it).
    if [[ -n ${SHOW_HOT:-} ]]; then
        echo "$label postgres/$k: recipient updates $(PGPASSWORD=$HERALD_TEST_DATABASE_PASSWORD psql "$base/$db" -Atc \
            "SELECT n_tup_upd || ', HOT ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'recipient'")" >&2
    fi
    # WITH (FORCE) cannot end an autovacuum worker for a role that is not a
    # superuser: retry a few times, then leave it (the cluster is throwaway).
    local try
    for try in 1 2 3 4 5; do
        psql_admin -c "DROP DATABASE $db WITH (FORCE)" >/dev/null 2>&1 && break
        ((try < 5)) && sleep 1 || echo "note: could not drop the bench database $db" >&2
    done
    echo "$secs"
}

# The slow relay, started for one case (its log counts that case only) on
# port $sport; stop_slow_relay stops it.
slow_pid=
slow_relay() { # log file
    sport=$(free_port)
    python3 tests/tools/smtp_server.py --port "$sport" --log "$1" --delay 0.1 --max-seconds 900 >/dev/null 2>&1 &
    slow_pid=$!
    pids_to_stop+=("$slow_pid")
    python3 - "$sport" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        break
    except OSError:
        time.sleep(0.05)
PY
}
stop_slow_relay() { kill "$slow_pid" 2>/dev/null || true; wait "$slow_pid" 2>/dev/null || true; }

# What the relay saw: the most messages it accepted in any one second (a
# sliding window from each acceptance), and its rate from the first
# acceptance to the last (the senders' start-up, the same for 1 and 3, is
# not the relay's to see).
at_relay() { # log file
    python3 - "$1" <<'PY'
import bisect, json, sys
t = sorted(e["time"] for e in map(json.loads, open(sys.argv[1])) if "message_id" in e)
busiest = max((bisect.bisect_left(t, x + 1.0) - i for i, x in enumerate(t)), default=0)
print(busiest, (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else 0)
PY
}

results=$work/results
: >"$results"
record() { echo "$*" >>"$results"; }

echo "fast relay: $N messages, 4 connections per sender, smtp-sink on 127.0.0.1:$port; PostgreSQL at ${admin%%@*}@…"
echo "slow relay: $SLOW_N messages, 100 ms per message, 4 connections per sender, rate $SLOW_RATE/s shared;" \
    "bound: $BOUND_N messages at $BOUND_RATE/s"
labels=(this)
[[ -n $BASELINE ]] && labels+=(baseline)
for label in "${labels[@]}"; do
    bin=$HERALD
    [[ $label == baseline ]] && bin=$BASELINE
    fast="smtp://127.0.0.1:$port?tls=none"
    record "$label sqlite/1 $(run_case "$bin" 1 "" "$fast" "$work/list.csv")"
    echo "$label sqlite/1 $(cat "$work/cpu-last") 0" >>"$work/cpu"
    [[ $(sent_in "$bin" "") == "$N" ]] || { echo "$label sqlite: not all sent" >&2; exit 1; }
    for k in 1 2 3; do
        record "$label postgres/$k $(db_case "$label" "$bin" "$k" "$N" "$fast" "$work/list.csv")"
        if ((k == 1)); then echo "$label postgres/1 $(cat "$work/cpu-last")" >>"$work/cpu"; fi
    done
    for k in 1 3; do
        log=$work/slow-$label-$k.log
        slow_relay "$log"
        secs=$(db_case "$label" "$bin" "$k" "$SLOW_N" "smtp://127.0.0.1:$sport?tls=none" "$work/slow.csv" \
            --rate "$SLOW_RATE/s")
        stop_slow_relay
        record "$label slow/$k $secs $(at_relay "$log")"
    done
    log=$work/bound-$label.log
    slow_relay "$log"
    secs=$(db_case "$label" "$bin" 3 "$BOUND_N" "smtp://127.0.0.1:$sport?tls=none" "$work/bound.csv" \
        --rate "$BOUND_RATE/s")
    stop_slow_relay
    record "$label bound/3 $secs $(at_relay "$log")"
done

python3 - "$results" "$N" "$SLOW_N" "$SLOW_RATE" "$BOUND_N" "$BOUND_RATE" <<'PY'
import sys
path, n, slow_n, slow_rate, bound_n, bound_rate = sys.argv[1], *map(int, sys.argv[2:])
r = {}
for line in open(path):
    label, case, secs, *relay = line.split()
    r[(label, case)] = (float(secs), int(relay[0]) if relay else None, float(relay[1]) if relay else None)
labels = [l for l in ("this", "baseline") if (l, "sqlite/1") in r]

def rate(label, case, count):
    return count / r[(label, case)][0]

rows = []
for label in labels:
    sq = rate(label, "sqlite/1", n)
    col = [f"{sq:6.0f} msg/s"]
    for k in (1, 2, 3):
        p = rate(label, f"postgres/{k}", n)
        col.append(f"{p:6.0f} msg/s, {p / sq:.2f}x sqlite")
    s1, s3 = r[(label, "slow/1")][2], r[(label, "slow/3")][2]
    col.append(f"{s1:6.1f} msg/s, busiest second {r[(label, 'slow/1')][1]} (rate {slow_rate})")
    col.append(f"{s3:6.1f} msg/s, {s3 / s1:.2f}x one, busiest second {r[(label, 'slow/3')][1]} (rate {slow_rate})")
    b = r[(label, "bound/3")][2]
    col.append(f"{b:6.1f} msg/s, busiest second {r[(label, 'bound/3')][1]} (rate {bound_rate})")
    rows.append(col)
names = [
    "fast, sqlite, 1 sender",
    "fast, postgres, 1 sender",
    "fast, postgres, 2 senders",
    "fast, postgres, 3 senders",
    "slow, postgres, 1 sender",
    "slow, postgres, 3 senders",
    "slow, postgres, 3, bound",
]
width = max(len(c) for col in rows for c in col) + 2
print(f"{'':27}" + "".join(f"{l:{width}}" for l in labels))
for i, name in enumerate(names):
    print(f"{name:27}" + "".join(f"{col[i]:{width}}" for col in rows))
for label, col in zip(labels, rows):
    over = [c for c in ("slow/1", "slow/3", "bound/3")
            if r[(label, c)][1] > (bound_rate if c == "bound/3" else slow_rate)]
    if over:
        print(f"{label}: the relay saw more than the shared rate in one second: {', '.join(over)}")
PY
python3 - "$work/cpu" "$N" "$tck" "${pg_master:+1}" <<'PY'
import sys
path, n, tck, server = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
for line in open(path):
    label, case, herald, sink, pg = line.split()
    us = lambda t: int(t) * 1e6 / tck / n
    parts = [f"herald {us(herald):.0f} us", f"smtp-sink {us(sink):.0f} us"]
    if case.startswith("postgres"):
        parts.append(f"PostgreSQL server {us(pg):.0f} us" if server else "PostgreSQL server not on this machine")
    print(f"CPU per message, {label} {case}: " + ", ".join(parts))
PY
"$claims" "$((N * 2))" 3
