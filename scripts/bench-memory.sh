#!/usr/bin/env bash
# How much memory herald needs as the list grows, and what a dry run costs.
#
#   scripts/bench-memory.sh                    # 1,000 and 100,000 recipients
#   BENCH_MILLION=1 scripts/bench-memory.sh    # also 1,000,000 (minutes)
#   OLD=/path/to/old/herald scripts/bench-memory.sh
#
# 1. A journaled send (SQLite journal on disk, as in use) of the example
#    issue to Postfix's smtp-sink on 127.0.0.1, 8 connections, for a list
#    of 1,000 and one of 100,000 (and 1,000,000 with BENCH_MILLION=1). It
#    prints each run's peak resident memory (`/usr/bin/time`'s "maximum
#    resident set size") and its ratio to the 1,000-recipient run of the
#    same binary: a flat line is a ratio near 1. Goals: 20 MB for 100,000,
#    30 MB for 1,000,000.
# 2. A dry run of the 100,000 to files (`--dry-run --outbox` on /dev/shm,
#    so the disk is not what is measured), by this herald and by OLD, the
#    release before dry runs went through the engine (daf3111^; build it
#    with `git worktree add /tmp/old daf3111^ && cd /tmp/old && cargo build
#    --release`), taking turns first, ROUNDS times: the medians of time and
#    peak memory, and herald's ratio to OLD's. Goal: at most OLD's (ratio
#    <= 1). Without OLD, only herald's figures are printed.
# Nothing timed or measured is asserted: the script fails only if a run
# fails or does not send or write every message.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
HERALD=${HERALD:-$repo/target/release/herald}
OLD=${OLD:-}
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[[ -x $SINK ]] || { echo "needs Postfix's smtp-sink (apt-get install postfix)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet

work=$(mktemp -d)
# The outboxes on memory, so the disk's speed is not what is measured.
shm=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
sink_pid=
cleanup() {
    [[ -n $sink_pid ]] && kill "$sink_pid" 2>/dev/null
    rm -rf "$work" "$shm"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SINK" -u nobody "127.0.0.1:$port" 256 >/dev/null 2>&1 &
sink_pid=$!
sleep 0.3

gen_csv() { # rows file
    python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("email,first_name\n")
    for i in range(n):
        f.write(f"reader{i}@example{i % 97}.org,Reader{i}\n")
PY
}
export HERALD_UNSUBSCRIBE_SECRET=bench-secret-not-a-real-one
post=examples/inside-open-infrastructure-example.md
relay="smtp://127.0.0.1:$port?tls=none"
mb() { python3 -c "print(f'{$1 / 1024:.1f}')"; }

# A journaled send of list $2 (of $3 rows) by binary $1; prints "secs kb".
journaled() {
    rm -rf "$work/journal"
    /usr/bin/time -f '%e %M' -o "$work/time" "$1" send "$post" --subscribers "$2" \
        --config herald.example.yaml --smtp "$relay" --connections 8 --yes \
        --journal "$work/journal" --json >"$work/report.json" 2>"$work/log" ||
        { echo "$1 send of $2 failed" >&2; cat "$work/log" >&2; exit 1; }
    local sent
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["sent"])' "$work/report.json")
    [[ $sent == "$3" ]] || { echo "$1 sent $sent of $3" >&2; exit 1; }
    cat "$work/time"
}

gen_csv 1000 "$work/small.csv"
gen_csv "$N" "$work/list.csv"
read -r _ small_kb < <(journaled "$HERALD" "$work/small.csv" 1000)
read -r secs big_kb < <(journaled "$HERALD" "$work/list.csv" "$N")
echo "journaled send to smtp-sink, 8 connections, peak resident memory:"
printf '  %9d recipients: %6s MB\n' 1000 "$(mb "$small_kb")"
printf '  %9d recipients: %6s MB (%.0f s), %.2fx the 1,000 run (goal: <= 20 MB)\n' "$N" "$(mb "$big_kb")" \
    "$secs" "$(python3 -c "print($big_kb / $small_kb)")"
if [[ -n ${BENCH_MILLION:-} ]]; then
    gen_csv 1000000 "$work/million.csv"
    read -r secs m_kb < <(journaled "$HERALD" "$work/million.csv" 1000000)
    printf '  %9d recipients: %6s MB (%.0f s), %.2fx the 1,000 run (goal: <= 30 MB)\n' 1000000 "$(mb "$m_kb")" \
        "$secs" "$(python3 -c "print($m_kb / $small_kb)")"
    rm -f "$work/million.csv"
fi

# A dry run of the list to files by binary $1 (its own outbox, and no
# journal to copy); appends "name secs kb" to dry.txt.
dry() {
    rm -rf "$shm/outbox"
    /usr/bin/time -f '%e %M' -o "$work/time" "$1" send "$post" --subscribers "$work/list.csv" \
        --config herald.example.yaml --dry-run --outbox "$shm/outbox" --journal "$work/none" \
        >/dev/null 2>"$work/log" || { echo "$1 dry run failed" >&2; cat "$work/log" >&2; exit 1; }
    local files
    files=$(find "$shm/outbox" -name '*.eml' | wc -l)
    [[ $files == "$N" ]] || { echo "$1 wrote $files of $N messages" >&2; exit 1; }
    echo "$2 $(cat "$work/time")" >>"$work/dry.txt"
}
: >"$work/dry.txt"
for round in $(seq "$ROUNDS"); do
    if [[ -n $OLD ]] && ((round % 2 == 0)); then dry "$OLD" old; fi
    dry "$HERALD" herald
    if [[ -n $OLD ]] && ((round % 2 == 1)); then dry "$OLD" old; fi
done
rm -rf "$shm/outbox"
python3 - "$N" "$work/dry.txt" "$OLD" <<'PY'
import statistics, sys
n, path, old = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = {}
for line in open(path):
    name, secs, kb = line.split()
    runs.setdefault(name, []).append((float(secs), int(kb)))
med = {k: (statistics.median(s for s, _ in v), statistics.median(m for _, m in v)) for k, v in runs.items()}
print(f"dry run of {n} to files on /dev/shm, medians of {len(runs['herald'])} rounds:")
for name in ["herald", "old"] if old else ["herald"]:
    s, kb = med[name]
    print(f"  {name:<6} {s:6.2f} s  {kb / 1024:6.1f} MB")
if old:
    (hs, hk), (os_, ok) = med["herald"], med["old"]
    print(f"  herald/old: time {hs / os_:.2f}x, memory {hk / ok:.2f}x (goal: <= 1; old is {old})")
PY
