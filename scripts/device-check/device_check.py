#!/usr/bin/env python3
"""tidarc device check: proves the generated attention kernels on a GPU and races them against
PyTorch's FlexAttention and SDPA on the same tensors, in one process.

  python3 scripts/device-check/device_check.py --bundle out/device-check --out $OUT

The bundle comes from `npm run device-check:prepare` (generated CUDA sources of a grid of shapes
and grid.json: kernels, launch geometry and every variant's mask as in-step visibility rows from
tidarc's IR). Steps:
  1. GPU facts (name, SMs, driver, CUDA, clocks) and two ceilings: a large device-to-device copy
     (bandwidth) and a large bf16 matmul (compute);
  2. nvcc builds every variant's fatbin for the GPU's arch, with the tuning candidates', in parallel;
  3. correctness: every variant, batch 1 and 8 with different prefix lengths, split-KV 1 and 3,
     against a float64 reference of the same mask (numpy in the dry run, torch on the GPU); the error must be within 2x the error of
     PyTorch's same-precision SDPA on the same inputs plus 1e-3 (FA3's rule), and the
     log-sum-exp within 2e-3;
  4. tune (issue 6, scripts/device-check/tune.py): the CUDA search of `tidarc tune` on the
     benchmark's shape (k = 4, 8 and AR; batch 1 and 8; L = 1k, 4k, 16k): per shape bucket at
     most 30 configurations (tile x split-KV, the heuristic default among them), each checked
     against the float64 reference (a wrong one is rejected) and then timed, at most 60 s per
     bucket and --tune-budget seconds in all; writes tune-cuda.json (src/tune/db.ts's format);
  4b. GEMMs (issue 14, scripts/device-check/gemm.py, when the bundle has gemm.json): the generated
     GEMMs of the Qwen3-8B linear layers at M = 1, 20, 72, 272 against the float64 reference, bitwise
     batch invariance across M; the fused epilogues (SwiGLU over interleaved gate | up, lm_head's
     row statistics and merge) against the plain kernel's output on the device; then timed against
     torch's F.linear on the same weights, with the cost model's prediction beside each
     measurement; before that the search (scripts/device-check/gemm_tune.py): every split-K and
     tile candidate of src/tune/gemm-space.ts per shape checked (float64 reference, bitwise across
     M) then timed, the winners written into tune-cuda.json's gemms for `tidarc compile --tuned`
     (--gemm-budget seconds for both);
  5. benchmark (Qwen3-8B attention: 32 query heads, 8 KV heads, head dim 128, bf16): the AR step
     and the TiDAR steps k = 4, 8, 16 at prefix L in {1k, 4k, 16k, 64k}, batch 1 and 8; tidarc's
     kernel, FlexAttention (torch.compile'd, BlockMask from the same mask) and SDPA with a dense
     boolean mask; CUDA events, warm-up, >= 100 repetitions over rotated inputs (cold L2),
     median with p20/p80; microseconds, TB/s, TFLOP/s and the share of the measured ceilings;
     tidarc at the split-KV count and workspace the runtime would use (grid.json's attentionBench:
     tidarc's rule at ptxas's occupancy, attention_bench.py) beside the cost model's prediction, and
     at the CUDA search's best of the shape bucket as a second timing; every row names its splits;
  6. tidarc's own runtime on the cuda backend (runtime_check.mjs, with the Node and the package
     that pack-runtime.sh put in the bundle): greedy TiDAR == greedy AR on a random model,
     k = 1, 2, 4, 8, three prompts, 200 tokens, the KV-cache rule after every run;
  6b. with --e2e-budget S: the end-to-end part (issue 16 item 5, scripts/device-check/e2e.py, usually run
     as its own command): whole decode steps of tidarc (graphs on and off) against transformers eager
     and the roofline on random models of Qwen3-0.6B's and Qwen3-8B's shapes;
  7. writes device-check.json, device-check.md and device-check.svg under --out and prints a
     short table last.
Kernels are launched through the CUDA driver API (ctypes on libcuda.so.1) on PyTorch's own
tensors and primary context. --dry-run runs steps 3, 4, 6 and tidarc's side of 5 (its points at the
rule's splits, checked, then timed on the emulator) without PyTorch or a GPU: numpy
inputs, the emulated driver ($TIDARC_LIBCUDA, `tidarc emulated-driver`) and the bundle's .emu.so
modules (prepare --dry-run); its tolerance is the emulator tests' fixed one.
--report-only FILE rewrites the markdown and SVG of a recorded device-check.json.
"""
import argparse
import concurrent.futures
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts (a working tree the device tool copies)
sys.path.insert(0, str(HERE))
from kernels import (FA3_EPSILON, FIXED_TOLERANCE, LSE_TOLERANCE, Driver, compare, from_bits, launch_attention,  # noqa: E402
                     reference, sdpa_comparator, to_bits, torch_reference)
