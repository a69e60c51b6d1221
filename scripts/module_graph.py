#!/usr/bin/env python3
"""The crate's module graph, from its source: cycles and upward imports.

Usage: python3 scripts/module_graph.py [--tests] [--edges]

Reads every `.rs` file under `src/` (the library and the `asc` binary, `src/main.rs` + `src/cli/`),
takes the paths each file names (`use` declarations and inline `crate::`, `super::`, `self::` and
child-module paths; in the binary, `asc::`), and resolves each to the deepest module that exists.
Unit tests (`#[cfg(test)] mod ... { }`) are left out unless `--tests` is given.

Two checks, as in docs/architecture.md ("Module graph"):

* **Cycles.** An edge between two files is lifted to the two sibling modules below their common
  parent (`nn/ops/fallback.rs -> nn/ops/pool.rs` is `fallback -> pool` inside `nn::ops`;
  `train/run.rs -> nn/norm/mod.rs` is `train -> nn` at the top). Edges between a module and its
  own ancestor are not counted: a folder's `mod.rs` declares, and re-exports, its files. Any cycle
  among siblings is reported.
* **Upward imports.** The top-level modules have a rank along the data path (`LAYERS`); a module
  may use modules of lower or equal rank only.

Prints the top-level dependencies with `--edges`. Exit status 1 when a cycle, an upward import or
a top-level module missing from `LAYERS` is found. Standard library only.
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

# The data path, low to high: a module may use the ones on its own line or above.
LAYERS = [
    ["error", "fsutil", "progress", "process", "kernels"],
    ["audio"],
    ["features"],
    ["dataset"],
    ["synth"],
    ["onnx"],
    ["nn"],
    ["complexity"],
    ["train"],
    ["export"],
    ["infer"],
    ["compare", "quickstart"],
    ["cli"],
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def module_of(path):
    """Module path (tuple) of a source file: `src/lib.rs` and `src/main.rs` are the roots of the
    library and of the binary (whose only module is `cli`)."""
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"], ["main"]):
        return ()
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def is_binary(path):
    rel = path.relative_to(SRC).parts
    return rel[0] in ("main.rs", "cli")


def strip(text):
    """Source without comments, string and char literals (kept as empty literals)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and re.match(r"\w", text[i - 1])):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            out.append('""')
            i = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'":
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def block_end(text, k):
    """Index of the `}` that closes the `{` at `text[k]`."""
    depth = 0
    while k < len(text):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                break
        k += 1
    return k


def drop_tests(text):
    """`text` without `#[cfg(test)]` items (a module block or a single item)."""
    while True:
        m = re.search(r"#\[cfg\((?:all\()?test\b[^\]]*\]", text)
        if not m:
            return text
        brace, semi = text.find("{", m.end()), text.find(";", m.end())
        if semi >= 0 and (brace < 0 or semi < brace):
            text = text[: m.start()] + text[semi + 1 :]
        else:
            text = text[: m.start()] + text[block_end(text, brace) + 1 :]


def inline_scopes(text):
    """The inline modules (`mod x { ... }`) of a file, as (start, end, name)."""
    return [
        (m.end(), block_end(text, m.end() - 1), m.group(1))
        for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text)
    ]


