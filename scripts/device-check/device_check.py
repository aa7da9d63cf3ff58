#!/usr/bin/env python3
"""tidarc device check: one command that proves tidarc's kernels and runtime on a GPU and measures
them against PyTorch on the same tensors, inside one time budget.

  npm run device-check:prepare                                                       # here
  python3 scripts/device-check/device_check.py --bundle out/device-check --out $OUT --budget 420   # there

The bundle (scripts/device-check/prepare.ts: grid.json, gemm.json, gemm_sm90a.json, their CUDA
sources, and node/ from pack-runtime.sh) is checked first; then the parts run in the order the open
issues need their figures, each in its own process with a share of --budget:
  facts      GPU name, SMs, driver, CUDA, the tools the parts need (nvcc, g++, the bundle's Node), the
             machine whose predictions the parts print (the GPU's by its name, machines.py: predictedFor),
             and two ceilings: a 1 GiB device-to-device copy and an 8192^3 bf16 matmul (gpu.py);
  gemm       issue 14: the generated GEMMs of the Qwen3-8B linear layers at M = 1, 20, 72, 272 against
             float64 and bitwise across M, the fused epilogues, then timed against torch's F.linear (gemm.py);
  sm90a      issue 18: the sm_90a GEMM's kernels for every wgmma N on the same tokens, bitwise equal
             (the hardware property batch invariance of that path needs; gemm_sm90a.py);
  attention  issues 5, 15: every variant of the grid against the float64 reference (FA3's rule), then
             the Qwen3-8B benchmark against FlexAttention and SDPA (attention.py);
  runtime    tidarc's runtime on the cuda backend: greedy TiDAR == AR, the KV-cache rule (runtime_check.mjs),
             with PDL on, then (as far as the window allows) with PDL off: the same tokens both ways;
  overheads  the step cost model's launch and host constants (src/bench/step-overheads.ts StepOverheads,
             PdlOverheads: graph node gap, graph start, stream gap, PDL wait release, kernel floor, host per
             launch ...) measured with the bundle's Node (overheads.mjs) on the runtime part's model's operators,
             beside the values the predictions assume;
  e2e        issue 16: whole decode steps, graphs on and off, against transformers eager and the roofline (e2e.py);
  tune       issues 6, 14: the CUDA searches of GEMM tiles and attention configurations -> tune-cuda.json.
On a GPU the overheads, runtime and e2e parts' kernels compile in the background from the start (gpu.py
start_precompile, precompile.mjs), on the CPUs the GPU parts leave idle.
A part's window ends at its cumulative share of the budget (a part that ends early leaves its time to
the next; attention and sm90a, whose benchmarks fill any window, keep to their own shares); it is killed GRACE seconds past that, so a part that hangs or leaves the CUDA context
unusable costs that part alone. device-check.json (`"partial": true` until the end), device-check.md
and device-check.log under --out are rewritten after every part, so a command cut short still
reports; --out holds at most 5 files, no folders (what the device tool brings back). Exit 1 when a
part failed, was killed, or the bundle lacks a piece.
--dry-run runs the same parts on the emulated driver ($TIDARC_LIBCUDA, `tidarc emulated-driver`; bundle
from `npm run device-check:prepare -- --dry-run`): numpy references, emulator timings, e2e on a
small model (torch CPU for transformers). --report-only FILE re-renders a recorded device-check.json.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts (a working tree the device tool copies)
sys.path.insert(0, str(HERE))
from report import write_reports  # noqa: E402

# (part, share of --budget) in the order the open issues need their figures; overheads right after runtime, whose
# model's kernels it launches: compiled by then (precompile.mjs, or the runtime part itself), so no part waits on nvcc.
PARTS = (('facts', 0.06), ('gemm', 0.15), ('sm90a', 0.14), ('attention', 0.20), ('runtime', 0.09), ('overheads', 0.03), ('e2e', 0.28), ('tune', 0.05))
# Their benchmarks fill any window (attention: 32 points, sm90a: 8, a Flex compile each): each keeps to
# its own share, and what earlier parts left goes on to the runtime and e2e parts (e2e's nvcc warm-up,
# checkpoints and 24 tidarc runs want it most).
OWN_SHARE_ONLY = {'sm90a', 'attention'}
GRACE = 20  # seconds a part may run past its window (a launch or a compile in flight) before it is killed
MIN_WINDOW = 5  # a part with less left is not started
PROGRESS_S = 15  # while a part runs, what it saved is merged into --out this often: a command cut short (the device tool's limit) keeps it
GPU_BUDGET, DRY_BUDGET = 420, 1800  # the emulator is thousands of times slower: the dry run's windows are wide


def window_end(name, started, budget, cum_share, share, now):
    """When a part's window ends: at its cumulative share of the budget (time earlier parts left is its
    too), or for OWN_SHARE_ONLY parts no later than its own share from now."""
    end = started + budget * cum_share
    return min(end, now + budget * share) if name in OWN_SHARE_ONLY else end


def bundle_problems(bundle, parts):
    """What the selected parts need from the bundle and it lacks (prepare.ts writes every piece)."""
    need = {'grid.json': {'attention', 'tune'}, 'gemm.json': {'gemm'}, 'gemm_sm90a.json': {'sm90a'}, 'node/node.xz': {'overheads', 'runtime', 'e2e'}}
    return [f'{f} (for {", ".join(sorted(p & set(parts)))})' for f, p in need.items() if p & set(parts) and not (bundle / f).exists()]


def part_ok(name, s, dry):
    """Whether a part's sections pass (a part that measured nothing has failed)."""
    if name == 'facts':
        return 'device' in s and (dry or 'ceilings' in s)
    if name == 'gemm':
        g = s.get('gemm', {})
        checks = g.get('correctness', []) + g.get('epilogues', [])
        return bool(g.get('correctness')) and all(r['ok'] for r in checks)
    if name == 'sm90a':
        return s.get('sm90a', {}).get('ok', False)
    if name == 'attention':
        return bool(s.get('correctness')) and all(r['ok'] for r in s['correctness']) and all(r.get('ok', True) for r in s.get('bench', []))
    if name == 'overheads':
        return s.get('overheads', {}).get('ok', False)
    if name == 'runtime':
        return s.get('runtime', {}).get('ok', False)
    if name == 'e2e':
        from e2e_report import failed_runs
        e = s.get('e2e', {})
        return 'rows' in e and e.get('correctness', {'ok': True})['ok'] and not failed_runs(e)
    if name == 'tune':
        # A GEMM candidate that faulted (a sticky error: gemm_tune.ContextLost) fails the part; a shape refused for memory does not.
        return not s.get('gemm', {}).get('tune', {}).get('contextLost') and not any('error' in r for r in s.get('tune', {}).get('buckets', []))
    return False


