#!/usr/bin/env python3
"""ramalloc benchmark runner (Python 3 standard library only).

Builds the benchmark programs if needed, then runs every workload and a set of microbenchmarks
under every allocator that is installed, each run in its own process. The allocator is chosen with
LD_PRELOAD (glibc: no preload). Repetitions are interleaved: each repetition visits every
workload, and for each workload every allocator, in an order rotated by one per repetition so no
allocator always runs first or last. Times are wall times, peak memory is the child's ru_maxrss
(see workloads/exec.c for why runs go through the small bench-exec launcher), and the tables show
medians.

Writes a Markdown report to RESULTS/latest.md, the raw data to RESULTS/latest.json and a chart to
RESULTS/latest.svg (RESULTS is results/ in the build directory unless --out-dir says otherwise; with
--publish, also to bench/results/MODE.md and MODE.svg, the files the docs quote), then prints a
report made for the terminal (bench/report_term.py; --markdown prints the Markdown instead).
Progress goes to stderr: a progress line with the time left (--verbose: one line per run).

    bench/run.sh                 # --quick: a few minutes on 2 cores
    bench/run.sh --full          # bigger workloads, more repetitions, all microbenchmarks
    bench/run.sh --tiny          # smoke test: everything once, tiny sizes
    bench/run.sh --allocators glibc,mimalloc --reps 5 --workloads churn,kvstore --no-micro
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import progress as progress_mod
import report_term

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

# ---- What is measured ----------------------------------------------------------------------------

# name, library file names to look for (None: no preload), Debian package that provides it.
# mimalloc3 is built by the runner from a source archive (see build_mimalloc3), not installed.
ALLOCATORS = [
    ("ramalloc", None, None),
    ("mimalloc3", None, None),
    ("mimalloc", ["libmimalloc.so.2", "libmimalloc.so"], "libmimalloc-dev"),
    ("glibc", None, None),
    ("jemalloc", ["libjemalloc.so.2"], "libjemalloc-dev"),
    ("tcmalloc", ["libtcmalloc_minimal.so.4"], "libgoogle-perftools-dev"),
]
ALLOCATOR_NAMES = [a[0] for a in ALLOCATORS]
# Ratios in the tables are to the first two of these that were measured: mimalloc 3.4 when its
# archive is there, else Debian's mimalloc 2.0.9; and glibc.
REFERENCE_CHOICES = (("mimalloc3", "mimalloc"), ("glibc",))
REFERENCES = ("mimalloc", "glibc")  # set by main() from REFERENCE_CHOICES and what was measured

# mimalloc 3.4.3, built from its release archive (Release, its own CMake) into the build folder.
MIMALLOC3_VERSION = "3.4.3"
MIMALLOC3_ARCHIVE = ROOT.parent / "shared" / "baselines" / f"mimalloc-{MIMALLOC3_VERSION}.tar.gz"

# name, program, takes -t THREADS, workload-specific results shown in their own table
WORKLOADS = [
    ("server", "wl-server", True, []),
    ("prodcons", "wl-prodcons", True, []),
    ("fs-active", "wl-fs-active", True, []),
    ("fs-passive", "wl-fs-passive", True, []),
    ("churn", "wl-churn", True, []),
    ("grow", "wl-grow", True, []),
    ("large", "wl-large", True, []),
    ("memreturn", "wl-memreturn", True, ["rss_freed_mib", "rss_wait_mib", "rss_exit_mib", "returned_pct"]),
    ("frag", "wl-frag", False, ["half_rss_over_live", "rss_over_live"]),
    ("kvstore", "wl-kvstore", True, []),
    # Patterns of the classic allocator benchmarks, written from their published descriptions:
    ("larson", "wl-larson", True, []),          # Larson-Krishnan server: slots of 16-1000 B, successor threads inherit them
    ("larson-cxx", "wl-larson-cxx", True, []),  # the same through operator new and sized operator delete
    ("xmalloc", "wl-xmalloc", True, []),        # producers allocate 64 B blocks, consumers free them all (remote)
    ("rchurn1", "wl-rchurn1", False, []),       # random-size churn in a pool of slots, one thread
    ("rchurn", "wl-rchurn", True, []),          # the same in every thread
    ("batches", "wl-batches", True, []),        # rpmalloc-style batches, a quarter freed by the next thread
    ("pstress", "wl-pstress", True, []),        # power-law sizes, a shared transfer array, threads re-created each round
    ("hugeloop", "wl-hugeloop", False, []),     # 5-25 MiB blocks: allocate, write every page, free
    ("leak", "wl-leak", False, []),             # tiny blocks in bursts, one in eight never freed
]
WORKLOAD_NAMES = [w[0] for w in WORKLOADS]
# Throughput-scored workloads run for a fixed time and report scored_s: the seconds their measured
# rate needs for a fixed amount of work (lower is better, like a time). The time tables show it in
# place of the wall time, which is fixed.
SCORED = {"larson": "scored_s", "larson-cxx": "scored_s", "xmalloc": "scored_s"}

# Microbenchmark selections (regular expressions for --benchmark_filter); None runs them all.
MICRO_TINY = (r"^(malloc_free/size:(64|65536)|batch_random/size:0/count:1000|"
              r"realloc_grow/final:65536/step:16|calloc/size:4096|aligned_alloc/align:4096|"
              r"xthread_free/real_time/threads:2|mixed/slots:1024/real_time/threads:2)$")
MICRO_QUICK = (r"^(malloc_free/size:(16|256|4096|65536|1048576)|"
               r"malloc_free_mt/size:64/real_time/threads:[0-9]+|"
               r"batch_(lifo|fifo|random)/size:64/count:1000|batch_random/size:0/count:1000|"
               r"realloc_grow/final:(65536/step:16|1048576/step:0)|calloc/size:(4096|1048576)|"
               r"aligned_alloc/align:(64|4096)|xthread_free/real_time/threads:2|"
               r"mixed/slots:65536/real_time/threads:[0-9]+)$")

MODES = {
    #        workload scale, reps, micro filter, micro min time (s), per-run timeout (s)
    "tiny": dict(scale="tiny", reps=1, micro=MICRO_TINY, min_time=0.001, timeout=60),
    "quick": dict(scale="quick", reps=3, micro=MICRO_QUICK, min_time=0.05, timeout=120),
    "full": dict(scale="full", reps=5, micro=None, min_time=0.25, timeout=900),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- Building ---------------------------------------------------------------------------------------


def run_logged(cmd, logfile):
    """Run cmd with its output in logfile; the build's percentage lines ("[ 45%] Building ...") are
    shown on stderr as they come."""
    with open(logfile, "a") as f:
        f.write("$ " + " ".join(shlex.quote(str(c)) for c in cmd) + "\n")
        f.flush()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace")
        for line in proc.stdout:
            f.write(line)
            if re.match(r"\[\s*\d+%\] (Building|Linking)", line):
                log("  " + line.rstrip()[:120])
        return proc.wait() == 0


def tail(path, n=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def build(build_dir, jobs):
    """Build the benchmark programs and, if it builds, ramalloc.

    Returns (directory of the benchmark programs, path of libramalloc.so or None)."""
    if not shutil.which("cmake"):
        sys.exit("runner: cmake is needed to build the benchmarks (Debian: apt-get install cmake)")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    logfile = build_dir / "runner-build.log"
    logfile.write_text("")
    configure = ["-DCMAKE_BUILD_TYPE=Release", "-DRAMALLOC_TESTS=OFF", "-DRAMALLOC_BENCH=ON"]
    log(f"runner: building in {build_dir} (log: {logfile})")
    ok = True
    if not (build_dir / "CMakeCache.txt").exists():
        ok = run_logged(["cmake", "-S", ROOT, "-B", build_dir] + configure, logfile)
    if ok:
        ok = run_logged(["cmake", "--build", build_dir, "--target", "bench-all", "-j", jobs], logfile)
    if ok:
        lib = None
        if run_logged(["cmake", "--build", build_dir, "--target", "ramalloc", "-j", jobs], logfile):
            lib = build_dir / "libramalloc.so"
        else:
            log("runner: WARNING: ramalloc does not build; it is left out. Last lines of the log:")
            log(tail(logfile))
        return build_dir / "bench", lib
    # The project as a whole does not configure or build (allocator unfinished?): build the
    # benchmark directory on its own so the other allocators can still be measured.
    alone = Path(str(build_dir) + "-only")
    log(f"runner: WARNING: the project does not build; building bench/ alone in {alone}, "
        "without ramalloc. Last lines of the log:")
    log(tail(logfile))
    alone.mkdir(parents=True, exist_ok=True)
    ok = True
    if not (alone / "CMakeCache.txt").exists():
        ok = run_logged(["cmake", "-S", BENCH_DIR, "-B", alone, "-DCMAKE_BUILD_TYPE=Release"], logfile)
    if not ok or not run_logged(["cmake", "--build", alone, "--target", "bench-all", "-j", jobs], logfile):
        log(tail(logfile))
        sys.exit("runner: the benchmark programs do not build; see " + str(logfile))
    return alone, None


def build_mimalloc3(build_dir, jobs, archive):
    """libmimalloc.so of mimalloc 3.4 built from its release archive in BUILD/mimalloc3 (once; a
    later run reuses it), or None with a one-line note when the archive is absent or the build
    fails."""
    out = Path(build_dir) / "mimalloc3"
    built = sorted(out.glob("build/libmimalloc.so.*"))
    if built:
        return built[0]
    archive = Path(archive)
    if not archive.exists():
        log(f"runner: skipping mimalloc3: {archive} not found")
        return None
    out.mkdir(parents=True, exist_ok=True)
    logfile = out / "build.log"
    log(f"runner: building mimalloc {MIMALLOC3_VERSION} from {archive} in {out} (log: {logfile})")
    src = out / f"mimalloc-{MIMALLOC3_VERSION}"
    ok = (src / "CMakeLists.txt").exists() or run_logged(["tar", "xzf", archive, "-C", out], logfile)
    ok = ok and run_logged(["cmake", "-S", src, "-B", out / "build", "-DCMAKE_BUILD_TYPE=Release",
                            "-DMI_BUILD_TESTS=OFF", "-DMI_BUILD_STATIC=OFF", "-DMI_BUILD_OBJECT=OFF"], logfile)
    ok = ok and run_logged(["cmake", "--build", out / "build", "-j", jobs], logfile)
    built = sorted(out.glob("build/libmimalloc.so.*"))
    if not ok or not built:
        log(f"runner: skipping mimalloc3: its build failed (see {logfile})")
        return None
    return built[0]


# ---- Allocators ---------------------------------------------------------------------------------------


def library_dirs():
    dirs = []
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs += [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"]
    dirs += ["/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib64", "/lib"]
    return dirs


def find_library(names):
    for d in library_dirs():
        for n in names:
            p = Path(d) / n
            if p.exists():
                return p
    return None


def package_version(path):
    """Debian package and version that own a file, or ''."""
    try:
        owner = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True, timeout=20)
        if owner.returncode:
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True,
                                   text=True, timeout=20)
        pkg = owner.stdout.split(":")[0].strip()
        if not pkg or owner.returncode:
            return ""
        ver = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                             text=True, timeout=20).stdout.strip()
        return f"{pkg} {ver}".strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def variant_env(name):
    """ramalloc with options, named ramalloc+OPTION=VALUE[+OPTION=VALUE...]: the environment it
    runs with (RAMALLOC_OPTION=VALUE each); {} for every other name."""
    if not name.startswith("ramalloc+"):
        return {}
    env = {}
    for part in name.split("+")[1:]:
        key, sep, value = part.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_]+", key):
            raise ValueError(part)
        env["RAMALLOC_" + key] = value
    return env


def resolve_allocators(wanted, ramalloc_lib, mimalloc3_lib=None):
    """[(name, preload path or None, description)] for the allocators that are present."""
    found = []
    for name in [w for w in wanted if w.startswith("ramalloc+")]:
        if ramalloc_lib and Path(ramalloc_lib).exists():
            opts = " ".join(f"{k}={v}" for k, v in variant_env(name).items())
            found.append((name, Path(ramalloc_lib), f"this tree, with {opts}"))
    for name, libs, pkg in ALLOCATORS:
        if name not in wanted:
            continue
        if name == "ramalloc":
            if ramalloc_lib and Path(ramalloc_lib).exists():
                found.append((name, Path(ramalloc_lib), "this tree"))
            else:
                log(f"runner: skipping ramalloc: {ramalloc_lib or 'libramalloc.so'} is not built")
        elif name == "mimalloc3":
            if mimalloc3_lib:
                found.append((name, Path(mimalloc3_lib), f"mimalloc {MIMALLOC3_VERSION}, built from its release archive"))
        elif libs is None:
            found.append((name, None, f"{platform.libc_ver()[0]} {platform.libc_ver()[1]}".strip()))
        else:
            lib = find_library(libs)
            if lib:
                found.append((name, lib, package_version(lib) or str(lib)))
            else:
                log(f"runner: skipping {name}: {' or '.join(libs)} not found (Debian: {pkg})")
    order = {n: i for i, n in enumerate(wanted)}
    found.sort(key=lambda a: order[a[0]])
    return found


# ---- Running one process ---------------------------------------------------------------------------


def parse_kv(text):
    out = {}
    for tok in text.split():
        k, sep, v = tok.partition("=")
        if not sep:
            continue
        try:
            out[k] = float(v.rstrip("s")) if re.fullmatch(r"-?[0-9.]+(e[-+]?[0-9]+)?s?", v) else v
        except ValueError:
            out[k] = v
    return out


def run_measured(launcher, cmd, preload, timeout, extra_env=None):
    """Run cmd through bench-exec. Returns a dict with wall_s, maxrss_kib, status, ok, stdout, stderr."""
    with tempfile.TemporaryDirectory(prefix="ra-bench-") as tmp:
        report = Path(tmp) / "report"
        out_path, err_path = Path(tmp) / "out", Path(tmp) / "err"
        full = [str(launcher), "-t", str(timeout), "-o", str(report)]
        if preload:
            full += ["-p", str(preload)]
        full += ["--"] + [str(c) for c in cmd]
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        env.update(extra_env or {})
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
            _, status, _ = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        res = parse_kv(report.read_text()) if report.exists() else {}
        res["stdout"] = out_path.read_text(errors="replace")
        res["stderr"] = err_path.read_text(errors="replace")
    res.setdefault("status", f"launcher failed ({proc.returncode})")
    res["ok"] = res["status"] == "exit:0"
    return res


def short_status(r):
    if r["ok"]:
        return "ok"
    st = r["status"]
    names = {"exit:3": "CORRUPTION", "exit:4": "OUT OF MEMORY", "signal:11": "SIGSEGV",
             "signal:6": "SIGABRT", "signal:7": "SIGBUS", "signal:9": "SIGKILL", "timeout": "TIMEOUT"}
    return f"FAIL {names.get(st, st)}"


def probe(launcher, bindir, name, lib):
    """Check that the preload really provides malloc. Returns an error string or None."""
    r = run_measured(launcher, [bindir / "bench-probe"], lib, 30)
    if not r["ok"]:
        return f"bench-probe {short_status(r)}: {r['stderr'].strip()[-300:]}"
    got = parse_kv(r["stdout"])
    m = str(got.get("malloc", "?"))
    if lib:
        if os.path.realpath(m) != os.path.realpath(lib):
            return f"malloc comes from {m}, not {lib} (does the library export malloc?)"
    elif "libc.so" not in m:
        return f"malloc comes from {m}, not glibc"
    return None


# ---- Statistics and formatting ----------------------------------------------------------------------


def median(xs):
    return statistics.median(xs) if xs else None


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fmt(v, digits=3):
    """About three significant digits, no exponent."""
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio_table(title, rows, allocs, unit_note, digits=3, first="workload", with_ratios=True):
    """rows: [(label, {alloc: value or None or 'FAIL ...'})]. Cells: value (ratio to each reference).
    Without ratios, the cells hold the values alone and nothing is marked best."""
    refs = [r for r in REFERENCES if r in allocs] if with_ratios else []
    lines = [f"### {title}", ""]
    if refs:
        lines.append(f"{unit_note} In parentheses: ratio to {' / '.join(refs)} (below 1 is better). "
                     "Best of each row in bold.")
    else:
        lines.append(unit_note)
    lines += ["", f"| {first} | " + " | ".join(allocs) + " |", "|---|" + "---:|" * len(allocs)]
    ratios = {a: {r: [] for r in refs} for a in allocs}
    for label, vals in rows:
        nums = {a: v for a, v in vals.items() if isinstance(v, (int, float))}
        best = min(nums.values()) if nums else None
        cells = []
        for a in allocs:
            v = vals.get(a)
            if v is None:
                cells.append("—")
                continue
            if isinstance(v, str):
                cells.append(f"**{v}**")
                continue
            rs = []
            for r in refs:
                ref = nums.get(r)
                if ref:
                    rs.append(f"{v / ref:.2f}")
                    ratios[a][r].append(v / ref)
                else:
                    rs.append("—")
            s = fmt(v, digits)
            if v == best and len(nums) > 1 and with_ratios:
                s = f"**{s}**"
            cells.append(s + (f" ({' / '.join(rs)})" if rs else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if refs:
        cells = []
        for a in allocs:
            g = [geomean(ratios[a][r]) for r in refs]
            cells.append("(" + " / ".join("—" if x is None else f"{x:.2f}" for x in g) + ")")
        lines.append("| *geometric mean* | " + " | ".join(cells) + " |")
    lines.append("")
    return lines, {a: {r: geomean(ratios[a][r]) for r in refs} for a in allocs}


# ---- Chart (hand-written SVG) ---------------------------------------------------------------------------

COLORS = {"ramalloc": "#d62728", "mimalloc3": "#17becf", "mimalloc": "#1f77b4", "glibc": "#7f7f7f",
          "jemalloc": "#2ca02c", "tcmalloc": "#ff7f0e"}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg_panel(x0, y0, width, title, rows, allocs, ref, label_w):
    """Horizontal grouped bars of value/ref on a log2 axis from 1/8 to 8, row labels on the left.
    Returns (svg elements, height)."""
    bar, gap, top = 7, 8, 34
    lo, hi = -3.0, 3.0  # log2 range
    px0 = x0 + label_w  # left end of the plot
    plot_w = width - label_w - 20
    group_h = bar * len(allocs) + gap
    height = top + group_h * len(rows) + 24
    out = [f'<text x="{x0 + 10}" y="{y0 + 16}" font-size="13" font-weight="bold">{esc(title)}</text>']

    def xpos(r):
        lr = max(lo, min(hi, math.log2(r)))
        return px0 + (lr - lo) / (hi - lo) * plot_w

    for e in range(int(lo), int(hi) + 1):
        x = xpos(2.0 ** e)
        out.append(f'<line x1="{x:.1f}" y1="{y0 + top - 4}" x2="{x:.1f}" y2="{y0 + height - 22}" '
                   f'stroke="{"#444" if e == 0 else "#ddd"}" stroke-width="{1.2 if e == 0 else 0.8}"/>')
        lab = f"{2 ** e:g}" if e >= 0 else f"1/{2 ** -e:g}"
        out.append(f'<text x="{x:.1f}" y="{y0 + height - 8}" font-size="10" text-anchor="middle" '
                   f'fill="#555">{lab}</text>')
    for gi, (label, vals) in enumerate(rows):
        gy = y0 + top + gi * group_h
        refv = vals.get(ref)
        out.append(f'<text x="{px0 - 6}" y="{gy + bar * len(allocs) / 2 + 3:.1f}" font-size="10" '
                   f'text-anchor="end" fill="#222">{esc(label)}</text>')
        for ai, a in enumerate(allocs):
            v = vals.get(a)
            y = gy + ai * bar
            color = COLORS.get(a, "#000")
            if isinstance(v, str):  # a failure
                out.append(f'<text x="{xpos(1) + 3:.1f}" y="{y + bar - 1}" font-size="8" font-weight="bold" '
                           f'fill="{color}">{esc(a)}: {esc(v)}</text>')
                continue
            if not isinstance(v, (int, float)) or not isinstance(refv, (int, float)) or refv <= 0 or v <= 0:
                continue
            r = v / refv
            x1, x2 = sorted((xpos(1), xpos(r)))
            out.append(f'<rect x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 1):.1f}" height="{bar - 1}" '
                       f'fill="{color}"><title>{esc(a)}, {esc(label)}: {r:.2f} × {esc(ref)}</title></rect>')
            if r > 2 ** hi or r < 2 ** lo:  # clipped: print the ratio inside the end of the bar
                tx = x2 - 2 if r > 1 else x1 + 2
                out.append(f'<text x="{tx:.1f}" y="{y + bar - 1}" font-size="7.5" fill="white" '
                           f'text-anchor="{"end" if r > 1 else "start"}">{r:.3g}×</text>')
    return out, height


def write_svg(path, meta, allocs, wl_rows_time, wl_rows_rss, micro_rows):
    ref = "glibc" if "glibc" in allocs else allocs[0]
    width = 1100
    parts = []
    y = 60
    col = width // 2
    p1, h1 = svg_panel(0, y, col, f"Workload wall time, ratio to {ref} (log scale, left is better)",
                       wl_rows_time, allocs, ref, 90)
    p2, h2 = svg_panel(col, y, col, f"Workload peak RSS, ratio to {ref} (log scale, left is better)",
                       wl_rows_rss, allocs, ref, 90)
    parts += p1 + p2
    y += max(h1, h2) + 10
    if micro_rows:
        p3, h3 = svg_panel(0, y, width, f"Microbenchmarks, time per operation, ratio to {ref} "
                           "(log scale, left is better)", micro_rows, allocs, ref, 260)
        parts += p3
        y += h3
    legend = []
    lx = 10
    for a in allocs:
        legend.append(f'<rect x="{lx}" y="34" width="12" height="10" fill="{COLORS.get(a, "#000")}"/>'
                      f'<text x="{lx + 16}" y="43" font-size="11">{esc(a)}'
                      f'{" (reference)" if a == ref else ""}</text>')
        lx += 170 if a == ref else 110
    head = (f'<text x="10" y="20" font-size="15" font-weight="bold">ramalloc benchmarks '
            f'({esc(meta["mode"])}, {esc(meta["date"])}, {meta["cpus"]} CPUs, median of '
            f'{meta["reps"]})</text>')
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 10}" '
           f'viewBox="0 0 {width} {y + 10}" font-family="sans-serif">',
           f'<rect width="{width}" height="{y + 10}" fill="white"/>', head] + legend + parts + ["</svg>"]
    Path(path).write_text("\n".join(svg) + "\n")


# ---- Main ---------------------------------------------------------------------------------------------


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def git_revision():
    """git describe of the tree; without git (or outside a clone), a hash of the sources instead."""
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    import hashlib
    h = hashlib.sha1()
    for top in ("CMakeLists.txt", "allocator", "include", "bench", "tools"):
        for p in sorted([ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    return "sources-sha1:" + h.hexdigest()[:10]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick",
                   help="default: quick sizes, 3 repetitions, a subset of microbenchmarks")
    g.add_argument("--full", dest="mode", action="store_const", const="full",
                   help="full sizes, 5 repetitions, all microbenchmarks")
    g.add_argument("--tiny", dest="mode", action="store_const", const="tiny",
                   help="smoke test: tiny sizes, 1 repetition")
    ap.add_argument("--allocators", default=",".join(ALLOCATOR_NAMES),
                    help=f"comma-separated, from {','.join(ALLOCATOR_NAMES)} (default: all installed); "
                         "ramalloc+OPTION=VALUE[+...] runs ramalloc with RAMALLOC_OPTION=VALUE")
    ap.add_argument("--workloads", default=",".join(WORKLOAD_NAMES),
                    help="comma-separated workload names (default: all)")
    ap.add_argument("--reps", type=int, help="repetitions (default: 1 tiny, 3 quick, 5 full)")
    ap.add_argument("--threads", type=int, help="threads for the workloads (default: CPU count, at least 2)")
    ap.add_argument("--no-micro", action="store_true", help="skip the microbenchmarks")
    ap.add_argument("--micro-only", action="store_true", help="only the microbenchmarks")
    ap.add_argument("--micro-filter", help="--benchmark_filter regex for bench-micro (overrides the mode's)")
    ap.add_argument("--min-time", type=float, help="--benchmark_min_time for bench-micro")
    ap.add_argument("--build-dir", default=str(ROOT / "build-bench"),
                    help="CMake build directory (default: build-bench at the top of the tree)")
    ap.add_argument("--no-build", action="store_true", help="use the programs in --bin-dir as they are")
    ap.add_argument("--bin-dir", help="directory holding the built programs (with --no-build)")
    ap.add_argument("--ramalloc-lib", help="libramalloc.so to preload (default: from the build)")
    ap.add_argument("--out-dir", help="where latest.{md,json,svg} go (default: results/ in --build-dir)")
    ap.add_argument("--publish", action="store_true",
                    help="also write bench/results/MODE.md and MODE.svg (the files docs/performance.md "
                         "quotes); only on purpose, never by the main job")
    ap.add_argument("--markdown", action="store_true", help="print the Markdown report, not the terminal one")
    ap.add_argument("-v", "--verbose", action="store_true", help="one progress line per run")
    ap.add_argument("--mimalloc3-archive", default=str(MIMALLOC3_ARCHIVE),
                    help="mimalloc 3.4 source archive, built into BUILD_DIR/mimalloc3 once "
                         "(default: ../shared/baselines from the top of the tree)")
    ap.add_argument("--timeout", type=float, help="seconds before a run is killed")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2, help="build jobs")
    args = ap.parse_args()
    mode = args.mode or "quick"
    cfg = MODES[mode]
    reps = args.reps or cfg["reps"]
    if reps < 1:
        ap.error("--reps must be at least 1")
    timeout = args.timeout or cfg["timeout"]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or max(2, cpus)
    wanted = [a.strip() for a in args.allocators.split(",") if a.strip()]
    for a in wanted:
        try:
            variant_env(a)
        except ValueError as e:
            ap.error(f"allocator {a!r}: {e} is not OPTION=VALUE (e.g. ramalloc+GUARD_PAGES=1)")
        if a not in ALLOCATOR_NAMES and not a.startswith("ramalloc+"):
            ap.error(f"unknown allocator {a!r}; known: {', '.join(ALLOCATOR_NAMES)}, "
                     "or ramalloc+OPTION=VALUE for ramalloc with RAMALLOC_OPTION=VALUE")
    wl_wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in wl_wanted:
        if w not in WORKLOAD_NAMES:
            ap.error(f"unknown workload {w!r}; known: {', '.join(WORKLOAD_NAMES)}")
    workloads = [] if args.micro_only else [w for w in WORKLOADS if w[0] in wl_wanted]

    # Build
    if args.no_build:
        bindir = Path(args.bin_dir or Path(args.build_dir) / "bench")
        lib = Path(args.ramalloc_lib) if args.ramalloc_lib else Path(args.build_dir) / "libramalloc.so"
    else:
        bindir, lib = build(args.build_dir, args.jobs)
        if args.bin_dir:
            bindir = Path(args.bin_dir)
        if args.ramalloc_lib:
            lib = Path(args.ramalloc_lib)
    launcher = bindir / "bench-exec"
    if not launcher.exists():
        sys.exit(f"runner: {launcher} not found (build the bench-all target, or fix --bin-dir)")
    micro_bin = bindir / "bench-micro"
    do_micro = not args.no_micro and micro_bin.exists()
    if not args.no_micro and not micro_bin.exists():
        log("runner: bench-micro is not built (Google Benchmark missing?); microbenchmarks skipped")

    # Allocators: present, and their preload really provides malloc
    mi3 = None
    if "mimalloc3" in wanted:
        mi3 = build_mimalloc3(args.build_dir, args.jobs, args.mimalloc3_archive)
    allocs = []
    problems = []
    for name, path, desc in resolve_allocators(wanted, lib, mi3):
        err = probe(launcher, bindir, name, path)
        if err:
            log(f"runner: skipping {name}: {err}")
            problems.append({"allocator": name, "what": "probe", "detail": err})
        else:
            allocs.append((name, path, desc))
    if not allocs:
        sys.exit("runner: no allocator to measure")
    names = [a[0] for a in allocs]
    global REFERENCES
    REFERENCES = tuple(next((c for c in choice if c in names), choice[-1]) for choice in REFERENCE_CHOICES)
    log(f"runner: {mode}: {len(workloads)} workloads{' + microbenchmarks' if do_micro else ''} × "
        f"{len(allocs)} allocators ({', '.join(names)}) × {reps} repetitions; threads={threads}")

    # Run, interleaved
    wl_samples = {w[0]: {a: [] for a in names} for w in workloads}
    micro_samples = {}  # bench -> alloc -> [ns per item]
    micro_meta = {}
    micro_failed = {}  # alloc -> status of a bench-micro process that failed as a whole
    failures = []
    total = reps * (len(workloads) + (1 if do_micro else 0)) * len(allocs)
    done = 0
    progress = progress_mod.Progress(total, cycle=total // reps)
    t_start = time.time()
    micro_filter = args.micro_filter or cfg["micro"]
    min_time = args.min_time or cfg["min_time"]
    for rep in range(reps):
        k = rep % len(allocs)
        order = allocs[k:] + allocs[:k]
        for wname, prog, takes_threads, _ in workloads:
            cmd = [bindir / prog, cfg["scale"]] + (["-t", str(threads)] if takes_threads else [])
            for name, path, _ in order:
                r = run_measured(launcher, cmd, path, timeout, variant_env(name))
                done += 1
                summary = next((l for l in r["stdout"].splitlines() if l.startswith(wname + ":")), "")
                rec = {"rep": rep, "wall_s": r.get("wall_s"), "maxrss_kib": r.get("maxrss_kib"),
                       "utime_s": r.get("utime_s"), "stime_s": r.get("stime_s"),
                       "minflt": r.get("minflt"), "status": r["status"], "ok": r["ok"],
                       "summary": parse_kv(summary.partition(":")[2]) if summary else {}}
                wl_samples[wname][name].append(rec)
                st = short_status(r)
                if not r["ok"] or not summary:
                    if r["ok"]:
                        st = "FAIL no summary line"
                    failures.append({"allocator": name, "workload": wname, "rep": rep, "status": st,
                                     "command": (f"LD_PRELOAD={path} " if path else "") +
                                     " ".join(shlex.quote(str(c)) for c in cmd),
                                     "stderr": r["stderr"][-2000:], "stdout": r["stdout"][-500:]})
                    rec["ok"] = False
                    rec["failure"] = st
                line = (f"[{done:3d}/{total}] rep {rep + 1}/{reps}  {wname:<11} {name:<9} "
                        f"{r.get('wall_s', 0):8.3f} s {r.get('maxrss_kib', 0) / 1024:8.1f} MiB  {st}")
                if args.verbose or not rec["ok"]:
                    progress.note(line)
                progress.step(f"rep {rep + 1}/{reps}, {wname}, {name}")
        if do_micro:
            cmd = [micro_bin, f"--benchmark_min_time={min_time}", "--benchmark_format=json"]
            if micro_filter:
                cmd.append(f"--benchmark_filter={micro_filter}")
            for name, path, _ in order:
                r = run_measured(launcher, cmd, path, timeout, variant_env(name))
                done += 1
                st = short_status(r)
                count = 0
                try:
                    data = json.loads(r["stdout"]) if r["ok"] else None
                except ValueError:
                    data, st = None, "FAIL bad JSON output"
                if data:
                    micro_meta.setdefault("context", data.get("context", {}))
                    for b in data.get("benchmarks", []):
                        bname = b.get("name")
                        if b.get("error_occurred"):
                            micro_samples.setdefault(bname, {}).setdefault(name, []).append(
                                "FAIL " + str(b.get("error_message", "error")))
                            one = [c for c in cmd if not str(c).startswith("--benchmark_filter=")]
                            one.append("--benchmark_filter=^" + re.escape(str(bname)) + "$")
                            failures.append({"allocator": name, "workload": "micro:" + bname, "rep": rep,
                                             "status": "FAIL " + str(b.get("error_message")),
                                             "command": (f"LD_PRELOAD={path} " if path else "") +
                                             " ".join(shlex.quote(str(c)) for c in one),
                                             "stderr": "", "stdout": ""})
                            continue
                        ips = b.get("items_per_second")
                        if ips:
                            micro_samples.setdefault(bname, {}).setdefault(name, []).append(1e9 / ips)
                            count += 1
                if not r["ok"] or not data:
                    micro_failed.setdefault(name, st)
                    failures.append({"allocator": name, "workload": "micro", "rep": rep, "status": st,
                                     "command": (f"LD_PRELOAD={path} " if path else "") +
                                     " ".join(shlex.quote(str(c)) for c in cmd),
                                     "stderr": r["stderr"][-2000:], "stdout": r["stdout"][-500:]})
                line = (f"[{done:3d}/{total}] rep {rep + 1}/{reps}  {'micro':<11} {name:<9} "
                        f"{r.get('wall_s', 0):8.3f} s {r.get('maxrss_kib', 0) / 1024:8.1f} MiB  {st}"
                        f"{f' ({count} benchmarks)' if r['ok'] else ''}")
                if args.verbose or not r["ok"]:
                    progress.note(line)
                progress.step(f"rep {rep + 1}/{reps}, microbenchmarks, {name}")
    elapsed = time.time() - t_start

    # Summaries
    def cell(samples, key, scale=1.0):
        ok = [s[key] for s in samples if s["ok"] and isinstance(s.get(key), (int, float))]
        return median(ok) * scale if ok else None

    def fail_cell(samples):
        bad = [s for s in samples if not s["ok"]]
        return bad[0].get("failure", "FAIL") if bad else None

    for d in wl_samples.values():
        for s in d.values():
            for x in s:
                if isinstance(x.get("utime_s"), float) and isinstance(x.get("stime_s"), float):
                    x["cpu_s"] = x["utime_s"] + x["stime_s"]
    time_rows, cpu_rows, rss_rows, extra_rows = [], [], [], []
    for wname, prog, takes_threads, extras in workloads:
        tvals, cvals, rvals = {}, {}, {}
        for a in names:
            s = wl_samples[wname][a]
            f = fail_cell(s)
            if wname in SCORED:  # throughput-scored: the time its rate needs, not the fixed run time
                xs = [x["summary"].get(SCORED[wname]) for x in s if x["ok"]]
                tvals[a] = f or median([x for x in xs if isinstance(x, (int, float))])
            else:
                tvals[a] = f or cell(s, "wall_s")
            cvals[a] = f or cell(s, "cpu_s")
            rvals[a] = f or cell(s, "maxrss_kib", 1 / 1024)
        time_rows.append((wname, tvals))
        cpu_rows.append((wname, cvals))
        rss_rows.append((wname, rvals))
        for key in extras:
            vals = {}
            for a in names:
                s = wl_samples[wname][a]
                f = fail_cell(s)
                xs = [x["summary"].get(key) for x in s if x["ok"] and isinstance(x["summary"].get(key), (int, float))]
                vals[a] = f or median(xs)
            extra_rows.append((f"{wname} {key}", vals))
    micro_rows = []
    for bname in micro_samples:
        vals = {}
        for a in names:
            xs = micro_samples[bname].get(a, [])
            bad = [x for x in xs if isinstance(x, str)]
            if not xs and a in micro_failed:
                bad = [micro_failed[a]]
            vals[a] = bad[0] if bad else median([x for x in xs if not isinstance(x, str)])
        micro_rows.append((bname, vals))

    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    meta = {"mode": mode, "date": date, "revision": git_revision(), "reps": reps, "threads": threads, "cpus": cpus,
            "cpu": cpu_model(), "kernel": platform.release(), "python": platform.python_version(),
            "scale": cfg["scale"], "micro_filter": micro_filter if do_micro else None,
            "micro_min_time": min_time if do_micro else None, "elapsed_s": round(elapsed, 1),
            "allocators": {n: {"preload": str(p) if p else None, "version": d} for n, p, d in allocs}}

    md = [f"## ramalloc benchmarks: {mode}", "",
          f"{date}; tree {meta['revision'] or '?'}; {cpus} CPUs ({meta['cpu']}), Linux {meta['kernel']}; "
          f"workloads at scale "
          f"`{cfg['scale']}` with {threads} threads; median of {reps} interleaved repetitions; "
          f"{elapsed:.0f} s in all.", "",
          "Allocators: " + "; ".join(f"{n} ({d})" for n, p, d in allocs) + ".", ""]
    geo = {}
    if workloads:
        lines, geo["time"] = ratio_table("Workloads: wall time (s)", time_rows, names,
                                         "Wall time of the whole process, seconds "
                                         f"(throughput-scored workloads, {', '.join(SCORED)}: the "
                                         "seconds their measured rate needs for 10 M operations).")
        md += lines
        lines, geo["cpu"] = ratio_table("Workloads: CPU time (s)", cpu_rows, names,
                                        "User plus system time of the process, seconds: less "
                                        "disturbed than wall time by other load on the machine, but "
                                        "blind to waiting (and it counts spinning).")
        md += lines
        lines, geo["rss"] = ratio_table("Workloads: peak RSS (MiB)", rss_rows, names,
                                        "Peak resident set size (ru_maxrss of the process), MiB.")
        md += lines
        if extra_rows:
            lines, _ = ratio_table("Workload-specific results", extra_rows, names,
                                   "memreturn: RSS (MiB) right after freeing the peak, after the "
                                   "wait with the threads idle, and after the threads exited (lower "
                                   "is better); returned_pct: share of the peak's growth given back "
                                   "by the end of the wait (higher is better). frag: RSS divided by "
                                   "the live bytes after every other block was freed, and at the end "
                                   "(lower is better).", first="result",
                                   with_ratios=False)
            md += lines
    if micro_rows:
        lines, geo["micro"] = ratio_table(
            "Microbenchmarks: time per operation (ns)", micro_rows, names,
            f"Nanoseconds per allocation (with its free), from items_per_second; threaded runs give "
            f"the throughput of all threads together. --benchmark_min_time={min_time}.",
            first="benchmark")
        md += lines
    if problems or failures:
        md += ["### Problems", ""]
        for p in problems:
            md.append(f"- {p['allocator']}: {p['what']}: {p['detail']}")
        seen = set()
        for f in failures:
            key = (f["allocator"], f["workload"], f["status"])
            if key in seen:
                continue
            seen.add(key)
            n = sum(1 for g2 in failures if (g2["allocator"], g2["workload"], g2["status"]) == key)
            md.append(f"- **{f['allocator']}**, {f['workload']}: {f['status']} ({n} of {reps} runs)"
                      + (f"; reproduce: `{f['command']}`" if f["command"] else ""))
            err = f["stderr"].strip().splitlines()[-3:]
            if err:
                md.append("  ```")
                md += ["  " + e[:300] for e in err]
                md.append("  ```")
        md.append("")
    report = "\n".join(md)

    out_dir = Path(args.out_dir or Path(args.build_dir) / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.md").write_text(report)
    data = {"meta": meta, "problems": problems, "failures": failures,
            "workloads": {w: {a: {"median_wall_s": cell(s, "wall_s") if not fail_cell(s) else None,
                                  "median_cpu_s": cell(s, "cpu_s") if not fail_cell(s) else None,
                                  "median_maxrss_mib": cell(s, "maxrss_kib", 1 / 1024) if not fail_cell(s) else None,
                                  "samples": s} for a, s in d.items()} for w, d in wl_samples.items()},
            "micro": {b: {a: {"median_ns": v, "samples_ns": micro_samples[b].get(a, [])}
                          for a, v in vals.items()} for b, vals in micro_rows},
            "micro_context": micro_meta.get("context", {}),
            "geomean_ratios": geo}
    tmp = out_dir / "latest.json.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(out_dir / "latest.json")
    write_svg(out_dir / "latest.svg", meta, names, time_rows, rss_rows, micro_rows)
    written = [out_dir / "latest.md", out_dir / "latest.json", out_dir / "latest.svg"]
    if args.publish:
        for ext in ("md", "svg"):
            shutil.copyfile(out_dir / f"latest.{ext}", BENCH_DIR / "results" / f"{mode}.{ext}")
            written.append(BENCH_DIR / "results" / f"{mode}.{ext}")
    if args.markdown:
        print(report)
        log("runner: wrote " + ", ".join(str(p) for p in written) + f" ({elapsed:.0f} s)")
    else:
        print()
        report_term.render(data, written)
    return 1 if failures or problems else 0


if __name__ == "__main__":
    sys.exit(main())
