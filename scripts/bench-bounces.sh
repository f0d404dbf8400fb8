#!/usr/bin/env bash
# How fast `herald bounces` reads a Maildir, against Python's email parser
# reading the same messages, in the same run, on one core each:
#
#   scripts/bench-bounces.sh            # 10,000 messages
#   N=50000 scripts/bench-bounces.sh
#
# The Maildir holds the real bounces of ../shared/bounces/mail repeated
# until N (each copy made unique by a header, so none is taken for
# another). herald runs `bounces --maildir DIR --dry-run --json` (reading,
# classifying and matching every message against a journal; --dry-run so
# every run does the same work); the peer parses each file with
# `email.message_from_binary_file` (policy=default) and walks its parts,
# which is less than herald does. Goal (issue 13): 2,000 messages/s or more.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
N=${N:-10000}
HERALD=${HERALD:-$repo/target/release/herald}
SRC=${BOUNCES:-$repo/../shared/bounces/mail}
[[ -d $SRC ]] || { echo "needs $SRC (../shared/bounces)" >&2; exit 1; }
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet
one_core=()
command -v taskset >/dev/null && one_core=(taskset -c 0)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$SRC" "$work/Maildir" "$N" <<'PY'
import os, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = sorted(os.path.join(src, f) for f in os.listdir(src))
mails = [open(f, "rb").read() for f in files]
for d in ("new", "cur", "tmp"):
    os.makedirs(os.path.join(dst, d))
for i in range(n):
    with open(os.path.join(dst, "new", f"{i:06d}.bench"), "wb") as f:
        f.write(b"X-Bench: %d\n" % i + mails[i % len(mails)])
PY
size=$(du -sk "$work/Maildir" | cut -f1)
echo "Maildir: $N messages, $((size / 1024)) MB, on one core each"

cd "$work"
start=$(date +%s.%N)
# Exit 3 says some messages need a person (not understood, or reports that
# prove nothing: real bounces carry no token of this journal's): expected
# here. Anything else is a failure.
rc=0
HERALD_UNSUBSCRIBE_SECRET=bench "${one_core[@]}" "$HERALD" bounces --maildir "$work/Maildir" \
    --dry-run --json >herald.json || rc=$?
end=$(date +%s.%N)
if ((rc != 0 && rc != 3)); then
    echo "herald bounces exited $rc" >&2
    exit 1
fi
herald_rate=$(python3 -c "import sys; print(round($N / ($end - $start)))")
python3 - <<'PY'
import json
s = json.load(open("herald.json"))["summary"]
print("  herald read: %(messages)d messages, %(bounces)d bounces, %(complaints)d complaints, "
      "%(auto_replies)d auto-replies, %(not_bounces)d other, %(not_understood)d not understood" % s)
PY

start=$(date +%s.%N)
"${one_core[@]}" python3 - "$work/Maildir/new" <<'PY'
import email, email.policy, os, sys
d = sys.argv[1]
parts = 0
for name in os.listdir(d):
    with open(os.path.join(d, name), "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    for p in m.walk():
        parts += 1
        p.get_content_type()
PY
end=$(date +%s.%N)
peer_rate=$(python3 -c "import sys; print(round($N / ($end - $start)))")

echo "herald bounces: $herald_rate messages/s (goal 2,000)"
echo "Python email parser: $peer_rate messages/s"
python3 -c "print('ratio herald / Python: %.2f' % ($herald_rate / $peer_rate))"