def expand_use(tree):
    """`a::{b, c::{d, self}}` -> [[a, b], [a, c, d], [a, c]]."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)

    def parse(s):
        # returns list of segment lists for the tree string s
        s = s.strip()
        if not s:
            return []
        brace = s.find("{")
        if brace < 0:
            return [s.split("::")]
        prefix = [p for p in s[:brace].split("::") if p]
        inner = s[brace + 1 : s.rfind("}")]
        parts, depth, start = [], 0, 0
        for i, ch in enumerate(inner):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(inner[start:i])
                start = i + 1
        parts.append(inner[start:])
        out = []
        for p in parts:
            for sub in parse(p):
                if sub == ["self"]:
                    out.append(prefix)
                elif sub == ["*"]:
                    out.append(prefix)
                else:
                    out.append(prefix + sub)
        return out

    return parse(tree)


def main():
    with_tests = "--tests" in sys.argv
    show_edges = "--edges" in sys.argv
    files = sorted(p for p in SRC.rglob("*.rs"))
    lib_mods = {module_of(p) for p in files if not is_binary(p)}
    bin_mods = {module_of(p) for p in files if is_binary(p)}

    def children(mods, base):
        return {m[len(base)] for m in mods if len(m) > len(base) and m[: len(base)] == base}

    def deepest(mods, segs):
        """Longest prefix of segs that is a module (None if not even the first segment)."""
        best = None
        for k in range(1, len(segs) + 1):
            if tuple(segs[:k]) in mods:
                best = tuple(segs[:k])
        return best

    edges = defaultdict(set)  # (from module, to module) -> set of files
    for path in files:
        binary = is_binary(path)
        mods = bin_mods if binary else lib_mods
        me = module_of(path)
        text = strip(path.read_text())
        if not with_tests:
            text = drop_tests(text)
        scopes = inline_scopes(text)
        refs = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            for segs in expand_use(m.group(1)):
                refs.append((m.start(), segs))
        heads = r"crate|super|self|asc" if binary else r"crate|super|self"
        kids = children(mods, me)
        if kids:
            heads += "|" + "|".join(sorted(kids))
        for m in re.finditer(r"(?<![\w:])((?:%s)(?:::\w+)+)" % heads, text):
            refs.append((m.start(), m.group(1).split("::")))
        for pos, segs in refs:
            inner = [name for (s, e, name) in scopes if s <= pos <= e]
            here = list(me)  # inline test modules are not modules of the graph
            segs = [s for s in segs if s]
            if not segs:
                continue
            up = 0
            head = segs[0]
            if head == "asc" and binary:
                target, space = segs[1:], lib_mods
            elif head == "crate":
                target, space = segs[1:], mods
            elif head in ("super", "self"):
                depth = len(inner)
                while segs and segs[0] in ("super", "self"):
                    if segs[0] == "super":
                        up += 1
                    segs = segs[1:]
                # `super` from inside an inline module first leaves that module.
                up_files = max(0, up - depth)
                base = here[: len(here) - up_files] if up_files else here
                target, space = base + segs, mods
            elif tuple(here + [head]) in mods:
                target, space = here + segs, mods
            else:
                continue
            dest = deepest(space, target) if target else ()
            if dest is None:
                continue
            src = ("bin",) + me if binary else me
            dst = ("bin",) + dest if (binary and space is bin_mods) else dest
            if src != dst:
                edges[(src, dst)].add(str(path.relative_to(ROOT)))

    def top(m):
        """The top-level module of m; "" for the roots (lib.rs, main.rs)."""
        if m[:1] == ("bin",):
            m = m[1:]
        return m[0] if m else ""

    # Cycles among siblings.
    sib = defaultdict(lambda: defaultdict(set))  # parent -> a -> {b}
    why = defaultdict(set)
    for (a, b), srcs in edges.items():
        k = 0
        while k < min(len(a), len(b)) and a[k] == b[k]:
            k += 1
        if k == len(a) or k == len(b):
            continue  # one is the other's ancestor
        parent, ca, cb = a[:k], a[: k + 1], b[: k + 1]
        sib[parent][ca].add(cb)
        why[(ca, cb)] |= {f"{'/'.join(a)} -> {'/'.join(b)}"}

    def sccs(graph):
        index, low, stack, on, out = {}, {}, [], set(), []
        counter = [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in graph.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        for v in list(graph):
            if v not in index:
                visit(v)
        return out

    def name(m):
        if m == ("bin",):
            return "main"
        return "::".join(x for x in m if x != "bin") or "crate"
    cycles = []
    for parent, graph in sorted(sib.items()):
        for comp in sccs(graph):
            lines = [
                f"    {e}"
                for a in comp
                for b in comp
                if (a, b) in why
                for e in sorted(why[(a, b)])
            ]
            cycles.append(f"  {' <-> '.join(name(c) for c in comp)}\n" + "\n".join(lines))

    upward, unknown = [], set()
    tops = defaultdict(set)
    for (a, b), srcs in sorted(edges.items()):
        ta, tb = top(a), top(b)
        for t in (ta, tb):
            if t and t not in RANK:
                unknown.add(t)
        if ta == tb or ta not in RANK or tb not in RANK:
            continue
        tops[ta].add(tb)
        if RANK[tb] > RANK[ta]:
            upward.append(f"  {name(a)} -> {name(b)}   ({', '.join(sorted(srcs))})")

    scope = "unit tests included" if with_tests else "unit tests left out"
    print(f"module graph of src/ ({scope})")
    print("layers, low to high: " + " -> ".join(", ".join(l) for l in LAYERS))
    if show_edges:
        print("top-level dependencies:")
        for m in sorted(tops, key=lambda t: (RANK.get(t, 99), t)):
            deps = sorted(tops[m], key=lambda t: (RANK.get(t, 99), t))
            print(f"  {m:<10} -> {', '.join(deps)}")
    print(f"cycles: {len(cycles)}")
    for c in cycles:
        print(c)
    print(f"upward imports: {len(upward)}")
    for u in upward:
        print(u)
    if unknown:
        print("top-level modules missing from LAYERS: " + ", ".join(sorted(unknown)))
    return 1 if cycles or upward or unknown else 0


if __name__ == "__main__":
    sys.exit(main())
