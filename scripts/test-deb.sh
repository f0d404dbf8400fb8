#!/usr/bin/env bash
# Tests the Debian package as an administrator gets it (issue 27): builds it
# (scripts/build-deb.sh), unpacks it into a scratch root, checks it holds
# what README "Install" promises, runs the packaged binary (--version,
# `herald init`, a dry run of the example issue), renders a man page with
# `man -l`, loads the completions in bash, and checks the systemd units with
# `systemd-analyze verify` and their hardening with `systemd-analyze
# security`. Nothing is installed on this machine.
#
#   scripts/test-deb.sh        (SKIP_BUILD=1: package target/release/herald as it is)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { echo "test-deb: FAILED: $*" >&2; exit 1; }

deb=$(scripts/build-deb.sh)
[[ -f $deb ]] || fail "build-deb.sh printed no package"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/herald-deb.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
root=$scratch/root
dpkg-deb -x "$deb" "$root"
echo "package: $deb ($(du -k "$deb" | cut -f1) KB)"

for f in usr/bin/herald \
    usr/share/man/man1/herald.1.gz usr/share/man/man1/herald-send.1.gz \
    usr/share/man/man1/herald-init.1.gz usr/share/man/man1/herald-suppress-add.1.gz \
    usr/share/bash-completion/completions/herald usr/share/zsh/vendor-completions/_herald \
    usr/share/fish/vendor_completions.d/herald.fish \
    usr/share/doc/herald/herald.example.yaml usr/share/doc/herald/copyright \
    usr/lib/systemd/system/herald-serve.service usr/lib/systemd/system/herald-send.service \
    usr/lib/systemd/system/herald-send.timer; do
    [[ -e $root/$f ]] || fail "the package lacks /$f"
done
# One man page per command, nested ones too: as many as `herald help` lists, and more.
pages=$(ls "$root/usr/share/man/man1" | wc -l)
echo "man pages: $pages"
((pages >= 10)) || fail "only $pages man pages"

# The C library the package says it needs is one this machine has.
need=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
[[ -n $need ]] || fail "the package does not say which glibc it needs"
# No `head` in these pipelines: under pipefail the writer it cuts off dies
# of SIGPIPE and fails the script (exit 141).
have=$(ldd --version 2>&1 | sed -n '1s/.* \([0-9][0-9.]*\)$/\1/p')
echo "needs glibc >= $need; this machine has $have"
[[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | sed -n 1p) == "$need" ]] || fail "glibc $need is newer than this machine's $have"

bin=$root/usr/bin/herald
"$bin" --version | grep '^herald [0-9]' >/dev/null || fail "--version"
work=$scratch/work
mkdir -p "$work"
( cd "$work" && env -u HERALD_UNSUBSCRIBE_SECRET "$bin" init news >"$scratch/init.out" ) || fail "herald init"
grep -q '^4\. ' "$scratch/init.out" || fail "herald init printed no four next steps"
( cd "$work/news" && HERALD_UNSUBSCRIBE_SECRET=package-test-secret-0123456789abcdef \
    "$bin" send posts/inside-open-infrastructure-example.md --subscribers subscribers.csv \
    --dry-run --outbox dry >"$scratch/dry.out" 2>&1 ) || { cat "$scratch/dry.out" >&2; fail "the dry run"; }
n=$(find "$work/news/dry" -name '*.eml' | wc -l)
((n == 1)) || fail "the dry run wrote $n messages, not 1"
echo "packaged binary: --version, init and a dry run (1 message) work"