def merge(data, sections):
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v} if k == 'gemm' else v  # the tune part adds gemm.tune beside the gemm part's sections


class Log:
    """Lines to stderr (the device tool returns the output's tail) and to --out/device-check.log."""

    def __init__(self, path):
        self.file = open(path, 'a', encoding='utf-8')
        self.lock = threading.Lock()

    def __call__(self, line):
        with self.lock:
            print(line, file=sys.stderr, flush=True)
            self.file.write(line + '\n')
            self.file.flush()


def read_sections(part_file):
    """What a part saved (parts.py Ctx.save renames a whole file into place), {} before its first save."""
    try:
        return json.loads(part_file.read_text())
    except (OSError, ValueError):
        return {}


def run_child(cmd, kill_at, log, tick=None, tick_every=PROGRESS_S):
    """A part's process, its output relayed line by line; killed (its whole process group: nvcc, node) at kill_at;
    tick(), when given, every tick_every seconds while it runs. Returns (exit code or None when killed, its last lines)."""
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    # Its own process group (for the kill), not its own session: the device tool ends a command's
    # leftover processes by session, and would leave a part in a new session running on the GPU.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, process_group=0)
    tail = []

    def pump():
        for line in p.stdout:
            line = line.rstrip('\n')
            tail[:] = (tail + [line])[-5:]
            log(f'  {line}')
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    code = None
    while True:
        left = kill_at - time.time()
        try:
            code = p.wait(timeout=max(0.1, min(left, tick_every)) if tick else max(1.0, left))
            break
        except subprocess.TimeoutExpired:
            if time.time() >= kill_at:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                code = None
                break
            tick()
    t.join(5)
    return code, tail


def part_names(parts):
    """The parts --parts names (all without it), facts first whether named or not; SystemExit with one line naming any unknown."""
    names = [p.strip() for p in parts.split(',') if p.strip()] if parts else [p for p, _ in PARTS]
    unknown = [n for n in names if n not in dict(PARTS)]
    if unknown:
        sys.exit(f"device_check: --parts {','.join(unknown)}: unknown; the parts are {','.join(p for p, _ in PARTS)}")
    return names


