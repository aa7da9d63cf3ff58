"""The GPU-side GEMM search (issue 14): for each weight shape of gemm.json's `tune` section, every
candidate (a split-K count of src/tune/gemm-space.ts x a tile per step row count M, the
heuristic's among them) is first checked, then timed:
  - checked: its rows against the float64 reference of the 16-bit-rounded inputs (gemm.py's
    bound), out and split-K partials poisoned with NaN, and bitwise equal to every other accepted
    candidate of the same split-K on the rows they share (the tile must not change the order of a
    sum: batch invariance); a candidate that fails either is rejected, with why, and never timed;
  - timed: the protocol of tune.py's timers (CUDA events on a GPU, the wall clock in the dry run),
    weights rotated past the L2 on a GPU.
On a 9.0 device (sm90a=True; the dry run's emulated driver is one) the shape's sm_90a GEMM (TMA +
wgmma, the bundle's tune[].sm90a: the planner's token tile per M at each split-K count) races the
mma.sync candidates: checked the same way (float64 bound, bitwise equal across M within its split-K;
never compared in bits with mma.sync, which rounds apart), timed after the mma.sync candidates of each
split-K. Then one kernel family and one split-K for the shape from the best times over every M, by
the planner's rule (chooseGemmKernel of gemm-space.ts: a pair that missed an M is not weighed against
complete ones; per split-K the family of least summed time, ties to mma.sync; then the split-K of least
summed relative regret, ties to fewer parts; never a family or a count per M), and per M the fastest
tile under it. The split-K workspace holds the largest split count the shape's candidates run
(workspace_floats), checked against the device's free memory first (with the float64 reference's temporaries). The winners go into
tune-cuda.json's `gemms` (src/tune/db.ts), which `tidarc compile --tuned` reads. No shape starts after the budget; the shapes not reached
are listed. A launch the driver refuses rejects its candidate; one whose error is sticky (the context is lost: kernels.context_lost)
stops the shape and the search, recorded, and the attention search after it is not started (parts.py part_tune)."""
import concurrent.futures
import json
import math
import os
import subprocess
import time

import numpy as np

from gemm import _bound, launch_gemm, split_counters
from kernels import context_lost, from_bits, to_bits
from report import js_fixed, run_cells
from tidarc_abi import GEMM, GEMM_NO_NORM
from tune import DB_FILE, cuda_meta, nvcc_path


def least_regret_split(times):
    """leastRegretSplit of src/codegen/gemm-tile-choice.ts (the planner's split rule): times[split] = a time per row
    count, in one order. The least sum over the rows of time / the least time of any split at that row wins; ties
    (within 1e-9) to fewer parts. A test holds the two together."""
    counts = sorted(times)
    best = [min(times[s][i] for s in counts) for i in range(len(times[counts[0]]))]
    regret = lambda s: sum(x / b for x, b in zip(times[s], best))  # noqa: E731
    chosen = counts[0]
    for s in counts[1:]:
        if regret(s) < regret(chosen) - 1e-9:
            chosen = s
    return chosen


def choose_kernel(us):
    """chooseGemmKernel of src/tune/gemm-space.ts: us[family][split][m] = best time. Of the (family, split) pairs that
    reached every M any pair reached (else all, over the M every pair reached): per split the family of the least
    total (ties to 'sm_90'), then the split of least summed relative regret (least_regret_split, ties to fewer parts),
    as a compile for sm_90a chooses on predicted times. (family, split) or None; a test holds the two together."""
    pairs = [(f, s, us[f][s]) for f in ('sm_90', 'sm_90a') if f in us for s in sorted(us[f])]
    every = sorted({m for _, _, at in pairs for m in at})
    complete = [p for p in pairs if all(m in p[2] for m in every)]
    pool = complete or pairs
    rows = [m for m in every if all(m in p[2] for p in pool)]
    if not pool or not rows:
        return None
    total = lambda p: sum(p[2][m] for m in rows)  # noqa: E731
    by_split = {}
    for p in pool:  # family order: a tie keeps mma.sync
        if p[1] not in by_split or total(p) < total(by_split[p[1]]):
            by_split[p[1]] = p
    split = least_regret_split({s: [p[2][m] for m in rows] for s, p in by_split.items()})
    return by_split[split][0], split


def sm90a_search(t, on):
    """The shape's sm_90a candidates when the race is on and the bundle has them (not lm_head's refusal), else None."""
    s = t.get('sm90a') if on else None
    return s if s and s.get('candidates') else None


