#!/usr/bin/env bash
# How much memory herald needs as the list grows, and what a dry run costs:
# both goals of issue 29 printed by one run.
#
#   scripts/bench-memory.sh                    # 1,000 and 100,000 recipients
#   BENCH_MILLION=1 scripts/bench-memory.sh    # also 1,000,000 (many minutes)
#   OLD=/path/to/old/herald scripts/bench-memory.sh
#   DRY_ONLY=1 OLD=... scripts/bench-memory.sh # only part 2 (the dry runs)
#
# 1. A journaled send (SQLite journal on disk, as in use) of the example
#    issue to Postfix's smtp-sink on 127.0.0.1, 8 connections, for a list
#    of 1,000 and one of 100,000 (and 1,000,000 with BENCH_MILLION=1). It
#    prints each run's peak resident memory (the kernel's count, as
#    `/usr/bin/time` shows it) against its goal (20 MB for 100,000, 30 MB
#    for 1,000,000) and its ratio to the 1,000-recipient run of the same
#    binary: a flat line is a ratio near 1. The peak is also split into
#    its two parts, the largest of each seen in /proc every 20 ms: "data"
#    (heap, stacks: what herald holds, and what could grow with the list)
#    and "code" (the pages of the program file it ran, the same for any
#    list; a bigger binary has more of them).
# 2. A dry run of the 100,000 to files (`--dry-run --outbox` on /dev/shm,
#    so the disk is not what is measured), by this herald and by OLD, the
#    release before dry runs went through the engine (daf3111^; build it
#    with `git worktree add --detach /tmp/old daf3111^ && cd /tmp/old &&
#    cargo build --release --bin herald`), taking turns first, ROUNDS
#    times: the medians of time and peak memory, and herald's ratio to
#    OLD's. Goal: at most OLD's (ratios <= 1). Without OLD, only herald's
#    figures are printed.
# The load average is printed with the figures: on a busy machine the
# times mean little (the memory figures do not depend on it). It also says
# how much of packaging/code-order.txt (see build.rs) the binary still has:
# the "code" part grows when the list is stale.
# Nothing timed or measured is asserted: the script fails only if a run
# fails or does not send or write every message. .ci/run runs it with
# N=10000 ROUNDS=1 (under a minute, no old release): the 100,000-recipient
# journaled send alone takes minutes (one durable commit per batch of
# marks), and the old release is not built there.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
HERALD=${HERALD:-$repo/target/release/herald}
OLD=${OLD:-}
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[[ -x $SINK ]] || { echo "needs Postfix's smtp-sink (apt-get install postfix)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "needs GNU time for the peaks of memory (apt-get install time)" >&2; exit 1; }
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

# Runs the command after FILE and writes "secs peak_kb data_kb code_kb" to
# FILE: the peak from the kernel (exact), and the largest anonymous
# (RssAnon) and file-backed (RssFile) memory seen meanwhile. The peak is
# the one GNU time reads from wait4(2), of a command it forked: not this
# Python's own getrusage of its child, because Python starts a child with
# vfork, and Linux counts the parent's high-water mark in the child's peak
# at exec (`/bin/true` measured that way peaked at 10.5 MB, Python's own
# size: every figure below about 11-14 MB was Python's, herald's and the
# old release's alike). time's own fork starts from its ~1 MB.
measured() { # FILE command...
    python3 - "$@" <<'PY'
import os, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
start = time.monotonic()
child = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", out + ".peak", *cmd], stdin=subprocess.DEVNULL)
data = code = 0
pid = None  # the command's, once time has forked it
while child.poll() is None:
    try:
        if pid is None:
            with open(f"/proc/{child.pid}/task/{child.pid}/children") as f:
                pid = int(f.read().split()[0])
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    data = max(data, int(line.split()[1]))
                elif line.startswith("RssFile:"):
                    code = max(code, int(line.split()[1]))
    except (OSError, IndexError, ValueError):
        pass
    time.sleep(0.02)
secs = time.monotonic() - start
# time's output file: a line per signal notice if any, the figure last.
peak = int(open(out + ".peak").read().split()[-1])
with open(out, "w") as f:
    f.write(f"{secs:.2f} {peak} {data} {code}\n")
sys.exit(child.returncode)
PY
}

# A journaled send of list $2 (of $3 rows) by binary $1; prints
# "secs peak_kb data_kb code_kb".
journaled() {
    rm -rf "$work/journal"
    measured "$work/time" "$1" send "$post" --subscribers "$2" \
        --config herald.example.yaml --smtp "$relay" --connections 8 --yes \
        --journal "$work/journal" --json >"$work/report.json" 2>"$work/log" ||
        { echo "$1 send of $2 failed" >&2; cat "$work/log" >&2; exit 1; }
    local sent
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["sent"])' "$work/report.json")
    [[ $sent == "$3" ]] || { echo "$1 sent $sent of $3" >&2; exit 1; }
    cat "$work/time"
}
# One line of the journaled table: rows, "secs peak data code", goal in MB.
journaled_line() {
    local secs kb data code
    read -r secs kb data code <<<"$2"
    printf '  %9d recipients: %5s MB (data %4s, code %4s) in %4.0f s' "$1" "$(mb "$kb")" \
        "$(mb "$data")" "$(mb "$code")" "$secs"
    if [[ -n ${3:-} ]]; then
        printf ', %.2fx the 1,000 run, %.2fx the goal of %s MB%s' \
            "$(python3 -c "print($kb / $small_kb)")" "$(python3 -c "print($kb / 1024 / $3)")" "$3" "${4:-}"
    fi
    echo
}

