#!/usr/bin/env python3
"""deps_graph: the include graph and the cross-file call graph of allocator/, and their cycles.

    scripts/deps_graph.py                  arrows and cycles as text
    scripts/deps_graph.py --format md      the same as Markdown (docs/design.md, "Where things live")
    scripts/deps_graph.py --svg deps.svg   also an SVG drawing (no Graphviz needed)
    scripts/deps_graph.py --platform windows   the Windows build's files instead of the POSIX build's
    scripts/deps_graph.py --check          also fail (exit 1) when a call or include cycle, a test of
                                           the OS outside the platform layer, or a cross-file name whose
                                           prefix is not its file's is found (the ctests)

Python 3 standard library only. Heuristics, good enough for this code base, not a C parser:
  - Comments, string and character literals and preprocessor lines are removed first; both sides
    of an #if are read.
  - A definition is an identifier at brace depth 0 followed by a parenthesised list and then `{`
    (attributes between them are skipped); it is file-local when `static` appears in its
    declaration. Declarations (ending in `;`) define nothing.
  - A use is a call `name(` (not a struct member `.name(` or `->name(`), or any mention of a name
    with the allocator's prefixes `_ra_` and `ra_` (never a local variable's name there), which
    catches functions passed as pointers (pthread_atfork, atexit, callbacks). A name resolves to
    the file's own definition when it has one, else to the non-static definition in another file.
    Global variables, and macros that expand to calls, are not followed.
  - Functions defined in a header (static inline in internal.h) are transparent: a file that uses
    one uses what it calls, so calls hidden in header inlines still draw an arrow from the file
    that uses the inline.
  - Platform files: the build's source lists in CMakeLists.txt (`if(WIN32)` / `else()` at its top)
    decide which files belong to the platform analysed; files in neither list are in both builds.
  - Include graph: `#include "x"` lines between files of allocator/ (system headers left out).
Cycles are the strongly connected components with more than one file (Tarjan's algorithm).
Also listed: preprocessor tests of the OS (_WIN32, __linux__, __APPLE__, __MINGW32__, _MSC_VER,
__unix__, __FreeBSD__) outside the platform layer (prim*.h, os.h and the files built for one OS only,
*_posix.c and *_windows.c), which the layer's contract keeps at none.
Names: every function another file may call (not static) and named `_ra_...` carries its file's
name after `_ra_` (`_ra_chunk_...` in chunk.c; the OS suffix dropped: `_ra_inspect_...` in
inspect_posix.c; a plural file holds the singular: `_ra_option` in options.c). The platform layer's
files implement the vocabulary its headers declare (prim.h, prim_posix.h, prim_windows.h: `_ra_lock`,
`_ra_now_ms`, `_ra_thread_...`), which is their name. Listed when not so; the rule keeps it at none.
"""
import argparse
import math
import os
import re
import sys
from collections import defaultdict

IDENT = re.compile(r'[A-Za-z_]\w*')
KEYWORDS = {'if', 'for', 'while', 'switch', 'return', 'sizeof', 'do', 'else', 'case', 'goto',
            '_Static_assert', '_Alignof', '_Alignas', '__attribute__', '__typeof__', 'typeof',
            '_Generic', 'defined', '__declspec', '__asm__', 'asm'}


def strip_c(text):
    """Comments, literals and preprocessor lines blanked (newlines kept, so offsets stay)."""
    out = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c in ' \t':
            out.append(c)
            i += 1
            continue
        if line_start and c == '#':  # a directive, with its continuation lines
            while i < n and text[i] != '\n':
                if text[i] == '\\' and i + 1 < n and text[i + 1] == '\n':
                    out.append('\n')
                    i += 2
                    continue
                i += 1
            continue
        line_start = False
        if c == '\n':
            line_start = True
            out.append(c)
            i += 1
        elif text.startswith('//', i):
            while i < n and text[i] != '\n':
                i += 1
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append('\n' * text.count('\n', i, j) or ' ')
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def skip_parens(s, i):
    """s[i] == '('; the index after the matching ')'."""
    depth = 0
    while i < len(s):
        if s[i] == '(':
            depth += 1
        elif s[i] == ')':
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def parse(text):
    """(definitions {name: [(static, body_start, body_end), ...]} (one per #if branch), uses [(name, pos)])."""
    s = strip_c(text)
    defs = {}
    depth = 0
    decl_start = 0  # where the current top-level declaration began
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == '{':
            depth += 1
        elif c == '}':
            depth -= 1
            if depth == 0:
                decl_start = i + 1
        elif c == ';' and depth == 0:
            decl_start = i + 1
        elif depth == 0 and (c.isalpha() or c == '_') and (i == 0 or not (s[i - 1].isalnum() or s[i - 1] == '_')):
            m = IDENT.match(s, i)
            name, j = m.group(0), m.end()
            k = j
            while k < n and s[k] in ' \t\n':
                k += 1
            if name not in KEYWORDS and k < n and s[k] == '(':
                after = skip_parens(s, k)
                while True:  # attributes, then the body or not
                    while after < n and s[after] in ' \t\n':
                        after += 1
                    a = IDENT.match(s, after)
                    if a and a.group(0) in ('__attribute__', '__declspec'):
                        p = after + len(a.group(0))
                        while p < n and s[p] in ' \t\n':
                            p += 1
                        after = skip_parens(s, p) if p < n and s[p] == '(' else p
                        continue
                    break
                if after < n and s[after] == '{':
                    static = re.search(r'\bstatic\b', s[decl_start:i]) is not None
                    # the body: from its brace to the matching one
                    d, e = 0, after
                    while e < n:
                        if s[e] == '{':
                            d += 1
                        elif s[e] == '}':
                            d -= 1
                            if d == 0:
                                break
                        e += 1
                    defs.setdefault(name, []).append((static, after, e + 1))
                    i = e + 1
                    decl_start = i
                    continue
            i = j
            continue
        i += 1
    uses = []
    for m in IDENT.finditer(s):
        name, a, b = m.group(0), m.start(), m.end()
        before = s[:a].rstrip()[-2:]
        if before.endswith('.') or before == '->':
            continue  # a struct member
        after = s[b:b + 40].lstrip()
        if after.startswith('(') or name.startswith(('_ra_', 'ra_')):
            uses.append((name, a))
    return defs, uses


