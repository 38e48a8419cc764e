#!/usr/bin/env python3
"""The heap profiler's tests (ctest: prof_*). One check per invocation:

  accuracy  estimated live bytes per call site of prof_sites within 10% of the truth, in the profiles
            written by ra_profile_write, at exit and on RAMALLOC_DUMP_SIGNAL
  entries   the same for sites that allocate with calloc, realloc and aligned_alloc
  pprof     google-pprof --text reads the profile and names the sites (skipped without google-pprof)
  leaks     RAMALLOC_LEAKS=1 lists the live sites, most bytes first, and keeps the exit status
  threads   four threads sampling and a fork in the middle: both processes write sound profiles
  forkdump  300 forks while another thread writes layout dumps with call sites: every child dumps too
  timeline  ramalloc-run --timeline writes a CSV with rising rows and an SVG with labelled axes
  layout    the layout dump names each page's main call site; ramalloc-map --by-site draws them
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77  # ctest SKIP_RETURN_CODE
TMP = None

A_TRUE = 8 * 2**20 + 8192 * 8      # 1 KiB blocks and the calloc'ed pointer array
B_TRUE = 2 * 2**20 + 32768 * 8     # 64-byte blocks and the pointer array
D_TRUE = 4 * 2**20 + 32            # four 1 MiB blocks and a 32-byte array
CHILD_TRUE = 1024 * 2048 + 1024 * 8
CALLOC_N = 2 * 2**20 // 48
CALLOC_TRUE = CALLOC_N * 48 + CALLOC_N * 8
REALLOC_TRUE = 8192 * 400 + 8192 * 8
ALIGNED_N = 16384 + 1              # the blocks and the pointer array


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run(cmd, env_extra, expect_rc=0):
    env = dict(os.environ)
    env["RAMALLOC_PROFILE_FILE"] = os.path.join(TMP, "exit.%p.heap")  # the profile written at exit
    env.update(env_extra)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != expect_rc:
        fail(f"{cmd} exited with {r.returncode}, expected {expect_rc}\nstdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def folded(args, profile, value="inuse_space"):
    out = subprocess.run([sys.executable, args.fold, "--value=" + value, profile], capture_output=True, text=True,
                         check=True).stdout
    per_leaf = {}
    for line in out.splitlines():
        stack, v = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1]
        per_leaf[leaf] = per_leaf.get(leaf, 0) + int(v)
    return per_leaf


def check_close(name, est, truth, tol=0.10):
    err = abs(est - truth) / truth
    print(f"{name}: estimated {est}, true {truth}, error {err * 100:.1f}%")
    if err > tol:
        fail(f"{name}: estimate {est} is more than {tol * 100:.0f}% off {truth}")


def test_accuracy(args, tmp):
    prof = os.path.join(tmp, "sites.heap")
    # one sample per 512 bytes: site_b (2.25 MiB) gets ~4600 samples, a relative error of ~1.5%
    run([args.sites, "sites", prof], {"RAMALLOC_PROFILE": "512"}, expect_rc=3)
    space = folded(args, prof)
    objects = folded(args, prof, "inuse_objects")
    check_close("site_a bytes", space.get("site_a", 0), A_TRUE)
    check_close("site_b bytes", space.get("site_b", 0), B_TRUE)
    check_close("site_d bytes", space.get("site_d", 0), D_TRUE)
    check_close("site_a blocks", objects.get("site_a", 0), 8193)
    check_close("site_b blocks", objects.get("site_b", 0), 32769)
    if space.get("site_c", 0) != 0:
        fail(f"site_c frees everything it allocates, yet the profile holds {space['site_c']} bytes for it")
    alloc = folded(args, prof, "alloc_space")
    check_close("site_c allocated bytes", alloc.get("site_c", 0), 64 * 2**20)
    # the profile written at exit (RAMALLOC_PROFILE_FILE, set by run()) holds the same sites
    exits = [f for f in os.listdir(TMP) if f.startswith("exit.") and f.endswith(".heap")]
    if len(exits) != 1:
        fail(f"expected one profile written at exit, found {exits}")
    check_close("site_a bytes at exit", folded(args, os.path.join(TMP, exits[0])).get("site_a", 0), A_TRUE)
    # on RAMALLOC_DUMP_SIGNAL, a numbered profile while the program runs
    sig = os.path.join(tmp, "sig.heap")
    run([args.sites, "signal", sig + ".1"], {"RAMALLOC_PROFILE": "4096", "RAMALLOC_PROFILE_FILE": sig,
                                            "RAMALLOC_DUMP_SIGNAL": "USR2",
                                            "RAMALLOC_DUMP_LAYOUT": os.path.join(tmp, "sig.json")})
    check_close("site_a bytes in the signal's profile", folded(args, sig + ".1").get("site_a", 0), A_TRUE)


def test_entries(args, tmp):
    prof = os.path.join(tmp, "entries.heap")
    run([args.sites, "entries", prof], {"RAMALLOC_PROFILE": "512"})
    space = folded(args, prof)
    objects = folded(args, prof, "inuse_objects")
    check_close("site_calloc bytes", space.get("site_calloc", 0), CALLOC_TRUE)
    check_close("site_calloc blocks", objects.get("site_calloc", 0), CALLOC_N + 1)
    # the 40-byte blocks were freed by the realloc that moved them: only the 400-byte ones are live
    check_close("site_realloc bytes", space.get("site_realloc", 0), REALLOC_TRUE)
    check_close("site_realloc blocks", objects.get("site_realloc", 0), 8193)
    # an aligned block counts the bytes of the block that holds it (100 + 48 here), so only the
    # block count is compared
    check_close("site_aligned blocks", objects.get("site_aligned", 0), ALIGNED_N)


def test_pprof(args, tmp):
    pprof = shutil.which("google-pprof") or shutil.which("pprof")
    if pprof is None:
        print("SKIP: google-pprof is not installed (Debian package google-perftools; scripts/install-deps.sh)")
        sys.exit(SKIP)
    prof = os.path.join(tmp, "sites.heap")
    run([args.sites, "sites", prof], {"RAMALLOC_PROFILE": "4096"}, expect_rc=3)
    r = subprocess.run([pprof, "--text", args.sites, prof], capture_output=True, text=True, timeout=300)
    print(r.stdout)
    if r.returncode != 0:
        fail(f"google-pprof --text failed: {r.stderr}")
    rows = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)\s+[\d.]+%\s+[\d.]+%\s+[\d.]+\s+[\d.]+%\s+(\S+)", line)
        if m:
            rows[m.group(2)] = float(m.group(1))
    for site, truth in (("site_a", A_TRUE), ("site_b", B_TRUE), ("site_d", D_TRUE)):
        if site not in rows:
            fail(f"google-pprof --text does not name {site}")
        mb = truth / 2**20
        if abs(rows[site] - mb) > 0.15 * mb + 0.1:
            fail(f"google-pprof shows {rows[site]} MB for {site}, expected about {mb:.2f}")
    if "site_c" in rows and rows["site_c"] > 0:
        fail("google-pprof shows live bytes for site_c")
    if shutil.which("dot"):
        svg = subprocess.run([pprof, "--svg", args.sites, prof], capture_output=True, text=True, timeout=300)
        if svg.returncode != 0 or "<svg" not in svg.stdout or "site_a" not in svg.stdout:
            fail(f"google-pprof --svg made no graph naming site_a: {svg.stderr}")
        print("google-pprof --svg: a graph of", len(svg.stdout), "bytes naming site_a")


def test_leaks(args, tmp):
    prof = os.path.join(tmp, "leaks.heap")
    # the default rate (512 KiB): every site holding MiBs shows up
    r = run([args.sites, "sites", prof], {"RAMALLOC_LEAKS": "1"}, expect_rc=3)
    print(r.stderr)
    for site in ("site_a", "site_d"):
        if not re.search(r"\b%s\+0x" % site, r.stderr):
            fail(f"the leak report at the default rate does not name {site}")
    # a finer rate: the order of the sites, and site_c absent
    r = run([args.sites, "sites", prof], {"RAMALLOC_LEAKS": "1", "RAMALLOC_PROFILE": "4096"}, expect_rc=3)
    print(r.stderr)
    head = re.search(r"ramalloc: leak report: (\d+) call sites hold sampled blocks at exit: about (\d+) bytes",
                     r.stderr)
    if not head:
        fail("no leak report header")
    sizes = [int(x) for x in re.findall(r"^  about (\d+) bytes in \d+ blocks", r.stderr, re.M)]
    if sizes != sorted(sizes, reverse=True):
        fail(f"leak report not sorted by bytes: {sizes}")
    firsts = re.findall(r"allocated at:\n\s+0x[0-9a-f]+ (\w+)\+", r.stderr)
    if firsts[:3] != ["site_a", "site_d", "site_b"]:
        fail(f"leak report order {firsts[:3]}, expected site_a, site_d, site_b")
    if "site_c" in r.stderr:
        fail("site_c freed all its blocks but is in the leak report")
    total = int(head.group(2))
    check_close("leak report total", total, A_TRUE + B_TRUE + D_TRUE)
    # profiling off: no report
    r = run([args.sites, "sites", prof], {}, expect_rc=1)
    if "leak report" in r.stderr or "error 22" not in r.stderr:
        fail("without the profiler, ra_profile_write must return EINVAL and nothing be reported")


def test_threads(args, tmp):
    prof = os.path.join(tmp, "threads.heap")
    run([args.sites, "threads", prof], {"RAMALLOC_PROFILE": "512"})
    parent = folded(args, prof)
    child = folded(args, prof + ".child")
    print("parent:", parent)
    print("child:", child)
    check_close("site_child bytes in the child", child.get("site_child", 0), CHILD_TRUE)
    if parent.get("site_child", 0) != 0:
        fail("the parent's profile holds the child's blocks")
    if "thread_work" not in folded(args, prof, "alloc_space"):
        fail("the threads' allocations are not in the parent's profile")
    # every thread freed what it kept: nothing live is left at thread_work in the parent
    if parent.get("thread_work", 0) != 0:
        fail(f"thread_work freed everything, yet {parent['thread_work']} bytes are live in the profile")


def test_forkdump(args, tmp):
    # fork while another thread writes a layout dump with call sites (the profiler's snapshot lock
    # is held through it): every child must be able to dump too
    r = run([args.sites, "forkdump", "300"], {"RAMALLOC_PROFILE": "4096"})
    print(r.stdout.strip())


def test_timeline(args, tmp):
    svg = os.path.join(tmp, "tl.svg")
    code = "import time\nd = [bytearray(4096) for _ in range(20000)]\ntime.sleep(0.2)\ndel d\ntime.sleep(0.3)\n"
    env = {"PYTHONMALLOC": "malloc"}
    r = run([args.run, "--lib=" + args.lib, "--timeline=" + svg, "--", sys.executable, "-c", code], env)
    csv = svg[:-4] + ".csv"
    for f in (svg, csv):
        if not os.path.exists(f):
            fail(f"{f} was not written; stderr: {r.stderr}")
    rows = open(csv).read().splitlines()
    header = rows[0].split(",")
    want = ["ms", "reserved", "committed", "resident", "live", "purged"]
    if header != want:
        fail(f"CSV header {header}, expected {want}")
    data = [[int(x) for x in row.split(",")] for row in rows[1:]]
    if len(data) < 20:
        fail(f"only {len(data)} timeline rows for a run of more than half a second")
    times = [d[0] for d in data]
    if times != sorted(times):
        fail("timeline rows out of order")
    live = [d[4] for d in data]
    if max(live) < 80 * 2**20:
        fail(f"the timeline never saw the 80 MiB of bytearrays live (max {max(live)})")
    if live[-1] > max(live) / 2:
        fail("the timeline did not see the bytearrays freed")
    text = open(svg).read()
    for label in ("time (ms)", "MiB", "committed", "resident", "live"):
        if label not in text:
            fail(f"the SVG has no '{label}' label")


def test_layout(args, tmp):
    import importlib.util
    spec = importlib.util.spec_from_file_location("test_layout", os.path.join(os.path.dirname(__file__), "..",
                                                                              "test_layout.py"))
    tl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tl)
    import json
    dump = os.path.join(tmp, "layout.json")
    run([args.sites, "sites", os.path.join(tmp, "l.heap")], {"RAMALLOC_PROFILE": "4096", "RAMALLOC_DUMP_LAYOUT": dump},
        expect_rc=3)
    d = json.load(open(dump))
    with open(args.schema) as f:
        errors = tl.schema_errors(d, json.load(f))
    if errors:
        fail("the dump does not match the schema: " + "; ".join(errors[:5]))
    sites = {s["id"]: s["where"].split("+")[0] for s in d.get("sites", [])}
    print("sites:", sites)
    pages = [p for a in d["arenas"] for c in a["chunks"] for p in c.get("pages", [])]
    by = {}
    for p in pages:
        if "site" in p:
            name = sites.get(p["site"])
            if name is None:
                fail(f"a page names site {p['site']}, which the dump does not list")
            by.setdefault(name, []).append(p)
    print({k: len(v) for k, v in by.items()})
    # site_a's 8 MiB of 1 KiB blocks fill 128 pages (64 KiB each); site_b's 2 MiB of 64-byte
    # blocks fill 32; site_d's four 1 MiB blocks are four large pages
    a_pages = [p for p in by.get("site_a", []) if p["block_size"] == 1024]
    if not 120 <= len(a_pages) <= 130:
        fail(f"{len(a_pages)} pages of 1 KiB blocks name site_a, expected about 128")
    if len([p for p in by.get("site_b", []) if p["block_size"] == 64]) < 28:
        fail("fewer than 28 pages of 64-byte blocks name site_b")
    if len([p for p in by.get("site_d", []) if p["block_size"] >= 1 << 20]) != 4:
        fail("the four 1 MiB blocks of site_d are not all named")
    svg = os.path.join(tmp, "map.svg")
    subprocess.run([sys.executable, args.map, dump, "-o", svg, "--by-site"], check=True)
    text = open(svg).read()
    for site in ("site_a+", "site_b+", "site_d+", "no sampled block in the page"):
        if site not in text:
            fail(f"ramalloc-map --by-site has no legend entry for {site}")
    plain = os.path.join(tmp, "plain.json")
    run([args.sites, "sites", os.path.join(tmp, "l.heap")], {"RAMALLOC_DUMP_LAYOUT": plain}, expect_rc=1)
    if "sites" in json.load(open(plain)):
        fail("a dump made with the profiler off lists sites")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check", choices=["accuracy", "entries", "pprof", "leaks", "threads", "forkdump", "timeline", "layout"])
    ap.add_argument("--schema")
    ap.add_argument("--map")
    ap.add_argument("--sites", required=True)
    ap.add_argument("--fold", required=True)
    ap.add_argument("--run")
    ap.add_argument("--lib")
    args = ap.parse_args()
    global TMP
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        globals()["test_" + args.check](args, tmp)
    print("ok")


if __name__ == "__main__":
    main()
