#!/usr/bin/env bash
# Benchmark: herald composing the hardest corpus post (annual report 2023)
# versus the official mjml CLI rendering herald's own MJML for that post,
# measured in the same run on the same machine.
#
#   herald:  herald preview ../shared/corpus/annual-reports/2023.md --out TMP/x
#   mjml:    mjml TMP/x/email.mjml -o TMP/out.html
#
# Each command is run several times (after warm-up runs) and the median wall
# time per run is reported, then the ratio mjml / herald (the goal is 100x).
# hyperfine is used if installed (apt-get install hyperfine; .ci/run installs
# it), otherwise a Python timing loop. With BASELINE= another herald binary
# (today's main, say) is measured in the same run too, with its own ratio and
# the ratio of the two, so a change is judged against its peer on the same
# machine at the same moment, never against a figure from another day.
# Nothing timed is asserted: the script fails only if a command fails.
#
# Environment:
#   HERALD           herald binary; if unset, `cargo build --release --quiet` is
#                    run first and target/release/herald is used
#   BASELINE         another herald binary to measure beside HERALD (optional)
#   HERALD_MJML      official mjml CLI (default: tools/node/node_modules/.bin/mjml)
#   HERALD_CORPUS    corpus folder (default: ../shared/corpus, relative to the repo root)
#   BENCH_POST       post to compose (default: $HERALD_CORPUS/annual-reports/2023.md)
#   BENCH_RUNS       timed herald runs (default: 20)
#   BENCH_MJML_RUNS  timed mjml runs (default: 10; each takes about a second)
#   BENCH_WARMUP     untimed warm-up runs of each command (default: 2)
#   BENCH_TIMER      hyperfine | python (default: hyperfine if installed)
#   BENCH_CALLGRIND  1: also count the instructions of one herald run (and
#                    one BASELINE run) under valgrind's callgrind: a figure
#                    that does not move with the machine's load, for
#                    comparing two binaries on a busy machine
set -euo pipefail

caller_pwd=$PWD
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

resolve() {
    local p=$1 base=$2
    case $p in
        /*) printf '%s\n' "$p" ;;
        */*) printf '%s\n' "$base/$p" ;;
        *) type -P "$p" 2>/dev/null || printf '%s\n' "$p" ;;
    esac
}

if [[ -n ${HERALD:-} ]]; then
    herald=$(resolve "$HERALD" "$caller_pwd")
else
    echo "building herald (cargo build --release --quiet) ..."
    cargo build --release --quiet
    herald=$repo_root/target/release/herald
fi
baseline=""
if [[ -n ${BASELINE:-} ]]; then baseline=$(resolve "$BASELINE" "$caller_pwd"); fi
if [[ -n ${HERALD_MJML:-} ]]; then mjml=$(resolve "$HERALD_MJML" "$caller_pwd"); else mjml=$repo_root/tools/node/node_modules/.bin/mjml; fi
if [[ -n ${HERALD_CORPUS:-} ]]; then corpus=$(resolve "$HERALD_CORPUS" "$caller_pwd"); else corpus=$repo_root/../shared/corpus; fi
if [[ -n ${BENCH_POST:-} ]]; then post=$(resolve "$BENCH_POST" "$caller_pwd"); else post=$corpus/annual-reports/2023.md; fi
runs=${BENCH_RUNS:-20}
mjml_runs=${BENCH_MJML_RUNS:-10}
warmup=${BENCH_WARMUP:-2}

if [[ -n ${BENCH_TIMER:-} ]]; then
    timer=$BENCH_TIMER
elif command -v hyperfine >/dev/null 2>&1; then
    timer=hyperfine
else
    timer=python
fi

die() { echo "ERROR: $*" >&2; exit 1; }
[[ -x $herald ]] || die "herald binary not found or not executable: $herald"
[[ -z $baseline || -x $baseline ]] || die "BASELINE binary not found or not executable: $baseline"
[[ -x $mjml ]] || die "mjml CLI not found: $mjml (run: npm ci --prefix tools/node --no-audit --no-fund)"
[[ -f $post ]] || die "post not found: $post (set HERALD_CORPUS or BENCH_POST)"
[[ $runs =~ ^[1-9][0-9]*$ && $mjml_runs =~ ^[1-9][0-9]*$ && $warmup =~ ^[0-9]+$ ]] ||
    die "BENCH_RUNS, BENCH_MJML_RUNS must be positive integers and BENCH_WARMUP a non-negative one"
case $timer in
    hyperfine) command -v hyperfine >/dev/null 2>&1 || die "BENCH_TIMER=hyperfine but hyperfine is not installed" ;;
    python) command -v python3 >/dev/null 2>&1 || die "python3 is needed for the timing loop" ;;
    *) die "BENCH_TIMER must be hyperfine or python, not '$timer'" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

herald_cmd=("$herald" preview "$post" --out "$tmp/x")
mjml_cmd=("$mjml" "$tmp/x/email.mjml" -o "$tmp/out.html")
baseline_cmd=("$baseline" preview "$post" --out "$tmp/b")