echo "load before: $(uptime)"
# The functions the linker was asked to put first (build.rs) that the
# binary has: few means the list is stale (scripts/order-code.sh).
if command -v nm >/dev/null && [[ -f packaging/code-order.txt ]]; then
    listed=$(sort -u packaging/code-order.txt | wc -l)
    found=$({ nm "$HERALD" 2>/dev/null || true; } | awk '{print $NF}' | sort -u |
        comm -12 - <(sort -u packaging/code-order.txt) | wc -l)
    echo "code order: $found of the $listed functions of packaging/code-order.txt are in $HERALD"
fi
gen_csv "$N" "$work/list.csv"
if [[ -z ${DRY_ONLY:-} ]]; then
gen_csv 1000 "$work/small.csv"
small=$(journaled "$HERALD" "$work/small.csv" 1000)
small_kb=$(awk '{print $2}' <<<"$small")
big=$(journaled "$HERALD" "$work/list.csv" "$N")
echo "journaled send to smtp-sink, 8 connections, peak resident memory (goal: 1.00x the goal or less):"
journaled_line 1000 "$small"
# The goal is set for 100,000; a flat line makes it hold for fewer.
if ((N == 100000)); then journaled_line "$N" "$big" 20; else journaled_line "$N" "$big" 20 " (set for 100,000)"; fi
if [[ -n ${BENCH_MILLION:-} ]]; then
    gen_csv 1000000 "$work/million.csv"
    million=$(journaled "$HERALD" "$work/million.csv" 1000000)
    journaled_line 1000000 "$million" 30
    rm -f "$work/million.csv"
fi
fi

# A dry run of the list to files by binary $1 (its own outbox, and no
# journal to copy); appends "name secs peak_kb data_kb code_kb" to dry.txt.
dry() {
    rm -rf "$shm/outbox"
    measured "$work/time" "$1" send "$post" --subscribers "$work/list.csv" \
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
    name, *figures = line.split()
    runs.setdefault(name, []).append([float(x) for x in figures])
med = {k: [statistics.median(r[i] for r in v) for i in range(4)] for k, v in runs.items()}
print(f"dry run of {n} to files on /dev/shm, medians of {len(runs['herald'])} rounds:")
for name in ["herald", "old"] if old else ["herald"]:
    s, kb, data, code = med[name]
    print(f"  {name:<6} {s:6.2f} s  {kb / 1024:5.1f} MB (data {data / 1024:4.1f}, code {code / 1024:4.1f})")
if old:
    (hs, hk, _, _), (os_, ok, _, _) = med["herald"], med["old"]
    print(f"  herald/old: time {hs / os_:.2f}x, memory {hk / ok:.2f}x (goal: <= 1; old is {old})")
PY
echo "load after: $(uptime)"
