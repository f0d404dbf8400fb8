#!/usr/bin/env bash
# Fails when the crate's top-level modules depend on each other in a cycle,
# when the modules directly inside a folder do, or when a folder uses one it
# may not (the folder rule, below: compose/ never uses deliver/, listen/,
# store/ or cli/; deliver/ never listen/ or cli/; listen/ never cli/; store/
# none of them; a leaf module at the top uses no folder).
#
# A cycle means no module can be understood, tested or changed without the
# others in it; keeping the graph acyclic keeps the pipeline a pipeline
# (post -> content -> images -> render -> fit -> check -> compose -> preview).
#
# Usage:
#   scripts/check-module-graph.sh [SRC_DIR]   (default: src/ of this repo)
#   scripts/check-module-graph.sh --self-test (shows the check can fail)
#
# A top-level module is src/NAME.rs or src/NAME/ (lib.rs and main.rs are the
# crate root, not modules). Module A depends on B when code under A names
# `crate::B` (in a path, a `use` line, or a grouped `use crate::{B, ...}`);
# comments and string literals do not count.
#
# Output: with no cycle, the modules in dependency order (each after all it
# uses) and exit 0; else every elementary cycle as `a -> b -> a`, each edge's
# first reference (file:line) and exit 1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ ${1:-} == --self-test ]]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/module-graph.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    # A cycle a -> b -> c -> a made of a plain path, a grouped use and a
    # submodule file; mentions in comments and strings must not count.
    mkdir -p "$tmp/cyclic/src/b"
    printf 'use crate::b::thing;\n// crate::d is only a comment\n' >"$tmp/cyclic/src/a.rs"
    printf 'mod inner;\npub fn thing() {}\n' >"$tmp/cyclic/src/b/mod.rs"
    printf 'use crate::{\n    c::{self, Other},\n    d,\n};\n' >"$tmp/cyclic/src/b/inner.rs"
    printf 'fn f() { crate::a::g(); let _ = "crate::b"; }\n' >"$tmp/cyclic/src/c.rs"
    printf 'pub fn d() {}\n' >"$tmp/cyclic/src/d.rs"
    printf 'pub mod a; pub mod b; pub mod c; pub mod d;\n' >"$tmp/cyclic/src/lib.rs"
    if out=$("$0" "$tmp/cyclic/src" 2>&1); then
        echo "self-test FAILED: a cyclic graph passed:"
        echo "$out"
        exit 1
    fi
    if ! grep -qx '  a -> b -> c -> a' <<<"$out" || grep -q -- '-> d -> ' <<<"$out"; then
        echo "self-test FAILED: expected exactly the cycle a -> b -> c -> a, got:"
        echo "$out"
        exit 1
    fi
    # Without the back edge c -> a the same modules are a valid order.
    printf 'fn f() { let _ = "crate::a"; crate::d::d(); }\n' >"$tmp/cyclic/src/c.rs"
    if ! out=$("$0" "$tmp/cyclic/src" 2>&1); then
        echo "self-test FAILED: an acyclic graph failed:"
        echo "$out"
        exit 1
    fi
    if ! grep -qx 'module order: d c b a' <<<"$out"; then
        echo "self-test FAILED: expected the order d c b a, got:"
        echo "$out"
        exit 1
    fi
    # The folder rule and cycles inside a folder: compose/ may not use
    # deliver/, a leaf uses no folder, and compose::a <-> compose::b (one edge
    # through `super::`) is a cycle.
    mkdir -p "$tmp/folders/src/compose" "$tmp/folders/src/deliver"
    printf 'pub mod a;\npub mod b;\n' >"$tmp/folders/src/compose/mod.rs"
    printf 'use crate::compose::b::x;\nuse crate::deliver::y;\n' >"$tmp/folders/src/compose/a.rs"
    printf 'use super::a;\npub fn x() {}\n' >"$tmp/folders/src/compose/b.rs"
    printf 'pub fn y() {}\n' >"$tmp/folders/src/deliver/mod.rs"
    printf 'use crate::compose::a;\n' >"$tmp/folders/src/leaf.rs"
    if out=$("$0" "$tmp/folders/src" 2>&1); then
        echo "self-test FAILED: a broken folder rule passed:"
        echo "$out"
        exit 1
    fi
    for want in '  compose::a -> compose::b -> compose::a' \
        '  folder compose uses deliver/ (' '  the leaf module leaf uses compose/ ('; do
        if ! grep -qF -- "$want" <<<"$out"; then
            echo "self-test FAILED: expected a line with '$want', got:"
            echo "$out"
            exit 1
        fi
    done
    echo "self-test ok: a cycle fails the check and is printed; an acyclic graph passes; the folder rule and cycles inside a folder fail"
    exit 0
fi

src=${1:-$here/../src}
exec python3 - "$src" <<'PY'
import os
import re
import signal
import sys

# Piped into `head`, stop quietly.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)

src = sys.argv[1]

# Comments, raw strings, strings and char literals, left to right, so that
# a `//` inside a string is not taken for a comment and the other way round.
SKIP = re.compile(
    r'//[^\n]*'
    r'|/\*.*?\*/'
    r'|b?r(#*)".*?"\1'
    r'|b?"(?:\\.|[^"\\])*"'
    r"|b?'(?:\\.|[^'\\\n])'",
    re.S,
)


def strip(code):
    # Keeps the line breaks so reported line numbers stay right.
    return SKIP.sub(lambda m: "\n" * m.group(0).count("\n"), code)


def modules_of(src):
    mods = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            mods.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            for root, _, files in os.walk(path):
                for f in sorted(files):
                    if f.endswith(".rs"):
                        mods.setdefault(entry, []).append(os.path.join(root, f))
    return mods