from gemm import gemm_bench, gemm_correctness_numpy, gemm_correctness_torch, gemm_epilogue_check, ptxas_registers  # noqa: E402
from gemm_tune import NumpyShape, TorchShape, gemm_tune  # noqa: E402
from attention_bench import bench_point, dry_bench, launcher, point_grid, tuned_launch, workspace_floats  # noqa: E402
from report import write_reports  # noqa: E402
from tidarc_abi import AR_VARIANT, tidar_variant  # noqa: E402
from tune import NumpySets, TorchSets, cold_sets, cxx_version, event_timer, nvcc_path, nvcc_version, tune, wall_timer  # noqa: E402

def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- correctness ------------------------------------------------------------------------------

def check_variant(drv, bundle, model, v, batch, prefix, splits, seed, torch_ref, ref_fn):
    rng = np.random.default_rng(seed)
    dtype, n, Hq, Hkv, D = model['dtype'], v['steps'], model['qHeads'], model['kvHeads'], model['headDim']
    capacity = max(int(max(prefix)), 1)
    shapes = {'q': (batch, n, Hq, D), 'kc': (batch, Hkv, capacity, D), 'vc': (batch, Hkv, capacity, D), 'ks': (batch, n, Hkv, D), 'vs': (batch, n, Hkv, D)}
    bits = {k: to_bits(rng.standard_normal(s), dtype) for k, s in shapes.items()}
    vals = {k: from_bits(b, dtype) for k, b in bits.items()}
    rows = batch * n * Hq
    ptr = {k: drv.alloc(b.nbytes) for k, b in bits.items()}
    for k, b in bits.items():
        drv.upload(ptr[k], b)
    prefix_arr = np.array(prefix, np.int32)
    ptr['prefix'] = drv.alloc(prefix_arr.nbytes)
    drv.upload(ptr['prefix'], prefix_arr)
    ptr['o'], ptr['lse'] = drv.alloc(rows * D * 2), drv.alloc(rows * 4)
    ptr['ws'] = drv.alloc(splits * rows * (D + 1) * 4) if splits > 1 else 0
    drv.fill(ptr['o'], 0xFF, rows * D * 2)  # NaN everywhere: an unwritten output stays NaN
    drv.fill(ptr['lse'], 0xFF, rows * 4)
    try:
        launch_attention(drv, bundle, model, v, [ptr[k] for k in ('q', 'kc', 'vc', 'ks', 'vs', 'prefix', 'o', 'lse', 'ws')], batch, capacity, splits)
        drv.synchronize()
        o_bits = np.empty(rows * D, np.uint16)
        lse = np.empty(rows, np.float32)
        drv.download(ptr['o'], o_bits)
        drv.download(ptr['lse'], lse)
    finally:
        for k, p in ptr.items():
            if p:
                drv.free(p)
    ref_o, ref_lse = ref_fn(model, v, vals['q'], vals['kc'], vals['vc'], vals['ks'], vals['vs'], prefix)
    err, lse_err = compare(o_bits, lse, ref_o, ref_lse, dtype)
    if torch_ref is not None:
        baseline = torch_ref(model, v, vals, prefix, ref_o)
        tolerance = 2 * baseline + FA3_EPSILON
        rule = f'2 x SDPA {dtype} error ({baseline:.2e}) + {FA3_EPSILON:g}'
    else:
        baseline, tolerance, rule = None, FIXED_TOLERANCE[dtype], 'fixed (dry run)'
    ok = err <= tolerance and lse_err <= LSE_TOLERANCE
    return {'model': model['name'], 'variant': v['name'], 'batch': batch, 'prefix': list(map(int, prefix)), 'splits': splits,
            'maxError': err, 'lseMaxError': lse_err, 'tolerance': tolerance, 'rule': rule, 'sdpaError': baseline, 'ok': bool(ok)}


