#!/usr/bin/env bash
# How fast herald delivers over SMTP, against Postfix's own load generator.
#
#   scripts/bench-send.sh                   # 10,000 messages, 3 rounds
#   N=20000 ROUNDS=5 scripts/bench-send.sh
#   BENCH_MILLION=1 scripts/bench-send.sh   # also peak memory for 1,000,000
#                                           # journaled recipients (minutes)
#
# Both push the same number of messages of the same size to the same
# Postfix smtp-sink on 127.0.0.1, 8 connections each, no rate limit:
#   smtp-source -s 8 -m N -l SIZE -d     (SIZE = herald's message size)
#   herald send <example issue> --connections 8 --yes  (journal on disk, as in use)
# Each round runs both; the medians are compared. A second part does the
# same through two relays (two smtp-sinks, `relays:` with 4 connections
# each) against two smtp-source runs in parallel (4 connections each, N/2
# messages each), and prints that ratio too. Nothing leaves 127.0.0.1.
#
# Then DKIM (SIGNED_N messages, default N/2): in every round herald sends
# the list unsigned, signed with an RSA-2048 key, with an Ed25519 key and
# with both (two signatures per message, as the README suggests), each to
# the same smtp-sink; it prints each rate, its ratio to the unsigned rate
# of the same rounds (goals on a 2-core machine: RSA >= 0.6, Ed25519 >=
# 0.9), herald's CPU time (user + system) per message, smtp-sink's CPU
# time per message in the same send, and how many of the machine's cores
# the two kept busy on average ((herald + sink CPU) / wall time): on a
# 2-core machine a send that keeps both busy is as fast as the hardware
# allows, and a signed send's ceiling is 2 / (herald + sink CPU per message).
# After those lines it prints that ceiling for each signed mode, from the
# unsigned send's CPU per message and `openssl speed -multi` (the
# signatures a second on all cores at once) measured in the same run.
#
# Then 60 KB messages (BIG_N of them, default N/2): the example issue with
# generated paragraphs added until herald's message is 60 KB, sent unsigned
# against `smtp-source -s 8 -l <that size>` in the same rounds (goal: herald
# at >= 0.95 of smtp-source's rate): a big message must cost herald little
# more than its bytes on the socket.
#
#   PARTS=big scripts/bench-send.sh   # only some parts: main, dkim, big
#                                     # (60 KB), relays (needs main); all
#                                     # four unless PARTS says otherwise
#
#   BASELINE=/tmp/herald-old scripts/bench-send.sh
# also runs another herald binary (an older commit, built with
# CARGO_TARGET_DIR outside the repo) in every round of the first part,
# in turn first or second, and prints its ratio beside herald's: one run's
# ratio moves by about 0.05 on a 2-core machine, so compare two binaries
# this way rather than against a figure from another day. The DKIM part
# runs it too, in every mode, in turn before and after herald.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
N=${N:-10000}
ROUNDS=${ROUNDS:-3}
HERALD=${HERALD:-$repo/target/release/herald}
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[[ -x $SINK && -x $SOURCE ]] || { echo "needs Postfix's smtp-sink and smtp-source (apt-get install postfix)" >&2; exit 1; }
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet
PARTS=${PARTS:-main,dkim,big,relays}
part() { [[ ,$PARTS, == *,$1,* ]]; }

