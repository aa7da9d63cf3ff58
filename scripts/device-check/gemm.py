"""The device check's GEMM part (issue 14): the generated GEMMs of gemm.json (the Qwen3-8B linear
layers at M = 1, 20, 72, 272), launched through the driver API like the attention kernels.
  - correctness: every kernel on random inputs (bias on), out and split-K partials poisoned with
    NaN, against the float64 reference of the 16-bit-rounded inputs within a rigorous float32
    bound (2x on a GPU: tensor cores may truncate where the emulator rounds); and batch
    invariance: each row of every kernel bitwise equal to the same row from the unit's smallest-M
    kernel (the reduction order of tidarc_gemm_abi.h);
  - benchmark (GPU): tidarc's GEMM (16-bit activations, as the forward stores them) against
    torch's F.linear on the same bf16 weights (activations already bf16), weights rotated past the
    L2, CUDA events, warm-up, median with p20/p80; TB/s, TFLOP/s, the share of the measured copy
    bandwidth and bf16 matmul rate, and the cost model's prediction beside the measurement.
The kernel's launch: grid (ceil(rows / blockM), nTiles, splitK); split-K is summed inside it (GEMM
ABI 5) on int32 arrival counters, one per output tile, zeroed once (split_counters)."""
import math
import re

import numpy as np

from kernels import from_bits, to_bits
from tidarc_abi import GEMM, GEMM_NO_NORM, OP_SILU_MUL

ROW_STATS_THREADS = 256  # tidarc_gemm.cuh kGemmReduceThreads: the row-statistics merge's block
ELEMENT_THREADS = 256  # tidarc_ops.cu kElementThreads


_COUNTERS = {}  # id(driver) -> (pointer, count)


def split_counters(drv, count):
    """The split-K arrival counters (int32, one per output tile) of a driver: allocated and zeroed
    once, grown on demand; every launch leaves them 0, as the runtime relies on."""
    have = _COUNTERS.get(id(drv))
    if have and have[1] >= count:
        return have[0]
    if have:
        drv.free(have[0])
    p = drv.alloc(count * 4)
    drv.fill(p, 0, count * 4)
    _COUNTERS[id(drv)] = (p, count)
    return p


def gemm_args(x, w, bias, row_ids, out, workspace, rows, accumulate, n, out2=0, seg1=None, counters=0):
    """TidarcGemmArgs (tidarc_abi.GEMM, generated from op-abi.ts), no fused epilogue: one output (seg1 = seg2 = n), or
    columns [0, seg1) into out and [seg1, n) into out2."""
    seg1 = n if seg1 is None else seg1
    return GEMM.pack(x=x, w=w, bias=bias, row_ids=row_ids, out=out, out2=out2, out3=0, workspace=workspace, tile_stats=0, tile_argmax=0,
                     row_argmax=0, row_max=0, row_lse=0, rows=rows, accumulate=accumulate, seg1=seg1, seg2=n, epilogue=0, split_counters=counters,
                     **GEMM_NO_NORM)


