"""The device check's parts. device_check.py runs each in its own process (`--part NAME`), so that a
part that hangs, crashes or leaves the CUDA context unusable (a failed launch is sticky) costs that
part alone: the orchestrator kills it at its deadline and the next part starts on a fresh context.

A part is a function part_NAME(ctx) -> dict of device-check.json sections; it may call
ctx.save(sections) as it goes (a part killed at its deadline still reports what it measured), and
returns {'skipped': why} when it cannot run here. On a GPU every part but overheads, runtime and sm90a imports
torch; --dry-run runs the same code on the emulated driver ($TIDARC_LIBCUDA) with numpy inputs.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

from gpu import KERNEL_CACHE, RUNTIME_DRAFTS, build_gemm_fatbins, ceilings, gpu_facts, gpu_name, log, overheads_check, runtime_check, time_events, unpack_runtime
from kernels import Driver, reference
from machines import for_machine, load_machines, predicted_for
from prebuild import PREBUILT, prebuilt
from tune import NumpySets, TorchSets, build_sm90a_units, cold_sets, cxx_version, event_timer, nvcc_version, tune, wall_timer

HERE = Path(__file__).resolve().parent


class Ctx:
    """What a part gets: the bundle, where results go (--out: tune-cuda.json), a scratch folder (Node,
    kernel caches, checkpoints: never under --out, whose files come back from the GPU machine), the
    sections earlier parts recorded (device, ceilings), and its deadline. grid.json's and gemm.json's
    predictions are those for this GPU (machines.py: the bundle carries one per machine; `predicted`
    says whose they are)."""

    def __init__(self, args, data):
        self.bundle, self.out, self.scratch = Path(args.bundle), Path(args.out), Path(args.scratch)
        self.dry, self.until, self.data, self.args = args.dry_run, args.until, data, args
        # The facts part's device name; without it (that part failed) nvidia-smi's on a GPU.
        name = data.get('device', {}).get('name') or (None if self.dry else gpu_name())
        self.predicted = data.get('predictedFor') or predicted_for(load_machines(self.bundle), name)
        key = self.predicted['machine']
        self.grid = for_machine(json.loads((self.bundle / 'grid.json').read_text()), key) if (self.bundle / 'grid.json').exists() else None
        self.gem = for_machine(json.loads((self.bundle / 'gemm.json').read_text()), key) if (self.bundle / 'gemm.json').exists() else None
        self.saved = {}

    def left(self):
        return self.until - time.time()

    def save(self, sections):
        self.saved.update(sections)
        # Whole or not at all (a temporary file renamed): the orchestrator reads this file while the part runs and
        # after killing it, and a kill in the middle of a plain write would leave it half written.
        path = self.scratch / f'part-{self.args.part}.json'
        tmp = path.with_suffix('.tmp')
        tmp.write_text(json.dumps(self.saved, indent=1) + '\n')
        os.replace(tmp, path)

    def driver(self):
        return Driver(os.environ.get('TIDARC_LIBCUDA') or sys.exit('device_check: --dry-run needs TIDARC_LIBCUDA (tidarc emulated-driver)')) if self.dry else Driver('libcuda.so.1')

    def torch(self):
        import torch
        torch.cuda.init()
        return torch

    def ceilings(self, torch):
        """The facts part's ceilings, or (that part failed or was killed before them) measured here: a second, not a failed part."""
        if 'ceilings' not in self.data:
            self.data['ceilings'] = ceilings(torch)
            log(f"ceilings (the facts part left none): copy {self.data['ceilings']['copyTBs']:.2f} TB/s, bf16 matmul {self.data['ceilings']['matmulTflops']:.0f} TFLOP/s")
        return self.data['ceilings']

    def arch(self, torch):
        major, minor = torch.cuda.get_device_capability(0)
        return f'{major}{minor}'

    def machine(self, drv):
        return {'name': drv.name, 'sms': drv.sms, 'driverVersion': drv.version, 'compiler': f'emulator: {cxx_version()}' if self.dry else self.nvcc()}

    def nvcc(self):
        """The device's nvcc; where it has none (the prebuilt fatbins run without it), the one prepare.ts prebuilt them with."""
        found = tool_version(nvcc_version)
        recorded = self.bundle / PREBUILT
        if found.startswith('absent') and recorded.exists():
            return f"{json.loads(recorded.read_text()).get('nvcc', '?')} (prebuilt; no nvcc on the device: {found})"
        return found

    def runtime(self):
        """(node, tidarc root): the bundle's packed ones (as on the GPU machine), else --runtime-root with this machine's node."""
        node, root = unpack_runtime(self.bundle, self.scratch / 'runtime')
        if node:
            return node, root
        if self.args.runtime_root:
            return shutil.which('node'), Path(self.args.runtime_root).resolve()
        return None, None