def cmake_platform_files(root):
    """({'windows': set, 'posix': set}) of allocator files named in CMakeLists.txt's first
    if(WIN32) ... else() ... endif() block; empty sets when it is not there."""
    only = {'windows': set(), 'posix': set()}
    try:
        text = open(os.path.join(root, 'CMakeLists.txt'), encoding='utf-8').read()
    except OSError:
        return only
    m = re.search(r'^if\(WIN32\)\n(.*?)^else\(\)\n(.*?)^endif\(\)', text, re.M | re.S)
    if m:
        for key, part in (('windows', m.group(1)), ('posix', m.group(2))):
            only[key] = set(re.findall(r'allocator/(\w+\.c)', part))
    return only


def tarjan(nodes, edges):
    """Strongly connected components of the graph, each a sorted list."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def analyse(root, platform):
    adir = os.path.join(root, 'allocator')
    other = cmake_platform_files(root)['posix' if platform == 'windows' else 'windows']
    suffix_out = '_posix.c' if platform == 'windows' else '_windows.c'
    files = sorted(f for f in os.listdir(adir)
                   if f.endswith(('.c', '.h')) and f not in other and not f.endswith(suffix_out))
    cfiles = [f for f in files if f.endswith('.c')]
    texts = {f: open(os.path.join(adir, f), encoding='utf-8', errors='replace').read() for f in files}

    includes = defaultdict(set)
    for f in files:
        for m in re.finditer(r'^\s*#\s*include\s+"([^"]+)"', texts[f], re.M):
            target = os.path.basename(m.group(1))
            if target in texts and target != f:
                includes[f].add(target)

    parsed = {f: parse(texts[f]) for f in files}
    exported = defaultdict(list)  # name -> the .c files that define it non-static
    for f in cfiles:
        for name, bodies in parsed[f][0].items():
            if not all(static for static, _, _ in bodies):
                exported[name].append(f)
    header_defs = {}  # name -> (header, [(body start, body end)]), for transparent header inlines
    for f in files:
        if f.endswith('.h'):
            for name, bodies in parsed[f][0].items():
                header_defs[name] = (f, [(b0, b1) for _, b0, b1 in bodies])

    def targets(name, seen):
        """The .c files a use of `name` (from outside its own file) leads to."""
        if name in exported:
            return {(t, name) for t in exported[name]}
        if name in header_defs and name not in seen:
            h, bodies = header_defs[name]
            seen = seen | {name}
            out = set()
            for inner, pos in parsed[h][1]:
                if inner != name and any(b0 <= pos < b1 for b0, b1 in bodies):
                    out |= targets(inner, seen)
            return out
        return set()

    calls = defaultdict(lambda: defaultdict(set))  # from file -> to file -> {names}
    for f in cfiles:
        own = parsed[f][0]
        for name, pos in parsed[f][1]:
            if name in own:
                continue
            for t, via in targets(name, frozenset()):
                if t != f:
                    calls[f][t].add(via if via == name else f'{via} (via {name})')
    return files, cfiles, includes, calls


def cycles_of(nodes, edges):
    return [c for c in tarjan(nodes, edges) if len(c) > 1]


def n_functions(names):
    """How many functions of the target file: `f` and `f (via g)` are one."""
    return len({n.split(' ')[0] for n in names})


def report_text(files, cfiles, includes, calls, out):
    out.write('include arrows (allocator/):\n')
    for f in files:
        for t in sorted(includes.get(f, ())):
            out.write(f'  {f} -> {t}\n')
    cyc = cycles_of(files, includes)
    out.write('include cycles: ' + ('; '.join(' '.join(c) for c in cyc) if cyc else 'none') + '\n\n')
    out.write('call arrows (from -> to: the functions of `to` that `from` uses):\n')
    for f in cfiles:
        for t in sorted(calls.get(f, {})):
            names = sorted(calls[f][t])
            out.write(f'  {f} -> {t} ({n_functions(names)}): {", ".join(names)}\n')
    edges = {f: set(calls[f]) for f in calls}
    cyc = cycles_of(cfiles, edges)
    out.write('call cycles (files that reach each other through calls):\n')
    for c in cyc or []:
        out.write('  ' + ' '.join(c) + '\n')
    if not cyc:
        out.write('  none\n')


def report_md(files, cfiles, includes, calls, out):
    inc_cyc = cycles_of(files, includes)
    groups = defaultdict(list)  # the same headers included: one line
    for f in files:
        if includes.get(f):
            groups[tuple(sorted(includes[f]))].append(f)
    out.write('Includes (files -> the allocator headers they include):\n\n')
    for heads, srcs in sorted(groups.items(), key=lambda g: g[1][0]):
        out.write('- ' + ', '.join(srcs) + ' -> ' + ', '.join(heads) + '\n')
    out.write('\n')
    out.write('Include cycles: ' + ('; '.join(', '.join(f'`{x}`' for x in c) for c in inc_cyc) if inc_cyc else 'none')
              + '.\n\n')
    out.write('| from | calls into |\n| --- | --- |\n')
    for f in cfiles:
        if calls.get(f):
            out.write(f'| `{f}` | ' + ', '.join(f'{t} ({n_functions(calls[f][t])})' for t in sorted(calls[f])) + ' |\n')
    edges = {f: set(calls[f]) for f in calls}
    cyc = cycles_of(cfiles, edges)
    out.write('\nCall cycles (strongly connected components of more than one file):\n\n')
    for c in cyc:
        out.write('- ' + ', '.join(c) + '\n')
    if not cyc:
        out.write('- none\n')


def write_svg(path, cfiles, calls):
    """Files on a circle, an arrow per calling pair; arrows inside a cycle in red."""
    edges = {f: set(calls[f]) for f in calls}
    comp_of = {}
    for k, c in enumerate(cycles_of(cfiles, edges)):
        for f in c:
            comp_of[f] = k
    nodes = [f for f in cfiles if f in edges or any(f in e for e in edges.values())]
    width = {f: 8 * len(f) + 16 for f in nodes}  # 13px monospace: under 8px a character
    # a radius at which neighbouring labels do not overlap
    r = max(300, (max(width.values(), default=100) + 12) / (2 * math.sin(math.pi / max(3, len(nodes)))))
    size = int(2 * r + 2 * max(width.values(), default=100) // 2 + 80)
    cx = cy = size / 2
    pos = {}
    for k, f in enumerate(nodes):
        a = 2 * math.pi * k / max(1, len(nodes)) - math.pi / 2
        pos[f] = (cx + r * math.cos(a), cy + r * math.sin(a))
    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'viewBox="0 0 {size} {size}" font-family="monospace" font-size="13">',
             '<defs>',
             '<marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker>',
             '<marker id="c" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/></marker>',
             '</defs>', f'<rect width="{size}" height="{size}" fill="white"/>']
    for f in nodes:
        for t in sorted(edges.get(f, ())):
            (x1, y1), (x2, y2) = pos[f], pos[t]
            dx, dy = x2 - x1, y2 - y1
            d = math.hypot(dx, dy) or 1
            sx, sy = x1 + dx / d * width[f] / 2, y1 + dy / d * 14  # leave the labels clear
            ex, ey = x2 - dx / d * width[t] / 2, y2 - dy / d * 14
            cyc = f in comp_of and comp_of.get(t) == comp_of[f]
            colour, marker = ('#c0392b', 'c') if cyc else ('#999', 'a')
            lines.append(f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="{colour}" '
                         f'stroke-width="{1 + min(len(calls[f][t]), 12) / 4:.2f}" marker-end="url(#{marker})">'
                         f'<title>{f} -> {t}: {", ".join(sorted(calls[f][t]))}</title></line>')
    for f in nodes:
        x, y = pos[f]
        fill = '#fdecea' if f in comp_of else '#eef3fb'
        lines.append(f'<rect x="{x - width[f] / 2:.1f}" y="{y - 11:.1f}" width="{width[f]}" height="22" rx="4" fill="{fill}" '
                     f'stroke="#555"/><text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">{f}</text>')
    lines.append(f'<text x="10" y="{size - 12}" fill="#555">allocator/ calls between files '
                 '(scripts/deps_graph.py); red: arrows inside a cycle; hover an arrow for its functions</text>')
    lines.append('</svg>')
    with open(path, 'w', encoding='utf-8') as fh:
        fh.write('\n'.join(lines) + '\n')


OS_TEST = re.compile(r'^\s*#\s*(if|ifdef|ifndef|elif)\b.*\b(_WIN32|_WIN64|__linux__|__APPLE__|__MINGW32__|_MSC_VER|__unix__|__FreeBSD__)\b')


def platform_tests(root):
    """(file, line number, text) of each test of the OS outside the platform layer."""
    found = []
    adir = os.path.join(root, 'allocator')
    for name in sorted(os.listdir(adir)):
        if not name.endswith(('.c', '.h')) or name.startswith('prim') or name == 'os.h':
            continue
        if name.endswith(('_posix.c', '_windows.c')):
            continue
        with open(os.path.join(adir, name), encoding='utf-8') as fh:
            for k, line in enumerate(fh, 1):
                if OS_TEST.match(line):
                    found.append((name, k, line.strip()))
    return found


def prefix_mismatches(root, platform):
    """(file, name) of each non-static _ra_ function whose prefix does not name its file."""
    adir = os.path.join(root, 'allocator')
    contract = set()
    for h in ('prim.h', 'prim_posix.h', 'prim_windows.h'):
        with open(os.path.join(adir, h), encoding='utf-8') as fh:
            contract |= set(re.findall(r'\b(_ra_\w+)\s*\(', strip_c(fh.read())))
    files, cfiles, _, _ = analyse(root, platform)
    found = []
    for name in sorted(cfiles):
        base = re.sub(r'_(posix|windows)$', '', name[:-2])
        with open(os.path.join(adir, name), encoding='utf-8') as fh:
            defs, _ = parse(fh.read())
        for fn, where in sorted(defs.items()):
            if all(is_static for is_static, _, _ in where) or not fn.startswith('_ra_'):
                continue
            if base == 'prim' and fn in contract:
                continue
            word = fn[len('_ra_'):]
            if word.startswith(base + '_') or word == base or (base.endswith('s') and word.startswith(base[:-1])):
                continue
            found.append((name, fn))
    return found


def report_names(root, platform, md, out):
    found = prefix_mismatches(root, platform)
    head = 'Cross-file names whose prefix is not their file'
    if not found:
        out.write(f'\n{head}: none.\n' if md else 'cross-file names whose prefix is not their file: none\n')
        return
    out.write(f'\n{head}:\n\n' if md else 'cross-file names whose prefix is not their file:\n')
    for name, fn in found:
        out.write(f'- {name}: `{fn}`\n' if md else f'  {name}: {fn}\n')


def report_platform(root, md, out):
    found = platform_tests(root)
    head = 'Tests of the OS outside the platform layer'
    if not found:
        out.write(f'\n{head}: none.\n' if md else 'tests of the OS outside the platform layer: none\n')
        return
    out.write(f'\n{head}:\n\n' if md else 'tests of the OS outside the platform layer:\n')
    for name, k, text in found:
        out.write(f'- {name}:{k}: `{text}`\n' if md else f'  {name}:{k}: {text}\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--root', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'),
                    help='the source tree (default: this script\'s)')
    ap.add_argument('--platform', choices=('posix', 'windows'), default='posix')
    ap.add_argument('--format', choices=('text', 'md'), default='text')
    ap.add_argument('--svg', metavar='FILE', help='also draw the call graph as SVG into FILE')
    ap.add_argument('--check', action='store_true',
                    help='exit 1 on a call or include cycle, a test of the OS outside the platform layer, '
                    'or a cross-file name whose prefix is not its file')
    args = ap.parse_args()
    files, cfiles, includes, calls = analyse(args.root, args.platform)
    (report_md if args.format == 'md' else report_text)(files, cfiles, includes, calls, sys.stdout)
    report_platform(args.root, args.format == 'md', sys.stdout)
    report_names(args.root, args.platform, args.format == 'md', sys.stdout)
    if args.svg:
        write_svg(args.svg, cfiles, calls)
    if args.check:
        bad = [f'call cycle: {" ".join(c)}' for c in cycles_of(cfiles, {f: set(calls[f]) for f in calls})]
        bad += [f'include cycle: {" ".join(c)}' for c in cycles_of(files, includes)]
        bad += [f'test of the OS outside the platform layer: {n}:{k}' for n, k, _ in platform_tests(args.root)]
        bad += [f'prefix not its file: {n}: {fn}' for n, fn in prefix_mismatches(args.root, args.platform)]
        for b in bad:
            sys.stderr.write(f'deps_graph: {b}\n')
        if bad:
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