def correctness(drv, bundle, grid, dry, torch_ref, ref_fn, log_every=10):
    cases = []
    for model in grid['models']:
        for v in model['variants']:
            prefixes = ([[37]], [[5, 0]]) if dry else ([[1000]], [[0, 17, 130, 1024, 1500, 64, 2047, 3]])
            for prefix in prefixes:
                for splits in ((1, 2) if dry else (1, 3)):
                    cases.append((model, v, prefix[0], splits))
    results = []
    for i, (model, v, prefix, splits) in enumerate(cases):
        results.append(check_variant(drv, bundle, model, v, len(prefix), prefix, splits, 1000 + i, torch_ref, ref_fn))
        if (i + 1) % log_every == 0 or i + 1 == len(cases):
            bad = sum(not r['ok'] for r in results)
            log(f'correctness {i + 1}/{len(cases)} ({bad} failed)')
    return results


# ---- GPU-only parts: facts, ceilings, build, SDPA comparator, benchmark -----------------------------

def gpu_facts(torch):
    p = torch.cuda.get_device_properties(0)
    smi = shutil.which('nvidia-smi')
    clocks = subprocess.run([smi, '--query-gpu=driver_version,clocks.max.sm,clocks.max.mem', '--format=csv,noheader'], capture_output=True, text=True).stdout.strip() if smi else ''
    return {'name': p.name, 'sms': p.multi_processor_count, 'capability': f'{p.major}.{p.minor}', 'memoryGiB': round(p.total_memory / 2**30, 1),
            'torch': torch.__version__, 'cuda': torch.version.cuda, 'nvidiaSmi': clocks, 'host': platform.node()}


def time_events(torch, fn, reps, warmup=10):
    for _ in range(warmup):
        fn(0)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        starts[i].record()
        fn(i)
        ends[i].record()
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    q = lambda f: ms[min(len(ms) - 1, int(f * len(ms)))]  # noqa: E731
    return {'medianUs': q(0.5) * 1e3, 'p20Us': q(0.2) * 1e3, 'p80Us': q(0.8) * 1e3, 'reps': reps}


def ceilings(torch):
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device='cuda')
    b = torch.empty_like(a)
    t = time_events(torch, lambda i: b.copy_(a), 20, 3)
    copy_tbs = 2 * n / (t['medianUs'] * 1e-6) / 1e12
    m = 8192
    x = torch.randn(m, m, dtype=torch.bfloat16, device='cuda')
    y = torch.randn(m, m, dtype=torch.bfloat16, device='cuda')
    t = time_events(torch, lambda i: x @ y, 20, 3)
    return {'copyTBs': copy_tbs, 'matmulTflops': 2 * m**3 / (t['medianUs'] * 1e-6) / 1e12}


