#!/usr/bin/env bash
# How fast herald turns a subscriber list into finished messages, and how
# much memory it needs, against mailmerge (PyPI `mailmerge`, a popular
# command-line mail merge tool) doing the same job in the same run.
#
#   scripts/bench-messages.sh            # 100,000 subscribers
#   N=20000 scripts/bench-messages.sh    # another size
#   DKIM=rsa scripts/bench-messages.sh   # signed: rsa, ed25519 or both
#   SKIP_PEER=1 scripts/bench-messages.sh # herald only, no mailmerge
#   BENCH_MILLION=1 scripts/bench-messages.sh
#                                        # also 1,000,000 rows for peak memory
#                                        # (writes about 29 GB of .eml files)
#
# herald: `herald send examples/... --dry-run` on the example issue, writing
# one .eml per subscriber (to /dev/shm when it has room, so the disk does
# not set the pace); no DKIM unless DKIM=rsa|ed25519|both (keys made with
# openssl for the run: a 2048-bit RSA key, an Ed25519 key). mailmerge: `mailmerge --dry-run --no-limit
# --output-format raw` with a template made from herald's own HTML and text
# parts, printing to /dev/null (it writes no files, so it does less work).
# Peak memory is the maximum resident set size from GNU time.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
N=${N:-100000}
PEER_N=${PEER_N:-1000}
HERALD=${HERALD:-$repo/target/release/herald}
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shm=$(mktemp -d /dev/shm/herald-bench.XXXXXX 2>/dev/null || true)
trap 'rm -rf "$work" ${shm:+"$shm"}' EXIT
outroot_for() { # rows: /dev/shm when it has room for ~30 KB a message (twice over), else the work folder
    local free_kb
    free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}' || echo 0)
    if [[ -n $shm ]] && (( ${free_kb:-0} > $1 * 60 )); then echo "$shm"; else echo "$work"; fi
}

gen_csv() { # rows file
    python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("email,first_name,last_name\n")
    for i in range(n):
        f.write(f"person{i}@example{i % 97}.org,First{i},Last{i}\n")
PY
}

export HERALD_UNSUBSCRIBE_SECRET=bench-secret-not-a-real-one

case ${DKIM:-} in
    "") ;;
    rsa | ed25519 | both)
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
        openssl genpkey -algorithm ED25519 -out "$work/ed25519.pem"
        export HERALD_DKIM_DOMAIN=example.org HERALD_DKIM_SELECTOR=bench
        first=$DKIM
        [[ $DKIM == both ]] && first=rsa
        export HERALD_DKIM_KEY_FILE=$work/$first.pem
        if [[ $DKIM == both ]]; then
            export HERALD_DKIM_SELECTOR_2=bench-ed HERALD_DKIM_KEY_FILE_2=$work/ed25519.pem
        fi
        ;;
    *) echo "DKIM must be rsa, ed25519 or both" >&2; exit 2 ;;
esac

run_herald() { # rows
    local rows=$1 csv=$work/subs-$1.csv out
    out=$(outroot_for "$rows")/outbox-$1
    gen_csv "$rows" "$csv"
    /usr/bin/time -f '%e %M' -o "$work/time-$rows" \
        "$HERALD" send examples/inside-open-infrastructure-example.md \
        --subscribers "$csv" --dry-run --config herald.example.yaml --outbox "$out" --json >"$work/summary-$rows.json"
    local written
    written=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages_written"])' "$work/summary-$rows.json")
    [[ $written == "$rows" ]] || { echo "herald wrote $written messages, expected $rows" >&2; exit 1; }
    read -r secs kb <"$work/time-$rows"
    rm -rf "$out"
    echo "$secs $kb $(dirname "$out")"
}

echo "herald:    $("$HERALD" --version) ($HERALD)${DKIM:+, DKIM: $DKIM}"
read -r h_secs h_kb h_where < <(run_herald "$N")
h_rate=$(python3 -c "print(f'{$N / $h_secs:.0f}')")
printf 'herald:    %d messages in %.2f s = %s msg/s, peak memory %.1f MB (outbox in %s)\n' "$N" "$h_secs" "$h_rate" "$(python3 -c "print($h_kb/1024)")" "$h_where"
[[ -z ${SKIP_PEER:-} ]] || exit 0

# The peer, in a venv of its own under target/.
venv=$repo/target/bench-venv
[[ -x $venv/bin/mailmerge ]] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check mailmerge==2.3.0; }
"$HERALD" preview examples/inside-open-infrastructure-example.md --config herald.example.yaml --out "$work/preview" >/dev/null
python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
html = open(f"{w}/preview/email.html").read().replace("Hello there,", "Hello {{first_name}},").replace("preview=1", "u={{email}}")
text = open(f"{w}/preview/email.txt").read().replace("Hello there,", "Hello {{first_name}},").replace("preview=1", "u={{email}}")
with open(f"{w}/template.txt", "w") as f:
    f.write("TO: {{first_name}} {{last_name}} <{{email}}>\nSUBJECT: Inside Open Infrastructure: Example Issue\n"
            "FROM: OpenInfra Foundation <newsletter@example.org>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/alternative; boundary="herald-bench-boundary"\n\n'
            "--herald-bench-boundary\nContent-Type: text/plain; charset=utf-8\n\n" + text +
            "\n--herald-bench-boundary\nContent-Type: text/html; charset=utf-8\n\n" + html +
            "\n--herald-bench-boundary--\n")
with open(f"{w}/server.conf", "w") as f:
    f.write("[smtp_server]\nhost = 127.0.0.1\nport = 25\nsecurity = Never\nusername = None\n")
PY
gen_csv "$PEER_N" "$work/peer.csv"
/usr/bin/time -f '%e %M' -o "$work/time-peer" "$venv/bin/mailmerge" --dry-run --no-limit --output-format raw \
    --template "$work/template.txt" --database "$work/peer.csv" --config "$work/server.conf" >/dev/null
read -r p_secs p_kb <"$work/time-peer"
p_rate=$(python3 -c "print(f'{$PEER_N / $p_secs:.0f}')")
printf 'mailmerge: %d messages in %.2f s = %s msg/s, peak memory %.1f MB\n' "$PEER_N" "$p_secs" "$p_rate" "$(python3 -c "print($p_kb/1024)")"
printf 'ratio:     herald makes messages %.1fx faster than mailmerge\n' "$(python3 -c "print($h_rate / $p_rate)")"

if [[ -n ${BENCH_MILLION:-} ]]; then
    read -r m_secs m_kb m_where < <(run_herald 1000000)
    printf 'herald:    1000000 messages in %.1f s, peak memory %.1f MB (goal: under 100 MB; outbox in %s)\n' "$m_secs" "$(python3 -c "print($m_kb/1024)")" "$m_where"
fi
