#!/usr/bin/env python3
"""The layout dump against docs/layout-schema.json, its figures against a known pattern, and the
map tool on it.

  test_layout.py --fixture TEST_INSPECT --map RAMALLOC_MAP --schema SCHEMA --out DIR [--preload LIB]

1. `TEST_INSPECT --dump FILE` allocates a known pattern and dumps; the dump must validate against
   the schema, its pages must add up to its statistics and to the pattern, its arenas' committed
   bytes to the committed counter, and the struct field tables must leave no unexplained gap.
2. With --preload: python3 runs under the preloaded library with RAMALLOC_DUMP_LAYOUT (%p) and
   RAMALLOC_DUMP_SIGNAL; both dumps must validate too.
3. The map tool renders each dump to a well-formed SVG (one strip per arena, a row per chunk, a
   legend) and to a text summary.

Standard library only: the schema check below implements the part of JSON Schema the schema uses.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print('FAIL:', what)
    return cond

# ---- a small JSON Schema validator (the keywords docs/layout-schema.json uses) ----------------------


def type_ok(v, t):
    return {
        'object': isinstance(v, dict),
        'array': isinstance(v, list),
        'string': isinstance(v, str),
        'integer': isinstance(v, int) and not isinstance(v, bool),
        'number': isinstance(v, (int, float)) and not isinstance(v, bool),
        'boolean': isinstance(v, bool),
        'null': v is None,
    }[t]


def validate(v, s, root, path, errors):
    if '$ref' in s:
        ref = s['$ref']
        assert ref.startswith('#/'), ref
        target = root
        for part in ref[2:].split('/'):
            target = target[part]
        validate(v, target, root, path, errors)
    if 'oneOf' in s:
        matches = 0
        for alt in s['oneOf']:
            e = []
            validate(v, alt, root, path, e)
            matches += not e
        if matches != 1:
            errors.append(f'{path}: matches {matches} of oneOf')
    if 'type' in s:
        types = s['type'] if isinstance(s['type'], list) else [s['type']]
        if not any(type_ok(v, t) for t in types):
            errors.append(f'{path}: {v!r:.60} is not {s["type"]}')
            return
    if 'const' in s and v != s['const']:
        errors.append(f'{path}: {v!r} != {s["const"]!r}')
    if 'enum' in s and v not in s['enum']:
        errors.append(f'{path}: {v!r} not in {s["enum"]}')
    if isinstance(v, str):
        if 'pattern' in s and not re.search(s['pattern'], v):
            errors.append(f'{path}: {v!r:.60} does not match {s["pattern"]}')
        if 'maxLength' in s and len(v) > s['maxLength']:
            errors.append(f'{path}: longer than {s["maxLength"]}')
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if 'minimum' in s and v < s['minimum']:
            errors.append(f'{path}: {v} < {s["minimum"]}')
        if 'maximum' in s and v > s['maximum']:
            errors.append(f'{path}: {v} > {s["maximum"]}')
    if isinstance(v, list):
        if 'minItems' in s and len(v) < s['minItems']:
            errors.append(f'{path}: fewer than {s["minItems"]} items')
        if 'items' in s:
            for i, x in enumerate(v):
                validate(x, s['items'], root, f'{path}[{i}]', errors)
    if isinstance(v, dict):
        for k in s.get('required', []):
            if k not in v:
                errors.append(f'{path}: missing {k}')
        props = s.get('properties', {})
        for k, x in v.items():
            if k in props:
                validate(x, props[k], root, f'{path}.{k}', errors)
            elif s.get('additionalProperties') is False:
                errors.append(f'{path}: unexpected {k}')
    known = {'$schema', '$id', '$defs', '$ref', 'title', 'description', 'type', 'required', 'additionalProperties',
             'properties', 'items', 'enum', 'const', 'pattern', 'minimum', 'maximum', 'minItems', 'maxLength',
             'oneOf'}
    unknown = set(s) - known
    assert not unknown, f'schema keyword(s) this validator does not implement: {unknown}'


def schema_errors(doc, schema):
    errors = []
    validate(doc, schema, schema, '$', errors)
    return errors

# ---- consistency of one dump ----------------------------------------------------------------------------


def check_dump(d, name, quiescent=True):
    s = d['stats']
    slice_b, spc = d['sizes']['slice'], d['sizes']['slices_per_chunk']
    pages = [p for a in d['arenas'] for c in a['chunks'] for p in c.get('pages', [])]
    huge = [c for a in d['arenas'] for c in a['chunks'] if c['kind'] == 'huge']
    check(len(d['classes']) == 120 and d['classes'][0] == 16 and d['classes'][-1] == 2 << 20, f'{name}: class table')
    # the layout and the statistics come from the same walk: they agree whatever other threads did
    check(sum(p['live'] for p in pages) + len(huge) == s['live_blocks'], f'{name}: pages add up to live_blocks')
    check(sum(p['live'] * p['block_size'] for p in pages) + sum(c['block']['size'] for c in huge) == s['live_bytes'],
          f'{name}: pages add up to live_bytes')
    check(len(pages) == s['pages'] and len(huge) == s['huge_blocks'], f'{name}: page and huge counts')
    check(sum(p['tail'] for p in pages) == s['tail_bytes'], f'{name}: tails add up')
    check(sum(c['pages'] for c in s['classes']) == s['pages'], f'{name}: classes add up to pages')
    check(len(d['arenas']) == s['arenas'], f'{name}: arena count')
    for a in d['arenas']:
        check(len(a['slot_states']) == a['slots'], f'{name}: one state per slot')
        check(a['size'] == a['slots'] * d['sizes']['chunk'], f'{name}: arena size is whole slots')
        for c in a['chunks']:
            check(a['slot_states'][c['slot']] in 'PaH', f'{name}: chunk slot {c["slot"]} state')
            check(c['offset'] == c['slot'] * d['sizes']['chunk'], f'{name}: chunk offset')
            check(len(c['slice_states']) == spc * c['chunks'], f'{name}: one state per slice')
            for p in c.get('pages', []):
                check(p['live'] + p['free'] == p['reserved'], f'{name}: live + free == reserved')
                check(p['live'] <= p['capacity'] <= p['reserved'], f'{name}: live <= capacity <= reserved')
                check(p['tail'] == p['slices'] * slice_b - p['reserved'] * p['block_size'], f'{name}: page tail')
                check(p['block_size'] == d['classes'][p['class']], f'{name}: page block size is its class')
                check(p['descriptor'] == c['header'][1]['offset'] + d['structs']['page']['size'] * p['slice'],
                      f'{name}: descriptor offset')
                states = c['slice_states'][p['slice']:p['slice'] + p['slices']]
                check(set(states) <= set('UEp'), f'{name}: page slices in page states')
    # every named field inside its struct, in order, and no gap a field could hide in
    for sname, st in d['structs'].items():
        end = 0
        for f in st['fields']:
            check(f['offset'] >= end, f'{name}: struct {sname}.{f["name"]} in order')
            check(f['offset'] - end < 8, f'{name}: struct {sname}: unexplained gap of {f["offset"] - end} '
                  f'bytes before {f["name"]} (a field missing from inspect.c\'s table?)')
            end = f['offset'] + f['size']
        check(end <= st['size'] and st['size'] - end < 8, f'{name}: struct {sname} ends with its fields')
    if quiescent:
        check(sum(a['committed'] for a in d['arenas']) == s['committed'],
              f"{name}: committed bytes in the metadata ({sum(a['committed'] for a in d['arenas'])}) == "
              f"the committed counter ({s['committed']})")

# ---- the map tool ----------------------------------------------------------------------------------------


def check_map(tool, dump_path, out_dir, d, name):
    svg_path = os.path.join(out_dir, name + '.svg')
    r = subprocess.run([sys.executable, tool, dump_path, '-o', svg_path, '--text'], capture_output=True, text=True)
    check(r.returncode == 0, f'{name}: ramalloc-map exit status {r.returncode}: {r.stderr[-500:]}')
    text = r.stdout
    check(text.startswith('ramalloc layout: '), f'{name}: text summary heading')
    check(all(f"arena {a['index']} at {a['base']}" in text for a in d['arenas']), f'{name}: text names every arena')
    try:
        root = ET.parse(svg_path).getroot()
    except (ET.ParseError, OSError) as e:
        check(False, f'{name}: SVG is not well-formed XML: {e}')
        return
    ns = '{http://www.w3.org/2000/svg}'
    check(root.tag == ns + 'svg', f'{name}: root element is svg')
    check(float(root.get('width')) > 0 and float(root.get('height')) > 0, f'{name}: SVG has a size')
    groups = [g for g in root.iter(ns + 'g') if g.get('class') == 'arena']
    check(len(groups) == len(d['arenas']), f'{name}: one strip group per arena')
    texts = ' '.join((t.text or '') for t in root.iter(ns + 'text'))
    for word in ('Slices (64 KiB) of a chunk', 'Size class colour', 'Chunk slots (4 MiB) of an arena',
                 'arena metadata', 'chunk header'):
        check(word in texts, f'{name}: legend has "{word}"')
    chunks = sum(len(a['chunks']) for a in d['arenas'])
    rows = sum(1 for t in root.iter(ns + 'text') if (t.text or '').startswith('slot ') and ':' in (t.text or ''))
    check(rows == sum(1 for a in d['arenas']) + min(chunks, 64), f'{name}: a row per arena slot 0 and per chunk')
    for c in d['stats']['classes'][:5]:
        check(f"{c['block_size']:,} B" in texts, f"{name}: class {c['block_size']} labelled")
    print(f'{name}: map {os.path.getsize(svg_path):,} bytes, {chunks} chunks')

# ---- runs ------------------------------------------------------------------------------------------------


def load_checked(path, schema, name):
    with open(path, encoding='utf-8') as f:
        d = json.load(f)
    errors = schema_errors(d, schema)
    for e in errors[:20]:
        print('  schema:', e)
    check(not errors, f'{name}: dump validates against the schema ({len(errors)} errors)')
    return d


def fixture_run(args, schema):
    path = os.path.join(args.out, 'fixture.json')
    r = subprocess.run([args.fixture, '--dump', path], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith('RAMALLOC_')})
    if not check(r.returncode == 0, f'fixture exit status {r.returncode}: {r.stderr[-800:]}'):
        return
    want = json.loads(r.stdout)
    d = load_checked(path, schema, 'fixture')
    check_dump(d, 'fixture')
    s = d['stats']
    check(s['live_blocks'] == want['pattern_blocks'], f"fixture: live_blocks {s['live_blocks']} == pattern "
          f"{want['pattern_blocks']}")
    check(s['live_bytes'] == want['pattern_bytes'], f"fixture: live_bytes {s['live_bytes']} == pattern "
          f"{want['pattern_bytes']}")
    check(s['huge_blocks'] == 2, 'fixture: two huge blocks')
    used = {c['block_size']: c['blocks_used'] for c in s['classes']}
    for bs, n in want['classes'].items():
        check(used.get(int(bs), 0) == n, f'fixture: class {bs}: {used.get(int(bs), 0)} used, pattern {n}')
    check(sum(used.values()) + s['huge_blocks'] == s['live_blocks'], 'fixture: no other class in use')
    check(d['reason'] == 'call' and d['delayed_lists_complete'], 'fixture: reason and delayed lists')
    check_map(args.map, path, args.out, d, 'fixture')


def preload_run(args, schema):
    env = {k: v for k, v in os.environ.items() if not k.startswith('RAMALLOC_')}
    # PYTHONMALLOC=malloc: every object through malloc (pymalloc would take small ones from its own
    # mmap'ed arenas)
    env.update(LD_PRELOAD=args.preload, RAMALLOC_DUMP_LAYOUT=os.path.join(args.out, 'py.%p.json'),
               RAMALLOC_DUMP_SIGNAL='SIGUSR2', PYTHONMALLOC='malloc')
    for f in os.listdir(args.out):
        if f.startswith('py.'):
            os.unlink(os.path.join(args.out, f))
    script = ('import os, signal, time, glob\n'
              'data = [str(i) * (i % 50) for i in range(200000)]\n'
              'table = {i: [i] * (i % 7) for i in range(50000)}\n'
              'os.kill(os.getpid(), signal.SIGUSR2)\n'
              'want = os.environ["RAMALLOC_DUMP_LAYOUT"].replace("%p", str(os.getpid())).replace(".json", ".1.json")\n'
              'for _ in range(1000):\n'
              '    if os.path.exists(want): break\n'
              '    time.sleep(0.01)\n'
              'print(len(data), len(table), os.path.exists(want))\n')
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, timeout=120)
    check(r.returncode == 0 and r.stdout.strip().endswith('True'),
          f'preloaded python3: status {r.returncode}, out {r.stdout!r}, err {r.stderr[-500:]!r}')
    dumps = sorted(f for f in os.listdir(args.out) if f.startswith('py.') and f.endswith('.json'))
    signal_dumps = [f for f in dumps if f.endswith('.1.json')]
    exit_dumps = [f for f in dumps if not f.endswith('.1.json')]
    check(len(signal_dumps) == 1 and len(exit_dumps) == 1, f'preloaded python3: one signal and one exit dump: {dumps}')
    for f in dumps:
        d = load_checked(os.path.join(args.out, f), schema, f)
        want = 'signal' if f in signal_dumps else 'exit'
        check(d['reason'] == want, f'{f}: reason {d["reason"]} == {want}')
        check('python' in d.get('command', ''), f'{f}: command line recorded')
        if want == 'signal':  # at exit python has freed most of what it held
            check(d['stats']['live_blocks'] > 100000, f"{f}: python's 250,000 objects are live")
        # the dumper thread walks while python's main thread may still run: consistency within the
        # walk holds, the committed counter may have moved on
        check_dump(d, f, quiescent=False)
        check_map(args.map, os.path.join(args.out, f), args.out, d, f[:-5])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--fixture', required=True)
    ap.add_argument('--map', required=True)
    ap.add_argument('--schema', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--preload')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with open(args.schema, encoding='utf-8') as f:
        schema = json.load(f)
    fixture_run(args, schema)
    if args.preload:
        preload_run(args, schema)
    if failures:
        print(f'{len(failures)} check(s) failed')
        return 1
    print('layout: all checks passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
