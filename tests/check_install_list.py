#!/usr/bin/env python3
"""Does scripts/install-deps.sh install every program the project's scripts call?

Reads the shell scripts (scripts/, .ci/run, bench/, tests/, tests/dropin/, tools/ramalloc-run) and
the Python ones (bench/, tests/, tools/ramalloc-map) for the external commands they run, finds the
Debian package that provides each one on this machine (dpkg -S), and checks that the package is
in install-deps.sh's list, is pulled in by one of those packages (Depends/Pre-Depends, followed
recursively through what is installed), or is part of every Debian system (Essential: yes or
Priority: required, what a minbase system has). Fails naming each command that is missing, with
the script that calls it and the package that would provide it.

    python3 tests/check_install_list.py [ROOT] [--list FILE] [--without PKG] [-v]

--list reads the package list from FILE (one a line) instead of `install-deps.sh --list`;
--without drops a package from the list: ctest's install_list_catches runs the check without git
(which the benchmark runner calls) and expects it to fail naming git.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SHELL_WORDS = set("""
if then else elif fi for while until do done case esac in function select time ! { } [ [[ ]] ]
test echo printf read cd pwd export local set unset shift exit return trap wait eval exec source .
: true false break continue command type hash ulimit umask getopts declare typeset readonly let
kill mapfile readarray builtin alias jobs fg bg disown pushd popd dirs shopt caller enable help
""".split())
# wrappers whose argument (after options and VAR=value) is itself a command
WRAPPERS = {"env", "nice", "sudo", "exec", "time", "xargs", "nohup", "stdbuf", "command"}
# where a Debian system keeps its programs (not $PATH: a pyenv or /usr/local copy is not a package)
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.+-]*$")


def skip_arith(text, i):
    """Index past the "))" that closes an arithmetic expression whose text starts at i."""
    depth = 2
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    return i


def skeleton(text):
    """Shell text with quoted literals replaced by Q, comments and here-documents removed, command
    substitutions ($(...) and `...`, also inside double quotes) kept as separate commands."""
    out = []
    i, n = 0, len(text)
    stack = []  # for $( inside "...": the states to return to
    state = "N"
    heredoc = None
    word_start = True
    while i < n:
        c = text[i]
        if state == "N":
            if c == "#" and word_start:
                j = text.find("\n", i)
                i = n if j < 0 else j
                continue
            if c == "'":
                j = text.find("'", i + 1)
                out.append("Q")
                i = n if j < 0 else j + 1
                word_start = False
                continue
            if c == '"':
                state = "D"
                out.append("Q")
                i += 1
                continue
            if c == "\\" and i + 1 < n:
                out.append(" " if text[i + 1] == "\n" else "Q")
                i += 2
                continue
            if text.startswith("$((", i) or (text.startswith("((", i) and word_start):
                i = skip_arith(text, i + (3 if c == "$" else 2))
                out.append("Q")
                word_start = False
                continue
            if text.startswith("$(", i):
                stack.append("N")
                out.append(" ; ")
                i += 2
                word_start = True
                continue
            if text.startswith("<<", i) and not text.startswith("<<<", i):
                m = re.match(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?", text[i:])
                if m:
                    heredoc = m.group(1)
                    i += m.end()
                    continue
            if c == ")" and stack:
                state = stack.pop()
                out.append(" ; ")
                i += 1
                if state == "D":
                    continue
                word_start = False
                continue
            if c == "\n" and heredoc:
                j = i + 1
                while j < n:
                    k = text.find("\n", j)
                    line = text[j:n if k < 0 else k]
                    j = n if k < 0 else k + 1
                    if line.strip("\t") == heredoc:
                        break
                heredoc = None
                out.append("\n")
                i = j
                word_start = True
                continue
            out.append(c)
            word_start = c in " \t\n;|&(){}`"
            i += 1
        else:  # inside "..."
            if c == "\\" and i + 1 < n:
                i += 2
                continue
            if c == '"':
                state = "N"
                i += 1
                word_start = False
                continue
            if text.startswith("$((", i):
                i = skip_arith(text, i + 3)
                continue
            if text.startswith("$(", i):
                stack.append("D")
                state = "N"
                out.append(" ; ")
                i += 2
                word_start = True
                continue
            i += 1
    return "".join(out)


def shell_functions(path):
    text = Path(path).read_text(errors="replace")
    return set(re.findall(r"^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)", text, re.M))


def shell_commands(path, functions):
    """{command: path} for the commands a shell script calls (functions: names defined by the
    scripts, not commands)."""
    text = Path(path).read_text(errors="replace")
    found = {}
    # for tool in a b c; do command -v "$tool" ...: every program of the list is needed
    for m in re.finditer(r"for (\w+) in ([^;\n]+); do\s+command -v \"?\$\{?\1\b", text):
        for c in m.group(2).split():
            if NAME.match(c):
                found.setdefault(c, path)
    sk = skeleton(text)
    sk = re.sub(r"\b[A-Za-z_]\w*\+?=\([^)]*\)", "Q", sk)  # array assignments
    in_case = 0
    for line in sk.split("\n"):
        if re.search(r"(^|[\s;])case\s", line):
            in_case += 1
        if in_case and re.match(r"^\s*[^\s()]+(\s*\|\s*[^\s()]+)*\s*\)", line) and not re.match(r"^\s*\S+\s*\(\)", line):
            line = line.split(")", 1)[1]
        if re.search(r"(^|[\s;])esac\b", line):
            in_case = max(0, in_case - 1)
        for seg in re.split(r"\|\||&&|;;|[|;&(){}`]", line):
            words = seg.split()
            while words and (words[0] in ("!", "then", "else", "elif", "do", "if", "while", "until", "{", "}")
                             or re.match(r"^[A-Za-z_]\w*(\[[^\]]*\])?\+?=", words[0])):
                words = words[1:]
            if not words or words[0] in ("for", "case", "select", "function", "in", "esac", "done", "fi"):
                continue
            if words[0] == "need":  # tests/dropin/common.sh: need PROGRAM... (skips the test without them)
                cmds = words[1:]
                words = []
            else:
                cmds = []
            w = words
            while w:
                first = w[0]
                if first.startswith("$") and len(w) > 1:  # "$sudo_ apt-get ..."
                    w = w[1:]
                    continue
                cmds.append(first)
                if first == "command" and len(w) > 1 and w[1] in ("-v", "-V"):
                    cmds.pop()  # a presence check: the program named is one the script needs
                    cmds += w[2:3]
                    break
                if first in WRAPPERS:
                    rest = w[1:]
                    while rest and (rest[0].startswith("-") or "=" in rest[0] or rest[0].isdigit()):
                        rest = rest[1:]
                    w = rest
                    continue
                break
            for c in cmds:
                if c in SHELL_WORDS or c in functions or c in WRAPPERS - {"env", "nice", "sudo", "xargs", "nohup", "stdbuf"}:
                    continue
                if not NAME.match(c) or c == "Q":
                    continue
                found.setdefault(c, path)
    return found


PY_CALL = re.compile(r"(?:run|Popen|check_output|check_call|call|run_logged|which)\(\s*\[?\s*[\"']([A-Za-z][\w.+-]*)[\"']")


def python_commands(path):
    text = Path(path).read_text(errors="replace")
    return {m.group(1): path for m in PY_CALL.finditer(text)}


def scripts(root):
    pats = ["scripts/*.sh", ".ci/run", "bench/*.sh", "tests/*.sh", "tests/dropin/*.sh", "tools/ramalloc-run"]
    sh = sorted({p for pat in pats for p in glob.glob(str(root / pat))})
    py = sorted({p for pat in ["bench/*.py", "tests/*.py", "tools/ramalloc-map"] for p in glob.glob(str(root / pat))})
    return sh, py


def owners(paths):
    """{path: the installed package that holds it} (one dpkg -S for all; with merged /usr a file
    may be registered under /bin or /usr/bin, and a link under its target's name)."""
    cands = {}
    for path in paths:
        forms = [path, os.path.realpath(path)]
        forms += [p[4:] if p.startswith("/usr/") else "/usr" + p for p in list(forms)]
        cands[path] = forms
    allp = sorted({f for forms in cands.values() for f in forms})
    r = subprocess.run(["dpkg", "-S"] + allp, capture_output=True, text=True)
    held = {}
    for line in r.stdout.splitlines():
        pkgs, _, f = line.partition(": ")
        if not pkgs.startswith("diversion"):
            held.setdefault(f.strip(), pkgs.split(",")[0].split(":")[0].strip())
    return {path: next((held[f] for f in forms if f in held), None) for path, forms in cands.items()}


def installed_packages():
    """{name: (essential, priority, depends, pre_depends, provides)} for installed packages."""
    fmt = "${Package}\t${Status}\t${Essential}\t${Priority}\t${Depends}\t${Pre-Depends}\t${Provides}\n"
    r = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True, check=True)
    pk = {}
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if len(f) < 7 or "install ok installed" not in f[1]:
            continue
        pk[f[0]] = (f[2] == "yes", f[3], f[4], f[5], f[6])
    return pk


