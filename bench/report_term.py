#!/usr/bin/env python3
"""The benchmark report for a terminal, from the JSON file the runner writes (latest.json).

    python3 bench/report_term.py build/results/latest.json [--width N] [--color auto|always|never]

Aligned tables at most 100 columns wide (wall time, peak RSS, microbenchmarks): each cell holds the
median and its ratio to the reference allocator (mimalloc3 when the results have it, else mimalloc,
else glibc), "*" marks the best of each row; then the geometric means of the ratios, one line per
workload saying what it stands for (from the table in docs/performance.md, else bench/README.md)
and the paths of the full report. Colour only when stdout is a terminal (and NO_COLOR is unset).
The runner calls render() at the end of a run; this file can also be run on any saved latest.json.
"""

import argparse
import math
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_WIDTH = 100
REFERENCE_ORDER = ("mimalloc3", "mimalloc", "glibc")  # the first present is the reference


def reference(allocs):
    for r in REFERENCE_ORDER:
        if r in allocs:
            return r
    return allocs[0] if allocs else None


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fmt_value(v):
    """About three significant digits in at most 6 characters."""
    a = abs(v)
    if a >= 100000:
        return f"{v / 1000:.0f}k"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ratio(r):
    """In at most 4 characters."""
    if r < 0.0005:
        return "~0"
    if r < 0.095:
        return f"{r:.3f}".lstrip("0")
    if r >= 9999.5:
        return f"{r / 1000:.0f}k"
    if r >= 100:
        return f"{r:.0f}"
    if r >= 10:
        return f"{r:.1f}"
    return f"{r:.2f}"


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def short_bench(name):
    """malloc_free_mt/size:64/real_time/threads:2 -> malloc_free_mt 64 2thr, realloc_grow/final:65536/
    step:16 -> realloc_grow 64K +16, batch_lifo/size:64/count:1000 -> batch_lifo 64 x1000 (Google Benchmark names
    are too long for a terminal table; the Markdown report keeps them whole)."""
    def size(v):
        n = int(v) if v.isdigit() else None
        if n and n >= 1024 and n % 1024 == 0:
            return f"{n >> 20}M" if n % (1 << 20) == 0 else f"{n >> 10}K"
        return v
    parts = name.split("/")
    out = [parts[0]]
    for p in parts[1:]:
        k, sep, v = p.partition(":")
        if not sep:
            if p != "real_time":
                out.append(p)
        elif k == "threads":
            out.append(f"{v}thr")
        elif k == "count":
            out.append(f"x{v}")
        elif k == "step":  # realloc_grow's step; 0: by half the size each time
            out.append("x1.5" if v == "0" else f"+{size(v)}")
        else:
            out.append(size(v))
    return " ".join(out)


class Style:
    def __init__(self, on):
        self.on = on

    def __call__(self, text, *codes):
        if not self.on or not codes:
            return text
        return f"\033[{';'.join(codes)}m{text}\033[0m"