def orchestrate(a):
    # The arguments first: nothing (--out, the scratch folder) is created for a check that cannot run.
    names = part_names(a.parts)
    scratch = Path(a.scratch) if a.scratch else Path(tempfile.mkdtemp(prefix='tidarc-device-check-'))
    try:
        return run_parts(a, names, scratch)
    finally:
        # Every way out (a part's result, an exception, Ctrl-C) removes the folder this run made; one --scratch names is kept.
        if not a.scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def run_parts(a, names, scratch):
    started = time.time()
    out, bundle = Path(a.out), Path(a.bundle)
    out.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    log = Log(out / 'device-check.log')
    budget = a.budget if a.budget is not None else DRY_BUDGET if a.dry_run else GPU_BUDGET
    if 'facts' not in names:
        names.insert(0, 'facts')  # the others read the device and the ceilings it records
    selected = [(p, s) for p, s in PARTS if p in names]
    grid = json.loads((bundle / 'grid.json').read_text()) if (bundle / 'grid.json').exists() else {}
    data = {'format': 1, 'date': time.strftime('%Y-%m-%d', time.gmtime()), 'generator': grid.get('generator'), 'dryRun': a.dry_run,
            'budgetS': budget, 'parts': [], 'bundleMissing': bundle_problems(bundle, names)}
    log(f"device check: {'dry run, ' if a.dry_run else ''}budget {budget:.0f} s, parts {', '.join(p for p, _ in selected)}; bundle {bundle}")
    if data['bundleMissing']:
        log(f"device check: the bundle lacks {'; '.join(data['bundleMissing'])}: run npm run device-check:prepare{' -- --dry-run' if a.dry_run else ''}")

    def write(partial):
        text = json.dumps({**data, **({'partial': True} if partial else {})}, indent=1) + '\n'
        (out / 'device-check.json').write_text(text)
        (scratch / 'device-check.json').write_text(text)  # what the next part reads (device, ceilings)
        return write_reports(data, out)
    write(True)
    # nvcc for the overheads, runtime and e2e parts' models on the CPUs the GPU parts before them leave idle (gpu.py start_precompile;
    # overheads.mjs takes its GPU operators from the runtime part's model's cache entry).
    precompile = None
    if not a.dry_run and {'overheads', 'runtime', 'e2e'} & set(names):
        from gpu import start_precompile
        try:
            precompile = start_precompile(bundle, scratch, names)
        except Exception as e:  # noqa: BLE001 -- the parts compile for themselves, as without it
            precompile = {'skipped': f'{e.__class__.__name__}: {e}'}
        log(f"precompile: {precompile.get('skipped') or 'the runtime and e2e kernels for ' + precompile['target'] + ', in the background'}")
    total, cum = sum(s for _, s in selected), 0.0
    for i, (name, share) in enumerate(selected):
        cum += share
        until = window_end(name, started, budget, cum / total, share / total, time.time())
        rec = {'name': name, 'windowS': round(until - time.time(), 1)}
        if until - time.time() < MIN_WINDOW:
            rec.update(status='not started', why=f'{max(0.0, until - time.time()):.0f} s left of its window')
            data['parts'].append(rec)
            log(f'part {name}: not started ({rec["why"]})')
            continue
        log(f'part {name}: {until - time.time():.0f} s')
        part_file = scratch / f'part-{name}.json'
        part_file.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), '--part', name, '--bundle', str(bundle), '--out', str(out), '--scratch', str(scratch),
               '--until', repr(until), '--bucket-seconds', repr(a.bucket_seconds), '--e2e-dry-backend', a.e2e_dry_backend,
               *(['--dry-run'] if a.dry_run else []), *(['--runtime-root', a.runtime_root] if a.runtime_root else [])]
        t0 = time.time()

        def progress():
            # --out as if the part ended now (its status 'running'); scratch's copy, which the next part reads, is left alone.
            try:
                now = json.loads(json.dumps(data))
                merge(now, {k: v for k, v in read_sections(part_file).items() if k not in ('skipped', 'failed')})
                now['parts'].append({**rec, 'status': 'running', 'seconds': round(time.time() - t0, 1)})
                (out / 'device-check.json').write_text(json.dumps({**now, 'partial': True}, indent=1) + '\n')
                write_reports(now, out)
            except Exception as e:  # noqa: BLE001 -- a report of half a part must never stop the check
                log(f'part {name}: progress report skipped ({e.__class__.__name__}: {e})')
        code, tail = run_child(cmd, until + GRACE, log, tick=progress)
        sections = read_sections(part_file)
        rec['seconds'] = round(time.time() - t0, 1)
        if 'skipped' in sections:
            rec.update(status='skipped', why=sections.pop('skipped'))
        elif 'failed' in sections:  # the part's exception, in one line (parts.py run_part); what it saved before is kept
            rec.update(status='failed', why=sections.pop('failed'))
        elif code is None:
            rec.update(status='killed', why=f'still running {GRACE} s past its window; what it saved is kept')
        elif code != 0:
            rec.update(status='failed', why=' | '.join(tail[-2:])[-400:] or f'exit code {code}')
        else:
            rec['status'] = 'ok' if part_ok(name, sections, a.dry_run) else 'failed'
        merge(data, sections)
        data['parts'].append(rec)
        log(f"part {name}: {rec['status']} in {rec['seconds']:.0f} s{': ' + rec['why'] if 'why' in rec else ''}")
        write(i + 1 < len(selected))
    if precompile:
        from gpu import finish_precompile
        data['precompile'] = finish_precompile(precompile)
    print(write(False), flush=True)
    # Last, so that the tail of the output (all the device tool returns) names the GPU and each part's result.
    dev = data.get('device', {})
    log(f"GPU: {dev.get('name', '?')}; driver {dev.get('nvidiaSmi') or dev.get('driverVersion', '?')}; CUDA {dev.get('cuda', '?')}; "
        f"{time.time() - started:.0f} s of a {budget:.0f} s budget")
    log('parts: ' + ', '.join(f"{r['name']} {r['status']}" for r in data['parts']))
    failed = [r for r in data['parts'] if r['status'] in ('failed', 'killed')]
    return 1 if failed or data['bundleMissing'] and not a.dry_run else 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bundle', default='out/device-check')
    ap.add_argument('--out', default=os.environ.get('OUT', 'out/device-check-results'))
    ap.add_argument('--budget', type=float, help=f'seconds for the whole check (default {GPU_BUDGET}; dry run {DRY_BUDGET}); give the device command '
                    f'about 60 s more (imports, a part killed {GRACE} s past its window, the report)')
    ap.add_argument('--parts', help=f"comma-separated, run in the fixed order ({','.join(p for p, _ in PARTS)}; facts always); default all. "
                    'A rerun with the time left: e.g. --parts e2e,tune --budget 200')
    ap.add_argument('--dry-run', action='store_true')
    ap.add_argument('--report-only', metavar='FILE')
    ap.add_argument('--bucket-seconds', type=float, default=60, help='seconds per shape bucket of the CUDA search: no configuration starts after this long')
    ap.add_argument('--runtime-root', help='dry run without node/ in the bundle: run the runtime and e2e parts with this machine\'s node on this built tidarc (e.g. .)')
    ap.add_argument('--e2e-dry-backend', choices=('cpu', 'cuda'), default='cuda', help='dry run: the backend the e2e part\'s tidarc runs on (cuda: the emulated driver)')
    ap.add_argument('--scratch', help='folder for Node, kernel caches and checkpoints (default: a new one under /tmp, removed after)')
    ap.add_argument('--prebuild', metavar='ARCH', help='build every fatbin of the bundle for sm_ARCH (e.g. 90) here, before the GPU session (prepare.ts does)')
    ap.add_argument('--part', choices=[p for p, _ in PARTS], help=argparse.SUPPRESS)  # a child: one part
    ap.add_argument('--until', type=float, help=argparse.SUPPRESS)  # the child's deadline (epoch seconds)
    a = ap.parse_args(argv)
    # Absolute from here on: the nvcc calls run in the folder of their output (cwd=), so a relative
    # bundle path (the GPU machine's command gives `out/device-check`) would name nothing there.
    a.bundle, a.out = str(Path(a.bundle).resolve()), str(Path(a.out).resolve())
    if a.scratch:
        a.scratch = str(Path(a.scratch).resolve())
    if a.report_only:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        print(write_reports(json.loads(Path(a.report_only).read_text()), out))
        return 0
    if a.prebuild:
        from prebuild import prebuild
        prebuild(Path(a.bundle), a.prebuild)
        return 0
    if a.part:
        from parts import run_part
        return run_part(a)
    return orchestrate(a)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