work=$(mktemp -d)
sink_pid= sink2_pid=
cleanup() {
    [[ -n $sink_pid ]] && kill "$sink_pid" 2>/dev/null
    [[ -n $sink2_pid ]] && kill "$sink2_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
"$SINK" -u nobody "127.0.0.1:$port" 256 >/dev/null 2>&1 &
sink_pid=$!
port2=$(free_port)
"$SINK" -u nobody "127.0.0.1:$port2" 256 >/dev/null 2>&1 &
sink2_pid=$!
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
relay="smtp://127.0.0.1:$port?tls=none"

gen_csv "$N" "$work/list.csv"
size=$("$HERALD" send examples/inside-open-infrastructure-example.md --to reader@example.org --dry-run \
    --config herald.example.yaml --outbox "$work/size" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["largest_message_bytes"])')
echo "messages:  $N of $size bytes, 8 connections, to smtp-sink on 127.0.0.1:$port"

median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# One send of the list by the binary $1 to the first sink; prints its time.
one_send() {
    rm -rf "$work/journal"
    local start
    start=$(date +%s.%N)
    "$1" send examples/inside-open-infrastructure-example.md --subscribers "$work/list.csv" \
        --config herald.example.yaml --smtp "$relay" --connections 8 --yes --journal "$work/journal" --json >"$work/report.json" ||
        { echo "$1 send failed (exit $?)" >&2; exit 1; }
    python3 -c "print($(date +%s.%N) - $start)"
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["sent"])' "$work/report.json")
    [[ $sent == "$N" ]] || { echo "$1 sent $sent of $N" >&2; exit 1; }
}
# (The parts' bodies are not indented under their `if part`.)
if part main; then
src_times=() herald_times=() base_times=()
for round in $(seq "$ROUNDS"); do
    start=$(date +%s.%N)
    "$SOURCE" -s 8 -m "$N" -l "$size" -d -f news@example.org -t reader@example.org "127.0.0.1:$port"
    src_times+=("$(python3 -c "print($(date +%s.%N) - $start)")")
    if [[ -n ${BASELINE:-} ]] && (( round % 2 == 0 )); then
        base_times+=("$(one_send "$BASELINE")")
    fi
    herald_times+=("$(one_send "$HERALD")")
    if [[ -n ${BASELINE:-} ]] && (( round % 2 == 1 )); then
        base_times+=("$(one_send "$BASELINE")")
    fi
    printf 'round %d:   smtp-source %.2f s, herald %.2f s%s\n' "$round" "${src_times[-1]}" "${herald_times[-1]}" \
        "${BASELINE:+, baseline $(printf '%.2f' "${base_times[-1]}") s}"
done
s_med=$(median "${src_times[@]}")
h_med=$(median "${herald_times[@]}")
python3 - "$N" "$s_med" "$h_med" <<'PY'
import sys
n, s, h = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"smtp-source: {n / s:.0f} msg/s (median of rounds)")
print(f"herald:      {n / h:.0f} msg/s (median of rounds; includes reading the list and journaling every message)")
print(f"ratio:       herald sends at {s / h:.2f} of smtp-source's rate (goal: 0.8)")
PY
if [[ -n ${BASELINE:-} ]]; then
    b_med=$(median "${base_times[@]}")
    python3 - "$N" "$s_med" "$b_med" "$BASELINE" <<'PY'
import sys
n, s, b, path = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"baseline:    {n / b:.0f} msg/s, ratio {s / b:.2f} of smtp-source's rate ({path}, in the same rounds)")
PY
fi
fi

# DKIM: unsigned, RSA-2048, Ed25519 and both keys, the same list and sink.
if part dkim; then
SIGNED_N=${SIGNED_N:-$((N / 2))}
command -v openssl >/dev/null || { echo "needs openssl to make the DKIM keys" >&2; exit 1; }
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$work/ed25519.pem" 2>/dev/null
gen_csv "$SIGNED_N" "$work/signed.csv"
modes=(unsigned rsa-2048 ed25519 both)
# The settings of one mode, as `env` arguments.
mode_env() {
    local rsa=(HERALD_DKIM_DOMAIN=example.org HERALD_DKIM_SELECTOR=bench-rsa "HERALD_DKIM_KEY_FILE=$work/rsa.pem")
    case $1 in
        unsigned) ;;
        rsa-2048) printf '%s\n' "${rsa[@]}" ;;
        ed25519) printf '%s\n' HERALD_DKIM_DOMAIN=example.org HERALD_DKIM_SELECTOR=bench-ed "HERALD_DKIM_KEY_FILE=$work/ed25519.pem" ;;
        both) printf '%s\n' "${rsa[@]}" HERALD_DKIM_SELECTOR_2=bench-ed "HERALD_DKIM_KEY_FILE_2=$work/ed25519.pem" ;;
    esac
}
# The sink's CPU time so far (user + system, in clock ticks).
sink_ticks() { awk '{print $14 + $15}' "/proc/$sink_pid/stat"; }
# One send of the signed list by binary $1 in mode $2; prints "wall cpu
# sink" (seconds; cpu is herald's user + system time, sink the sink's).
signed_send() {
    rm -rf "$work/journal"
    local vars=() sink_before
    mapfile -t vars < <(mode_env "$2")
    sink_before=$(sink_ticks)
    env "${vars[@]}" /usr/bin/time -f '%e %U %S' -o "$work/time" "$1" send examples/inside-open-infrastructure-example.md \
        --subscribers "$work/signed.csv" --config herald.example.yaml --smtp "$relay" --connections 8 --yes \
        --journal "$work/journal" --json >"$work/report.json" 2>"$work/log" ||
        { echo "$1 send ($2) failed (exit $?)" >&2; cat "$work/log" >&2; exit 1; }
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["sent"])' "$work/report.json")
    [[ $sent == "$SIGNED_N" ]] || { echo "$1 ($2) sent $sent of $SIGNED_N" >&2; exit 1; }
    # Anything herald said beyond its three usual lines (a retry, a relay
    # that went quiet, a warning): once a "both" send of 5,000 took 25 s
    # instead of ~2.3 in CI, with nothing to say why.
    grep -v -e '^herald: About to send' -e '^herald: [0-9]* sent, ' -e ' is finished$' "$work/log" |
        sed "s|^|dkim ($2, $(basename "$1")): |" >&2 || true
    local wall user sys
    read -r wall user sys <"$work/time"
    echo "$wall $(python3 -c "print($user + $sys, ($(sink_ticks) - $sink_before) / $(getconf CLK_TCK))")"
}
: >"$work/signed.txt"
for round in $(seq "$ROUNDS"); do
    line="dkim, round $round:"
    for mode in "${modes[@]}"; do
        if [[ -n ${BASELINE:-} ]] && (( round % 2 == 0 )); then
            r=$(signed_send "$BASELINE" "$mode"); echo "baseline $mode $r" >>"$work/signed.txt"
        fi
        r=$(signed_send "$HERALD" "$mode"); echo "herald $mode $r" >>"$work/signed.txt"
        line+=" $mode $(printf '%.2f' "${r%% *}") s,"
        if [[ -n ${BASELINE:-} ]] && (( round % 2 == 1 )); then
            r=$(signed_send "$BASELINE" "$mode"); echo "baseline $mode $r" >>"$work/signed.txt"
        fi
    done
    echo "${line%,}"
