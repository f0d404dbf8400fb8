#!/usr/bin/env bash
# Validate the HTML that herald writes for every post of the shared corpus and
# for the bundled example, with html-validate (pinned in tools/node).
#
# For each post (CORPUS/*/**.md, CORPUS/seeds/*.txt and examples/*.md) it runs
#     herald preview POST --out TMP/<name>
# and then
#     html-validate -c tools/node/htmlvalidate-email.cjs   TMP/<name>/email.html
#     html-validate -c tools/node/htmlvalidate-preview.cjs TMP/<name>/index.html
# email.html is the email itself, checked against html-validate's recommended
# rules less those that conflict with how email HTML must be written (inline
# styles, Outlook's conditional comments and presentational attributes, ...;
# each exception and its reason is in htmlvalidate-email.cjs). index.html is
# the preview page around it, an ordinary web page: recommended rules, less
# the search-engine title length. Any error or warning fails the post.
#
# Builds nothing itself: build herald first (cargo build --release).
#
# Environment:
#   HERALD                herald binary        (default: target/release/herald)
#   HERALD_HTML_VALIDATE  html-validate CLI    (default: tools/node/node_modules/.bin/html-validate,
#                                               installed by: npm ci --prefix tools/node)
#   HERALD_CORPUS         corpus folder        (default: ../shared/corpus, relative to the repo root)
#   KEEP_TMP=1            keep the output folder and print where it is
#   CI=true               a missing corpus is an error instead of a skip (the
#                         example is still checked when the corpus is missing)
#
# Output: one "ok"/"FAIL" line per post, then "N passed, M failed".
# Exit status: 0 only if every post passed.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/posts.sh"

validator=$(tool HERALD_HTML_VALIDATE "$repo_root/tools/node/node_modules/.bin/html-validate")
email_config=$repo_root/tools/node/htmlvalidate-email.cjs
preview_config=$repo_root/tools/node/htmlvalidate-preview.cjs

find_corpus examples
need_herald
if [[ ! -x $validator ]]; then
    echo "ERROR: html-validate CLI not found: $validator" >&2
    echo "       install it with: npm ci --prefix tools/node --no-audit --no-fund (or set HERALD_HTML_VALIDATE)" >&2
    exit 1
fi
collect_posts true
make_tmp herald-validate-html

echo "herald:         $herald"
echo "html-validate:  $validator ($("$validator" --version 2>/dev/null | tr '\n' ' '))"
if $have_corpus; then sources="$corpus_label and examples/"; else sources="examples/"; fi
echo "posts:          ${#posts[@]} ($sources)"
echo "check:          email.html with tools/node/htmlvalidate-email.cjs,"
echo "                index.html with tools/node/htmlvalidate-preview.cjs"
echo

passed=0
failed=0
for i in "${!posts[@]}"; do
    post=${posts[$i]}
    rel=${labels[$i]}
    name=${rel%.*}
    name=${name//\//__}
    out=$tmp/$name
    log=$tmp/$name.log

    if ! preview "$post" "$out" >"$log" 2>&1; then
        echo "FAIL $rel: herald preview exited non-zero"
        show "$log"
        failed=$((failed + 1))
        continue
    fi
    if [[ ! -s $out/email.html || ! -s $out/index.html ]]; then
        echo "FAIL $rel: herald preview wrote no email.html or index.html"
        show "$log"
        failed=$((failed + 1))
        continue
    fi
    bad=()
    if ! timeout 120 "$validator" --config "$email_config" --max-warnings 0 \
        "$out/email.html" >"$log" 2>&1; then
        bad+=(email.html)
    fi
    if ! timeout 120 "$validator" --config "$preview_config" --max-warnings 0 \
        "$out/index.html" >>"$log" 2>&1; then
        bad+=(index.html)
    fi
    if ((${#bad[@]} > 0)); then
        echo "FAIL $rel: html-validate found problems in ${bad[*]}"
        # Paths in the report are the temporary folder's; show them short.
        sed -i -e "s#$tmp/##g" "$log"
        show "$log"
        failed=$((failed + 1))
        continue
    fi
    echo "ok   $rel"
    passed=$((passed + 1))
done

echo
echo "$passed passed, $failed failed"
((failed == 0))
