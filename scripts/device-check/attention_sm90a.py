"""The device check's sm_90a attention part (issue 18): the bundle's attention_sm90a.json (prepared by
src/bench/attention-sm90a-bundle.ts) holds, per case (Qwen3-8B's TiDAR k = 16 step and prefill chunk),
the generated sm_90a kernel (TMA + wgmma, tidarc_attention_sm90a.cuh) and the variant's own mma.sync
kernel. On the same tensors in one process:
  - correctness: both kernels at the check point (small L, batch 2, NaN in the unused cache tail,
    outputs poisoned) at each split count of the bundle's list up to 3, against the float64 reference
    (kernels.py reference) within the emulator tests' tolerances;
  - speed (a GPU with torch only): at each point (L = 4k, 16k; batch 1, 8) each kernel at its best
    split count of the bundle's list, and FlexAttention (torch.compile, BlockMask of the same mask,
    GQA) on the same tensors; TFLOP/s from the useful FLOPs; sm_90a vs Flex and vs mma.sync.
The sm_90a kernel takes TidarcAttentionSm90aArgs: the KV cache's two tensor maps (3D {D, capacity,
batch * kvHeads}, boxes {64, tileN, 1}, 128B swizzle: attention-sm90a-args.ts's layout), then
TidarcAttentionArgs as the mma.sync kernel takes it.
Run alone: python3 attention_sm90a.py --bundle DIR [--dry-run] (--dry-run: TIDARC_LIBCUDA = the emulated
driver, modules prepared beside the .fatbin paths; correctness only); prints one JSON line, exit 1 on
a failure. On a GPU it compiles each unit with nvcc first (sm_90a, sm_90)."""
import argparse
import concurrent.futures
import ctypes
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from kernels import FIXED_TOLERANCE, LSE_TOLERANCE, Driver, attention_args, compare, reference, split_counter_count, to_bits, from_bits  # noqa: E402
from tidarc_abi import attention_grid  # noqa: E402

TENSOR_MAP_BYTES = 128
# cuda.h: CU_TENSOR_MAP_DATA_TYPE_FLOAT16 / _BFLOAT16, SWIZZLE_128B, L2_PROMOTION_L2_128B.
DATA_TYPE = {'fp16': 6, 'bf16': 9}
SWIZZLE_128B, L2_128B = 3, 2


def cache_map(drv, dtype, address, head_dim, capacity, planes, tile_n):
    """The 128 bytes of the KV cache's 3D map (src/runtime/cuda/attention-sm90a-args.ts sm90aCacheMap: the same layout)."""
    fn = drv.lib.cuTensorMapEncodeTiled
    u64, u32 = ctypes.c_uint64, ctypes.c_uint32
    raw = ctypes.create_string_buffer(TENSOR_MAP_BYTES + 64)
    at = (-ctypes.addressof(raw)) % 64
    dims, strides = (u64 * 3)(head_dim, capacity, planes), (u64 * 2)(head_dim * 2, capacity * head_dim * 2)
    box, estr = (u32 * 3)(64, tile_n, 1), (u32 * 3)(1, 1, 1)
    fn.restype = ctypes.c_int
    r = fn(ctypes.c_void_p(ctypes.addressof(raw) + at), ctypes.c_int(DATA_TYPE[dtype]), u32(3), ctypes.c_void_p(address), dims, strides, box, estr,
           ctypes.c_int(0), ctypes.c_int(SWIZZLE_128B), ctypes.c_int(L2_128B), ctypes.c_int(0))
    drv.check(r, 'cuTensorMapEncodeTiled')
    return raw.raw[at:at + TENSOR_MAP_BYTES]


def compile_units(bundle, spec, log):
    """Every unit: the sm_90a ones for sm_90a, the mma.sync ones for sm_90, in parallel."""
    from tune import nvcc_path
    jobs = [(c['sm90a'], spec['nvccFlags']['sm90a']) for c in spec['cases']] + [(c['sm90'], spec['nvccFlags']['sm90']) for c in spec['cases']]

    def build(job):
        k, flags = job
        out = bundle / k['fatbin']
        r = subprocess.run([nvcc_path(), *flags, '-o', str(out), str(bundle / k['source'])], capture_output=True, text=True, cwd=out.parent)
        if r.returncode != 0:
            raise RuntimeError(f'nvcc failed on {k["source"]}:\n{r.stderr[-2000:]}')
        return k['fatbin']
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4) as pool:
        for f in pool.map(build, [j for j in jobs if not (bundle / j[0]['fatbin']).exists()]):
            log(f'nvcc: {f}')