def group_names(code, open_brace):
    """The first segment of each item of `{...}` starting at open_brace."""
    depth, item, names = 0, "", []
    for ch in code[open_brace:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                names.append(item)
                break
        if depth == 1 and ch == ",":
            names.append(item)
            item = ""
        elif depth >= 1:
            item += ch
    out = []
    for n in names:
        first = re.split(r"::|\s+as\s+", n.strip())[0].strip()
        if first:
            out.append(first)
    return out


FOLDER_MAY_NOT = {
    # The halves, in pipeline order: a stage may use an earlier one, never a
    # later one; the store is beneath them all; the CLI uses everything.
    "compose": {"deliver", "listen", "store", "cli"},
    "deliver": {"listen", "cli"},
    "listen": {"cli"},
    "store": {"compose", "deliver", "listen", "cli"},
}
FOLDERS = {"compose", "deliver", "listen", "store", "cli"}


def references(code):
    """(first path segment after `crate::`, offset) for each reference."""
    for m in re.finditer(r"\bcrate\s*::\s*(\{|[A-Za-z_][A-Za-z0-9_]*)", code):
        names = group_names(code, m.start(1)) if m.group(1) == "{" else [m.group(1)]
        for name in names:
            yield name, m.start(), m.end()


mods = modules_of(src)
edges = {m: {} for m in mods}  # module -> {dependency: "file:line"}
# Inside each folder: its direct children (a file or a sub-folder) and their edges.
inner = {}
for mod, files in mods.items():
    folder = os.path.join(src, mod)
    is_folder = os.path.isdir(folder)
    for path in files:
        with open(path, encoding="utf-8") as fh:
            code = strip(fh.read())
        rel = os.path.relpath(path, folder).split(os.sep) if is_folder else []
        child = None
        if len(rel) > 1:
            child = rel[0]
        elif rel and rel[0] != "mod.rs":
            child = rel[0][:-3]
        if child:
            inner.setdefault(mod, {}).setdefault(child, {})
        for name, at, end in references(code):
            line = code.count("\n", 0, at) + 1
            where = f"{os.path.relpath(path)}:{line}"
            if name in mods and name != mod:
                edges[mod].setdefault(name, where)
            if name == mod and child:
                m2 = re.match(r"\s*::\s*(\{|[A-Za-z_][A-Za-z0-9_]*)", code[end:])
                if m2:
                    subs = group_names(code, end + m2.start(1)) if m2.group(1) == "{" else [m2.group(1)]
                    for sub in subs:
                        if sub != child and sub not in ("self", "super"):
                            inner[mod][child].setdefault(sub, where)
        # `super::x` from a file directly in the folder names a sibling.
        if child and len(rel) == 1:
            for m in re.finditer(r"\bsuper\s*::\s*([A-Za-z_][A-Za-z0-9_]*)", code):
                sib = m.group(1)
                if sib != child:
                    line = code.count("\n", 0, m.start()) + 1
                    inner[mod][child].setdefault(sib, f"{os.path.relpath(path)}:{line}")

# The folder rule: which half may use which.
broken = []
for mod in sorted(mods):
    banned = FOLDER_MAY_NOT.get(mod)
    if banned is None and mod not in FOLDERS:
        banned = FOLDERS  # a leaf module uses no folder
    for dep, where in sorted(edges[mod].items()):
        if banned and dep in banned:
            kind = "the leaf module" if mod not in FOLDERS else "folder"
            broken.append(f"  {kind} {mod} uses {dep}/ ({where}); {mod} may not use {', '.join(sorted(banned))}")


def sccs_of(graph):
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def cycles_of(graph, comps, limit=500):
    cycles = []
    for comp in comps:
        members = set(comp)
        # Each elementary cycle once, from its smallest module.
        for start in comp:
            allowed = {m for m in comp if m >= start}
            path = [start]

            def walk(v):
                for w in sorted(graph[v]):
                    if len(cycles) >= limit:
                        return
                    if w == start:
                        cycles.append(path + [start])
                    elif w in allowed and w in members and w not in path:
                        path.append(w)
                        walk(w)
                        path.pop()

            walk(start)
    cycles.sort(key=lambda c: (len(c), c))
    return cycles


sys.setrecursionlimit(10000)
failed = False
graphs = [("", edges)] + [(f"{f}::", g) for f, g in sorted(inner.items())]
for prefix, graph in graphs:
    comps = sccs_of(graph)
    cyclic = [c for c in comps if len(c) > 1]
    if not cyclic:
        if not prefix:
            # Tarjan finishes a component after everything it reaches: dependencies first.
            print("module order: " + " ".join(c[0] for c in comps))
        continue
    failed = True
    cycles = cycles_of(graph, cyclic)
    where = f"inside {prefix[:-2]}/" if prefix else "between the top-level modules"
    print(f"the module graph has cycles {where} ({len(cyclic)} group(s) of modules that all reach each other):")
    for comp in cyclic:
        print("  group: " + " ".join(prefix + c for c in comp))
    print("cycles:")
    for c in cycles:
        print("  " + " -> ".join(prefix + x for x in c))
    print("where each edge of a cycle comes from (first reference):")
    used = sorted({(a, b) for c in cycles for a, b in zip(c, c[1:])})
    for a, b in used:
        print(f"  {prefix}{a} -> {prefix}{b}: {graph[a][b]}")
if broken:
    failed = True
    print("the folder rule is broken (compose < deliver < listen < cli, store beneath them all, leaves use no folder):")
    print("\n".join(broken))
sys.exit(1 if failed else 0)
PY