def table(title, rows, allocs, ref, style, width, value_note=True):
    """rows: [(label, {alloc: number, 'FAIL ...' or None})]. Returns (lines, {alloc: geomean})."""
    parts = {a: a.replace("+", "\n+").split("\n") for a in allocs}
    cw = max([12] + [len(p) for a in allocs for p in parts[a]])
    labels = [label for label, _ in rows] + ["geometric mean", title]
    lw = max(len(x) for x in labels)
    sep = 2 if lw + len(allocs) * (cw + 2) <= width else 1
    lw = min(lw, max(14, width - len(allocs) * (cw + sep)))
    head_rows = max(len(p) for p in parts.values())
    lines = []
    for i in range(head_rows):
        first = title if i == head_rows - 1 else ""
        cells = []
        for a in allocs:
            p = parts[a]
            txt = p[i - (head_rows - len(p))] if i >= head_rows - len(p) else ""
            cells.append(style(f"{txt:>{cw}}", "1") if txt else " " * cw)
        lines.append(style(f"{first[:lw]:<{lw}}", "1") + "".join(" " * sep + c for c in cells))
    ratios = {a: [] for a in allocs}
    for label, vals in rows:
        nums = {a: num(vals.get(a)) for a in allocs}
        present = [v for v in nums.values() if v is not None]
        best = min(present) if len(present) > 1 else None
        refv = nums.get(ref)
        cells = []
        for a in allocs:
            v = vals.get(a)
            if isinstance(v, str):  # a failure: "FAIL SIGSEGV" -> SIGSEGV
                txt = v[5:] if v.startswith("FAIL ") else v
                cells.append(style(f"{txt[:cw]:>{cw}}", "1", "31"))
                continue
            if nums[a] is None:
                cells.append(f"{'-':>{cw}}")
                continue
            r = f"{'':>4}"
            if refv:
                ratio = nums[a] / refv
                ratios[a].append(ratio)
                r = fmt_ratio(ratio)
            mark = "*" if nums[a] == best else " "
            txt = f"{fmt_value(nums[a]) + mark:>{cw - 5}} {r:>4}"
            cells.append(style(txt, "1", "32") if mark == "*" else txt)
        lines.append(f"{label[:lw]:<{lw}}" + "".join(" " * sep + c for c in cells))
    geo = {a: geomean(ratios[a]) for a in allocs}
    if rows and any(geo.values()):
        present = [g for g in geo.values() if g]
        best = min(present) if len(present) > 1 else None
        cells = []
        for a in allocs:
            g = geo[a]
            txt = f"{'-':>{cw}}" if g is None else f"{fmt_ratio(g) + ('*' if g == best else ' '):>{cw}}"
            cells.append(style(txt, "1", "32") if g is not None and g == best else txt)
        lines.append(style(f"{'geometric mean':<{lw}}", "1") + "".join(" " * sep + c for c in cells))
    return lines, geo


def workload_descriptions():
    """{workload: what it stands for}, from docs/performance.md's table "What each workload stands
    for", else from bench/README.md's table of programs (wl-NAME)."""
    found = {}
    perf = ROOT / "docs" / "performance.md"
    try:
        text = perf.read_text()
        m = re.search(r"^#+ What each workload stands for\s*$(.*?)(?=^#)", text, re.M | re.S)
        for line in (m.group(1) if m else "").splitlines():
            cm = re.match(r"\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|\s*$", line)
            if cm:
                found[cm.group(1)] = cm.group(2)
    except OSError:
        pass
    try:
        for line in (ROOT / "bench" / "README.md").read_text().splitlines():
            cm = re.match(r"\|\s*`wl-([^`]+)`\s*\|\s*(.+?)\s*\|\s*$", line)
            if cm:
                found.setdefault(cm.group(1), cm.group(2))
    except OSError:
        pass
    return {k: v.replace("`", "") for k, v in found.items()}


def short_description(text, room):
    """The part before the first colon when the whole does not fit in one line."""
    if len(text) > room and ": " in text:
        text = text.split(": ", 1)[0]
    return text


def relpath(p):
    try:
        rel = os.path.relpath(p)
        return rel if not rel.startswith("../..") else str(p)
    except ValueError:
        return str(p)