def launcher(drv, bundle, model, case, kind, ptrs, batch, capacity, splits):
    """call() launching `kind` ('sm90a' | 'sm90') on ptrs = q, kc, vc, ks, vs, prefix, o, lse, workspace (device addresses)."""
    k = case[kind]
    rows = batch * case['steps'] * model['qHeads']
    fn = drv.function(bundle / k['fatbin'], k['symbol'], k['sharedBytes'])
    args = attention_args(*ptrs, drv.split_counters(split_counter_count(rows, splits)) if splits > 1 else 0, batch, capacity, splits)
    if kind == 'sm90a':
        planes = batch * model['kvHeads']
        maps = [cache_map(drv, model['dtype'], p, model['headDim'], capacity, planes, k['tileN']) for p in (ptrs[1], ptrs[2])]
        args = maps[0] + maps[1] + args
        args += bytes((-len(args)) % 64)
    grid, block = attention_grid(k['rowTiles'], batch, model['kvHeads'], splits), (k['block'], 1, 1)
    return lambda: drv.launch(fn, grid, block, k['sharedBytes'], args)


def check_case(drv, bundle, model, case, point, splits_list, seed):
    """Both kernels against the float64 reference at the check point, at each split count (<= 3) of the list."""
    rng = np.random.default_rng(seed)
    B, L = point['batch'], point['prefix']
    n, Hq, Hkv, D, dtype = case['steps'], model['qHeads'], model['kvHeads'], model['headDim'], model['dtype']
    cap = L + 5
    bits = {'q': to_bits(rng.standard_normal((B, n, Hq, D)), dtype), 'kc': to_bits(rng.standard_normal((B, Hkv, cap, D)), dtype),
            'vc': to_bits(rng.standard_normal((B, Hkv, cap, D)), dtype), 'ks': to_bits(rng.standard_normal((B, n, Hkv, D)), dtype),
            'vs': to_bits(rng.standard_normal((B, n, Hkv, D)), dtype)}
    prefix = np.array([L] + [max(0, L - 113 * b) for b in range(1, B)], np.int32)  # odd, different per sequence
    nan = 0x7fc0 if dtype == 'bf16' else 0x7e00
    for b in range(B):  # the unused cache tail holds NaN: it must never reach P V
        bits['kc'][b, :, prefix[b]:] = nan
        bits['vc'][b, :, prefix[b]:] = nan
    v = {'visible': case['visible'], 'prefixVisible': case['prefixVisible']}
    ref_o, ref_lse = reference(model, v, *(from_bits(bits[x], dtype) for x in ('q', 'kc', 'vc', 'ks', 'vs')), prefix)
    splits_list = [s for s in splits_list if s <= 3] or [1]
    rows = B * n * Hq
    ptr = {x: drv.alloc(a.nbytes) for x, a in bits.items()}
    for x, a in bits.items():
        drv.upload(ptr[x], a)
    pp, po, pl = drv.alloc(prefix.nbytes), drv.alloc(rows * D * 2), drv.alloc(rows * 4)
    pw = drv.alloc(max(splits_list) * rows * (D + 1) * 4)
    drv.upload(pp, prefix)
    out = []
    try:
        for kind in ('sm90a', 'sm90'):
            for s in splits_list:
                drv.fill(po, 0xff, rows * D * 2), drv.fill(pl, 0xff, rows * 4)
                launcher(drv, bundle, model, case, kind, [ptr['q'], ptr['kc'], ptr['vc'], ptr['ks'], ptr['vs'], pp, po, pl, pw], B, cap, s)()
                drv.synchronize()
                o, lse = np.empty(rows * D, np.uint16), np.empty(rows, np.float32)
                drv.download(po, o), drv.download(pl, lse)
                err, lse_err = compare(o, lse, ref_o, ref_lse, dtype)
                ok = err <= FIXED_TOLERANCE[dtype] and lse_err <= LSE_TOLERANCE
                out.append({'case': case['name'], 'kernel': kind, 'symbol': case[kind]['symbol'], 'prefix': prefix.tolist(), 'splits': s,
                            'maxError': err if math.isfinite(err) else None, 'lseMaxError': lse_err, 'ok': bool(ok)})
    finally:
        for p in [*ptr.values(), pp, po, pl, pw]:
            drv.free(p)
    return out


