"""The device check's attention part (issues 5, 15): nvcc builds every variant of the bundle's grid
for the GPU's arch; correctness of every variant at batch 1 and 8 with different prefixes and
split-KV 1 and 3 against a float64 reference of the same mask (FA3's rule on a GPU: within 2x the
error of PyTorch's same-precision SDPA + 1e-3; log-sum-exp within 2e-3; the dry run: the emulator
tests' fixed tolerance); then the benchmark on the Qwen3-8B shape: tidarc at the runtime's split-KV
count against FlexAttention (compiled, BlockMask from the same mask) and SDPA (dense mask, the fastest
backend that runs it, named), CUDA events over rotated inputs, median with p20/p80, TB/s, TFLOP/s and
the share of the ceilings."""
import concurrent.futures
import math
import os
import subprocess
import time

import numpy as np

from attention_bench import bench_point, launcher, point_grid, tuned_launch, workspace_floats
from gpu import log, time_events
from kernels import FA3_EPSILON, FIXED_TOLERANCE, LSE_TOLERANCE, compare, from_bits, launch_attention, sdpa_backend, sdpa_runs, to_bits
from tidarc_abi import AR_VARIANT, tidar_variant
from tune import nvcc_path


def cache_bits(model, prefix, seed):
    """A KV cache's random 16-bit contents, {'kc', 'vc'} [batch, Hkv, capacity, D]: one draw per (model, prefixes), shared by
    every variant and split count checked on it (24 cases; numpy's draws were most of the part's host time on a GPU)."""
    rng = np.random.default_rng(seed)
    shape = (len(prefix), model['kvHeads'], max(int(max(prefix)), 1), model['headDim'])
    return {k: to_bits(rng.standard_normal(shape, dtype=np.float32), model['dtype']) for k in ('kc', 'vc')}


def check_variant(drv, bundle, model, v, batch, prefix, splits, seed, judge, ref_fn, kv=None):
    """judge: kernels.torch_judge on a GPU (reference and SDPA's error there), None in the dry run (ref_fn: numpy's reference);
    kv: cache_bits of the model and prefix (drawn here when not given)."""
    rng = np.random.default_rng(seed)
    dtype, n, Hq, Hkv, D = model['dtype'], v['steps'], model['qHeads'], model['kvHeads'], model['headDim']
    capacity = max(int(max(prefix)), 1)
    shapes = {'q': (batch, n, Hq, D), 'ks': (batch, n, Hkv, D), 'vs': (batch, n, Hkv, D)}
    bits = {**(kv or cache_bits(model, prefix, seed)), **{k: to_bits(rng.standard_normal(s, dtype=np.float32), dtype) for k, s in shapes.items()}}
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
    if judge is not None:
        ref_o, ref_lse, baseline, backend = judge(model, v, bits, prefix)
    else:
        ref_o, ref_lse = ref_fn(model, v, *(from_bits(bits[k], dtype) for k in ('q', 'kc', 'vc', 'ks', 'vs')), prefix)
    err, lse_err = compare(o_bits, lse, ref_o, ref_lse, dtype)
    if judge is not None:
        tolerance = 2 * baseline + FA3_EPSILON
        rule = f'2 x SDPA {dtype} error ({baseline:.2e}, {backend}) + {FA3_EPSILON:g}'
    else:
        baseline, backend, tolerance, rule = None, None, FIXED_TOLERANCE[dtype], 'fixed (dry run)'
    ok = err <= tolerance and lse_err <= LSE_TOLERANCE
    return {'model': model['name'], 'variant': v['name'], 'batch': batch, 'prefix': list(map(int, prefix)), 'splits': splits,
            'maxError': err, 'lseMaxError': lse_err, 'tolerance': tolerance, 'rule': rule, 'sdpaError': baseline, 'sdpaBackend': backend, 'ok': bool(ok)}


def correctness(drv, bundle, grid, dry, judge, ref_fn, log_every=10, save=None):
    """Every variant's cases; save(results so far), when given, every log_every cases: a part killed at its
    deadline keeps the checks it made (384 cases on a GPU: about half the attention part's window)."""
    cases = []
    for model in grid['models']:
        for v in model['variants']:
            prefixes = ([[37]], [[5, 0]]) if dry else ([[1000]], [[0, 17, 130, 1024, 1500, 64, 2047, 3]])
            for prefix in prefixes:
                for splits in ((1, 2) if dry else (1, 3)):
                    cases.append((model, v, prefix[0], splits))
    results, caches = [], {}
    for i, (model, v, prefix, splits) in enumerate(cases):
        key = (model['name'], tuple(prefix))
        if key not in caches:
            caches = {k: c for k, c in caches.items() if k[0] == model['name']}  # the cases go model by model
            caches[key] = cache_bits(model, prefix, 1000 + i)
        results.append(check_variant(drv, bundle, model, v, len(prefix), prefix, splits, 1000 + i, judge, ref_fn, caches[key]))
        if (i + 1) % log_every == 0 or i + 1 == len(cases):
            bad = sum(not r['ok'] for r in results)
            log(f'correctness {i + 1}/{len(cases)} ({bad} failed)')
            if save:
                save(results)
    return results