def build_fatbins(bundle, grid, arch):
    """Every variant of the grid and every tuning candidate (a tile's fatbin once, however many models name it)."""
    nvcc = nvcc_path()
    jobs = {}
    for model in grid['models'] + [t['model'] for t in grid.get('tune', {}).get('tiles', [])]:
        flags = [f for f in model['nvccFlags'] if not f.startswith('-gencode')] + [f'-gencode=arch=compute_{arch},code=sm_{arch}']
        for v in model['variants']:
            jobs[v['fatbin']] = (bundle / v['cu'], bundle / v['fatbin'], flags)
    jobs = list(jobs.values())
    def build(job):
        cu, out, flags = job
        r = subprocess.run([nvcc, *flags, '-o', str(out), str(cu)], capture_output=True, text=True, cwd=cu.parent)
        if r.returncode != 0:
            raise RuntimeError(f'nvcc failed on {cu}:\n{r.stderr[-2000:]}')
        return out
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4) as pool:
        list(pool.map(build, jobs))
    log(f'nvcc: {len(jobs)} fatbins for sm_{arch} in {time.time() - t0:.0f} s')
    return len(jobs)


def build_gemm_fatbins(bundle, gem, arch):
    """The GEMM units of gemm.json for the GPU's arch; returns ptxas registers per kernel."""
    nvcc = nvcc_path()
    def build(unit):
        cu = bundle / unit['cu']
        r = subprocess.run([nvcc, '-fatbin', '-O3', '-std=c++17', '-Xptxas', '-v', f'-gencode=arch=compute_{arch},code=sm_{arch}', f"-I{bundle / 'gemm' / 'cuda'}",
                            '-o', str(bundle / unit['fatbin']), str(cu)], capture_output=True, text=True, cwd=cu.parent)
        if r.returncode != 0:
            raise RuntimeError(f'nvcc failed on {cu}:\n{r.stderr[-2000:]}')
        return ptxas_registers(r.stderr)
    t0 = time.time()
    regs = {}
    # The search's sources (a split-K count of a shape each) build beside the units.
    jobs = list(gem['units']) + [s for t in gem.get('tune', []) for s in t['sources']] + ([gem['ops']] if gem.get('ops') else [])
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4) as pool:
        for r in pool.map(build, jobs):
            regs.update(r)
    log(f"nvcc: {len(jobs)} GEMM fatbins for sm_{arch} in {time.time() - t0:.0f} s")
    return regs