done
python3 - "$SIGNED_N" "$work/signed.txt" "${BASELINE:-}" <<'PY'
import statistics, sys
n, path, baseline = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = {}
for line in open(path):
    binary, mode, wall, cpu, sink = line.split()
    runs.setdefault((binary, mode), []).append((float(wall), float(cpu), float(sink)))
goals = {"rsa-2048": " (goal: >= 0.6)", "ed25519": " (goal: >= 0.9)"}
print(f"dkim:        {n} messages, 8 connections, medians of rounds; ratio = rate / the same binary's unsigned rate")
for binary in ["herald"] + (["baseline"] if baseline else []):
    unsigned = statistics.median(w for w, _, _ in runs[(binary, "unsigned")])
    for mode in ["unsigned", "rsa-2048", "ed25519", "both"]:
        wall = statistics.median(w for w, _, _ in runs[(binary, mode)])
        cpu = statistics.median(c for _, c, _ in runs[(binary, mode)])
        sink = statistics.median(k for _, _, k in runs[(binary, mode)])
        busy = statistics.median((c + k) / w for w, c, k in runs[(binary, mode)])
        name = f"{binary} {mode}:"
        print(f"  {name:<20} {n / wall:6.0f} msg/s  {unsigned / wall:.2f}x  {1000 * cpu / n:.3f} ms CPU/msg, "
              f"sink {1000 * sink / n:.3f}, {busy:.2f} cores busy{goals.get(mode, '') if binary == 'herald' else ''}")
if baseline:
    print(f"  (baseline: {baseline}, in the same rounds)")
PY
# The physical limit in this run: what OpenSSL signs per second on all the
# cores at once (`-multi`: each core's signatures slow the other's on a VM),
# so one signature costs `cores / rate` of CPU. Added to the unsigned send's
# CPU per message (herald's and the sink's), it gives the fastest a signed
# send can go with every core busy: (cores / that) messages a second, and
# its ratio to the unsigned rate is the most a signed mode can reach here.
cores=$(nproc)
openssl speed -seconds 2 -multi "$cores" -mr rsa2048 >"$work/speed-rsa.txt" 2>/dev/null || true
openssl speed -seconds 2 -multi "$cores" -mr ed25519 >"$work/speed-ed.txt" 2>/dev/null || true
python3 - "$SIGNED_N" "$work/signed.txt" "$cores" "$work/speed-rsa.txt" "$work/speed-ed.txt" <<'PY'
import statistics, sys
n, path, cores = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rate(path, tag, at):
    # The last `+F` line is the sum over the `-multi` processes.
    lines = [l.strip().split(":") for l in open(path) if l.startswith(tag)]
    return float(lines[-1][at]) if lines else None
rsa = rate(sys.argv[4], "+F2:", 3)  # +F2:k:bits:sign/s:verify/s
ed = rate(sys.argv[5], "+F6:", 4)   # +F6:k:bits:name:sign/s:verify/s
if rsa is None or ed is None:
    print("limit:       openssl speed gave no figures; no limit computed")
    sys.exit()
