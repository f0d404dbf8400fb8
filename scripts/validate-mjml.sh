#!/usr/bin/env bash
# Validate the MJML that herald emits for every post of the shared corpus with
# the official mjml CLI (the reference implementation), in strict mode.
#
# For each corpus post (CORPUS/*/**.md and CORPUS/seeds/*.txt; seeds are
# Markdown with a .txt extension) it runs
#     herald preview POST --out TMP/<name>
# and then
#     mjml -r TMP/<name>/email.mjml --config.validationLevel=strict -o TMP/<name>/mjml-reference.html
# which exits non-zero on any validation error (unknown/illegal attribute,
# invalid attribute value, element not allowed in its parent, unknown mj-*
# element, unparsable document) and on any render failure.
# mjml does not look inside "ending tags" (mj-text, mj-button, mj-table,
# mj-raw, ...): their content is passed through as HTML, so an mj-image inside
# an mj-text passes mjml's strict validation. A small extra check here fails
# on any <mj-...> element found inside an ending tag.
#
# Builds nothing itself: build herald first (cargo build --release).
#
# Environment:
#   HERALD         herald binary            (default: target/release/herald)
#   HERALD_MJML    official mjml CLI        (default: tools/node/node_modules/.bin/mjml,
#                                            installed by: npm ci --prefix tools/node)
#   HERALD_CORPUS  corpus folder            (default: ../shared/corpus, relative to the repo root)
#   KEEP_TMP=1     keep the output folder and print where it is
#   CI=true        a missing corpus is an error instead of a skip
#
# Output: one "ok"/"FAIL" line per post, then "N passed, M failed".
# Exit status: 0 only if every post passed (or the corpus is missing outside CI).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib/posts.sh"

mjml=$(tool HERALD_MJML "$repo_root/tools/node/node_modules/.bin/mjml")

find_corpus exit
need_herald
if [[ ! -x $mjml ]]; then
    echo "ERROR: mjml CLI not found: $mjml" >&2
    echo "       install it with: npm ci --prefix tools/node --no-audit --no-fund (or set HERALD_MJML)" >&2
    exit 1
fi
collect_posts false
make_tmp herald-validate-mjml

echo "herald:  $herald"
echo "mjml:    $mjml ($("$mjml" --version 2>/dev/null | tr '\n' ' '))"
echo "corpus:  $corpus_label (${#posts[@]} posts)"
echo "check:   mjml -r email.mjml --config.validationLevel=strict; no mj-* inside ending tags"
echo

passed=0
failed=0
for post in "${posts[@]}"; do
    rel=${post#"$corpus"/}
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
    if [[ ! -s $out/email.mjml ]]; then
        echo "FAIL $rel: herald preview wrote no $name/email.mjml"
        show "$log"
        failed=$((failed + 1))
        continue
    fi
    if ! timeout 120 "$mjml" -r "$out/email.mjml" --config.validationLevel=strict \
        -o "$out/mjml-reference.html" >"$log" 2>&1; then
        echo "FAIL $rel: mjml strict validation failed"
        show "$log"
        failed=$((failed + 1))
        continue
    fi
    if ! python3 - "$out/email.mjml" >"$log" 2>&1 <<'PY'
import re, sys
ending = "mj-text|mj-button|mj-table|mj-raw|mj-navbar-link|mj-accordion-title|mj-accordion-text|mj-social-element"
src = open(sys.argv[1], encoding="utf-8").read()
bad = 0
for m in re.finditer(r"<(" + ending + r")\b[^>]*(?<!/)>(.*?)</\1\s*>", src, re.S):
    inner = re.search(r"<mj-[a-z-]+", m.group(2))
    if inner:
        line = src.count("\n", 0, m.start(2) + inner.start()) + 1
        print(f"line {line}: <{inner.group(0)[1:]}> inside <{m.group(1)}> (mjml passes it through as HTML)")
        bad += 1
sys.exit(1 if bad else 0)
PY
    then
        echo "FAIL $rel: mj-* element inside an ending tag"
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
