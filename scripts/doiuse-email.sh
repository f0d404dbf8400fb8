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

source "$(dirname "${BASH_SOURCE[0]}")/lib/posts.sh"

if [[ -n ${HERALD_DOIUSE_BASELINE:-} ]]; then
    case $HERALD_DOIUSE_BASELINE in
        /*) baseline=$HERALD_DOIUSE_BASELINE ;;
        *) baseline=$caller_pwd/$HERALD_DOIUSE_BASELINE ;;
    esac
else
    baseline=$repo_root/tests/doiuse-baseline.json
fi
checker=$repo_root/tools/node/doiuse-email-check.mjs

if [[ ! -d $corpus && ${UPDATE_BASELINE:-} == 1 ]]; then
    echo "ERROR: $corpus_label not found (resolved: $corpus); the baseline is recorded from the whole corpus" >&2
    exit 1
fi
find_corpus examples
need_herald
if [[ ! -f $repo_root/tools/node/node_modules/doiuse-email/package.json ]]; then
    echo "ERROR: doiuse-email not installed in tools/node/node_modules" >&2
    echo "       install it with: npm ci --prefix tools/node --no-audit --no-fund" >&2
    exit 1
fi
# Labels (paths relative to the corpus or the repo) are the baseline's keys.
collect_posts true
make_tmp herald-doiuse-email

if $have_corpus; then sources="$corpus_label and examples/"; else sources="examples/"; fi
echo "herald:    $herald"
echo "node:      $(node --version)"
echo "posts:     ${#posts[@]} ($sources)"
echo "baseline:  ${baseline#"$repo_root"/}$([[ ${UPDATE_BASELINE:-} == 1 ]] && echo ' (recording)' || true)"
echo "check:     doiuse-email errors for gmail.*, outlook.*, apple-mail.* in email.html"
echo

pairs=()
preview_failed=0
for i in "${!posts[@]}"; do
    post=${posts[$i]}
    rel=${labels[$i]}
    name=${rel%.*}
    name=${name//\//__}
    out=$tmp/$name
    log=$tmp/$name.log
    if ! preview "$post" "$out" >"$log" 2>&1 || [[ ! -s $out/email.html ]]; then
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
