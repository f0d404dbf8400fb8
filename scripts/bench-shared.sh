#!/usr/bin/env bash
# Several senders on one PostgreSQL store, against one sender on the SQLite
# journal, in the same run (these machines are noisy: compare ratios).
#
#   scripts/bench-shared.sh                 # 10,000 recipients
#   N=20000 scripts/bench-shared.sh
#
# Each case sends the example issue to N recipients through the same
# Postfix smtp-sink on 127.0.0.1, 4 connections per sender, no rate limit:
#   sqlite      1 herald send, journal on disk
#   postgres/1  1 herald send with database_url
#   postgres/2  2 herald send at once on the same campaign and database
#   postgres/3  3 herald send at once
# and prints messages per second for each and its ratio to sqlite, then the
# database's own rate for claims (examples/bench_claims.rs: claim, mark
# sending, mark sent, with 3 claimers and no SMTP).
#
# Uses the PostgreSQL server of HERALD_TEST_DATABASE_URL (with
# HERALD_TEST_DATABASE_PASSWORD) when set, else starts a throwaway cluster
# with scripts/pg-cluster.sh and stops it at the end. The machine has few
# cores: senders, PostgreSQL and the sink share them, so more senders on one
# machine show the cost of sharing more than the gain of more hosts.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
N=${N:-10000}
HERALD=${HERALD:-$repo/target/release/herald}
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[[ -x $SINK ]] || { echo "needs Postfix's smtp-sink (apt-get install postfix)" >&2; exit 1; }
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --quiet
cargo build --release --quiet --example bench_claims

work=$(mktemp -d)
sink_pid=
own_pg=
cleanup() {
    [[ -n $sink_pid ]] && kill "$sink_pid" 2>/dev/null
    [[ -n $own_pg ]] && scripts/pg-cluster.sh stop "$own_pg"
    rm -rf "$work"
}
trap cleanup EXIT
if [[ -z ${HERALD_TEST_DATABASE_URL:-} ]]; then
    own_pg=$work/pg
    while IFS='=' read -r name value; do export "$name=$value"; done < <(scripts/pg-cluster.sh start "$own_pg")
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SINK" -u nobody "127.0.0.1:$port" 256 >/dev/null 2>&1 &
sink_pid=$!
sleep 0.3

python3 - "$N" "$work/list.csv" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("email,first_name\n")
    for i in range(n):
        f.write(f"reader{i}@example{i % 97}.org,Reader{i}\n")
PY
export HERALD_UNSUBSCRIBE_SECRET=bench-secret-not-a-real-one
relay="smtp://127.0.0.1:$port?tls=none"
admin=$HERALD_TEST_DATABASE_URL
base=${admin%/*}
psql_admin() { PGPASSWORD=$HERALD_TEST_DATABASE_PASSWORD psql "$admin" -q -v ON_ERROR_STOP=1 "$@"; }

# One case: $1 senders, $2 database url or "" for SQLite; prints seconds.
run_case() {
    local senders=$1 url=$2 pids=() i start
    rm -rf "$work/journal"
    start=$(date +%s.%N)
    for i in $(seq "$senders"); do
        HERALD_DATABASE_URL=$url HERALD_DATABASE_PASSWORD=$HERALD_TEST_DATABASE_PASSWORD \
            "$HERALD" send examples/inside-open-infrastructure-example.md --subscribers "$work/list.csv" \
            --config herald.example.yaml --smtp "$relay" --connections 4 --yes --journal "$work/journal" \
            --json >"$work/report-$i.json" 2>"$work/err-$i" &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { echo "sender $((i + 1)) failed:" >&2; cat "$work/err-$((i + 1))" >&2; exit 1; }
    done
    python3 -c "print($(date +%s.%N) - $start)"
}

sent_in() { # database url or "": how many the campaign's journal says were sent
    HERALD_DATABASE_URL=$1 HERALD_DATABASE_PASSWORD=$HERALD_TEST_DATABASE_PASSWORD \
        "$HERALD" status --journal "$work/journal" --json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["campaign"]["counts"]["sent"])'
}

echo "messages:  $N, 4 connections per sender, to smtp-sink on 127.0.0.1:$port; PostgreSQL at ${admin%%@*}@…"
declare -A secs
secs[sqlite]=$(run_case 1 "")
[[ $(sent_in "") == "$N" ]] || { echo "sqlite: not all sent" >&2; exit 1; }
for k in 1 2 3; do
    db="herald_bench_$$_$k"
    psql_admin -c "CREATE DATABASE $db"
    secs[postgres/$k]=$(run_case "$k" "$base/$db")
    [[ $(sent_in "$base/$db") == "$N" ]] || { echo "postgres/$k: not all sent" >&2; exit 1; }
    psql_admin -c "DROP DATABASE $db WITH (FORCE)"
done
python3 - "$N" "${secs[sqlite]}" "${secs[postgres/1]}" "${secs[postgres/2]}" "${secs[postgres/3]}" <<'PY'
import sys
n = int(sys.argv[1])
s = [float(x) for x in sys.argv[2:]]
print(f"sqlite,     1 sender:  {n / s[0]:6.0f} msg/s (the reference)")
for k, t in zip((1, 2, 3), s[1:]):
    print(f"postgres,   {k} sender{'s' if k > 1 else ' '}: {n / t:6.0f} msg/s, {s[0] / t:.2f} x sqlite")
PY
target/release/examples/bench_claims "$((N * 2))" 3