def tool_version(fn, *args):
    """A tool's version line, or why there is none (the facts part reports it; a later part would fail on it)."""
    try:
        return fn(*args) or 'no version printed'
    except (OSError, subprocess.SubprocessError) as e:
        return f'absent ({e.__class__.__name__}: {e})'


def node_version(node):
    return subprocess.run([node, '--version'], capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def part_facts(ctx):
    """The device, the tools the later parts need (nvcc, a host C++ compiler, the bundle's Node), the ceilings."""
    tools = {'python': sys.version.split()[0], 'nvcc': tool_version(nvcc_version), 'cxx': tool_version(cxx_version)}
    node, _ = ctx.runtime()
    tools['node'] = tool_version(node_version, node) if node else 'absent: no node/ in the bundle (scripts/device-check/pack-runtime.sh)'
    machines = load_machines(ctx.bundle)
    if ctx.dry:
        drv = ctx.driver()
        device = {'name': 'tidarc emulated GPU', 'driver': drv.path, 'driverVersion': drv.version, 'sms': drv.sms}
        predicted = predicted_for(machines, device['name'])
        log(f'device: {device["name"]} ({drv.path}); predictions for {predicted["label"]}; tools: {tools}')
        return {'device': device, 'tools': tools, 'predictedFor': predicted}
    torch = ctx.torch()
    device = {**gpu_facts(torch), 'driverVersion': Driver('libcuda.so.1').version}
    # The bundle's predictions for this GPU (machines.py): what every part prints as "predicted".
    predicted = predicted_for(machines, device['name'])
    log(f"GPU: {device['name']}, capability {device['capability']}, {device['sms']} SMs; driver {device['nvidiaSmi'] or device['driverVersion']}; "
        f"CUDA {device['cuda']} (torch {device['torch']}); predictions for {predicted['name']}{'' if predicted['thisGpu'] else ' (not this GPU)'}; tools: {tools}")
    ctx.save({'device': device, 'tools': tools, 'predictedFor': predicted})
    c = ceilings(torch)
    log(f"ceilings: copy {c['copyTBs']:.2f} TB/s, bf16 matmul {c['matmulTflops']:.0f} TFLOP/s")
    return {'device': device, 'tools': tools, 'predictedFor': predicted, 'ceilings': c}


def part_gemm(ctx):
    """Issue 14: the generated GEMMs of the Qwen3-8B linear layers against float64 and bitwise across M, the fused
    epilogues, then timed against torch's F.linear on the same weights."""
    from gemm import gemm_bench, gemm_correctness_numpy, gemm_correctness_torch, gemm_epilogue_check
    if not ctx.gem:
        return {'skipped': 'the bundle has no gemm.json (npm run device-check:prepare)'}
    drv = ctx.driver()
    if ctx.dry:
        return {'gemm': {'correctness': gemm_correctness_numpy(drv, ctx.bundle, ctx.gem), 'epilogues': gemm_epilogue_check(drv, ctx.bundle, ctx.gem)}}
    torch = ctx.torch()
    pre = prebuilt(ctx.bundle, ctx.arch(torch))
    regs = pre['registers'] if pre else build_gemm_fatbins(ctx.bundle, ctx.gem, ctx.arch(torch))
    g = {'registers': regs, 'correctness': gemm_correctness_torch(torch, drv, ctx.bundle, ctx.gem)}
    ctx.save({'gemm': g})  # before the epilogues' numpy inputs (lm_head's 622M weights: seconds)
    g['epilogues'] = gemm_epilogue_check(drv, ctx.bundle, ctx.gem)
    ctx.save({'gemm': g})
    g['predictedFor'] = ctx.predicted  # whose predictions the bench rows carry (machines.py)
    g['bench'], g['skipped'] = gemm_bench(torch, drv, ctx.bundle, ctx.gem, ctx.ceilings(torch), time_events, max(0.0, ctx.left() - 15), log, regs)
    return {'gemm': g}


def part_sm90a(ctx):
    """Issue 18: the sm_90a GEMM's every token tile bitwise equal on the same tokens (wgmma's sum must not depend on N)."""
    import gemm_sm90a
    if not (ctx.bundle / 'gemm_sm90a.json').exists():
        return {'skipped': 'the bundle has no gemm_sm90a.json (npm run device-check:prepare)'}
    cap = ctx.data.get('device', {}).get('capability')
    if not ctx.dry and cap is None:  # the facts part failed or was killed: ask the device
        cap = '{}.{}'.format(*ctx.torch().cuda.get_device_capability(0))
    if not ctx.dry and cap != '9.0':
        return {'skipped': f'sm_90a needs a compute capability 9.0 device; this one is {cap}'}
    # A 9.0 device is the prebuild's arch: its fatbins (the sm_90a units and their sm_90 twins) are there, unpacked.
    fresh = ctx.dry or prebuilt(ctx.bundle, '90') is None
    units = gemm_sm90a.run(ctx.driver(), ctx.bundle, ctx.dry, log, compile=fresh)
    out = {'sm90a': {'units': units, 'ok': bool(units) and all(u['ok'] for u in units)}}
    if (ctx.bundle / 'attention_sm90a.json').exists():  # the sm_90a attention vs its mma.sync twin and Flex (attention_sm90a.py)
        import attention_sm90a
        ctx.save(out)
        att = attention_sm90a.run(ctx.driver(), ctx.bundle, ctx.dry, log, None if ctx.dry else ctx.torch(), ctx.until,
                                  lambda so_far: ctx.save({'sm90a': {**out['sm90a'], 'attention': so_far, 'ok': False}}), compile=fresh)
        out['sm90a'] = {**out['sm90a'], 'attention': att, 'ok': out['sm90a']['ok'] and att['ok']}
    return out


def part_attention(ctx):
    """Issues 5 and 15: every variant of the grid against the float64 reference, then the benchmark against Flex and SDPA."""
    from attention import benchmark, build_fatbins, correctness
    from attention_bench import dry_bench
    from kernels import torch_judge
    drv = ctx.driver()
    if ctx.dry:
        out = {'correctness': correctness(drv, ctx.bundle, ctx.grid, True, None, reference, save=lambda r: ctx.save({'correctness': r}))}
        ctx.save(out)
        return {**out, 'bench': dry_bench(drv, ctx.bundle, ctx.grid, wall_timer(drv), log, ctx.predicted)}
    torch = ctx.torch()
    out = {'fatbins': 'prebuilt' if prebuilt(ctx.bundle, ctx.arch(torch)) else build_fatbins(ctx.bundle, ctx.grid, ctx.arch(torch))}
    out['correctness'] = correctness(drv, ctx.bundle, ctx.grid, False, torch_judge(torch), None, save=lambda r: ctx.save({**out, 'correctness': r}))
    ctx.save(out)
    # A Flex compile in flight when the budget ends comes on top: 30 s kept for it.
    out['bench'], out['benchSkipped'] = benchmark(torch, drv, ctx.bundle, ctx.grid, ctx.ceilings(torch), max(0.0, ctx.left() - 30), None,
                                                  save=lambda p, s: ctx.save({**out, 'bench': p, 'benchSkipped': s}))
    return out


def assumed_overheads(ctx):
    """The launch and host constants the bundle's step predictions assume (e2e_predictions.json, this GPU's machine:
    src/bench/step-overheads.ts StepOverheads and PdlOverheads), for the report's measured-vs-assumed table; None without them."""
    from e2e import load_predictions
    p = load_predictions(ctx.bundle, ctx.predicted)
    if not p or not p.get('overheads'):
        return None
    return {'overheads': p['overheads'], 'pdlOverheads': p.get('pdlOverheads') or {}, 'machine': p.get('machine'), 'file': 'e2e_predictions.json'}


def overheads_log_line(r):
    """The part's figures in one line: each measured constant in us (* where identifiable only with an assumed term), or why it failed."""
    if not r.get('ok'):
        return f"overheads: FAILED {r.get('error', '')}"
    m = r.get('measured') or {}
    figures = [f"{k} {v['value'] * 1e6:.2f}{'' if v.get('identifiable') else '*'}" for k, v in m.items() if isinstance(v, dict) and isinstance(v.get('value'), (int, float))]
    node = r.get('graphCopyNodeS') or {}
    if isinstance(node.get('value'), (int, float)):  # the step's upload as a graph node, beside the model's price of it
        priced = (node.get('model') or {}).get('valueS')
        figures.append(f"graphCopyNodeS {node['value'] * 1e6:.2f}" + (f" (model {priced * 1e6:.2f})" if isinstance(priced, (int, float)) else ''))
    pdl = r.get('pdl') or {}
    return (f"overheads (us, measured{' on the emulator' if r.get('emulated') else ''}; * not identifiable alone): {', '.join(figures) or 'none'}; "
            f"PDL {'on' if pdl.get('on') else 'off'}; {r.get('seconds', 0):.0f} s")


# Not the runtime part's 10 s (its PDL-off child needs them): the part's own share is 3% of the GPU budget, 12.6 s, and a reserve
# of 10 s left overheads.mjs 2.6 s of it to wait for the runtime model's background compile, load and measure where facts used its window.
OVERHEADS_RESERVE_S = 3


def part_overheads(ctx):
    """The step cost model's launch and host overheads (StepOverheads, PdlOverheads) measured on this device (overheads.mjs),
    beside the values the bundle's predictions assume."""
    node, root = ctx.runtime()
    if not node:
        return {'skipped': 'no Node in the bundle (scripts/device-check/pack-runtime.sh)' + ('' if not ctx.dry else ' and no --runtime-root')}
    work = ctx.scratch / 'overheads-work'
    # On a GPU the ops module compiles into the cache precompile.mjs fills (as the runtime part's); the dry run keeps the caller's $TIDARC_CACHE.
    env = None if ctx.dry else {**os.environ, 'TIDARC_CACHE': str(ctx.scratch / KERNEL_CACHE)}
    # The script shrinks its series to its budget and ends itself there (a {ok: false} line; no series starts in its last second):
    # OVERHEADS_RESERVE_S of the window are kept for it to print and end.
    r = overheads_check(node, root, work, env=env, timeout=max(10.0, ctx.left()), budget=max(0.0, ctx.left() - OVERHEADS_RESERVE_S))
    log(overheads_log_line(r))
    try:
        assumed = assumed_overheads(ctx)
    except (OSError, ValueError, KeyError, TypeError) as e:  # the measurement stands without them; the report says the assumed values are unknown
        log(f'overheads: the bundle\'s assumed constants unreadable ({e.__class__.__name__}: {e})')
        assumed = None
    return {'overheads': {**r, **({'assumed': assumed} if assumed else {})}}


def part_runtime(ctx):
    """tidarc's own runtime on the cuda backend: greedy TiDAR == AR on a random model, the KV-cache rule after every run."""
    node, root = ctx.runtime()
    if not node:
        return {'skipped': 'no Node in the bundle (scripts/device-check/pack-runtime.sh)' + ('' if not ctx.dry else ' and no --runtime-root')}
    work = ctx.scratch / 'runtime-work'
    work.mkdir(parents=True, exist_ok=True)
    # On a GPU the cache precompile.mjs has been filling since the check began (device_check.py start_precompile).
    env = None if ctx.dry else {**os.environ, 'TIDARC_CACHE': str(ctx.scratch / KERNEL_CACHE)}
    tokens, drafts = (8, '2') if ctx.dry else (200, RUNTIME_DRAFTS)
    # The PDL-off pass keeps 10 s of the window (the process is killed at its end): runtime_check.mjs starts no run that would not fit.
    r = runtime_check(node, root, work, tokens, drafts, env=env, timeout=max(10.0, ctx.left()), budget=max(0.0, ctx.left() - 10))
    off = r.get('pdlOff') or {}
    log(f"runtime on the cuda backend: {'ok' if r.get('ok') else 'FAILED ' + str(r.get('error', ''))}"
        + (f"; PDL off: {len(off['runs'])} runs, tokens {'equal to' if off.get('tokensEqual') else 'DIFFERENT from' if off.get('tokensEqual') is False else 'not compared with'} PDL on's"
           f"{', ' + str(len(off['skipped'])) + ' skipped (budget)' if off.get('skipped') else ''}" if 'runs' in off else ''))
    return {'runtime': r}


def part_e2e(ctx):
    """Issue 16: whole decode steps of tidarc (graphs on and off) against transformers eager and the roofline."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        return {'skipped': f'needs torch and transformers ({e})'}
    from e2e import load_predictions, peaks_of_ceilings, run_e2e
    node, root = ctx.runtime()
    if not node:
        return {'skipped': 'no Node in the bundle (scripts/device-check/pack-runtime.sh)' + ('' if not ctx.dry else ' and no --runtime-root')}
    work = ctx.scratch / 'e2e-work'  # checkpoints of GBs: never under --out
    budget = max(0.0, ctx.left() - 20)  # the run in flight when the budget ends comes on top
    save = lambda e: ctx.save({'e2e': e})  # noqa: E731
    if ctx.dry:
        backend = ctx.args.e2e_dry_backend
        if backend == 'cuda' and not os.environ.get('TIDARC_LIBCUDA'):
            return {'skipped': 'the cuda dry backend needs TIDARC_LIBCUDA'}
        e = run_e2e(torch, node, root, work, budget, True, log=log, device_facts={'name': f'dry run, tidarc on {backend}'}, save=save, backend=backend,
                    predictions=load_predictions(ctx.bundle, ctx.predicted))
    else:
        torch = ctx.torch()
        os.environ['TIDARC_CACHE'] = str(ctx.scratch / KERNEL_CACHE)  # what precompile.mjs compiled for these models
        e = run_e2e(torch, node, root, work, budget, False, log=log, peaks=peaks_of_ceilings(ctx.ceilings(torch)), device_facts=ctx.data.get('device') or gpu_facts(torch), save=save,
                    predictions=load_predictions(ctx.bundle, ctx.predicted))
    shutil.rmtree(work, ignore_errors=True)
    return {'e2e': e}


def part_tune(ctx):
    """Issues 6 and 14: the GEMM search (half the part) then the attention search; winners into --out/tune-cuda.json."""
    from gemm_tune import NumpyShape, TorchShape, build_sm90a_sources, gemm_tune
    from attention import build_fatbins
    drv = ctx.driver()
    out, started = {}, time.time()
    torch = None if ctx.dry else ctx.torch()
    if ctx.gem and ctx.gem.get('tune'):
        half = max(0.0, ctx.left() / 2)
        if ctx.dry:
            make = lambda t, rows, seed=5: NumpyShape(drv, t, rows, seed)  # noqa: E731
            # The emulated driver is a 9.0 device: the sm_90a GEMM races the mma.sync one, as on an H200.
            out['gemm'] = {'tune': gemm_tune(drv, ctx.bundle, ctx.gem, ctx.out, make, wall_timer(drv), ctx.machine(drv), half, log, sm90a=True)}
        else:
            if not prebuilt(ctx.bundle, ctx.arch(torch)):
                build_gemm_fatbins(ctx.bundle, ctx.gem, ctx.arch(torch), search=True)
            race = ctx.arch(torch) == '90'  # sm_90a code runs on compute capability 9.0 only
            if race:
                build_sm90a_sources(ctx.bundle, ctx.gem, log)  # always sm_90a: prebuilt or not, only the missing ones
            make = lambda t, rows, seed=5: TorchShape(torch, t, rows, seed)  # noqa: E731
            out['gemm'] = {'tune': gemm_tune(drv, ctx.bundle, ctx.gem, ctx.out, make, event_timer(torch), ctx.machine(drv), max(0.0, half - (time.time() - started)),
                                             log, slack=2.0, sm90a=race)}
        ctx.save(out)
    lost = out.get('gemm', {}).get('tune', {}).get('contextLost')
    if ctx.grid and 'tune' in ctx.grid and lost:  # every launch would fail with the GEMM search's sticky error: said, not met
        out['tune'] = {'contextLost': f'the GEMM search lost the CUDA context ({lost}); the attention search needs a fresh process', 'buckets': []}
    elif ctx.grid and 'tune' in ctx.grid:
        if ctx.dry:
            make = lambda m, v, B, L, s, seed: NumpySets(drv, m, v, B, L, s, 2, seed)  # noqa: E731
            timer = wall_timer(drv)
        else:
            if not prebuilt(ctx.bundle, ctx.arch(torch)):
                build_fatbins(ctx.bundle, ctx.grid, ctx.arch(torch), search=True)
            build_sm90a_units(ctx.bundle, ctx.grid, log)  # always sm_90a: prebuilt or not, only the missing ones
            make = lambda m, v, B, L, s, seed: TorchSets(torch, drv, m, v, B, L, s, cold_sets(m, B, L), seed)  # noqa: E731
            timer = event_timer(torch)
        # A bucket in flight when the budget ends runs to its own limit on top: a third of what is left at most.
        bucket_s = min(ctx.args.bucket_seconds, max(5.0, ctx.left() / 3))
        out['tune'] = tune(drv, ctx.bundle, ctx.grid, ctx.out, make, timer, ctx.machine(drv), max(0.0, ctx.left() - bucket_s), bucket_s, log)
    return out


PART_FUNCTIONS = {'facts': part_facts, 'overheads': part_overheads, 'gemm': part_gemm, 'sm90a': part_sm90a, 'attention': part_attention, 'runtime': part_runtime,
                  'e2e': part_e2e, 'tune': part_tune}


def error_line(e):
    """An exception in one line: its type, its message's first line, and the innermost three calls in these scripts."""
    here = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve().parent == HERE][-3:]
    where = f" (at {' > '.join(f'{Path(f.filename).name}:{f.lineno} {f.name}' for f in here)})" if here else ''
    message = (str(e).strip().splitlines() or [''])[0]
    return f"{type(e).__name__}{': ' + message[:300] if message else ''}{where}"


def run_part(args):
    """The child's side: one part, its sections written to <scratch>/part-<name>.json. An exception keeps what
    the part saved before it and adds {'failed': its one line} (the traceback goes to the log), exit 1."""
    data = json.loads((Path(args.scratch) / 'device-check.json').read_text()) if (Path(args.scratch) / 'device-check.json').exists() else {}
    ctx = Ctx(args, data)
    try:
        sections = PART_FUNCTIONS[args.part](ctx)
    except Exception as e:  # noqa: BLE001 -- one part's failure is a result; the orchestrator runs the next
        traceback.print_exc(file=sys.stdout)
        ctx.save({'failed': error_line(e)})
        return 1
    ctx.save(sections)
    return 0