def benchmark(torch, drv, bundle, grid, ceil, budget_s, tune_section=None):
    """tidarc vs FlexAttention vs SDPA on the Qwen3-8B shape; points past the time budget are skipped and listed.
    tidarc runs at the split-KV count and workspace of grid.json's point (the runtime's rule, attention_bench.py),
    and at the CUDA search's best for the point's bucket as a second row when the search timed it."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    F = torch.nn.functional
    flex = torch.compile(flex_attention)
    model = next(m for m in grid['models'] if m['name'] == grid['bench'])
    Hq, Hkv, D = model['qHeads'], model['kvHeads'], model['headDim']
    variants = {v['name']: v for v in model['variants']}
    started, points, skipped = time.time(), [], []
    ar, k4, k8, k16 = AR_VARIANT, tidar_variant(4), tidar_variant(8), tidar_variant(16)
    grid_points = point_grid(grid) or [(name, L, B) for name in (ar, k4, k8, k16) for L in (1024, 4096, 16384, 65536) for B in (1, 8)]
    # The points the goals read first, so that the time budget cuts the others.
    first = [(k16, 4096, 1), (k16, 16384, 1), (ar, 65536, 8), (ar, 16384, 8), (ar, 4096, 1), (k4, 4096, 1),
             (ar, 16384, 1), (k4, 16384, 1), (k16, 65536, 1)]
    for name, L, B in first + [p for p in grid_points if p not in first]:
        v = variants[name]
        n = v['steps']
        step_vis = torch.tensor([[c == '1' for c in row] for row in v['visible']], device='cuda')
        if time.time() - started > budget_s:
            skipped.append(f'{name} L={L} B={B}')
            continue
        kv_bytes = 2 * B * Hkv * L * D * 2
        sets = max(1, min(16, math.ceil(2 * 60e6 / kv_bytes)))  # rotate past the 50 MB L2
        t = lambda *s: torch.randn(*s, device='cuda', dtype=torch.bfloat16)  # noqa: E731
        ins = [dict(q=t(B, n, Hq, D), kc=t(B, Hkv, L, D), vc=t(B, Hkv, L, D), ks=t(B, n, Hkv, D), vs=t(B, n, Hkv, D)) for _ in range(sets)]
        prefix = torch.full((B,), L, dtype=torch.int32, device='cuda')
        o = torch.empty(B, n, Hq, D, device='cuda', dtype=torch.bfloat16)
        lse = torch.empty(B, n, Hq, device='cuda', dtype=torch.float32)

        point = bench_point(grid, name, L, B)
        splits = point['splits'] if point else 1
        ws = torch.empty(max(1, workspace_floats(model, v, B, splits)), device='cuda', dtype=torch.float32)

        def ptrs(i, out=o):
            x = ins[i % sets]
            return [x['q'].data_ptr(), x['kc'].data_ptr(), x['vc'].data_ptr(), x['ks'].data_ptr(), x['vs'].data_ptr(), prefix.data_ptr(), out.data_ptr(), lse.data_ptr(), ws.data_ptr()]
        ours = launcher(drv, bundle, model, v, B, L, splits)
        # Baselines take keys as [B, H, L + n, D]: the cache and the step concatenated once, outside the timing.
        base = [dict(q=x['q'].transpose(1, 2).contiguous(), k=torch.cat([x['kc'], x['ks'].transpose(1, 2)], 2).contiguous(), v=torch.cat([x['vc'], x['vs'].transpose(1, 2)], 2).contiguous()) for x in ins]
        dense = torch.cat([torch.full((n, L), v['prefixVisible'], device='cuda'), step_vis], 1)
        row = {'variant': name, 'n': n, 'prefix': L, 'batch': B, 'splits': splits, 'workspaceFloats': workspace_floats(model, v, B, splits)}
        if point:
            row.update(predictedUs=point['predictedUs'], predictedBound=point['predictedBound'], rooflineUs=point['rooflineUs'])
        row['tidarc'] = time_events(torch, lambda i: ours(ptrs(i)), 100)
        # The rule's split against one split on set 0: the workspace path must give the same output.
        one = torch.empty_like(o)
        ours(ptrs(0))
        launcher(drv, bundle, model, v, B, L, 1)(ptrs(0, one))
        torch.cuda.synchronize()
        row['splitVsOneMaxDiff'] = float((o.float() - one.float()).abs().max())
        tuned = tuned_launch(grid, tune_section, name, L, B)
        if tuned:
            t_model, t_v, t_splits, key = tuned
            t_ws = torch.empty(max(1, workspace_floats(t_model, t_v, B, t_splits)), device='cuda', dtype=torch.float32)
            t_call = launcher(drv, bundle, t_model, t_v, B, L, t_splits)
            row['tuned'] = {'config': key, 'splits': t_splits,
                            **time_events(torch, lambda i: t_call(ptrs(i)[:8] + [t_ws.data_ptr()]), 100)}
        row['sdpa'] = time_events(torch, lambda i: F.scaled_dot_product_attention(base[i % sets]['q'], base[i % sets]['k'], base[i % sets]['v'], attn_mask=dense, enable_gqa=True), 100)
        try:
            def mask_mod(b, h, qi, kv):
                return (kv < L) | step_vis[qi, (kv - L).clamp(min=0)]
            bm = create_block_mask(mask_mod, None, None, n, L + n, device='cuda')
            row['flex'] = time_events(torch, lambda i: flex(base[i % sets]['q'], base[i % sets]['k'], base[i % sets]['v'], block_mask=bm, enable_gqa=True), 100)
        except Exception as e:  # a Flex failure is a result, not a crash
            row['flexError'] = str(e).splitlines()[0][:200]
        flops = 4 * B * Hq * D * sum(L + r.count('1') for r in v['visible'])
        us = row['tidarc']['medianUs']
        row['tidarcTBs'] = (kv_bytes + 2 * B * n * (Hq + 2 * Hkv) * D * 2) / (us * 1e-6) / 1e12
        row['tidarcTflops'] = flops / (us * 1e-6) / 1e12
        row['copyShare'] = row['tidarcTBs'] / ceil['copyTBs']
        row['computeShare'] = row['tidarcTflops'] / ceil['matmulTflops']
        points.append(row)
        if point:
            row['measuredOverPredicted'] = us / point['predictedUs']
        log(f"bench {name} L={L} B={B}: tidarc {us:.1f} us at {splits} splits (predicted {point['predictedUs'] if point else float('nan'):.1f}), "
            f"tuned {row.get('tuned', {}).get('config', '-')} {row.get('tuned', {}).get('medianUs', float('nan')):.1f} us, sdpa {row['sdpa']['medianUs']:.1f} us, flex {row.get('flex', {}).get('medianUs', float('nan')):.1f} us")
        del ins, base
        torch.cuda.empty_cache()
    return points, skipped


def runtime_check(node, root, work, tokens, drafts, env=None):
    """tidarc's runtime on the cuda backend (runtime_check.mjs): greedy TiDAR == AR, exact caches."""
    r = subprocess.run([node, str(HERE / 'runtime_check.mjs'), str(root), str(work), str(tokens), drafts], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {'ok': False, 'error': r.stderr.strip().splitlines()[-1:] or ['exit code %d' % r.returncode]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def unpack_runtime(bundle, work):
    """The Node and tidarc package that pack-runtime.sh put in the bundle, unpacked under work."""
    packed = bundle / 'node'
    if not (packed / 'node.xz').exists():
        return None, None
    import lzma
    import tarfile
    node = work / 'node'
    with lzma.open(packed / 'node.xz') as src, open(node, 'wb') as dst:  # Python's own xz: no xz binary needed there
        shutil.copyfileobj(src, dst)
    node.chmod(0o755)
    with tarfile.open(packed / 'tidarc.tar.xz', 'r:xz') as tar:
        tar.extractall(work)
    return str(node), work / 'tidarc'


# ---- main -------------------------------------------------------------------------------------

# Seconds kept for the runtime part (unpacking Node, compiling the runtime check's kernels, 12 decodes).
RUNTIME_RESERVE = 120


def save_partial(data, out):
    """device-check.json as far as the check got: a check stopped by the command's time limit still reports."""
    (out / 'device-check.json').write_text(json.dumps({**data, 'partial': True}, indent=1) + '\n')


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bundle', default='out/device-check')
    ap.add_argument('--out', default=os.environ.get('OUT', 'out/device-check-results'))
    ap.add_argument('--dry-run', action='store_true')
    ap.add_argument('--report-only', metavar='FILE')
    ap.add_argument('--bench-budget', type=float, default=240, help='seconds for the benchmark grid (Flex compiles are slow)')
    ap.add_argument('--gemm-budget', type=float, default=120, help='seconds for the GEMM part\'s timing (issue 14): the search of tile and split-K per shape '
                    '(at most half; no shape starts after it) then the benchmark against torch')
    ap.add_argument('--tune-budget', type=float, default=120, help='seconds for the CUDA search: no shape bucket starts after this long')
    ap.add_argument('--bucket-seconds', type=float, default=60, help='seconds per shape bucket of the CUDA search: no configuration starts after this long')
    ap.add_argument('--runtime-root', help='dry run: also run runtime_check.mjs with this machine\'s node on this built tidarc (e.g. .)')
    ap.add_argument('--e2e-budget', type=float, default=0,
                    help='seconds for the end-to-end part (e2e.py: whole steps against transformers and the roofline) after the runtime part, cut to '
                         'what the deadline leaves; 0 (the default) skips it: the kernel parts fill --deadline, so a GPU session runs e2e.py as its own command')
    ap.add_argument('--deadline', type=float, default=540,
                    help='seconds for the whole check (the device command\'s limit is 600): the search and the benchmark get what is left '
                         'after keeping RUNTIME_RESERVE seconds for the runtime part; device-check.json is rewritten after every part')
    a = ap.parse_args(argv)
    started = time.time()

    def left_for(budget):
        """A part's budget, cut to what the deadline leaves after the runtime part's reserve."""
        return max(0.0, min(budget, a.deadline - (time.time() - started) - RUNTIME_RESERVE))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.report_only:
        data = json.loads(Path(a.report_only).read_text())
        print(write_reports(data, out))
        return 0
    bundle = Path(a.bundle)
    grid = json.loads((bundle / 'grid.json').read_text())
    gem = json.loads((bundle / 'gemm.json').read_text()) if (bundle / 'gemm.json').exists() else None
    data = {'format': 1, 'date': time.strftime('%Y-%m-%d'), 'generator': grid['generator'], 'dryRun': a.dry_run}
    if a.dry_run:
        drv = Driver(os.environ.get('TIDARC_LIBCUDA') or sys.exit('device_check: --dry-run needs TIDARC_LIBCUDA (tidarc emulated-driver)'))
        data['device'] = {'name': 'tidarc emulated GPU', 'driver': drv.path}
        data['correctness'] = correctness(drv, bundle, grid, True, None, reference)
        if gem:
            data['gemm'] = {'correctness': gemm_correctness_numpy(drv, bundle, gem), 'epilogues': gemm_epilogue_check(drv, bundle, gem)}
            if gem.get('tune'):
                machine = {'name': drv.name, 'sms': drv.sms, 'driverVersion': drv.version, 'compiler': f'emulator: {cxx_version()}'}
                data['gemm']['tune'] = gemm_tune(drv, bundle, gem, out, lambda t, rows, seed=5: NumpyShape(drv, t, rows, seed), wall_timer(drv), machine, a.gemm_budget, log)
        if 'tune' in grid:
            machine = {'name': drv.name, 'sms': drv.sms, 'driverVersion': drv.version, 'compiler': f'emulator: {cxx_version()}'}
            data['tune'] = tune(drv, bundle, grid, out, lambda m, v, B, L, s, seed: NumpySets(drv, m, v, B, L, s, 2, seed), wall_timer(drv), machine,
                                a.tune_budget, a.bucket_seconds, log)
        data['bench'] = dry_bench(drv, bundle, grid, wall_timer(drv), log)
        if a.runtime_root:
            work = out / 'runtime-work'
            work.mkdir(exist_ok=True)
            data['runtime'] = runtime_check(shutil.which('node'), Path(a.runtime_root).resolve(), work, 8, '2')
    else:
        import torch
        torch.cuda.init()
        drv = Driver('libcuda.so.1')
        data['device'] = {**gpu_facts(torch), 'driverVersion': drv.version}
        log(f"GPU: {data['device']}")
        data['ceilings'] = ceilings(torch)
        log(f"ceilings: {data['ceilings']}")
        cap = torch.cuda.get_device_capability(0)
        data['fatbins'] = build_fatbins(bundle, grid, f'{cap[0]}{cap[1]}')
        gemm_regs = build_gemm_fatbins(bundle, gem, f'{cap[0]}{cap[1]}') if gem else {}
        data['correctness'] = correctness(drv, bundle, grid, False, sdpa_comparator(torch), torch_reference(torch))
        if gem:
            data['gemm'] = {'registers': gemm_regs, 'correctness': gemm_correctness_torch(torch, drv, bundle, gem), 'epilogues': gemm_epilogue_check(drv, bundle, gem)}
            save_partial(data, out)
            gemm_started = time.time()
            if gem.get('tune'):
                # The search gets half the GEMM budget; the benchmark against torch what is left.
                machine = {'name': drv.name, 'sms': drv.sms, 'driverVersion': drv.version, 'compiler': nvcc_version()}
                data['gemm']['tune'] = gemm_tune(drv, bundle, gem, out, lambda t, rows, seed=5: TorchShape(torch, t, rows, seed), event_timer(torch), machine,
                                                 left_for(a.gemm_budget / 2), log, slack=2.0)
                save_partial(data, out)
            data['gemm']['bench'], data['gemm']['skipped'] = gemm_bench(torch, drv, bundle, gem, data['ceilings'], time_events,
                                                                        left_for(max(0.0, a.gemm_budget - (time.time() - gemm_started))), log, gemm_regs)
        if 'tune' in grid:
            machine = {'name': drv.name, 'sms': drv.sms, 'driverVersion': drv.version, 'compiler': nvcc_version()}
            make_sets = lambda m, v, B, L, s, seed: TorchSets(torch, drv, m, v, B, L, s, cold_sets(m, B, L), seed)  # noqa: E731
            save_partial(data, out)
            data['tune'] = tune(drv, bundle, grid, out, make_sets, event_timer(torch), machine, left_for(a.tune_budget), a.bucket_seconds, log)
        save_partial(data, out)
        data['bench'], data['benchSkipped'] = benchmark(torch, drv, bundle, grid, data['ceilings'], left_for(a.bench_budget), data.get('tune'))
        save_partial(data, out)
        work = out / 'runtime-work'
        work.mkdir(exist_ok=True)
        node, root = unpack_runtime(bundle, work)
        data['runtime'] = runtime_check(node, root, work, 200, '1,2,4,8') if node else {'ok': False, 'error': ['no Node in the bundle: run scripts/device-check/pack-runtime.sh']}
        log(f"runtime on the cuda backend: {'ok' if data['runtime'].get('ok') else 'FAILED'}")
        e2e_budget = min(a.e2e_budget, a.deadline - (time.time() - started))
        if a.e2e_budget > 0 and node and e2e_budget > 0:
            save_partial(data, out)
            from e2e import peaks_of_ceilings, run_e2e
            import tempfile
            e2e_work = Path(tempfile.mkdtemp(prefix='tidarc-e2e-'))  # checkpoints of GBs: never under --out
            data['e2e'] = run_e2e(torch, node, root, e2e_work, e2e_budget, False, log=log, peaks=peaks_of_ceilings(data['ceilings']), device_facts=data['device'],
                                  save=lambda e: save_partial({**data, 'e2e': e}, out))
            shutil.rmtree(e2e_work, ignore_errors=True)
        elif a.e2e_budget > 0:
            data['e2e'] = {'skipped': [f'the whole part: {max(0.0, e2e_budget):.0f} s left of the deadline' if node else 'the whole part: no Node in the bundle']}
    (out / 'device-check.json').write_text(json.dumps(data, indent=1) + '\n')
    print(write_reports(data, out))
    runtime_ok = data.get('runtime', {'ok': True}).get('ok', False)
    tune_ok = not any('error' in r for r in data.get('tune', {}).get('buckets', []))
    gemm_ok = all(r['ok'] for r in data.get('gemm', {}).get('correctness', []) + data.get('gemm', {}).get('epilogues', []))
    bench_ok = all(r.get('ok', True) for r in data.get('bench', []))  # the dry run checks each point's output
    from e2e_report import failed_runs
    e2e_ok = not failed_runs(data.get('e2e', {}))
    return 0 if all(r['ok'] for r in data['correctness']) and runtime_ok and tune_ok and gemm_ok and bench_ok and e2e_ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
