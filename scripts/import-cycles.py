#!/usr/bin/env python3
"""Import cycles among a crate's files (issue 12: none may span more than 3 files). Edges go
from `crate::a::b` and `super::x` paths (outside `#[cfg(test)]`) to the file defining the module;
prints each strongly connected component of more than one file, then the largest size.

Usage: scripts/import-cycles.py crates/*/src"""
import os, re, sys
from collections import defaultdict

def files_of(src):
    out = {}
    for root, _, fs in os.walk(src):
        for f in fs:
            if f.endswith('.rs'):
                p = os.path.join(root, f)
                rel = os.path.relpath(p, src)[:-3]
                parts = rel.split(os.sep)
                if parts[-1] in ('mod', 'lib', 'main'):
                    parts = parts[:-1]
                out[tuple(parts)] = p
    return out

def resolve(mods, path):
    # longest prefix of path that is a module file
    for i in range(len(path), -1, -1):
        if tuple(path[:i]) in mods:
            return tuple(path[:i])
    return None

def strip_tests(text):
    i = text.find('#[cfg(test)]')
    return text if i < 0 else text[:i]

def main(src):
    mods = files_of(src)
    edges = defaultdict(set)
    for m, p in mods.items():
        text = strip_tests(open(p).read())
        text = re.sub(r'//[^\n]*', '', text)
        is_dir_mod = p.endswith(('mod.rs', 'lib.rs', 'main.rs'))
        for mm in re.finditer(r'\b(crate|super)((?:::\w+)+)', text):
            kind, rest = mm.group(1), mm.group(2).split('::')[1:]
            if kind == 'crate':
                base = []
            else:
                base = list(m) if is_dir_mod else list(m[:-1])
                base = base[:-1]
                while rest and rest[0] == 'super':
                    base = base[:-1]; rest = rest[1:]
            t = resolve(mods, base + rest)
            if t is not None and t != m:
                edges[m].add(t)
        # `use crate::{a, b::c}` groups
        for g in re.finditer(r'use (crate|super)::\{([^}]*)\}', text):
            for item in g.group(2).split(','):
                item = item.strip().split(' as ')[0]
                if not item: continue
                base = [] if g.group(1) == 'crate' else (list(m) if is_dir_mod else list(m[:-1]))[:-1]
                t = resolve(mods, base + item.split('::'))
                if t is not None and t != m:
                    edges[m].add(t)
    # Tarjan
    index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def sc(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                sc(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            sccs.append(comp)
    for v in mods:
        if v not in index:
            sc(v)
    big = sorted((c for c in sccs if len(c) > 1), key=len, reverse=True)
    for c in big:
        print(len(c), sorted('/'.join(x) or 'lib' for x in c))
    return max((len(c) for c in big), default=1)

if __name__ == '__main__':
    for src in sys.argv[1:]:
        print('==', src)
        print('largest:', main(src))
