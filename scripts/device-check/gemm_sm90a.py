"""The device check's sm_90a GEMM part (issue 18): the bundle's gemm_sm90a.json (prepared by
src/bench/gemm-sm90a-bundle.ts) holds, per weight shape, the sm_90a GEMM with a kernel for every
token tile (wgmma N = 8, 16, 32, 64, 128, 256). Each kernel runs the same `rows` tokens (bias on,
out and split-K partials poisoned with NaN) through tensor maps encoded by cuTensorMapEncodeTiled:
  - against the float64 reference of the 16-bit inputs within a rigorous float32 bound (2x on a
    GPU: tensor cores may truncate where the emulator rounds);
  - bitwise against the first kernel: the risk the emulator cannot rule out. On sm_90a the fp32
    sum of one output element inside a wgmma is the hardware's; batch invariance of the sm_90a
    path (greedy TiDAR == AR) needs it to be the same for every wgmma N. A mismatch here means
    the sm_90a GEMM must not serve steps of different row counts with different token tiles.
Run alone: python3 gemm_sm90a.py --bundle DIR [--dry-run] (--dry-run: TIDARC_LIBCUDA = the emulated
driver, modules prepared beside the .fatbin paths); prints one JSON line, exit 1 on a failure.
On a GPU it compiles each unit with nvcc for sm_90a first. Launch: grid (ceil(rows / tile),
ceil(N / blockW), splitK) x the kernel's threads (blockW 64 or 128 weight rows: one or two consumer warpgroups),
split-K summed inside it on gemm.py's split_counters."""
import argparse
import concurrent.futures
import ctypes
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gemm import split_counters  # noqa: E402
from kernels import Driver, to_bits  # noqa: E402
from tidarc_abi import GEMM, GEMM_NO_NORM  # noqa: E402

TENSOR_MAP_BYTES = 128
# cuda.h: CU_TENSOR_MAP_DATA_TYPE_FLOAT16 / _BFLOAT16, SWIZZLE_128B, L2_PROMOTION_L2_128B.
DATA_TYPE = {'fp16': 6, 'bf16': 9}
SWIZZLE_128B, L2_128B = 3, 2


def tensor_map(drv, dtype, address, inner, outer, box_outer):
    """The 128 bytes of a 2D map of 16-bit [outer, inner] in boxes of 64 x box_outer, 128B swizzle
    (src/runtime/cuda/tensor-map.ts sm90aGemmMaps: the same layout)."""
    fn = drv.lib.cuTensorMapEncodeTiled
    u64, u32 = ctypes.c_uint64, ctypes.c_uint32
    raw = ctypes.create_string_buffer(TENSOR_MAP_BYTES + 64)
    at = (-ctypes.addressof(raw)) % 64
    dims, strides = (u64 * 2)(inner, outer), (u64 * 1)(inner * 2)
    box, estr = (u32 * 2)(64, box_outer), (u32 * 2)(1, 1)
    fn.restype = ctypes.c_int
    r = fn(ctypes.c_void_p(ctypes.addressof(raw) + at), ctypes.c_int(DATA_TYPE[dtype]), u32(2), ctypes.c_void_p(address), dims, strides, box, estr,
           ctypes.c_int(0), ctypes.c_int(SWIZZLE_128B), ctypes.c_int(L2_128B), ctypes.c_int(0))
    drv.check(r, 'cuTensorMapEncodeTiled')
    return raw.raw[at:at + TENSOR_MAP_BYTES]


def sm90a_args(wmap, xmap, g):
    """TidarcGemmSm90aArgs (tidarc_gemm_sm90a_abi.h): w map, x map, then TidarcGemmArgs; 64-byte aligned size."""
    b = wmap + xmap + g
    return b + bytes((-len(b)) % 64)


def compile_units(bundle, spec, log):
    """Every unit for sm_90a, in parallel (a unit holds a kernel per token tile: seconds each)."""
    from tune import nvcc_path

    def build(u):
        out = bundle / u['fatbin']
        r = subprocess.run([nvcc_path(), *spec['nvccFlags'], '-o', str(out), str(bundle / u['source'])], capture_output=True, text=True, cwd=out.parent)
        if r.returncode != 0:
            raise RuntimeError(f'nvcc failed on {u["source"]}:\n{r.stderr[-2000:]}')
        return u['fatbin']
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4) as pool:
        for f in pool.map(build, [u for u in spec['units'] if not (bundle / u['fatbin']).exists()]):
            log(f'nvcc: {f}')