runs = [tuple(map(float, l.split()[2:])) for l in open(path) if l.split()[:2] == ["herald", "unsigned"]]
wall = statistics.median(w for w, _, _ in runs)
cpu = statistics.median((c + k) / n for _, c, k in runs)
print(f"limit:       openssl speed -multi {cores}: rsa2048 {rsa:.0f} signatures/s ({1000 * cores / rsa:.3f} ms each), "
      f"ed25519 {ed:.0f}/s ({1000 * cores / ed:.3f} ms each), on {cores} cores at once")
for mode, sig in [("rsa-2048", cores / rsa), ("ed25519", cores / ed), ("both", cores / rsa + cores / ed)]:
    best = cores / (cpu + sig)
    # Against the unsigned rate measured, and against the unsigned send's
    # own ceiling (all cores busy with it too): the second holds whatever
    # else the machine was doing, the first only if the unsigned run was
    # CPU-bound.
    print(f"  {'ceiling ' + mode + ':':<20} {best:6.0f} msg/s  {best * wall / n:.2f}x  ({cpu / (cpu + sig):.2f}x of the "
          f"unsigned ceiling; unsigned herald + sink {1000 * cpu:.3f} ms CPU/msg + {1000 * sig:.3f} ms signing)")
PY

fi

# 60 KB messages: the example issue and generated paragraphs (no merge
# fields in them), as many as make herald's message 60 KB.
if part big; then
BIG_N=${BIG_N:-$((N / 2))}
message_size() { # post
    "$HERALD" send "$1" --to reader@example.org --dry-run --config herald.example.yaml \
        --outbox "$work/size-$RANDOM" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["largest_message_bytes"])'
}
big_post() { # paragraphs
    python3 - "$1" "$work/big.md" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
text = open("examples/inside-open-infrastructure-example.md").read()
words = "the community met again this month to plan the next release and review what shipped".split()
with open(path, "w") as f:
    f.write(text.rstrip("\n") + "\n\n# **More news**\n")
    for i in range(n):
        f.write("\n" + " ".join(words[(i + j) % len(words)] for j in range(60)) + f" (item {i}).\n")
PY
}
big_post 0; base_size=$(message_size "$work/big.md")
big_post 20; per_20=$(( $(message_size "$work/big.md") - base_size ))
big_post $(( (60000 - base_size) * 20 / per_20 ))
big_size=$(message_size "$work/big.md")
gen_csv "$BIG_N" "$work/big.csv"
echo "60 KB:       $BIG_N messages of $big_size bytes, 8 connections, unsigned"
# Each run's wall time, its own CPU time (user + system) and smtp-sink's
# CPU time in it, in seconds: on 2 cores the sender and the sink share the
# CPU, so the sender's CPU per message is what the ratio depends on.
: >"$work/big.txt"
big_ticks() { awk '{print $14 + $15}' "/proc/$sink_pid/stat"; }
# One run of $2 (a command) recorded as $1.
big_run() {
    local name=$1 before
    shift
    before=$(big_ticks)
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >"$work/report.json" ||
        { echo "$name (60 KB) failed (exit $?)" >&2; exit 1; }
    local wall user sys
    read -r wall user sys <"$work/time"
    echo "$name $wall $(python3 -c "print($user + $sys, ($(big_ticks) - $before) / $(getconf CLK_TCK))")" >>"$work/big.txt"
}
# One unsigned send of the big post by binary $2, recorded as $1.
big_send() {
    rm -rf "$work/journal"
    big_run "$1" "$2" send "$work/big.md" --subscribers "$work/big.csv" --config herald.example.yaml --smtp "$relay" \
        --connections 8 --yes --journal "$work/journal" --json
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["sent"])' "$work/report.json")
    [[ $sent == "$BIG_N" ]] || { echo "$2 sent $sent of $BIG_N (60 KB)" >&2; exit 1; }
}
big_source() {
    big_run smtp-source "$SOURCE" -s 8 -m "$BIG_N" -l "$big_size" -d -f news@example.org -t reader@example.org "127.0.0.1:$port"
}
# Measured as smtp-source sends them: its 60 KB message (its own few
# headers and lines of 80 bytes) is within 0.3% of herald's on the wire.
# Unmeasured first, so that neither meets a sink that has not yet taken
# a big message (with PARTS=big, smtp-source's first round did); then
# smtp-source goes first in odd rounds and last in even ones, so neither
# always runs in the other's wake.
"$SOURCE" -s 8 -m 200 -l "$big_size" -d -f news@example.org -t reader@example.org "127.0.0.1:$port"
for round in $(seq "$ROUNDS"); do
    if (( round % 2 == 1 )); then big_source; fi
    if [[ -n ${BASELINE:-} ]] && (( round % 2 == 0 )); then big_send baseline "$BASELINE"; fi
    big_send herald "$HERALD"
    if [[ -n ${BASELINE:-} ]] && (( round % 2 == 1 )); then big_send baseline "$BASELINE"; fi
    if (( round % 2 == 0 )); then big_source; fi
    echo "60 KB, round $round: $(tail -n $((${BASELINE:+1} + 2)) "$work/big.txt" | awk '{printf "%s%s %.2f s", (NR > 1 ? ", " : ""), $1, $2}')"
