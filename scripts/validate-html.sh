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
if [[ -n ${HERALD_HTML_VALIDATE:-} ]]; then validator=$(resolve "$HERALD_HTML_VALIDATE" "$caller_pwd"); else validator=$repo_root/tools/node/node_modules/.bin/html-validate; fi
if [[ -n ${HERALD_CORPUS:-} ]]; then corpus=$(resolve "$HERALD_CORPUS" "$caller_pwd"); else corpus=$repo_root/../shared/corpus; fi
corpus_label=${HERALD_CORPUS:-../shared/corpus}
email_config=$repo_root/tools/node/htmlvalidate-email.cjs
preview_config=$repo_root/tools/node/htmlvalidate-preview.cjs

have_corpus=true
if [[ ! -d $corpus ]]; then
    if [[ ${CI:-} == true ]]; then
        echo "ERROR: $corpus_label not found (resolved: $corpus); CI=true requires the corpus" >&2
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
if [[ ! -x $validator ]]; then
    echo "ERROR: html-validate CLI not found: $validator" >&2
    echo "       install it with: npm ci --prefix tools/node --no-audit --no-fund (or set HERALD_HTML_VALIDATE)" >&2
    exit 1
fi

# The posts: Markdown files in the corpus's sub-folders (the corpus's own
# top-level README.md is not a post), the seeds (Markdown saved as .txt), and
# the repo's examples. Names are "folder/file" without the extension.
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

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-validate-html.XXXXXX")
if [[ ${KEEP_TMP:-} == 1 ]]; then
    echo "output kept in $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
fi

echo "herald:         $herald"
echo "html-validate:  $validator ($("$validator" --version 2>/dev/null | tr '\n' ' '))"
if $have_corpus; then sources="$corpus_label and examples/"; else sources="examples/"; fi
echo "posts:          ${#posts[@]} ($sources)"
echo "check:          email.html with tools/node/htmlvalidate-email.cjs,"
echo "                index.html with tools/node/htmlvalidate-preview.cjs"
echo

# Indent captured output under a FAIL line, keeping it short.
show() {
    sed -e '/^$/d' -e 's/^/    | /' "$1" | head -n 40
}

passed=0
failed=0
for i in "${!posts[@]}"; do
    post=${posts[$i]}
    rel=${labels[$i]}
    name=${rel%.*}
    name=${name//\//__}
    out=$tmp/$name
    log=$tmp/$name.log

    if ! timeout 120 "$herald" preview "$post" --out "$out" >"$log" 2>&1; then
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