# The timer's job as systemd runs it: the packaged herald-send.service's own
# ExecStart= line, with no terminal (setsid, stdin from /dev/null), in the
# state folder its WorkingDirectory= and StateDirectory= name (here a scratch
# one, given as systemd gives it: STATE_DIRECTORY), the secrets and the relay
# from an environment file as its EnvironmentFile= reads them, against a
# local smtp-sink. A run that sent nothing because it asked for a terminal
# (no --yes) would have gone unnoticed under the timer.
unit=$root/usr/lib/systemd/system/herald-send.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ $exec_start == /usr/bin/herald\ * ]] || fail "herald-send.service runs '$exec_start', not /usr/bin/herald"
[[ $(sed -n 's/^WorkingDirectory=//p' "$unit") == /var/lib/herald ]] || fail "herald-send.service does not work in /var/lib/herald"
grep -q '^StateDirectory=herald$' "$unit" || fail "herald-send.service has no StateDirectory=herald"
grep -q '^SuccessExitStatus=4$' "$unit" || fail "herald-send.service does not take exit 4 (nothing due) as success"
read -r -a argv <<<"${exec_start#/usr/bin/herald }"
state=$scratch/var-lib-herald
( cd "$scratch" && "$bin" init "$state" >/dev/null ) || fail "herald init of the state folder"
# Due a minute ago: within late_grace, so it is sent.
due=$(date -u -d '1 minute ago' +%Y-%m-%dT%H:%M:%SZ)
sed -i "0,/^title:/s//send_at: $due\ntitle:/" "$state/posts/inside-open-infrastructure-example.md"
grep -q "^send_at: $due" "$state/posts/inside-open-infrastructure-example.md" || fail "could not make the example post due"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dumps=$scratch/sink
mkdir -m 0777 "$dumps"
# smtp-sink writes as `nobody`, who must get through the scratch folder.
chmod 0711 "$scratch"
smtp-sink -u nobody -d "$dumps/%H%M%S." "127.0.0.1:$port" 64 >/dev/null 2>&1 &
sink=$!
trap 'kill "$sink" 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
cat >"$scratch/herald.env" <<EOF
HERALD_UNSUBSCRIBE_SECRET=package-test-secret-0123456789abcdef
HERALD_SMTP_URL=smtp://127.0.0.1:$port?tls=none
EOF
timer_run() {
    ( cd "$state" && set -a && . "$scratch/herald.env" && set +a &&
        STATE_DIRECTORY=$state setsid "$bin" "${argv[@]}" </dev/null >>"$scratch/timer.out" 2>&1 )
}
received() { grep -l '^X-Rcpt-Args: <you@example.org>' "$dumps"/* 2>/dev/null | wc -l; }
code=0
timer_run || code=$?
((code == 0)) || { cat "$scratch/timer.out" >&2; fail "herald-send.service's ExecStart exited $code with a post due, not 0"; }
n=$(received)
((n == 1)) || { cat "$scratch/timer.out" >&2; fail "the sink got $n messages from the timer's run, not 1"; }
code=0
timer_run || code=$?
((code == 4)) || { cat "$scratch/timer.out" >&2; fail "a second timer run exited $code, not 4 (nothing due)"; }
n=$(received)
((n == 1)) || fail "the second timer run sent again: the sink has $n messages"
echo "herald-send.service's ExecStart, no terminal: sent the due post (exit 0), then nothing due (exit 4)"

MANWIDTH=80 man -l "$root/usr/share/man/man1/herald-send.1.gz" 2>/dev/null >"$scratch/man.txt" || fail "man -l herald-send.1.gz"
grep -q 'herald send' "$scratch/man.txt" && grep -q -- '--dry-run' "$scratch/man.txt" || fail "the herald-send page lacks its name or --dry-run"
echo "man -l herald-send.1.gz: $(wc -l <"$scratch/man.txt") lines"

bash -c "source '$root/usr/share/bash-completion/completions/herald' && complete -p herald" >/dev/null \
    || fail "the bash completion does not load"

# systemd-analyze needs the system's own units (sysinit.target...) under
# --root: copy them beside the package's, without overwriting those.
cp -an /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null || true
units=("$root"/usr/lib/systemd/system/herald-*)
out=$(systemd-analyze verify --man=no --root="$root" "${units[@]}" 2>&1) || { echo "$out" >&2; fail "systemd-analyze verify"; }
# Unknown keys are only warnings there: any word from it is a failure here.
[[ -z $out ]] || { echo "$out" >&2; fail "systemd-analyze verify had something to say"; }
echo "systemd-analyze verify: ${#units[@]} units, no complaint"
for unit in herald-serve.service herald-send.service; do
    # --threshold counts in tenths: 30 is an exposure of 3.0 ("OK" is below 4).
    line=$(systemd-analyze security --offline=yes --root="$root" --threshold=30 \
        "$root/usr/lib/systemd/system/$unit" 2>&1 | grep 'Overall exposure') \
        || fail "$unit is exposed above 3.0 (systemd-analyze security)"
    echo "$line"
done
echo "test-deb: ok"