done
python3 - "$BIG_N" "$work/big.txt" <<'PY'
import statistics, sys
n, path = int(sys.argv[1]), sys.argv[2]
runs = {}
for line in open(path):
    name, wall, cpu, sink = line.split()
    runs.setdefault(name, []).append((float(wall), float(cpu), float(sink)))
med = {name: [statistics.median(r[i] for r in rs) for i in range(3)] for name, rs in runs.items()}
s = med["smtp-source"][0]
for name in ["smtp-source", "herald", "baseline"]:
    if name not in med:
        continue
    wall, cpu, sink = med[name]
    ratio = "" if name == "smtp-source" else f", ratio {s / wall:.2f}" + (" (goal: >= 0.95)" if name == "herald" else "")
    print(f"60 KB:       {name + ':':<12} {n / wall:5.0f} msg/s{ratio}; its CPU {1e6 * cpu / n:.0f} us/msg, "
          f"smtp-sink's {1e6 * sink / n:.0f} us/msg (medians of rounds)")
PY

fi

# Two relays: herald's total through both against two smtp-source runs at
# the same time, one per sink, half the messages each.
if part main && part relays; then
cp herald.example.yaml "$work/two.yaml"
cat >>"$work/two.yaml" <<YAML
relays:
  - name: one
    url: "smtp://127.0.0.1:$port?tls=none"
    connections: 4
  - name: two
    url: "smtp://127.0.0.1:$port2?tls=none"
    connections: 4
YAML
half=$((N / 2))
src2_times=() herald2_times=()
for round in $(seq "$ROUNDS"); do
    start=$(date +%s.%N)
    "$SOURCE" -s 4 -m "$half" -l "$size" -d -f news@example.org -t reader@example.org "127.0.0.1:$port" &
    one=$!
    "$SOURCE" -s 4 -m "$((N - half))" -l "$size" -d -f news@example.org -t reader@example.org "127.0.0.1:$port2"
    wait "$one"
    src2_times+=("$(python3 -c "print($(date +%s.%N) - $start)")")
    rm -rf "$work/journal"
    start=$(date +%s.%N)
    "$HERALD" send examples/inside-open-infrastructure-example.md --subscribers "$work/list.csv" \
        --config "$work/two.yaml" --yes --journal "$work/journal" --json >"$work/report.json"
    herald2_times+=("$(python3 -c "print($(date +%s.%N) - $start)")")
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["sent"])' "$work/report.json")
    [[ $sent == "$N" ]] || { echo "herald sent $sent of $N through two relays" >&2; exit 1; }
    printf 'two relays, round %d:   2 x smtp-source %.2f s, herald %.2f s\n' "$round" "${src2_times[-1]}" "${herald2_times[-1]}"
done
s2_med=$(median "${src2_times[@]}")
h2_med=$(median "${herald2_times[@]}")
python3 - "$N" "$s_med" "$h_med" "$s2_med" "$h2_med" <<'PY'
import sys
n = int(sys.argv[1])
s, h, s2, h2 = map(float, sys.argv[2:])
print(f"two relays:  2 x smtp-source {n / s2:.0f} msg/s, herald {n / h2:.0f} msg/s (medians)")
print(f"ratios:      one relay {s / h:.2f}, two relays {s2 / h2:.2f} of smtp-source's rate")
PY
fi

if [[ -n ${BENCH_MILLION:-} ]]; then
    gen_csv 1000000 "$work/million.csv"
    rm -rf "$work/journal"
    /usr/bin/time -f '%e %M' -o "$work/time" "$HERALD" send examples/inside-open-infrastructure-example.md \
        --subscribers "$work/million.csv" --config herald.example.yaml --smtp "$relay" --connections 8 --yes \
        --journal "$work/journal" --json >"$work/report.json"
    read -r secs kb <"$work/time"
    printf 'herald:      1000000 journaled recipients sent in %.0f s, peak memory %.1f MB (goal: under 100 MB)\n' "$secs" "$(python3 -c "print($kb/1024)")"
fi