def launch_kernel(drv, module, u, kern, wmap, xmap, ptrs, rows):
    """One kernel over `rows` tokens (out and partials poisoned with NaN first; split-K summed inside it); the output [rows, N]."""
    px, pw, pb, pout, pws = ptrs
    n = u['n']
    drv.fill(pout, 0xff, rows * n * 4), drv.fill(pws, 0xff, u['splitK'] * rows * n * 4)  # NaN: anything unwritten shows
    g = GEMM.pack(x=px, w=pw, bias=pb, row_ids=0, out=pout, out2=0, out3=0, workspace=pws if u['splitK'] > 1 else 0, tile_stats=0, tile_argmax=0,
                  row_argmax=0, row_max=0, row_lse=0, rows=rows, accumulate=0, seg1=n, seg2=n, epilogue=0,
                  split_counters=split_counters(drv, -(-rows // kern['tileT']) * -(-n // kern['blockW'])) if u['splitK'] > 1 else 0, **GEMM_NO_NORM)
    grid = (-(-rows // kern['tileT']), -(-n // kern['blockW']), u['splitK'])  # blockW: 64 per consumer warpgroup
    drv.launch(drv.function(module, kern['symbol'], kern['sharedBytes']), grid, (kern['threads'], 1, 1), kern['sharedBytes'], sm90a_args(wmap, xmap, g))
    drv.synchronize()
    out = np.empty((rows, n), np.float32)
    drv.download(pout, out)
    return out


def check_unit(drv, bundle, u, rows, gpu, seed):
    rng = np.random.default_rng(seed)
    n, k, dtype = u['n'], u['k'], u['dtype']
    x = to_bits(rng.standard_normal((rows, k)).astype(np.float32), dtype)
    w = to_bits((0.5 * rng.standard_normal((n, k))).astype(np.float32), dtype)
    bias = rng.standard_normal(n).astype(np.float32)
    from kernels import from_bits
    x64, w64 = from_bits(x, dtype), from_bits(w, dtype)
    ref = x64 @ w64.T + bias
    bound = (2 if gpu else 1) * 1.01 * (k + u['splitK'] + 2) * 2.0 ** -24 * (np.abs(x64) @ np.abs(w64).T + np.abs(bias)) + 1e-30
    px, pw, pb = drv.alloc(x.nbytes), drv.alloc(w.nbytes), drv.alloc(bias.nbytes)
    pout, pws = drv.alloc(rows * n * 4), drv.alloc(max(1, u['splitK']) * rows * n * 4)
    drv.upload(px, x), drv.upload(pw, w), drv.upload(pb, bias)
    module = bundle / u['fatbin']
    wmaps = {}  # per kernel width: the W box is the kernel's weight rows (blockW)
    first, results = None, []
    try:
        for kern in u['kernels']:
            try:
                if kern['blockW'] not in wmaps:
                    wmaps[kern['blockW']] = tensor_map(drv, dtype, pw, k, n, kern['blockW'])
                out = launch_kernel(drv, module, u, kern, wmaps[kern['blockW']], tensor_map(drv, dtype, px, k, rows, kern['tileT']), (px, pw, pb, pout, pws), rows)
            except RuntimeError as e:  # a failed launch leaves the context unusable: the unit stops here
                results.append({'symbol': kern['symbol'], 'tileT': kern['tileT'], 'worst': None, 'bitwiseSameAsFirst': False, 'differingRows': [], 'error': str(e)})
                break
            ratio = np.abs(out - ref) / bound
            worst = float(np.nanmax(ratio)) if np.isfinite(out).all() else None  # None: a NaN or inf (JSON has no Infinity)
            same = first is None or np.array_equal(out.view(np.uint32), first.view(np.uint32))
            if first is None:
                first = out
            diff_rows = [] if same else np.nonzero((out.view(np.uint32) != first.view(np.uint32)).any(axis=1))[0].tolist()[:8]
            results.append({'symbol': kern['symbol'], 'tileT': kern['tileT'], 'worst': worst, 'bitwiseSameAsFirst': bool(same), 'differingRows': diff_rows})
    finally:
        for p in (px, pw, pb, pout, pws):
            try:
                drv.free(p)
            except RuntimeError:
                pass  # after a failed launch
    ok = len(results) == len(u['kernels']) and all(r['worst'] is not None and r['worst'] <= 1 and r['bitwiseSameAsFirst'] for r in results)
    return {'label': u['label'], 'unit': u['unit'], 'n': n, 'k': k, 'dtype': dtype, 'splitK': u['splitK'], 'rows': rows, 'ok': ok, 'kernels': results}


def run(drv, bundle, dry, log=lambda s: print(s, file=sys.stderr), compile=True):
    """compile=False: the prebuilt fatbins (prebuild.py, unpacked by prebuilt()) are there."""
    spec = json.loads((bundle / 'gemm_sm90a.json').read_text())
    if not dry and compile:
        compile_units(bundle, spec, log)
    out = []
    for i, u in enumerate(spec['units']):
        if out and len(out[-1]['kernels']) < len(spec['units'][i - 1]['kernels']):
            break  # a failed launch left the context unusable
        out.append(check_unit(drv, bundle, u, spec['rows'], not dry, 11 + i))
    for r in out:
        worst = [x['worst'] for x in r['kernels']]
        log(f"sm_90a {r['label']} {r['n']}x{r['k']} {r['dtype']} split-K {r['splitK']}: {'ok' if r['ok'] else 'FAILED'}; worst error/bound "
            f"{'non-finite' if None in worst else f'{max(worst):.3g}'}; token tiles bitwise equal: {all(x['bitwiseSameAsFirst'] for x in r['kernels'])}"
            + ''.join(f"; {x['symbol']}: {x['error']}" for x in r['kernels'] if 'error' in x))
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bundle', default='out/device-check')
    ap.add_argument('--dry-run', action='store_true')
    a = ap.parse_args(argv)
    lib = os.environ.get('TIDARC_LIBCUDA') if a.dry_run else 'libcuda.so.1'
    if not lib:
        sys.exit('gemm_sm90a: --dry-run needs TIDARC_LIBCUDA (the emulated driver)')
    drv = Driver(lib)
    results = run(drv, pathlib.Path(a.bundle), a.dry_run)
    print(json.dumps({'sm90a': results, 'dryRun': a.dry_run, 'device': drv.name}))
    return 0 if all(r['ok'] for r in results) else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