def race(torch, drv, bundle, model, case, point, splits_list, log):
    """sm_90a vs mma.sync (each at its best split count) vs FlexAttention, one point, bf16 tensors from torch."""
    from gpu import time_events
    from flex import block_mask, compiled_flex
    B, L = point['batch'], point['prefix']
    n, Hq, Hkv, D = case['steps'], model['qHeads'], model['kvHeads'], model['headDim']
    dt = torch.bfloat16 if model['dtype'] == 'bf16' else torch.float16
    t = lambda *s: torch.randn(*s, device='cuda', dtype=dt)  # noqa: E731
    x = dict(q=t(B, n, Hq, D), kc=t(B, Hkv, L, D), vc=t(B, Hkv, L, D), ks=t(B, n, Hkv, D), vs=t(B, n, Hkv, D))
    prefix = torch.full((B,), L, dtype=torch.int32, device='cuda')
    o, lse = torch.empty(B, n, Hq, D, device='cuda', dtype=dt), torch.empty(B, n, Hq, device='cuda', dtype=torch.float32)
    ws = torch.empty(max(splits_list) * B * n * Hq * (D + 1), device='cuda', dtype=torch.float32)
    ptrs = [x['q'].data_ptr(), x['kc'].data_ptr(), x['vc'].data_ptr(), x['ks'].data_ptr(), x['vs'].data_ptr(), prefix.data_ptr(), o.data_ptr(), lse.data_ptr(), ws.data_ptr()]
    visible = sum(r.count('1') for r in case['visible'])
    flops = 4 * B * Hq * D * (n * (L if case['prefixVisible'] else 0) + visible)
    row = {'case': case['name'], 'prefix': L, 'batch': B, 'usefulGflop': flops / 1e9}
    outs = {}
    for kind in ('sm90a', 'sm90'):
        best = None
        for s in splits_list:
            call = launcher(drv, bundle, model, case, kind, ptrs, B, L, s)
            timing = time_events(torch, lambda i: call(), 50)
            if best is None or timing['medianUs'] < best['medianUs']:
                best = {**timing, 'splits': s}
        call = launcher(drv, bundle, model, case, kind, ptrs, B, L, best['splits'])
        call()
        torch.cuda.synchronize()
        outs[kind] = o.float().clone()
        row[kind] = {**best, 'tflops': flops / (best['medianUs'] * 1e-6) / 1e12}
    row['sm90aVsSm90MaxDiff'] = float((outs['sm90a'] - outs['sm90']).abs().max())
    try:
        q = x['q'].transpose(1, 2).contiguous()
        k = torch.cat([x['kc'], x['ks'].transpose(1, 2)], 2).contiguous()
        v = torch.cat([x['vc'], x['vs'].transpose(1, 2)], 2).contiguous()
        bm = block_mask(torch, case['visible'], case['prefixVisible'], L, 'cuda')
        flex = compiled_flex(torch)
        row['flex'] = time_events(torch, lambda i: flex(q, k, v, block_mask=bm, enable_gqa=True), 50)
        row['flex']['tflops'] = flops / (row['flex']['medianUs'] * 1e-6) / 1e12
        row['sm90aVsFlex'] = row['flex']['medianUs'] / row['sm90a']['medianUs']
    except Exception as e:  # a Flex failure is a result, not a crash
        row['flexError'] = str(e).splitlines()[0][:200]
    row['sm90aVsSm90'] = row['sm90']['medianUs'] / row['sm90a']['medianUs']
    log(f"sm_90a attention {case['name']} L={L} B={B}: sm_90a {row['sm90a']['medianUs']:.1f} us ({row['sm90a']['tflops']:.0f} TFLOP/s, {row['sm90a']['splits']} splits), "
        f"mma.sync {row['sm90']['medianUs']:.1f} us, flex {row.get('flex', {}).get('medianUs', float('nan')):.1f} us")
    del x, k, v
    torch.cuda.empty_cache()
    return row


def run(drv, bundle, dry, log=lambda s: print(s, file=sys.stderr), torch=None, until=None, save=None, compile=True):
    """Correctness, then (a GPU with torch) the race; a point that would start past `until` (epoch seconds, less 15 s for a Flex compile) is
    skipped and listed. save(result so far), when given, after the correctness and after every point: a part killed at its deadline still reports."""
    spec = json.loads((bundle / 'attention_sm90a.json').read_text())
    if not dry and compile:
        compile_units(bundle, spec, log)
    model = spec['model']
    correctness = []
    for i, case in enumerate(spec['cases']):
        rows = check_case(drv, bundle, model, case, spec['check'], spec['splits'], 41 + i)
        correctness += rows
        for r in rows:
            log(f"sm_90a attention check {r['case']} {r['kernel']} splits {r['splits']}: {'ok' if r['ok'] else 'WRONG'} (max error {r['maxError']}, lse {r['lseMaxError']:.2e})")
    bench, skipped = [], []
    partial = lambda: {'correctness': correctness, 'bench': bench, 'skipped': skipped, 'ok': bool(correctness) and all(r['ok'] for r in correctness)}  # noqa: E731
    if save:
        save(partial())
    if not dry and torch is not None and all(r['ok'] for r in correctness):
        for point in spec['points']:  # the bundle's order: L = 4k, batch 1 first (the goal)
            for case in spec['cases']:
                if until is not None and time.time() > until - 15:
                    skipped.append(f"{case['name']} L={point['prefix']} B={point['batch']}")
                    continue
                bench.append(race(torch, drv, bundle, model, case, point, spec['splits'], log))
                if save:
                    save(partial())
    return partial()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bundle', default='out/device-check')
    ap.add_argument('--dry-run', action='store_true')
    a = ap.parse_args(argv)
    lib = os.environ.get('TIDARC_LIBCUDA') if a.dry_run else 'libcuda.so.1'
    if not lib:
        sys.exit('attention_sm90a: --dry-run needs TIDARC_LIBCUDA (the emulated driver)')
    drv = Driver(lib)
    torch = None
    if not a.dry_run:
        import torch
    result = run(drv, pathlib.Path(a.bundle), a.dry_run, torch=torch)
    print(json.dumps({'sm90aAttention': result, 'dryRun': a.dry_run, 'device': drv.name}))
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