def launch_gemm(drv, bundle, unit, kernel, ptrs, rows, accumulate=0, out2=0, seg1=None):
    """The kernel over `rows` rows (split-K summed inside it). ptrs: x, w, bias, row_ids, out, workspace."""
    module = bundle / unit['fatbin']
    grid = (-(-rows // kernel['blockM']), kernel['nTiles'], unit['splitK'])
    counters = split_counters(drv, grid[0] * grid[1]) if unit['splitK'] > 1 else 0
    args = gemm_args(*ptrs, rows, accumulate, unit['n'], out2, seg1, counters)
    drv.launch(drv.function(module, kernel['symbol'], kernel['sharedBytes']), grid, (kernel['threads'], 1, 1), kernel['sharedBytes'], args)


def launch_epilogue(drv, bundle, unit, kernel, ptrs, rows, epilogue):
    """A fused epilogue (tidarc_gemm_abi.h): 1 SwiGLU into out [rows, n / 2], 2 row statistics then
    the unit's merge. ptrs: x, w, out, workspace, tile_stats, tile_argmax, row_argmax, row_max, row_lse."""
    module = bundle / unit['fatbin']
    n = unit['n']
    x, w, out, ws, ts, ta, ra, rm, rl = ptrs
    grid = (-(-rows // kernel['blockM']), kernel['nTiles'], unit['splitK'])
    counters = split_counters(drv, grid[0] * grid[1]) if unit['splitK'] > 1 else 0
    args = GEMM.pack(x=x, w=w, bias=0, row_ids=0, out=out, out2=0, out3=0, workspace=ws, tile_stats=ts, tile_argmax=ta, row_argmax=ra,
                     row_max=rm, row_lse=rl, rows=rows, accumulate=0, seg1=n, seg2=n, epilogue=epilogue, split_counters=counters,
                     **GEMM_NO_NORM)
    drv.launch(drv.function(module, kernel['symbol'], kernel['sharedBytes']), grid, (kernel['threads'], 1, 1), kernel['sharedBytes'], args)
    if epilogue == 2:
        drv.launch(drv.function(module, unit['epilogue']['rowStats'], 0), (-(-rows // 8), 1, 1), (ROW_STATS_THREADS, 1, 1), 0, args)


def launch_silu_mul(drv, bundle, ops, gate, up, out, count, dtype):
    """tidarc_op_silu_mul of templates/cuda/tidarc_ops.cu (one element a thread, blocks of 256): the unfused MLP's activation, stored 16-bit."""
    drv.launch(drv.function(bundle / ops['fatbin'], 'tidarc_op_silu_mul', 0), (-(-count // ELEMENT_THREADS), 1, 1), (ELEMENT_THREADS, 1, 1), 0,
               OP_SILU_MUL.pack(gate=gate, up=up, out=out, count=count, out_dtype=0 if dtype == 'bf16' else 1))


def _row_rule(logits):
    """tidarc_op_row_stats on float32 logits [rows, n]: first maximum, NaN the maximum; lse in float64."""
    nan = np.isnan(logits)
    arg = np.where(nan.any(axis=1), nan.argmax(axis=1), np.argmax(np.where(nan, -np.inf, logits), axis=1))
    mx = logits[np.arange(len(logits)), arg]
    with np.errstate(invalid='ignore', over='ignore'):
        lse = mx.astype(np.float64) + np.log(np.exp(logits.astype(np.float64) - mx[:, None].astype(np.float64)).sum(axis=1))
    return arg, mx, np.where(np.isfinite(mx), lse, mx)


def gemm_epilogue_check(drv, bundle, gem, seed=11):
    """The fused epilogues of the units that have them, against the plain kernel's own output on
    the same device (itself checked against float64 above): SwiGLU within 8 float32 roundings of
    float64 silu(gate) * up of it, and bitwise the unfused MLP (plain GEMM into gate and up, then
    tidarc_op_silu_mul) when the bundle has the operators; row statistics: argmax and max exactly
    those of its logits, lse within 4e-6 relative, row 0 all NaN (non-finite lse). Each bitwise the
    same row across M."""
    results = []
    rng = np.random.default_rng(seed)
    for unit in gem['units']:
        epi = unit.get('epilogue') or {}
        if not epi:
            continue
        n, k, dtype = unit['n'], unit['k'], unit['dtype']
        swiglu = 'swigluInterleave' in epi
        rows_max = max(kn['m'] for kn in unit['kernels'])
        x = rng.standard_normal((rows_max, k), dtype=np.float32)
        if not swiglu:
            x[0, 17] = np.nan
        w_bits = to_bits(0.5 * rng.standard_normal((n, k), dtype=np.float32), dtype)
        b = epi.get('swigluInterleave', 1)
        w_fused = w_bits.reshape(2, n // (2 * b), b, k).transpose(1, 0, 2, 3).reshape(n, k).copy() if swiglu else w_bits
        x = to_bits(x, dtype)  # the GEMMs read 16-bit activations
        tiles = -(-n // 128)
        ptr = {'x': drv.alloc(x.nbytes), 'w': drv.alloc(w_bits.nbytes), 'wf': drv.alloc(w_bits.nbytes), 'out': drv.alloc(rows_max * n * 4),
               'fused': drv.alloc(rows_max * n * 4), 'ws': drv.alloc(max(1, unit['splitK']) * rows_max * n * 4), 'ts': drv.alloc(rows_max * tiles * 8),
               'ta': drv.alloc(rows_max * tiles * 4), 'ra': drv.alloc(rows_max * 4), 'rm': drv.alloc(rows_max * 4), 'rl': drv.alloc(rows_max * 4),
               'gate': drv.alloc(rows_max * n * 2), 'up': drv.alloc(rows_max * n * 2), 'unfused': drv.alloc(rows_max * n * 2)}
        drv.upload(ptr['x'], x)
        drv.upload(ptr['w'], w_bits)
        drv.upload(ptr['wf'], w_fused)
        first = None
        try:
            for kernel in sorted(unit['kernels'], key=lambda kn: kn['m']):
                rows = kernel['m']
                for p in ('out', 'fused', 'ra', 'rm', 'rl'):
                    drv.fill(ptr[p], 0xFF, rows_max * (n if p in ('out', 'fused') else 1) * 4)
                launch_gemm(drv, bundle, unit, kernel, [ptr['x'], ptr['w'], 0, 0, ptr['out'], ptr['ws'] if unit['splitK'] > 1 else 0], rows)
                launch_epilogue(drv, bundle, unit, kernel, [ptr['x'], ptr['wf'], ptr['fused'], ptr['ws'] if unit['splitK'] > 1 else 0, ptr['ts'], ptr['ta'], ptr['ra'], ptr['rm'], ptr['rl']], rows, 1 if swiglu else 2)
                drv.synchronize()
                plain = np.empty((rows, n), np.float32)
                drv.download(ptr['out'], plain)
                if swiglu:
                    got16 = np.empty((rows, n // 2), np.uint16)  # the SwiGLU epilogue stores the 16-bit dtype
                    drv.download(ptr['fused'], got16)
                    got = from_bits(got16, dtype)
                    # The unfused MLP on the same device: the plain GEMM into gate [rows, I] and up [rows, I], then
                    # tidarc_op_silu_mul; the fused epilogue must equal it bit for bit (the same silu expression).
                    unfused = None
                    if gem.get('ops'):
                        drv.fill(ptr['unfused'], 0xFF, rows * (n // 2) * 2)
                        launch_gemm(drv, bundle, unit, kernel, [ptr['x'], ptr['w'], 0, 0, ptr['gate'], ptr['ws'] if unit['splitK'] > 1 else 0], rows,
                                    out2=ptr['up'], seg1=n // 2)
                        launch_silu_mul(drv, bundle, gem['ops'], ptr['gate'], ptr['up'], ptr['unfused'], rows * (n // 2), dtype)
                        drv.synchronize()
                        unfused = np.empty((rows, n // 2), np.uint16)
                        drv.download(ptr['unfused'], unfused)
                        unfused = from_bits(unfused, dtype)
                    g, u = plain[:, :n // 2].astype(np.float64), plain[:, n // 2:].astype(np.float64)
                    ref = g / (1 + np.exp(-g)) * u
                    # 8 float32 roundings, then the 16-bit store: half an ulp (2^-8 of bf16, 2^-11 of fp16).
                    err = np.abs(got - ref) / ((8 * 2.0 ** -24 + (2.0 ** -8 if dtype == 'bf16' else 2.0 ** -11)) * np.abs(ref) + 1e-30)
                    worst = float(err.max()) if np.isfinite(got).all() else None
                    bitwise = None if unfused is None else bool(np.array_equal(got16, to_bits(unfused, dtype)))
                    ok = worst is not None and worst <= 1.0 and bitwise is not False
                    keep = got
                else:
                    arg, mx, lse = (np.empty(rows, np.int32), np.empty(rows, np.float32), np.empty(rows, np.float32))
                    for p, a in (('ra', arg), ('rm', mx), ('rl', lse)):
                        drv.download(ptr[p], a)
                    want_arg, want_max, want_lse = _row_rule(plain)
                    fin = np.isfinite(want_max)
                    same_max = np.array_equal(mx.view(np.uint32)[fin], want_max.view(np.uint32)[fin]) and bool(np.isnan(mx[~fin]).all() == np.isnan(want_max[~fin]).all())
                    rel = np.abs(lse[fin] - want_lse[fin]) / np.maximum(1.0, np.abs(want_lse[fin]))
                    worst = float(rel.max() / 4e-6) if fin.any() else 0.0
                    ok = bool(np.array_equal(arg, want_arg) and same_max and worst <= 1.0 and not np.isfinite(lse[~fin]).any() and not fin[0])
                    keep = np.stack([arg.view(np.float32), mx, lse], axis=1)
                same = first is None or np.array_equal(keep[:first[0]].view(np.uint32), first[1][:first[0]].view(np.uint32))
                results.append({'unit': unit['name'], 'role': unit['role'], 'epilogue': 'swiglu' if swiglu else 'rowStats', 'm': rows, 'splitK': unit['splitK'],
                                'worstRatio': worst, 'invariant': bool(same), **({'bitwiseUnfused': bitwise} if swiglu else {}), 'ok': bool(ok and same)})
                if first is None:
                    first = (rows, keep)
        finally:
            for p in ptr.values():
                drv.free(p)
    return results


def ptxas_registers(stderr):
    """kernel -> registers from nvcc -Xptxas -v output (one arch)."""
    regs, kernel = {}, None
    for line in stderr.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            kernel = m.group(1)
        m = re.search(r'Used (\d+) registers', line)
        if m and kernel:
            regs[kernel] = int(m.group(1))
            kernel = None
    return regs


def _bound(unit, x16_abs_w, bias, slack):
    """(K + splitK + 2) roundings of 2^-24 of the running magnitude (x `slack`)."""
    return slack * (unit['k'] + unit['splitK'] + 2) * 2.0 ** -24 * (x16_abs_w + np.abs(bias)[None, :]) + 1e-30


def _record(unit, kernel, rows, out, ref, bound, first_rows, first_out):
    # None (JSON null) when some output is not finite: an element never written stays NaN.
    worst = float(np.max(np.abs(out - ref) / bound)) if np.isfinite(out).all() else None
    same = first_out is None or np.array_equal(out[:first_rows].view(np.uint32), first_out[:first_rows].view(np.uint32))
    return {'unit': unit['name'], 'role': unit['role'], 'm': kernel['m'], 'rows': rows, 'splitK': unit['splitK'], 'worstRatio': worst,
            'invariant': bool(same), 'ok': bool(worst is not None and worst <= 1.0 and same)}


def gemm_correctness_numpy(drv, bundle, gem, seed=7):
    """The dry run (emulated driver): numpy inputs and reference."""
    results = []
    rng = np.random.default_rng(seed)
    for unit in gem['units']:
        n, k, dtype = unit['n'], unit['k'], unit['dtype']
        rows_max = max(kn['m'] for kn in unit['kernels'])
        x = to_bits(rng.standard_normal((rows_max, k)).astype(np.float32), dtype)  # the GEMMs read 16-bit activations
        w_bits = to_bits(0.5 * rng.standard_normal((n, k)), dtype)
        bias = rng.standard_normal(n).astype(np.float32)
        x16 = from_bits(x, dtype)
        w = from_bits(w_bits, dtype)
        ref_all = x16 @ w.T + bias[None, :]
        bound_all = _bound(unit, np.abs(x16) @ np.abs(w).T, bias, 1.0)
        ptr = {'x': drv.alloc(x.nbytes), 'w': drv.alloc(w_bits.nbytes), 'bias': drv.alloc(bias.nbytes)}
        drv.upload(ptr['x'], x)
        drv.upload(ptr['w'], w_bits)
        drv.upload(ptr['bias'], bias)
        first = None
        try:
            for kernel in sorted(unit['kernels'], key=lambda kn: kn['m']):
                rows = kernel['m']
                out_p = drv.alloc(rows * n * 4)
                ws_p = drv.alloc(unit['splitK'] * rows * n * 4) if unit['splitK'] > 1 else 0
                drv.fill(out_p, 0xFF, rows * n * 4)
                if ws_p:
                    drv.fill(ws_p, 0xFF, unit['splitK'] * rows * n * 4)
                try:
                    launch_gemm(drv, bundle, unit, kernel, [ptr['x'], ptr['w'], ptr['bias'], 0, out_p, ws_p], rows)
                    drv.synchronize()
                    out = np.empty((rows, n), np.float32)
                    drv.download(out_p, out)
                finally:
                    drv.free(out_p)
                    if ws_p:
                        drv.free(ws_p)
                results.append(_record(unit, kernel, rows, out, ref_all[:rows], bound_all[:rows], first[0] if first else 0, first[1] if first else None))
                if first is None:
                    first = (rows, out)
        finally:
            for p in ptr.values():
                drv.free(p)
    return results


def gemm_correctness_torch(torch, drv, bundle, gem, seed=7):
    """On a GPU: torch tensors, the float64 reference by torch on the device."""
    results = []
    gen = torch.Generator(device='cuda').manual_seed(seed)
    for unit in gem['units']:
        n, k = unit['n'], unit['k']
        dt = torch.bfloat16 if unit['dtype'] == 'bf16' else torch.float16
        rows_max = max(kn['m'] for kn in unit['kernels'])
        x = torch.randn(rows_max, k, device='cuda', generator=gen).to(dt)  # the GEMMs read 16-bit activations
        w = (0.5 * torch.randn(n, k, device='cuda', generator=gen)).to(dt)
        bias = torch.randn(n, device='cuda', generator=gen)
        x16 = x.double()
        wd = w.double()
        ref_all = (x16 @ wd.T + bias.double()[None, :]).cpu().numpy()
        mag = (x16.abs() @ wd.abs().T).cpu().numpy()
        bound_all = _bound(unit, mag, bias.double().cpu().numpy(), 2.0)
        del wd
        first = None
        for kernel in sorted(unit['kernels'], key=lambda kn: kn['m']):
            rows = kernel['m']
            out = torch.full((rows, n), math.nan, device='cuda')
            ws = torch.full((unit['splitK'], rows, n), math.nan, device='cuda') if unit['splitK'] > 1 else None
            launch_gemm(drv, bundle, unit, kernel, [x.data_ptr(), w.data_ptr(), bias.data_ptr(), 0, out.data_ptr(), ws.data_ptr() if ws is not None else 0], rows)
            torch.cuda.synchronize()
            host = out.cpu().numpy()
            results.append(_record(unit, kernel, rows, host, ref_all[:rows], bound_all[:rows], first[0] if first else 0, first[1] if first else None))
            if first is None:
                first = (rows, host)
            del out, ws
        del x, w, bias, x16
        torch.cuda.empty_cache()
    return results


def gemm_bench(torch, drv, bundle, gem, ceil, time_events, budget_s, log, registers=None):
    """tidarc's GEMM vs F.linear on the same weights; points past the time budget are skipped and listed."""
    import time
    F = torch.nn.functional
    started, points, skipped = time.time(), [], []
    for unit in gem['units']:
        n, k = unit['n'], unit['k']
        dt = torch.bfloat16 if unit['dtype'] == 'bf16' else torch.float16
        wbytes = n * k * 2
        sets = max(1, min(4, math.ceil(120e6 / wbytes)))  # rotate the weights past the L2
        ws_sets = [(0.5 * torch.randn(n, k, device='cuda')).to(dt) for _ in range(sets)]
        for kernel in unit['kernels']:
            m = kernel['m']
            if time.time() - started > budget_s:
                skipped.append(f"{unit['role']} M={m}")
                continue
            xb = torch.randn(m, k, device='cuda').to(dt)  # both read the same 16-bit activations
            out = torch.empty(m, n, device='cuda')
            part = torch.empty(unit['splitK'], m, n, device='cuda') if unit['splitK'] > 1 else None

            def ours(i):
                launch_gemm(drv, bundle, unit, kernel, [xb.data_ptr(), ws_sets[i % sets].data_ptr(), 0, 0, out.data_ptr(), part.data_ptr() if part is not None else 0], m)
            row = {'unit': unit['name'], 'role': unit['role'], 'n': n, 'k': k, 'm': m, 'splitK': unit['splitK'], 'blockM': kernel['blockM'],
                   'registers': (registers or {}).get(kernel['symbol']), 'predictedRegisters': kernel.get('predictedRegisters'),  # ptxas's beside the table the prediction read
                   'predictedUs': kernel['predictedUs'], 'predictedBound': kernel['predictedBound'],
                   **({'predictedFor': kernel['predictedFor']} if 'predictedFor' in kernel else {})}  # the machine's (machines.py)
            row['tidarc'] = time_events(torch, ours, 100)
            row['torch'] = time_events(torch, lambda i: F.linear(xb, ws_sets[i % sets]), 100)
            us = row['tidarc']['medianUs']
            moved = wbytes + m * k * 2 + m * n * 4
            row['tidarcTBs'] = moved / (us * 1e-6) / 1e12
            row['tidarcTflops'] = 2 * m * n * k / (us * 1e-6) / 1e12
            row['copyShare'] = row['tidarcTBs'] / ceil['copyTBs']
            row['matmulShare'] = row['tidarcTflops'] / ceil['matmulTflops']
            row['vsTorch'] = row['torch']['medianUs'] / us
            row['measuredOverPredicted'] = us / kernel['predictedUs']
            points.append(row)
            log(f"gemm {unit['role']} {n}x{k} M={m}: tidarc {us:.1f} us (predicted {kernel['predictedUs']:.1f}{' for ' + kernel['predictedFor'] if 'predictedFor' in kernel else ''}), torch {row['torch']['medianUs']:.1f} us")
            del xb, out, part
        del ws_sets
        torch.cuda.empty_cache()
    return points, skipped