def render(data, paths=None, width=None, color=None, out=None):
    """Write the terminal report for the runner's data (the dict in latest.json) to out (stdout).
    paths: the full report's files, listed at the end."""
    out = out or sys.stdout
    tty = hasattr(out, "isatty") and out.isatty()
    if width is None:
        width = min(MAX_WIDTH, shutil.get_terminal_size((MAX_WIDTH, 24)).columns) if tty else MAX_WIDTH
    width = max(60, min(width, MAX_WIDTH))
    if color is None:
        color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"
    style = Style(color)
    meta = data.get("meta", {})
    allocs = list(meta.get("allocators", {}))
    ref = reference(allocs)
    w = []
    wrap = lambda s, indent="": textwrap.wrap(s, width, subsequent_indent=indent,
                                              break_on_hyphens=False) or [""]

    tree = meta.get("revision") or "(not named)"  # the runner names it by git, else by a hash of the sources
    w += wrap(f"ramalloc benchmarks, {meta.get('mode', '?')} set: {meta.get('date', '?')}, tree {tree}, "
              f"{meta.get('cpus', '?')} CPUs ({meta.get('cpu', '?')}), {meta.get('threads', '?')} threads, "
              f"median of {meta.get('reps', '?')} interleaved "
              f"repetition{'' if meta.get('reps') == 1 else 's'}, "
              f"{meta.get('elapsed_s', 0):.0f} s.")
    ref_ver = meta.get("allocators", {}).get(ref, {}).get("version", "")
    w += wrap(f"Each cell: the median, then its ratio to {ref}" + (f" ({ref_ver})" if ref_ver else "") +
              "; below 1 is better. * marks the best of each row; the last row is the geometric mean "
              "of the ratios.")
    w.append("")

    wl = data.get("workloads", {})
    workloads = list(wl)

    def rows_for(key):
        rows = []
        for name in workloads:
            vals = {}
            for a in allocs:
                d = wl[name].get(a, {})
                fails = [s.get("failure", "FAIL") for s in d.get("samples", []) if not s.get("ok")]
                vals[a] = fails[0] if fails else d.get(key)
            rows.append((name, vals))
        return rows

    geo = {}
    if workloads:
        lines, geo["time"] = table("wall time (s)", rows_for("median_wall_s"), allocs, ref, style, width)
        w += lines + [""]
        lines, geo["rss"] = table("peak RSS (MiB)", rows_for("median_maxrss_mib"), allocs, ref, style, width)
        w += lines + [""]
        _, geo["cpu"] = table("cpu", rows_for("median_cpu_s"), allocs, ref, Style(False), width)
    micro = data.get("micro", {})
    if micro:
        rows = [(short_bench(b), {a: v.get("median_ns") for a, v in per.items()}) for b, per in micro.items()]
        lines, geo["micro"] = table("microbenchmarks (ns)", rows, allocs, ref, style, width)
        w += lines + [""]
    if geo:
        summary = []
        for key, what in (("time", "wall time"), ("cpu", "CPU time"), ("rss", "peak RSS"),
                          ("micro", "microbenchmark time")):
            g = geo.get(key, {})
            if "ramalloc" in g and g["ramalloc"] and ref != "ramalloc":
                summary.append(f"{what} {g['ramalloc']:.2f}")
        if summary:
            w += wrap(f"ramalloc against {ref}, geometric means of the ratios: " + ", ".join(summary) +
                      " (below 1: ramalloc is faster or smaller).")
            w.append("")

    if workloads:
        about = workload_descriptions()
        lw = max(len(n) for n in workloads) + 2
        w.append(style("What each workload stands for", "1") + " (docs/performance.md and bench/README.md "
                 "say more):")
        for name in workloads:
            text = short_description(about.get(name, "(not described: see bench/README.md)"), width - lw - 2)
            lines = textwrap.wrap(text, width - lw - 2, break_on_hyphens=False) or [""]
            w.append(f"  {name:<{lw}}{lines[0]}")
            w += [" " * (lw + 2) + line for line in lines[1:]]
        w.append("")

    problems = data.get("problems", [])
    failures = data.get("failures", [])
    if problems or failures:
        w.append(style("Problems", "1", "31") + " (the full report gives the command that reproduces each):")
        for p in problems:
            w += wrap(f"  {p.get('allocator')}: {p.get('what')}: {p.get('detail')}", "    ")
        seen = {}
        for f in failures:
            key = (f.get("allocator"), f.get("workload"), f.get("status"))
            seen[key] = seen.get(key, 0) + 1
        for (a, wname, st), n in seen.items():
            w += wrap(f"  {a}, {wname}: {st} ({n} of {meta.get('reps', '?')} runs)", "    ")
        w.append("")

    if paths:
        w.append("Full report (every table, CPU times, the memreturn and frag figures, all samples):")
        w += [f"  {relpath(p)}" for p in paths]
    out.write("\n".join(w) + "\n")
    out.flush()


def main(argv=None):
    import json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="latest.json written by bench/runner.py")
    ap.add_argument("--width", type=int, help=f"columns (default: the terminal's, at most {MAX_WIDTH})")
    ap.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    args = ap.parse_args(argv)
    data = json.loads(Path(args.json).read_text())
    stem = Path(args.json).with_suffix("")
    paths = [p for p in (stem.with_suffix(".md"), Path(args.json), stem.with_suffix(".svg")) if p.exists()]
    render(data, paths, args.width, {"auto": None, "always": True, "never": False}[args.color])
    return 0


if __name__ == "__main__":
    sys.exit(main())
