# Shared by the scripts that check what herald writes for every post
# (validate-mjml.sh, validate-html.sh, doiuse-email.sh). Source it after
# `set -euo pipefail`; it sets caller_pwd and repo_root.
#
# Environment it reads:
#   HERALD         herald binary   (default: target/release/herald)
#   HERALD_CORPUS  corpus folder   (default: ../shared/corpus, relative to the repo root)
#   KEEP_TMP=1     keep the output folder and print where it is
#   CI=true        a missing corpus is an error instead of a skip

caller_pwd=$PWD
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

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

# `tool VAR DEFAULT`: the path in $VAR (resolved from the caller's folder) or DEFAULT.
tool() {
    local value=${!1:-}
    if [[ -n $value ]]; then resolve "$value" "$caller_pwd"; else printf '%s\n' "$2"; fi
}

herald=$(tool HERALD "$repo_root/target/release/herald")
corpus=$(tool HERALD_CORPUS "$repo_root/../shared/corpus")
corpus_label=${HERALD_CORPUS:-../shared/corpus}

# `find_corpus WITHOUT`: sets have_corpus. Without the corpus: an error under
# CI=true; else a skip, of everything (WITHOUT=exit) or of the corpus only
# (WITHOUT=examples).
find_corpus() {
    have_corpus=true
    [[ -d $corpus ]] && return 0
    if [[ ${CI:-} == true ]]; then
        echo "ERROR: $corpus_label not found (resolved: $corpus); CI=true requires the corpus" >&2
        exit 1
    fi
    if [[ $1 == exit ]]; then
        echo "SKIPPED: $corpus_label not found"
        exit 0
    fi
    echo "SKIPPED: $corpus_label not found; checking the example only"
    have_corpus=false
}

need_herald() {
    if [[ ! -x $herald ]]; then
        echo "ERROR: herald binary not found or not executable: $herald" >&2
        echo "       build it first (cargo build --release) or set HERALD=/path/to/herald" >&2
        exit 1
    fi
}

# `collect_posts WITH_EXAMPLES`: fills posts (paths) and labels (paths relative
# to the corpus or the repo). The posts are the Markdown files in the corpus's
# sub-folders (its own top-level README.md is not a post), the seeds (Markdown
# saved as .txt) and, with WITH_EXAMPLES=true, the repo's examples/*.md.
collect_posts() {
    local found post
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
    if [[ $1 == true ]]; then
        mapfile -d '' found < <(find "$repo_root/examples" -maxdepth 1 -type f -name '*.md' -print0 | sort -z)
        for post in "${found[@]}"; do
            posts+=("$post")
            labels+=("${post#"$repo_root"/}")
        done
    fi
}

# `make_tmp NAME`: a fresh folder in $tmp, removed at exit unless KEEP_TMP=1.
make_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    if [[ ${KEEP_TMP:-} == 1 ]]; then
        echo "output kept in $tmp"
    else
        trap 'rm -rf "$tmp"' EXIT
    fi
}

# Indent captured output under a FAIL line, keeping it short.
show() {
    sed -e '/^$/d' -e 's/^/    | /' "$1" | head -n 40
}

# `preview POST OUT`: herald's preview of POST into OUT, as it would be sent:
# the annual reports are too long for Gmail whole and are sent as `--fit`
# digests, the other posts as they are.
preview() {
    local fit=()
    [[ $1 == */annual-reports/* ]] && fit=(--fit)
    timeout 120 "$herald" preview "${fit[@]}" "$1" --out "$2"
}
