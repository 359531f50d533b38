#!/usr/bin/env python3
"""Fails when a crate's top-level modules import each other in a cycle.

A module is a file or folder directly under `<crate>/src/`; an edge A -> B is any
`crate::B` path (in `use` lists too) in A's non-test code. Test modules (`#[cfg(test)]`
onwards) are left out: a test may look anywhere. Prints each cycle and exits 1.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = ["schemas", "stats", "capture", "analyze", "plot", "tests"]


def modules(src):
    mods = {}
    for p in src.iterdir():
        if p.is_file() and p.suffix == ".rs" and p.stem not in ("lib", "main"):
            mods[p.stem] = [p]
        elif p.is_dir() and p.name != "bin":
            files = sorted(p.rglob("*.rs"))
            if files:
                mods[p.name] = files
    return mods


def code(path):
    text = path.read_text()
    cut = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*(pub(\(crate\))?\s+)?mod\s+\w+", text, re.M)
    text = text[: cut.start()] if cut else text
    return re.sub(r"//[^\n]*", "", text)  # comments (doc links are not imports)


def edges(mods):
    out = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            t = code(f)
            names = set(re.findall(r"\bcrate::(\w+)", t))
            for group in re.findall(r"\buse\s+crate::\{([^;]*)\}", t):
                names.update(re.findall(r"(?:^|[{,])\s*(\w+)", group))
            out[m].update(n for n in names if n in mods and n != m)
    return out


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main():
    bad = 0
    for crate in CRATES:
        src = ROOT / crate / "src"
        if not src.is_dir():
            continue
        graph = edges(modules(src))
        for comp in cycles(graph):
            bad += 1
            links = ", ".join(f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp)
            print(f"{crate}: modules in a cycle: {' '.join(comp)} ({links})")
    if bad:
        sys.exit(1)
    print("no module cycles in " + ", ".join(CRATES))


if __name__ == "__main__":
    main()
