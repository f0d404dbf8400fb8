#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for herald's tests and benches: never a
# database someone started by hand.
#
#   scripts/pg-cluster.sh start DIR   # initdb into DIR, start it on a free
#                                     # port on 127.0.0.1, print the
#                                     # variables the tests read
#   scripts/pg-cluster.sh stop DIR    # stop it (DIR can then be removed)
#
# `start` prints, for `eval`:
#   HERALD_TEST_DATABASE_URL=postgres://herald@127.0.0.1:PORT/herald
#   HERALD_TEST_DATABASE_PASSWORD=...
# The role `herald` logs in with a password (scram-sha-256), as it would
# on a real server, and may create databases (each test makes its own).
# The server runs as the `postgres` user when started by root (initdb
# refuses root), as the caller otherwise. TLS is on, with a certificate
# made here for 127.0.0.1 (DIR/ca.pem is the CA to trust).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z $bin ]]; then
    bin=$(dirname "$(command -v initdb 2>/dev/null || command -v pg_ctl 2>/dev/null || echo /nonexistent/x)")
fi
[[ -x $bin/initdb ]] || { echo "PostgreSQL is not installed (no initdb); apt-get install postgresql" >&2; exit 1; }

as_owner() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case $cmd in
start)
    data=$dir/data
    [[ ! -e $data ]] || { echo "$data exists: stop that cluster and remove $dir first" >&2; exit 1; }
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown postgres: "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    printf '%s\n' "$password" >"$dir/pw"
    [[ $(id -u) == 0 ]] && chown postgres: "$dir/pw"
    as_owner "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # A certificate for 127.0.0.1 signed by a CA of its own, so the tests
    # can connect over TLS and check the server's name.
    (
        cd "$dir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=herald test CA" \
            -keyout ca.key -out ca.pem >/dev/null 2>&1
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr >/dev/null 2>&1
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out server.crt >/dev/null 2>&1
        chmod 600 server.key
        [[ $(id -u) == 0 ]] && chown postgres: server.key server.crt ca.pem
    )
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
ssl = on
ssl_cert_file = '$dir/server.crt'
ssl_key_file = '$dir/server.key'
fsync = on
EOF
    as_owner "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
        -c "CREATE ROLE herald LOGIN CREATEDB PASSWORD '$password'" \
        -c "CREATE DATABASE herald OWNER herald" >/dev/null
    echo "HERALD_TEST_DATABASE_URL=postgres://herald@127.0.0.1:$port/herald"
    echo "HERALD_TEST_DATABASE_PASSWORD=$password"
    echo "HERALD_TEST_DATABASE_CA=$dir/ca.pem"
    ;;
stop)
    [[ -d $dir/data ]] || exit 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