def build_sm90a_sources(bundle, gem, log):
    """The sm_90a sources of the search (always sm_90a) whose fatbin is missing, in parallel: on the GPU machine, or prebuilt."""
    jobs = [(x, src) for t in gem.get('tune', []) if sm90a_search(t, True) for x in [t['sm90a']] for src in x['sources'] if not (bundle / src['fatbin']).exists()]

    def build(job):
        x, src = job
        out = bundle / src['fatbin']
        r = subprocess.run([nvcc_path(), *x['nvccFlags'], f"-I{bundle / 'gemm' / 'cuda'}", '-o', str(out), str(bundle / src['cu'])], capture_output=True, text=True, cwd=out.parent)
        if r.returncode != 0:
            raise RuntimeError(f"nvcc failed on {src['cu']}:\n{r.stderr[-2000:]}")
        return src['fatbin']
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 4) as pool:
        for f in pool.map(build, jobs):
            log(f'nvcc: {f} (sm_90a)')
    return len(jobs)


def workspace_parts(t):
    """The largest split-K count among the shape's candidates, both families (the sm_90a ones run at the same counts)."""
    cands = list(t['candidates']) + list((t.get('sm90a') or {}).get('candidates') or [])
    return max([c['splitK'] for c in cands] or [1])


def workspace_floats(t, rows_max, free_bytes=None, other_bytes=0, reference_bytes=0):
    """The split-K workspace of a shape's search, in float32s: [parts, rows, N] (tidarc_gemm_abi.h), parts the largest
    split-K count its candidates run. free_bytes: the device's free memory; other_bytes: what the search allocates
    beside the workspace (inputs and output); reference_bytes: the float64 reference's temporaries on the device, which
    it computes with those allocated. One that would not fit is refused here, naming the shape, not by a failed allocation later."""
    parts = workspace_parts(t)
    floats = parts * rows_max * t['n']
    if free_bytes is not None and 4 * floats + other_bytes + reference_bytes > free_bytes:
        ref = f" and {reference_bytes / 2**30:.2f} GiB of the float64 reference's temporaries" if reference_bytes else ''
        raise RuntimeError(f"{t.get('unit', 'GEMM')}: the split-K workspace of {parts} parts x {rows_max} rows x {t['n']} columns needs "
                           f"{4 * floats / 2**30:.2f} GiB of float32 beside {other_bytes / 2**30:.2f} GiB of inputs and output{ref}, "
                           f"and the device has {free_bytes / 2**30:.2f} GiB free")
    return floats


REFERENCE_CHUNK_BYTES = 256 << 20  # the float64 weight rows a chunk of TorchShape's reference converts at a time


