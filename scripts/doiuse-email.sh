#!/usr/bin/env bash
# Check the email HTML herald writes for every post of the shared corpus and
# for the bundled example against caniemail.com's support data for Gmail,
# Outlook and Apple Mail (doiuse-email, pinned in tools/node; the data is
# bundled in the package, nothing is fetched), and compare the errors with
# the baseline recorded in tests/doiuse-baseline.json.
#
# For each post (CORPUS/*/**.md, CORPUS/seeds/*.txt and examples/*.md) it runs
#     herald preview POST --out TMP/<name>
# and then, once for all posts,
#     node tools/node/doiuse-email-check.mjs BASELINE POST=TMP/<name>/email.html ...
# which counts doiuse-email's errors (a feature one client does not support
# at all, once per element and client) per post and per feature, and fails a
# post whose count for any feature rose above its baseline, or a post not in
# the baseline that uses a feature no recorded post uses. The rules are spelt
# out at the top of tools/node/doiuse-email-check.mjs.
#
# Re-record the baseline after a deliberate change to the output:
#     UPDATE_BASELINE=1 scripts/doiuse-email.sh
# and commit tests/doiuse-baseline.json (review its diff: it says, per post
# and feature, what got better or worse).
#
# Builds nothing itself: build herald first (cargo build --release).
#
# Environment:
#   HERALD                  herald binary   (default: target/release/herald)
#   HERALD_CORPUS           corpus folder   (default: ../shared/corpus, relative to the repo root)
#   HERALD_DOIUSE_BASELINE  baseline file   (default: tests/doiuse-baseline.json)
#   UPDATE_BASELINE=1       write the baseline from this run instead of comparing
#                           (needs the corpus)
#   KEEP_TMP=1              keep the output folder and print where it is
#   CI=true                 a missing corpus is an error instead of a skip (the
#                           example is still checked when the corpus is missing)
# doiuse-email is installed by: npm ci --prefix tools/node
#
# Output: a table of posts (errors now, in the baseline, result) and one of
# features, then "N passed, M failed".
# Exit status: 0 only if every post passed (or the baseline was written).
set -euo pipefail

caller_pwd=$PWD
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# User-given paths are taken relative to the caller's directory; defaults are
# relative to the repo root. A bare command name is looked up on PATH.
resolve() {
    local p=$1 base=$2
    case $p in
        /*) printf '%s\n' "$p" ;;
        */*) printf '%s\n' "$base/$p" ;;
        *) type -P "$p" 2>/dev/null || printf '%s\n' "$p" ;;
    esac
}

if [[ -n ${HERALD:-} ]]; then herald=$(resolve "$HERALD" "$caller_pwd"); else herald=$repo_root/target/release/herald; fi
if [[ -n ${HERALD_CORPUS:-} ]]; then corpus=$(resolve "$HERALD_CORPUS" "$caller_pwd"); else corpus=$repo_root/../shared/corpus; fi
if [[ -n ${HERALD_DOIUSE_BASELINE:-} ]]; then
    case $HERALD_DOIUSE_BASELINE in
        /*) baseline=$HERALD_DOIUSE_BASELINE ;;
        *) baseline=$caller_pwd/$HERALD_DOIUSE_BASELINE ;;
    esac
else
    baseline=$repo_root/tests/doiuse-baseline.json
fi
corpus_label=${HERALD_CORPUS:-../shared/corpus}
checker=$repo_root/tools/node/doiuse-email-check.mjs

have_corpus=true
if [[ ! -d $corpus ]]; then
    if [[ ${CI:-} == true ]]; then
        echo "ERROR: $corpus_label not found (resolved: $corpus); CI=true requires the corpus" >&2
        exit 1
    fi
    if [[ ${UPDATE_BASELINE:-} == 1 ]]; then
        echo "ERROR: $corpus_label not found (resolved: $corpus); the baseline is recorded from the whole corpus" >&2
        exit 1
    fi
    echo "SKIPPED: $corpus_label not found; checking the example only"
    have_corpus=false
fi

if [[ ! -x $herald ]]; then
    echo "ERROR: herald binary not found or not executable: $herald" >&2
    echo "       build it first (cargo build --release) or set HERALD=/path/to/herald" >&2
    exit 1
fi
if [[ ! -f $repo_root/tools/node/node_modules/doiuse-email/package.json ]]; then
    echo "ERROR: doiuse-email not installed in tools/node/node_modules" >&2
    echo "       install it with: npm ci --prefix tools/node --no-audit --no-fund" >&2
    exit 1
fi

# The posts: Markdown files in the corpus's sub-folders (the corpus's own
# top-level README.md is not a post), the seeds (Markdown saved as .txt), and
# the repo's examples. Labels are paths relative to the corpus or the repo:
# they are the baseline's keys.
posts=()
labels=()
if $have_corpus; then
    mapfile -d '' found < <(
        {
            find "$corpus" -mindepth 2 -type f -name '*.md' -print0
            if [[ -d $corpus/seeds ]]; then
                find "$corpus/seeds" -maxdepth 1 -type f -name '*.txt' -print0
            fi
        } | sort -z
    )
    if ((${#found[@]} == 0)); then
        echo "ERROR: no posts found under $corpus_label" >&2
        exit 1
    fi
    for post in "${found[@]}"; do
        posts+=("$post")
        labels+=("${post#"$corpus"/}")
    done
fi
mapfile -d '' found < <(find "$repo_root/examples" -maxdepth 1 -type f -name '*.md' -print0 | sort -z)
for post in "${found[@]}"; do
    posts+=("$post")
    labels+=("${post#"$repo_root"/}")
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-doiuse-email.XXXXXX")
if [[ ${KEEP_TMP:-} == 1 ]]; then
    echo "output kept in $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
fi

if $have_corpus; then sources="$corpus_label and examples/"; else sources="examples/"; fi
echo "herald:    $herald"
echo "node:      $(node --version)"
echo "posts:     ${#posts[@]} ($sources)"
echo "baseline:  ${baseline#"$repo_root"/}$([[ ${UPDATE_BASELINE:-} == 1 ]] && echo ' (recording)' || true)"
echo "check:     doiuse-email errors for gmail.*, outlook.*, apple-mail.* in email.html"
echo

# Indent captured output under a FAIL line, keeping it short.
show() {
    sed -e 's/^/    | /' "$1" | head -n 40
}

pairs=()
preview_failed=0
for i in "${!posts[@]}"; do
    post=${posts[$i]}
    rel=${labels[$i]}
    name=${rel%.*}
    name=${name//\//__}
    out=$tmp/$name
    log=$tmp/$name.log
    if ! timeout 120 "$herald" preview "$post" --out "$out" >"$log" 2>&1 || [[ ! -s $out/email.html ]]; then
        echo "FAIL $rel: herald preview failed or wrote no email.html"
        show "$log"
        preview_failed=$((preview_failed + 1))
        continue
    fi
    pairs+=("$rel=$out/email.html")
done
if ((preview_failed > 0)); then
    echo
    echo "0 passed, $preview_failed failed"
    exit 1
fi

# The checker resolves doiuse-email from tools/node/node_modules.
node "$checker" "$baseline" "${pairs[@]}"
