#!/usr/bin/env bash
# Writes packaging/code-order.txt: the functions of the release binary that
# `herald --version`, a dry run of 1,000 recipients and a journaled send of
# 1,000 to Postfix's smtp-sink run, hottest first, as callgrind saw them;
# then those that only `herald preview` of a corpus post runs (the annual
# report 2023, or BENCH_POST), hottest first: after the send's, so the code
# a send runs stays as close together as it was.
# build.rs hands the list to the linker, which puts those functions first
# and together, so the code herald runs is resident in a few MB instead of
# 64 KB pieces spread over the whole binary (see build.rs).
#
#   scripts/order-code.sh            # builds, profiles, rewrites the list
#   HERALD=path scripts/order-code.sh
#
# Profile a binary of `cargo build --release` (the default), not one that
# `cargo test` rebuilt: the test build turns on dev-dependencies' features,
# and its functions' names differ.
# Run it again after a toolchain or dependency upgrade: the names carry a
# hash that changes with them. scripts/bench-memory.sh says how much of the
# list the binary still has. Needs valgrind and smtp-sink.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
HERALD=${HERALD:-$repo/target/release/herald}
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[[ -x $SINK ]] || { echo "needs Postfix's smtp-sink (apt-get install postfix)" >&2; exit 1; }
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet

work=$(mktemp -d)
sink_pid=
cleanup() {
    [[ -n $sink_pid ]] && kill "$sink_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SINK" -u nobody "127.0.0.1:$port" 256 >/dev/null 2>&1 &
sink_pid=$!
sleep 0.3

python3 - "$work/list.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("email,first_name\n")
    for i in range(1000):
        f.write(f"reader{i}@example{i % 97}.org,Reader{i}\n")
PY
export HERALD_UNSUBSCRIBE_SECRET=order-code-not-a-real-secret
post=examples/inside-open-infrastructure-example.md
corpus=${HERALD_CORPUS:-$repo/../shared/corpus}
preview_post=${BENCH_POST:-$corpus/annual-reports/2023.md}
[[ -f $preview_post ]] || { echo "post to preview not found: $preview_post (set HERALD_CORPUS or BENCH_POST)" >&2; exit 1; }
grind() { # name, herald's arguments...
    local name=$1
    shift
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$name.cg" \
        "$HERALD" "$@" >/dev/null 2>"$work/$name.log" ||
        { echo "herald $* failed under callgrind:" >&2; cat "$work/$name.log" >&2; exit 1; }
}
grind version --version
grind dry send "$post" --subscribers "$work/list.csv" --config herald.example.yaml \
    --dry-run --outbox "$work/outbox" --journal "$work/none"
grind send send "$post" --subscribers "$work/list.csv" --config herald.example.yaml \
    --smtp "smtp://127.0.0.1:$port?tls=none" --connections 8 --yes --journal "$work/journal"
grind preview preview "$preview_post" --out "$work/preview"

# The functions of the herald binary with their own instructions, summed
# over the runs of a group; callgrind names a function once, then by its
# number. The groups are listed one after the other (`--` between them), a
# function only in the first group it is in.
python3 - "$HERALD" "$work"/version.cg "$work"/dry.cg "$work"/send.cg -- "$work"/preview.cg \
    >packaging/code-order.txt <<'PY'
import collections, os, re, sys
binary = os.path.realpath(sys.argv[1])
name_re = re.compile(r"^(c?ob|c?fn|c?fl|fi|fe)=\((\d+)\)(?: (.*))?$")
groups = [[]]
for arg in sys.argv[2:]:
    if arg == "--":
        groups.append([])
    else:
        groups[-1].append(arg)


def costs(paths):
    cost = collections.Counter()
    for path in paths:
        names, objects = {}, {}
        ours = False
        fn = None
        after_call = False
        for line in open(path, errors="replace"):
            line = line.rstrip("\n")
            m = name_re.match(line)
            if m:
                kind, ident, name = m.groups()
                table = objects if kind.endswith("ob") else names if kind.endswith("fn") else None
                if table is not None and name is not None:
                    table[ident] = name
                if kind == "ob":
                    ours = os.path.realpath(objects[ident]) == binary
                elif kind == "fn":
                    fn = names[ident]
                    if ours:
                        cost[fn] += 0
                continue
            if line.startswith("calls="):
                after_call = True  # the next line is the callee's cost, not fn's
                continue
            if line[:1].isdigit() or line[:1] in ("+", "-", "*"):
                parts = line.split()
                if after_call:
                    after_call = False
                elif ours and fn and len(parts) >= 2:
                    cost[fn] += int(parts[1])
    return cost

listed = set()
for group in groups:
    for name, _ in sorted(costs(group).items(), key=lambda kv: (-kv[1], kv[0])):
        if not name.startswith("0x") and name not in listed:
            listed.add(name)
            print(name)
PY
echo "packaging/code-order.txt: $(wc -l <packaging/code-order.txt) functions" >&2