def reference_chunk(n, k):
    """The weight rows (output columns) per chunk of the float64 reference: REFERENCE_CHUNK_BYTES of them in float64."""
    return max(1, min(n, REFERENCE_CHUNK_BYTES // (8 * k)))


def reference_bytes(rows, n, k):
    """The device memory TorchShape's float64 reference takes at its peak: x and |x| in float64 (kept over the chunks),
    a chunk's weights and their absolute values, and two [rows, chunk] products (x @ w^T, then its sum with the bias)."""
    c = reference_chunk(n, k)
    return 8 * (2 * rows * k + 2 * c * k + 2 * rows * c + c)


class NumpyShape:
    """Dry run: numpy inputs and reference, buffers on the emulated driver."""

    def __init__(self, drv, t, rows_max, seed):
        rng = np.random.default_rng(seed)
        n, k, dtype = t['n'], t['k'], t['dtype']
        self.drv, self.n = drv, n
        self.ws_floats = workspace_floats(t, rows_max, drv.mem_free() if hasattr(drv, 'mem_free') else None)
        x = to_bits(rng.standard_normal((rows_max, k)).astype(np.float32), dtype)  # the GEMMs read 16-bit activations
        w_bits = to_bits(0.5 * rng.standard_normal((n, k)), dtype)
        bias = rng.standard_normal(n).astype(np.float32)
        x16, w = from_bits(x, dtype), from_bits(w_bits, dtype)
        self.ref = x16 @ w.T + bias[None, :]
        self.mag = np.abs(x16) @ np.abs(w).T
        self.bias_host = bias
        self.ptr = {'x': drv.alloc(x.nbytes), 'w': drv.alloc(w_bits.nbytes), 'bias': drv.alloc(bias.nbytes),
                    'out': drv.alloc(rows_max * n * 4), 'ws': drv.alloc(4 * self.ws_floats)}
        for name, a in (('x', x), ('w', w_bits), ('bias', bias)):
            drv.upload(self.ptr[name], a)
        self.sets = 1

    def weights(self, i):
        return self.ptr['w']

    def poison(self, rows):
        self.drv.fill(self.ptr['out'], 0xFF, rows * self.n * 4)
        self.drv.fill(self.ptr['ws'], 0xFF, 4 * self.ws_floats)

    def output(self, rows):
        self.drv.synchronize()
        out = np.empty((rows, self.n), np.float32)
        self.drv.download(self.ptr['out'], out)
        return out

    def close(self):
        for p in self.ptr.values():
            self.drv.free(p)


def float64_reference(x, w, bias):
    """x @ w^T + bias and |x| @ |w|^T in float64 on the tensors' device, as numpy [rows, N], in chunks of reference_chunk
    output columns (reference_bytes at the peak): lm_head's weights whole in float64, with their absolute values, were ~9.3 GiB."""
    rows, (n, k) = x.shape[0], w.shape
    ref, mag = np.empty((rows, n)), np.empty((rows, n))
    x64 = x.double()
    x_abs = x64.abs()
    c = reference_chunk(n, k)
    for j in range(0, n, c):
        wd = w[j:j + c].double()
        ref[:, j:j + c] = (x64 @ wd.T + bias[j:j + c].double()[None, :]).cpu().numpy()
        mag[:, j:j + c] = (x_abs @ wd.abs().T).cpu().numpy()
        del wd
    return ref, mag


class TorchShape:
    """GPU: torch tensors, the reference by torch in float64 on the device; weights rotated past the L2."""

    def __init__(self, torch, t, rows_max, seed):
        gen = torch.Generator(device='cuda').manual_seed(seed)
        n, k = t['n'], t['k']
        dt = torch.bfloat16 if t['dtype'] == 'bf16' else torch.float16
        self.torch, self.n = torch, n
        self.sets = max(1, min(4, math.ceil(120e6 / (n * k * 2))))
        # Before anything is allocated: a clear error, not an out-of-memory failure halfway (x, weight sets, bias, out; the workspace;
        # the reference's temporaries, computed with all of those allocated: what the search needs at its peak).
        ws_floats = workspace_floats(t, rows_max, torch.cuda.mem_get_info()[0], rows_max * k * 2 + self.sets * n * k * 2 + n * 4 + rows_max * n * 4,
                                     reference_bytes(rows_max, n, k))
        self.x = torch.randn(rows_max, k, device='cuda', generator=gen).to(dt)  # the GEMMs read 16-bit activations
        self.w = [(0.5 * torch.randn(n, k, device='cuda', generator=gen)).to(dt) for _ in range(self.sets)]
        self.bias = torch.randn(n, device='cuda', generator=gen)
        self.out = torch.empty(rows_max, n, device='cuda')
        self.ws = torch.empty(ws_floats, device='cuda')
        self.ref, self.mag = float64_reference(self.x, self.w[0], self.bias)
        self.bias_host = self.bias.cpu().numpy()
        torch.cuda.empty_cache()  # the chunks' blocks back to the driver: the search's own allocations (split-K counters) come from it
        self.ptr = {'x': self.x.data_ptr(), 'bias': self.bias.data_ptr(), 'out': self.out.data_ptr(), 'ws': self.ws.data_ptr()}

    def weights(self, i):
        return self.w[i % self.sets].data_ptr()

    def poison(self, rows):
        self.out.fill_(math.nan)
        self.ws.fill_(math.nan)

    def output(self, rows):
        self.torch.cuda.synchronize()
        return self.out[:rows].cpu().numpy()

    def close(self):
        del self.x, self.w, self.bias, self.out, self.ws
        self.torch.cuda.empty_cache()


def _launch(drv, bundle, t, source, cand, sh, i, bias):
    unit = {'fatbin': source['fatbin'], 'n': t['n'], 'splitK': cand['splitK']}
    kernel = {'symbol': cand['symbol'], 'blockM': cand['blockM'], 'nTiles': cand['nTiles'], 'threads': cand['threads'], 'sharedBytes': cand['sharedBytes']}
    launch_gemm(drv, bundle, unit, kernel, [sh.ptr['x'], sh.weights(i), sh.ptr['bias'] if bias else 0, 0, sh.ptr['out'], sh.ptr['ws'] if cand['splitK'] > 1 else 0], cand['m'])


class Sm90aMaps:
    """The tensor maps an sm_90a launch reads (gemm_sm90a.tensor_map, as tensor-map.ts sm90aGemmMaps): W's per weight set,
    x's per (rows, token tile), encoded once so that a timed launch does no host work beyond the launch."""

    def __init__(self, drv, t, sh):
        self.drv, self.t, self.sh, self.w, self.x = drv, t, sh, {}, {}

    def of(self, i, rows, tile, block_w):
        from gemm_sm90a import tensor_map
        t, sh = self.t, self.sh
        wi = i % sh.sets
        if (wi, block_w) not in self.w:  # the W box is the kernel's weight rows (blockW)
            self.w[(wi, block_w)] = tensor_map(self.drv, t['dtype'], sh.weights(wi), t['k'], t['n'], block_w)
        if (rows, tile) not in self.x:
            self.x[(rows, tile)] = tensor_map(self.drv, t['dtype'], sh.ptr['x'], t['k'], rows, tile)
        return self.w[(wi, block_w)], self.x[(rows, tile)]


def _launch_sm90a(drv, bundle, t, source, cand, sh, maps, i, bias):
    """One sm_90a kernel over cand['m'] rows: grid (ceil(rows / tile), ceil(N / blockW), splitK) x cand['threads'], split-K summed inside it."""
    from gemm_sm90a import sm90a_args
    rows, n, split, tile, block_w = cand['m'], t['n'], cand['splitK'], cand['tileT'], cand['blockW']
    wmap, xmap = maps.of(i, rows, tile, block_w)
    grid = (-(-rows // tile), -(-n // block_w), split)
    g = GEMM.pack(x=sh.ptr['x'], w=sh.weights(i), bias=sh.ptr['bias'] if bias else 0, row_ids=0, out=sh.ptr['out'], out2=0, out3=0,
                  workspace=sh.ptr['ws'] if split > 1 else 0, tile_stats=0, tile_argmax=0, row_argmax=0, row_max=0, row_lse=0, rows=rows, accumulate=0,
                  seg1=n, seg2=n, epilogue=0, split_counters=split_counters(drv, grid[0] * grid[1]) if split > 1 else 0, **GEMM_NO_NORM)
    drv.launch(drv.function(bundle / source['fatbin'], cand['symbol'], cand['sharedBytes']), grid, (cand['threads'], 1, 1), cand['sharedBytes'], sm90a_args(wmap, xmap, g))


def tile_name(tile):
    """gemmTileName of src/codegen/gemm-plan.ts."""
    narrow = f"n{tile['blockN']}" if tile.get('blockN', 128) != 128 else ''
    four = f"t{32 * tile['warps']}" if tile.get('warps', 8) != 8 else ''
    return f"b{tile['blockM']}w{tile['warpsM']}s{tile['stages']}{narrow}{four}"


class ContextLost(RuntimeError):
    """A candidate's error was sticky (kernels.context_lost): the CUDA context is lost, so the shape and the search stop.
    Carries what the shape measured before (timed, rejected, skipped) and how many candidates it did not run."""

    def __init__(self, why, timed, rejected, skipped, not_run):
        super().__init__(why)
        self.timed, self.rejected, self.skipped, self.not_run = timed, rejected, skipped, not_run


def tune_shape(drv, bundle, t, make_shape, measure, started, budget_s, slack, sm90a=None):
    """Every candidate checked then timed: timed[(family, split, m, tile)] = (cand, timing); sm90a: the shape's race (sm90a_search).
    A candidate whose launch, check or timing fails is rejected; if its error left the context lost (sticky), ContextLost."""
    rows_max = max(c['m'] for c in [*t['candidates'], *(sm90a['candidates'] if sm90a else [])])
    sh = make_shape(t, rows_max)
    sources = {s['splitK']: s for s in t['sources']}
    sm90a_sources = {s['splitK']: s for s in sm90a['sources']} if sm90a else {}
    timed, rejected, skipped = {}, [], []
    lost, ran = None, 0
    try:
        bound_all = _bound({'k': t['k'], 'splitK': max(sources)}, sh.mag, sh.bias_host, slack)
        maps = Sm90aMaps(drv, t, sh) if sm90a else None
        # Per family, its launch and name: mma.sync's tiles (the heuristic's first), the sm_90a token tile of each M.
        families = [('sm_90', sources, [c for c in t['candidates']], lambda c: tile_name(c['tile']),
                     lambda src, c, i, bias: _launch(drv, bundle, t, src, c, sh, i, bias))]
        if sm90a:
            families.append(('sm_90a', sm90a_sources, sm90a['candidates'], lambda c: f"sm_90a t{c['tileT']}",
                             lambda src, c, i, bias: _launch_sm90a(drv, bundle, t, src, c, sh, maps, i, bias)))
        # The heuristic's split-K first, both families: a budget that ends mid-shape has timed the pair the compile plans (raced:
        # the compile a 9.0 device gets, with sm_90a; bundle.ts heuristicByArch).
        first = ((t.get('heuristicByArch') or {}).get('sm_90a') or {}).get('splitK', t['heuristicSplitK']) if sm90a else t['heuristicSplitK']
        order = [(split, family, srcs, label, launch, cand) for split in sorted(sources, key=lambda x: (x != first, x))
                 for family, srcs, cands, label, launch in families if split in srcs
                 for cand in sorted((c for c in cands if c['splitK'] == split), key=lambda c: (-c['m'], not c.get('heuristic', False)))]
        anchors = {}  # (family, split) -> (rows, out): the family's first accepted candidate of this split, the largest M first
        for split, family, srcs, label, launch, cand in order:
            name = f"s{split} M={cand['m']} {label(cand)}"
            if time.time() - started > budget_s:
                skipped.append(name)
                continue
            ran += 1
            rows = cand['m']
            try:
                sh.poison(rows)
                launch(srcs[split], cand, 0, True)
                out = sh.output(rows)
            except RuntimeError as e:  # a launch that fails is a wrong candidate
                rejected.append(f'{name}: {str(e).splitlines()[0][:200]}')
                lost = context_lost(drv)
                if lost:
                    break
                continue
            worst = float(np.max(np.abs(out - sh.ref[:rows]) / bound_all[:rows])) if np.isfinite(out).all() else None
            if worst is None or worst > 1.0:
                rejected.append(f"{name}: {'unwritten or non-finite output' if worst is None else f'{worst:.2f}x the float64 bound'}")
                continue
            anchor = anchors.get((family, split))
            if anchor is not None:
                shared = min(rows, anchor[0])
                if not np.array_equal(out[:shared].view(np.uint32), anchor[1][:shared].view(np.uint32)):
                    rejected.append(f'{name}: rows differ in bits from another {"token tile" if family == "sm_90a" else "tile"} of split-K {split} (the order of a sum changed)')
                    continue
            else:
                anchors[(family, split)] = (rows, out)
            try:
                timing = measure(lambda i, c=cand, src=srcs[split], go=launch: go(src, c, i, False), sh.sets)
            except RuntimeError as e:  # its output was right once; a fault in the timed calls (another weight set) rejects it too
                rejected.append(f'{name}: timing failed: {str(e).splitlines()[0][:200]}')
                lost = context_lost(drv)
                if lost:
                    break
                continue
            timed[(family, split, cand['m'], label(cand))] = (cand, timing)
    finally:
        try:
            sh.close()
        except RuntimeError:
            if not lost:
                raise  # freeing fails on a lost context: the error that lost it is what is reported
    if lost:
        not_run = len(order) - ran - len(skipped)
        raise ContextLost(f'the CUDA context was lost at {rejected[-1]}; the context now reports {lost}: {not_run} candidates of the shape '
                          'not run, and the search stops', timed, rejected, skipped, not_run)
    return timed, rejected, skipped


def gemm_entry(t, arch, timed, rejected, meta, date, raced=False):
    """The db.ts GemmTuneEntry of one shape, or None when no (family, split-K) reached every row count. raced: the search
    ran on a 9.0 device with the sm_90a race on: the entry records the family (kernel), and the sm_90a timings where the
    shape has an sm_90a kernel (none timed, every one rejected or past the budget: empty timings, mma.sync wins)."""
    best = {}  # family -> split -> m -> (us, cand, timing)
    heur = {}  # m -> (cand, timing) at the heuristic split
    for (family, split, m, _), (cand, timing) in timed.items():
        cur = best.setdefault(family, {}).setdefault(split, {}).get(m)
        if cur is None or timing['medianUs'] < cur[0]:
            best[family][split][m] = (timing['medianUs'], cand, timing)
        if family == 'sm_90' and cand['heuristic'] and split == t['heuristicSplitK']:
            heur[m] = (cand, timing)
    us = {f: {s: {m: v[0] for m, v in ms.items()} for s, ms in splits.items()} for f, splits in best.items()}
    pick = choose_kernel(us if raced else {'sm_90': us.get('sm_90', {})})
    if pick is None:
        return None
    kernel, split = pick
    mma = best.get('sm_90', {})
    rows = {}
    for m, (_, cand, timing) in sorted(mma.get(split, {}).items()):
        # The heuristic's pair not timed at this M (past the budget, rejected): the planned tile under the winner's split-K, and
        # the row says at which split-K (db.ts GemmRowTiming.heuristicSplitK), so it is never labelled the heuristic's; neither
        # timed: no heuristic in the row (tune --report says 'not timed'), never the best tile passed off as the heuristic.
        h = heur.get(m) or next(((c, tm) for (f, s, mm, _), (c, tm) in timed.items() if f == 'sm_90' and s == split and mm == m and c['heuristic']), None)
        rows[str(m)] = {'best': cand['tile'], 'bestTiming': _t(timing),
                        **({'heuristic': h[0]['tile'], 'heuristicTiming': _t(h[1])} if h else {}),
                        **({'heuristicSplitK': split} if h and m not in heur and split != t['heuristicSplitK'] else {})}
    # 'space': the search space that made the record (gemm-space.ts GEMM_SEARCH_SPACE); a compile ignores records of another.
    entry = {'unit': t['unit'], 'n': t['n'], 'k': t['k'], 'dtype': t['dtype'], 'arch': arch, **({'space': t['space']} if 'space' in t else {}),
             'splitK': split, 'heuristicSplitK': t['heuristicSplitK'],
             'splitTotalsUs': _totals(mma), 'splitRowsUs': _rows_us(mma), 'rows': rows, 'timed': len(timed), 'rejected': rejected, 'meta': meta, 'date': date}
    if raced:
        entry['kernel'] = kernel
        wg = best.get('sm_90a', {})
        own = split if kernel == 'sm_90a' else (choose_kernel({'sm_90a': us['sm_90a']}) or (None, None))[1] if wg else None
        if own is not None:
            entry['sm90a'] = {'splitTotalsUs': _totals(wg), 'splitRowsUs': _rows_us(wg), 'splitK': own,
                              'rows': {str(m): {'tileT': cand['tileT'], 'timing': _t(timing)} for m, (_, cand, timing) in sorted(wg[own].items())}}
        elif (t.get('sm90a') or {}).get('candidates'):
            entry['sm90a'] = {'splitTotalsUs': {}, 'splitK': split, 'rows': {}}
        h = heuristic_on_90(t, timed)
        if h:
            entry['heuristicSm90a'] = h
    return entry


def heuristic_on_90(t, timed):
    """What a 9.0 device runs for the shape with no record (the bundle's heuristicByArch.sm_90a: the compile the kernel cache
    builds there, sm_90 and sm_90a), as this search timed it: its family, split-K, and per M its kernel's time (the mma.sync
    tile that compile plans, or the sm_90a kernel's token tile). None where the bundle does not say; an M whose kernel was
    not timed (rejected, past the budget) is left out."""
    h = (t.get('heuristicByArch') or {}).get('sm_90a')
    if not h:
        return None
    kernel, split, rows = h['kernel'], h['splitK'], {}
    for (family, s, m, label), (cand, timing) in sorted(timed.items(), key=lambda kv: kv[0][2]):
        if family != kernel or s != split:
            continue
        if kernel == 'sm_90' and tile_name(cand['tile']) == tile_name((h.get('tiles') or {}).get(str(m), {'blockM': 0, 'warpsM': 0, 'stages': 0})):
            rows[str(m)] = {'tile': cand['tile'], 'timing': _t(timing)}
        elif kernel == 'sm_90a':
            rows[str(m)] = {'tileT': cand['tileT'], 'timing': _t(timing)}
    return {'kernel': kernel, 'splitK': split, 'arches': list(h['arches']), 'rows': rows}


def _run_words(kernel, split, r):
    """runWords of src/tune/report.ts: a run's split-K and kernel (the mma.sync tile, or the sm_90a kernel's token tile)."""
    return f"split-K {split} " + (f"sm_90a t{r['tileT']}" if kernel == 'sm_90a' else tile_name(r['tile']))


def run_rows(e):
    """gemmRunRows of src/tune/report.ts (a test holds the two together): per M, what a user runs without the record (the
    heuristic) and with it (tuned), each {'what', 'us'}, in the words tune --report prints. A raced entry with heuristicSm90a
    compares what a 9.0 device runs: the heuristic of a compile with sm_90a (its family and split-K, arches joined with '+')
    against the record's family and split-K (the sm_90a kernel's time where it won). Otherwise the sm_90 compile's mma.sync
    heuristic (at a row's own heuristicSplitK where the search fell back) against the tuned tile. Every M either side timed,
    in order; a side not timed at an M is left out of its row (printed 'not timed'), heuristicWhat naming it."""
    if e.get('kernel') == 'sm_90a':
        tuned = {m: {'what': _run_words('sm_90a', e['splitK'], r), 'us': r['timing']['medianUs']} for m, r in ((e.get('sm90a') or {}).get('rows') or {}).items()}
    else:
        tuned = {m: {'what': _run_words('sm_90', e['splitK'], {'tile': r['best']}), 'us': r['bestTiming']['medianUs']} for m, r in e['rows'].items()}
    h = e.get('heuristicSm90a')
    if h:
        arches = '+'.join(h['arches'])
        what = f"split-K {h['splitK']} {'sm_90a' if h['kernel'] == 'sm_90a' else 'mma.sync'} ({arches})"
        heuristic = {m: {'what': f"{_run_words(h['kernel'], h['splitK'], r)} ({arches})", 'us': r['timing']['medianUs']} for m, r in h['rows'].items()}
    else:
        what = f"split-K {e['heuristicSplitK']}"
        heuristic = {m: {'what': _run_words('sm_90', r.get('heuristicSplitK', e['heuristicSplitK']), {'tile': r['heuristic']}) + (' (sm_90)' if e.get('kernel') else ''),
                         'us': r['heuristicTiming']['medianUs']} for m, r in e['rows'].items() if 'heuristic' in r}
    return [{'m': m, 'heuristicWhat': what, **({'heuristic': heuristic[m]} if m in heuristic else {}), **({'tuned': tuned[m]} if m in tuned else {})}
            for m in sorted(set(tuned) | set(heuristic), key=int)]


def _rows_us(by_split):
    """Per split-K, per M, the best time: what chooseGemmKernel / choose_kernel weighed (relative regret needs each M's time)."""
    return {str(s): {str(m): v[0] for m, v in sorted(ms.items())} for s, ms in sorted(by_split.items())}


def _totals(by_split):
    """Per split-K, the best times summed over the row counts it reached (what the report prints; the choice weighs common rows)."""
    every = sorted({m for ms in by_split.values() for m in ms})
    return {str(s): sum(ms[m][0] for m in every if m in ms) for s, ms in sorted(by_split.items())}


def family_line(e, sm90a):
    """Both families of a raced shape, each at the split-K the rule picks for it (the winner's own; the other family's by
    the same rule over its own times: choose_kernel of mma.sync alone, as gemm_entry picks sm90a's splitK, so a split-K
    the budget cut short is never named against complete ones) with its time summed over M, and the winner (report.ts
    familyLines' words)."""
    def at(totals, split):
        if not totals or split is None:
            return 'not timed'
        us = totals.get(str(split))
        return f'{js_fixed(us)} us at split-K {split}' if us is not None else f'not timed at split-K {split}'
    wg = e.get('sm90a')
    rows_us = e.get('splitRowsUs') or {}
    mma_split = e['splitK'] if e['kernel'] != 'sm_90a' or not rows_us else (choose_kernel({'sm_90': {int(s): {int(m): v for m, v in ms.items()} for s, ms in rows_us.items()}}) or (None, None))[1]
    other = at(wg['splitTotalsUs'], wg['splitK']) if wg else ('not raced (the shape has no sm_90a kernel)' if not (sm90a and sm90a.get('candidates')) else 'not timed')
    return f"mma.sync {at(e['splitTotalsUs'], mma_split)}, sm_90a {other} (summed over M); winner: {'sm_90a' if e['kernel'] == 'sm_90a' else 'mma.sync'} at split-K {e['splitK']}"


def _t(timing):
    return {'medianUs': timing['medianUs'], 'p20Us': timing['p20Us'], 'p80Us': timing['p80Us']}


def write_gemm_db(path, entries):
    """Into tune-cuda.json's `gemms`, merged with what the file holds (its attention entries kept), keys sorted."""
    db = json.loads(path.read_text()) if path.exists() else {'format': 1, 'entries': {}}
    gemms = db.get('gemms', {})
    for e in entries:
        gemms[f"{e['unit']} | {e['arch']}"] = e
    db = {'format': 1, 'entries': db.get('entries', {}), 'gemms': dict(sorted(gemms.items()))}
    path.write_text(json.dumps(db, indent=1, allow_nan=False) + '\n')


def gemm_tune(drv, bundle, gem, out, make_shape, measure, machine, budget_s, log, slack=1.0, sm90a=False):
    """The search over gemm.json's tune section; writes tune-cuda.json's gemms; returns the device-check.json section.
    sm90a: the device runs sm_90a code (compute capability 9.0): the sm_90a GEMM races the mma.sync one."""
    meta = cuda_meta(gem['tidarc'], machine)
    date = time.strftime('%Y-%m-%d')
    started, shapes, not_reached, lost = time.time(), [], [], None
    for t in gem.get('tune', []):
        if lost or time.time() - started > budget_s:
            not_reached.append(t['unit'])
            continue
        t0 = time.time()
        race = sm90a_search(t, sm90a)
        try:
            timed, rejected, skipped = tune_shape(drv, bundle, t, make_shape, measure, started, budget_s, slack, race)
        except ContextLost as err:  # a sticky error: every later launch would fail with it; no entry from a search cut short by it
            lost = f"{t['role']} {t['n']}x{t['k']}: {err}"
            shapes.append({'unit': t['unit'], 'role': t['role'], 'candidates': len(t['candidates']), 'timed': len(err.timed), 'rejected': err.rejected,
                           'skipped': err.skipped, 'seconds': time.time() - t0, 'error': str(err)[:300], 'contextLost': True})
            log(f'gemm tune {lost}')
            continue
        except Exception as err:  # noqa: BLE001 -- one shape's failure (its workspace past the free memory) is a result; the others still run
            shapes.append({'unit': t['unit'], 'role': t['role'], 'candidates': len(t['candidates']), 'timed': 0, 'rejected': [], 'skipped': [],
                           'seconds': time.time() - t0, 'error': str(err).splitlines()[0][:300]})
            log(f"gemm tune {t['role']} {t['n']}x{t['k']}: FAILED: {shapes[-1]['error']}")
            continue
        # Raced: a 9.0 device and a bundle that asked (an lm_head shape's refusal too: its family is mma.sync).
        e = gemm_entry(t, gem['arch'], timed, rejected, meta, date, raced=sm90a and 'sm90a' in t)
        rec = {'unit': t['unit'], 'role': t['role'], 'candidates': len(t['candidates']), 'timed': len(timed), 'rejected': rejected, 'skipped': skipped,
               'seconds': time.time() - t0}
        if e:
            write_gemm_db(out / DB_FILE, [e])  # after every shape: a part killed at its time limit keeps the shapes done
            h = e.get('heuristicSm90a')
            # rows: run_rows's, as tune --report words them; a search that did not race names the arches its heuristic was planned for.
            rec.update({'splitK': e['splitK'], 'heuristicSplitK': h['splitK'] if h else e['heuristicSplitK'],
                        **({'heuristicArches': '+'.join(t.get('heuristicArches') or ['?'])} if 'kernel' not in e else {}),
                        **({'kernel': e['kernel']} if 'kernel' in e else {}), 'rows': run_rows(e)})
            us = lambda x: '' if x is None else f' {x:.1f} us'  # noqa: E731
            log(f"gemm tune {t['role']} {t['n']}x{t['k']}: split-K {e['splitK']}; "
                + ', '.join(f"M={r['m']} {c[2]}{us(c[3])} (heuristic {c[0]}{us(c[1])})" for r in rec['rows'] for c in [run_cells(r)])
                + f"; {len(timed)} timed, {len(rejected)} rejected")
            if 'kernel' in e:
                rec['race'] = family_line(e, t.get('sm90a'))
                log(f"gemm tune {t['role']} {t['n']}x{t['k']}: {rec['race']}")
        else:
            log(f"gemm tune {t['role']}: no split-K reached every row count ({len(timed)} timed, {len(rejected)} rejected, {len(skipped)} past the budget)")
        shapes.append(rec)
    return {'file': DB_FILE, 'meta': meta, 'budgetS': budget_s, 'seconds': time.time() - started, 'shapes': shapes, 'notReached': not_reached,
            **({'contextLost': lost} if lost else {})}
