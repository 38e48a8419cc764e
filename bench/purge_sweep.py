#!/usr/bin/env python3
"""Purge settings side by side: RAMALLOC_PURGE_DELAY_MS x RAMALLOC_PURGE on the allocation-heavy and
memory-return workloads, with mimalloc and glibc as references. Each run goes through bench-exec
(wall time, peak RSS); memreturn also reports its RSS after the free, after a 1 s wait and after its
threads exit. Settings are interleaved within each repetition; medians are printed as Markdown.

    bench/purge_sweep.py [--reps N] [--build-dir build-bench] [--lib build/libramalloc.so]
"""
import argparse, os, re, statistics, subprocess, sys, tempfile

WORKLOADS = ["churn", "kvstore", "server", "large", "grow", "frag", "memreturn"]
SETTINGS = [("0", "decommit"), ("10", "decommit"), ("100", "decommit"), ("1000", "decommit"),
            ("10", "reset"), ("-1", "decommit")]  # -1: never purge, the reference for purging's cost

def run(exec_bin, prog, args, preload, env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as rep:
        cmd = [exec_bin, "-t", "600", "-o", rep.name]
        if preload:
            cmd += ["-p", preload]
        cmd += ["--", prog] + args
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout}{out.stderr}")
        kv = dict(x.split("=", 1) for x in rep.read().split())
    res = {"wall": float(kv["wall_s"]), "rss": int(kv["maxrss_kib"]) / 1024,
           "cpu": float(kv["utime_s"]) + float(kv["stime_s"]), "faults": int(kv["minflt"])}
    for key in ("rss_freed_mib", "rss_wait_mib", "rss_exit_mib"):
        m = re.search(key + r"=([0-9.]+)", out.stdout)
        if m:
            res[key] = float(m.group(1))
    return res

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--lib", default=None)
    ap.add_argument("--ref", default="ramalloc delay=-1 decommit", help="row the ratios are taken against")
    a = ap.parse_args()
    bindir = os.path.join(a.build_dir, "bench")
    lib = os.path.abspath(a.lib or os.path.join(a.build_dir, "libramalloc.so"))
    exec_bin = os.path.join(bindir, "bench-exec")
    configs = [(f"ramalloc delay={d} {m}", lib, {"RAMALLOC_PURGE_DELAY_MS": d, "RAMALLOC_PURGE": m})
               for d, m in SETTINGS]
    mi = "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"
    if os.path.exists(mi):
        configs.append(("mimalloc", mi, {}))
    configs.append(("glibc", None, {}))
    data = {}
    for rep in range(a.reps):
        for w in WORKLOADS:
            order = configs[rep % len(configs):] + configs[:rep % len(configs)]
            for name, pre, env in order:
                r = run(exec_bin, os.path.join(bindir, "wl-" + w), ["quick", "-t", "2"], pre, env)
                data.setdefault((name, w), []).append(r)
                print(f"rep {rep + 1} {w:10s} {name:30s} {r['wall']:.3f} s {r['rss']:.1f} MiB",
                      file=sys.stderr)
    med = lambda name, w, k: statistics.median(x[k] for x in data[(name, w)])
    ref = configs[-1][0] if a.ref is None else a.ref
    for key, title, fmt in (("wall", "wall time (s)", "{:.3f}"), ("cpu", "CPU time, user+system (s)", "{:.3f}"),
                            ("faults", "minor page faults", "{:.0f}")):
        print(f"| setting | " + " | ".join(f"{w} {title}" for w in WORKLOADS) + f" | geomean vs {ref} |")
        print("|---|" + "---:|" * (len(WORKLOADS) + 1))
        for name, _, _ in configs:
            ratios = [med(name, w, key) / med(ref, w, key) for w in WORKLOADS]
            gm = statistics.geometric_mean(ratios)
            print(f"| {name} | " + " | ".join(fmt.format(med(name, w, key)) for w in WORKLOADS) + f" | {gm:.3f} |")
        print()
    print("| setting | " + " | ".join(f"{w} peak RSS (MiB)" for w in WORKLOADS) +
          " | memreturn RSS after free / after 1 s / after threads exit (MiB) |")
    print("|---|" + "---:|" * (len(WORKLOADS) + 1))
    for name, _, _ in configs:
        mr = " / ".join(f"{med(name, 'memreturn', k):.1f}" for k in ("rss_freed_mib", "rss_wait_mib", "rss_exit_mib"))
        print(f"| {name} | " + " | ".join(f"{med(name, w, 'rss'):.1f}" for w in WORKLOADS) + f" | {mr} |")

if __name__ == "__main__":
    main()