# One checked run of each first: both must succeed, and herald must have
# written the MJML that mjml then renders.
"${herald_cmd[@]}" >"$tmp/herald.log" 2>&1 || { cat "$tmp/herald.log" >&2; die "herald preview failed"; }
[[ -s $tmp/x/email.mjml ]] || die "herald preview wrote no $tmp/x/email.mjml"
"${mjml_cmd[@]}" >"$tmp/mjml.log" 2>&1 || { cat "$tmp/mjml.log" >&2; die "mjml failed to render herald's email.mjml"; }
if [[ -n $baseline ]]; then
    "${baseline_cmd[@]}" >"$tmp/baseline.log" 2>&1 || { cat "$tmp/baseline.log" >&2; die "BASELINE herald preview failed"; }
fi

# median_seconds N WARMUP CMD... -> prints the median wall time of one run and
# the mean CPU time (user + system) of one run, in seconds. The CPU time is
# printed too because on a busy machine the wall time of a 10 ms process is
# mostly waiting for a core; it is not what the goal is stated in.
median_seconds() {
    local n=$1 w=$2
    shift 2
    if [[ $timer == hyperfine ]]; then
        local cmdline json=$tmp/hyperfine.json
        printf -v cmdline '%q ' "$@"
        hyperfine --shell=none --runs "$n" --warmup "$w" --style none \
            --export-json "$json" "$cmdline" >/dev/null
        python3 -c 'import json,sys; r = json.load(open(sys.argv[1]))["results"][0]; print(r["median"], r["user"] + r["system"])' "$json"
    else
        python3 - "$n" "$w" "$@" <<'PY'
import resource, statistics, subprocess, sys, time
n, w, cmd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
def once():
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0
for _ in range(w):
    once()
c0 = cpu()
wall = statistics.median(once() for _ in range(n))
print(wall, (cpu() - c0) / n)
PY
    fi
}

echo "post:    ${post#"$repo_root"/} ($(wc -c <"$post") bytes)"
echo "herald:  $herald"
[[ -z $baseline ]] || echo "baseline: $baseline"
echo "mjml:    $mjml ($("$mjml" --version 2>/dev/null | tr '\n' ' '))"
echo "timer:   $timer; herald $runs runs, mjml $mjml_runs runs, $warmup warm-up runs each; median wall time per run"
echo

herald_s=$(median_seconds "$runs" "$warmup" "${herald_cmd[@]}")
baseline_s=""
if [[ -n $baseline ]]; then
    baseline_s=$(median_seconds "$runs" "$warmup" "${baseline_cmd[@]}")
fi
mjml_s=$(median_seconds "$mjml_runs" "$warmup" "${mjml_cmd[@]}")

# instructions CMD... -> the instructions callgrind counts for one run.
instructions() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
        sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
if [[ ${BENCH_CALLGRIND:-} == 1 ]]; then
    command -v valgrind >/dev/null 2>&1 || die "BENCH_CALLGRIND=1 needs valgrind (apt-get install valgrind)"
    h_ir=$(instructions "${herald_cmd[@]}")
    [[ -n $h_ir ]] || die "callgrind counted nothing for herald"
    echo "instructions (callgrind, one run): herald $(python3 -c "print(f'{$h_ir:,}')")"
    if [[ -n $baseline ]]; then
        b_ir=$(instructions "${baseline_cmd[@]}")
        [[ -n $b_ir ]] || die "callgrind counted nothing for BASELINE"
        echo "instructions (callgrind, one run): baseline $(python3 -c "print(f'{$b_ir:,}')"), herald $(python3 -c "print(f'{$h_ir / $b_ir:.2f}')")x the baseline's"
    fi
fi

python3 - "$herald_s" "$mjml_s" "$baseline_s" <<'PY'
import sys
(h, h_cpu), (m, m_cpu) = (map(float, a.split()) for a in sys.argv[1:3])
b, b_cpu = map(float, sys.argv[3].split()) if sys.argv[3] else (None, None)

def ratio(who, t):
    if t <= 0:
        print(f"ratio: {who} time too small to measure")
    elif m >= t:
        print(f"ratio: {who} is {m / t:.1f}x faster than mjml rendering alone (goal: 100x)")
    else:
        print(f"ratio: {who} is {t / m:.1f}x slower than mjml rendering alone")

print(f"herald compose (herald preview):  median {h * 1000:9.2f} ms, CPU {h_cpu * 1000:9.2f} ms")
if b is not None:
    print(f"baseline herald (BASELINE):       median {b * 1000:9.2f} ms, CPU {b_cpu * 1000:9.2f} ms")
print(f"mjml render (official mjml CLI):  median {m * 1000:9.2f} ms, CPU {m_cpu * 1000:9.2f} ms")
ratio("herald compose", h)
if b is not None:
    ratio("baseline herald compose", b)
    if b > 0 and b_cpu > 0:
        print(f"ratio: herald compose takes {h / b:.2f}x the baseline's time ({h_cpu / b_cpu:.2f}x its CPU time)")
if h_cpu > 0:
    print(f"ratio of CPU time: mjml takes {m_cpu / h_cpu:.1f}x herald compose's")
PY