def build_fatbins(bundle, grid, arch, search=False):
    """Every variant of the grid, or with search=True every tuning candidate (a tile's fatbin once,
    however many models name it; the grid's own are built already)."""
    nvcc = nvcc_path()
    jobs = {}
    for model in [t['model'] for t in grid.get('tune', {}).get('tiles', [])] if search else grid['models']:
        flags = [f for f in model['nvccFlags'] if not f.startswith('-gencode')] + [f'-gencode=arch=compute_{arch},code=sm_{arch}']
        for v in model['variants']:
            if not (search and (bundle / v['fatbin']).exists()):
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


def time_sdpa(torch, call, reps):
    """SDPA at the fastest backend that runs call(i) (kernels.sdpa_runs: each forced alone, every one that runs timed):
    {'sdpa': its time_events timing with 'backend', 'sdpaBackends': {backend: median us}}, or {'sdpaFailed': why}."""
    times = {}
    for name, _ in sdpa_runs(torch, lambda: call(0)):
        with sdpa_backend(torch, name):
            times[name] = time_events(torch, call, reps)
    if not times:
        return {'sdpaFailed': 'no SDPA backend runs it'}
    best = min(times, key=lambda b: times[b]['medianUs'])
    return {'sdpa': {**times[best], 'backend': best}, 'sdpaBackends': {b: t['medianUs'] for b, t in times.items()}}


def benchmark(torch, drv, bundle, grid, ceil, budget_s, tune_section=None, save=None):
    """tidarc vs FlexAttention vs SDPA on the Qwen3-8B shape; points past the time budget are skipped and listed.
    tidarc runs at the split-KV count and workspace of grid.json's point (the runtime's rule, attention_bench.py),
    and at the CUDA search's best for the point's bucket as a second row when the search timed it.
    save(points, skipped), when given, after every point: a part stopped at its deadline still reports."""
    from flex import block_mask, compiled_flex, dense_mask
    F = torch.nn.functional
    flex = compiled_flex(torch)
    model = next(m for m in grid['models'] if m['name'] == grid['bench'])
    Hq, Hkv, D = model['qHeads'], model['kvHeads'], model['headDim']
    variants = {v['name']: v for v in model['variants']}
    started, points, skipped = time.time(), [], []
    ar, k4, k8, k16 = AR_VARIANT, tidar_variant(4), tidar_variant(8), tidar_variant(16)
    grid_points = point_grid(grid) or [(name, L, B) for name in (ar, k4, k8, k16) for L in (1024, 4096, 16384, 65536) for B in (1, 8)]
    # The points the goals read first, so that the time budget cuts the others.
    # Only those the bundle lists: a variant its bench model lacks would be a KeyError that loses every point.
    first = [p for p in [(k16, 4096, 1), (k16, 16384, 1), (ar, 65536, 8), (ar, 16384, 8), (ar, 4096, 1), (k4, 4096, 1),
                         (ar, 16384, 1), (k4, 16384, 1), (k16, 65536, 1)] if p in grid_points]
    for name, L, B in first + [p for p in grid_points if p not in first]:
        v = variants[name]
        n = v['steps']
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
        dense = dense_mask(torch, v['visible'], v['prefixVisible'], L, 'cuda')
        row = {'variant': name, 'n': n, 'prefix': L, 'batch': B, 'splits': splits, 'workspaceFloats': workspace_floats(model, v, B, splits)}
        if point:
            row.update(predictedUs=point['predictedUs'], predictedBound=point['predictedBound'], rooflineUs=point['rooflineUs'],
                       **({'predictedFor': point['predictedFor']} if 'predictedFor' in point else {}))  # the machine's (machines.py)
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
        row.update(time_sdpa(torch, lambda i: F.scaled_dot_product_attention(base[i % sets]['q'], base[i % sets]['k'], base[i % sets]['v'], attn_mask=dense, enable_gqa=True), 100))
        try:
            bm = block_mask(torch, v['visible'], v['prefixVisible'], L, 'cuda')
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
        log(f"bench {name} L={L} B={B}: tidarc {us:.1f} us at {splits} splits (predicted {point['predictedUs'] if point else float('nan'):.1f}{' for ' + point['predictedFor'] if point and 'predictedFor' in point else ''}), "
            f"tuned {row.get('tuned', {}).get('config', '-')} {row.get('tuned', {}).get('medianUs', float('nan')):.1f} us, "
            f"sdpa {row.get('sdpa', {}).get('medianUs', float('nan')):.1f} us ({row.get('sdpa', {}).get('backend', row.get('sdpaFailed'))}), flex {row.get('flex', {}).get('medianUs', float('nan')):.1f} us")
        del ins, base
        torch.cuda.empty_cache()
        if save:
            save(points, skipped)
    return points, skipped