def dep_names(field):
    """Alternatives per dependency: [[name, ...], ...] without versions or architectures."""
    out = []
    for dep in filter(None, (d.strip() for d in field.split(","))):
        out.append([re.sub(r"[\s(:].*", "", a.strip()) for a in dep.split("|")])
    return out


def closure(roots, pk):
    providers = {}
    for name, info in pk.items():
        for p in dep_names(info[4]):
            providers.setdefault(p[0], []).append(name)
    seen, todo = set(), [r for r in roots if r in pk]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for alts in dep_names(pk[p][2]) + dep_names(pk[p][3]):
            for a in alts:  # the first alternative that is installed (or a provider of it)
                cand = [a] if a in pk else providers.get(a, [])
                if cand:
                    todo += cand
                    break
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--list", help="package list, one a line (default: install-deps.sh --list)")
    ap.add_argument("--without", action="append", default=[], help="leave this package out of the list")
    ap.add_argument("-v", "--verbose", action="store_true", help="also list the commands that are covered")
    args = ap.parse_args()
    root = Path(args.root)
    if not shutil.which("dpkg-query"):
        print("SKIP: not a Debian system (no dpkg-query)")
        return 77
    if args.list:
        wanted = Path(args.list).read_text().split()
    else:
        wanted = subprocess.run(["bash", str(root / "scripts/install-deps.sh"), "--list"], capture_output=True,
                                text=True, check=True).stdout.split()
    wanted = [p for p in wanted if p not in args.without]
    if not wanted:
        print("install-deps.sh --list gave no package")
        return 1
    pk = installed_packages()
    base = {p for p, info in pk.items() if info[0] or info[1] == "required"}
    allowed = closure(set(wanted) | base, pk)
    sh, py = scripts(root)
    functions = set().union(*(shell_functions(f) for f in sh))
    calls = {}
    for f in sh:
        for c, where in shell_commands(f, functions).items():
            calls.setdefault(c, set()).add(os.path.relpath(where, root))
    for f in py:
        for c, where in python_commands(f).items():
            calls.setdefault(c, set()).add(os.path.relpath(where, root))
    found = {cmd: shutil.which(cmd, path=STD_PATH) for cmd in calls}
    pkg_of = owners([p for p in found.values() if p])
    bad = 0
    for cmd in sorted(calls):
        where = ", ".join(sorted(calls[cmd]))
        path = found[cmd]
        if path is None:
            print(f"MISSING: `{cmd}` (called by {where}) is not installed here: if it is still missing after "
                  "bash scripts/install-deps.sh, no package of its list provides it")
            bad += 1
            continue
        pkg = pkg_of[path]
        if pkg is None:
            print(f"MISSING: `{cmd}` (called by {where}) is {path}, which no Debian package provides")
            bad += 1
        elif pkg not in allowed:
            print(f"MISSING: `{cmd}` (called by {where}) comes from package {pkg}, which install-deps.sh "
                  "does not install (add it to its list)")
            bad += 1
        elif args.verbose:
            print(f"ok: {cmd:<24} {pkg:<28} {where}")
    print(f"{len(calls)} commands called by {len(sh)} shell and {len(py)} Python scripts; {bad} not covered "
          f"by install-deps.sh's {len(wanted)} packages")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
