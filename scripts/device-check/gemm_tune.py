"""The GPU-side GEMM search (issue 14): for each weight shape of gemm.json's `tune` section, every
candidate (a split-K count of src/tune/gemm-space.ts x a tile per step row count M, the
heuristic's among them) is first checked, then timed:
  - checked: its rows against the float64 reference of the 16-bit-rounded inputs (gemm.py's
    bound), out and split-K partials poisoned with NaN, and bitwise equal to every other accepted
    candidate of the same split-K on the rows they share (the tile must not change the order of a
    sum: batch invariance); a candidate that fails either is rejected, with why, and never timed;
  - timed: the protocol of tune.py's timers (CUDA events on a GPU, the wall clock in the dry run),
    weights rotated past the L2 on a GPU.
Then one split-K for the shape, from the best tile's times summed over every M all split counts
reached (chooseGemmSplitK of gemm-space.ts: never a count per M), ties to fewer parts; per M the
fastest tile under it. The winners go into tune-cuda.json's `gemms` (src/tune/db.ts), which
`tidarc compile --tuned` reads. No shape starts after the budget; the shapes not reached are listed."""
import json
import math
import time

import numpy as np

from gemm import _bound, launch_gemm
from kernels import from_bits, to_bits
from tune import DB_FILE, cuda_meta


def choose_split(us):
    """chooseGemmSplitK of src/tune/gemm-space.ts: us[split][m] = best time; the least total over the
    row counts every split measured, ties to fewer parts (a test holds the two together)."""
    counts = sorted(us)
    rows = [m for m in sorted({m for s in counts for m in us[s]}) if all(m in us[s] for s in counts)]
    if not counts or not rows:
        return None
    total = lambda s: sum(us[s][m] for m in rows)  # noqa: E731
    best = counts[0]
    for s in counts[1:]:
        if total(s) < total(best):
            best = s
    return best


class NumpyShape:
    """Dry run: numpy inputs and reference, buffers on the emulated driver."""

    def __init__(self, drv, t, rows_max, seed):
        rng = np.random.default_rng(seed)
        n, k, dtype = t['n'], t['k'], t['dtype']
        self.drv, self.n = drv, n
        x = to_bits(rng.standard_normal((rows_max, k)).astype(np.float32), dtype)  # the GEMMs read 16-bit activations
        w_bits = to_bits(0.5 * rng.standard_normal((n, k)), dtype)
        bias = rng.standard_normal(n).astype(np.float32)
        x16, w = from_bits(x, dtype), from_bits(w_bits, dtype)
        self.ref = x16 @ w.T + bias[None, :]
        self.mag = np.abs(x16) @ np.abs(w).T
        self.bias_host = bias
        self.ptr = {'x': drv.alloc(x.nbytes), 'w': drv.alloc(w_bits.nbytes), 'bias': drv.alloc(bias.nbytes),
                    'out': drv.alloc(rows_max * n * 4), 'ws': drv.alloc(4 * rows_max * n * 4)}
        for name, a in (('x', x), ('w', w_bits), ('bias', bias)):
            drv.upload(self.ptr[name], a)
        self.sets = 1

    def weights(self, i):
        return self.ptr['w']

    def poison(self, rows):
        self.drv.fill(self.ptr['out'], 0xFF, rows * self.n * 4)
        self.drv.fill(self.ptr['ws'], 0xFF, 4 * rows * self.n * 4)

    def output(self, rows):
        self.drv.synchronize()
        out = np.empty((rows, self.n), np.float32)
        self.drv.download(self.ptr['out'], out)
        return out

    def close(self):
        for p in self.ptr.values():
            self.drv.free(p)


class TorchShape:
    """GPU: torch tensors, the reference by torch in float64 on the device; weights rotated past the L2."""

    def __init__(self, torch, t, rows_max, seed):
        gen = torch.Generator(device='cuda').manual_seed(seed)
        n, k = t['n'], t['k']
        dt = torch.bfloat16 if t['dtype'] == 'bf16' else torch.float16
        self.torch, self.n = torch, n
        self.x = torch.randn(rows_max, k, device='cuda', generator=gen).to(dt)  # the GEMMs read 16-bit activations
        self.sets = max(1, min(4, math.ceil(120e6 / (n * k * 2))))
        self.w = [(0.5 * torch.randn(n, k, device='cuda', generator=gen)).to(dt) for _ in range(self.sets)]
        self.bias = torch.randn(n, device='cuda', generator=gen)
        x16, wd = self.x.double(), self.w[0].double()
        self.ref = (x16 @ wd.T + self.bias.double()[None, :]).cpu().numpy()
        self.mag = (x16.abs() @ wd.abs().T).cpu().numpy()
        self.bias_host = self.bias.cpu().numpy()
        del x16, wd
        self.out = torch.empty(rows_max, n, device='cuda')
        self.ws = torch.empty(4, rows_max, n, device='cuda')
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


def tile_name(tile):
    """gemmTileName of src/codegen/gemm-plan.ts."""
    return f"b{tile['blockM']}w{tile['warpsM']}s{tile['stages']}"


def tune_shape(drv, bundle, t, make_shape, measure, started, budget_s, slack):
    rows_max = max(c['m'] for c in t['candidates'])
    sh = make_shape(t, rows_max)
    sources = {s['splitK']: s for s in t['sources']}
    timed, rejected, skipped = {}, [], []
    try:
        bound_all = _bound({'k': t['k'], 'splitK': max(sources)}, sh.mag, sh.bias_host, slack)
        for split in sorted(sources):
            anchor = None  # (rows, out): the first accepted candidate's output, the largest M first
            for cand in sorted((c for c in t['candidates'] if c['splitK'] == split), key=lambda c: (-c['m'], not c['heuristic'])):
                name = f"s{split} M={cand['m']} {tile_name(cand['tile'])}"
                if time.time() - started > budget_s:
                    skipped.append(name)
                    continue
                rows = cand['m']
                sh.poison(rows)
                _launch(drv, bundle, t, sources[split], cand, sh, 0, True)
                out = sh.output(rows)
                worst = float(np.max(np.abs(out - sh.ref[:rows]) / bound_all[:rows])) if np.isfinite(out).all() else None
                if worst is None or worst > 1.0:
                    rejected.append(f"{name}: {'unwritten or non-finite output' if worst is None else f'{worst:.2f}x the float64 bound'}")
                    continue
                if anchor is not None:
                    shared = min(rows, anchor[0])
                    if not np.array_equal(out[:shared].view(np.uint32), anchor[1][:shared].view(np.uint32)):
                        rejected.append(f'{name}: rows differ in bits from another tile of split-K {split} (the order of a sum changed)')
                        continue
                else:
                    anchor = (rows, out)
                timing = measure(lambda i, c=cand: _launch(drv, bundle, t, sources[split], c, sh, i, False), sh.sets)
                timed[(split, cand['m'], tile_name(cand['tile']))] = (cand, timing)
    finally:
        sh.close()
    return timed, rejected, skipped


def gemm_entry(t, arch, timed, rejected, meta, date):
    """The db.ts GemmTuneEntry of one shape, or None when no split-K reached every row count."""
    best = {}  # split -> m -> (us, cand, timing)
    heur = {}  # m -> (cand, timing) at the heuristic split
    for (split, m, _), (cand, timing) in timed.items():
        cur = best.setdefault(split, {}).get(m)
        if cur is None or timing['medianUs'] < cur[0]:
            best[split][m] = (timing['medianUs'], cand, timing)
        if cand['heuristic'] and split == t['heuristicSplitK']:
            heur[m] = (cand, timing)
    split = choose_split({s: {m: v[0] for m, v in ms.items()} for s, ms in best.items()})
    if split is None:
        return None
    rows = {}
    for m, (_, cand, timing) in sorted(best[split].items()):
        h = heur.get(m) or next(((c, tm) for (s, mm, _), (c, tm) in timed.items() if s == split and mm == m and c['heuristic']), (cand, timing))
        rows[str(m)] = {'best': cand['tile'], 'bestTiming': _t(timing), 'heuristic': h[0]['tile'], 'heuristicTiming': _t(h[1])}
    all_rows = sorted({m for ms in best.values() for m in ms})
    totals = {str(s): sum(ms[m][0] for m in all_rows if m in ms) for s, ms in sorted(best.items())}
    return {'unit': t['unit'], 'n': t['n'], 'k': t['k'], 'dtype': t['dtype'], 'arch': arch, 'splitK': split, 'heuristicSplitK': t['heuristicSplitK'],
            'splitTotalsUs': totals, 'rows': rows, 'timed': len(timed), 'rejected': rejected, 'meta': meta, 'date': date}


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


def gemm_tune(drv, bundle, gem, out, make_shape, measure, machine, budget_s, log, slack=1.0):
    """The search over gemm.json's tune section; writes tune-cuda.json's gemms; returns the device-check.json section."""
    meta = cuda_meta(gem['tidarc'], machine)
    date = time.strftime('%Y-%m-%d')
    started, shapes, entries, not_reached = time.time(), [], [], []
    for t in gem.get('tune', []):
        if time.time() - started > budget_s:
            not_reached.append(t['unit'])
            continue
        t0 = time.time()
        timed, rejected, skipped = tune_shape(drv, bundle, t, make_shape, measure, started, budget_s, slack)
        e = gemm_entry(t, gem['arch'], timed, rejected, meta, date)
        rec = {'unit': t['unit'], 'role': t['role'], 'candidates': len(t['candidates']), 'timed': len(timed), 'rejected': rejected, 'skipped': skipped,
               'seconds': time.time() - t0}
        if e:
            entries.append(e)
            rec.update({'splitK': e['splitK'], 'heuristicSplitK': e['heuristicSplitK'],
                        'rows': {m: {'best': tile_name(r['best']), 'bestUs': r['bestTiming']['medianUs'], 'heuristic': tile_name(r['heuristic']),
                                     'heuristicUs': r['heuristicTiming']['medianUs']} for m, r in e['rows'].items()}})
            log(f"gemm tune {t['role']} {t['n']}x{t['k']}: split-K {e['splitK']} (heuristic {e['heuristicSplitK']}); "
                + ', '.join(f"M={m} {v['best']} {v['bestUs']:.1f} us (heuristic {v['heuristic']} {v['heuristicUs']:.1f})" for m, v in rec['rows'].items())
                + f"; {len(timed)} timed, {len(rejected)} rejected")
        else:
            log(f"gemm tune {t['role']}: no split-K reached every row count ({len(timed)} timed, {len(rejected)} rejected, {len(skipped)} past the budget)")
        shapes.append(rec)
    if entries:
        write_gemm_db(out / DB_FILE, entries)
    return {'file': DB_FILE, 'meta': meta, 'budgetS': budget_s, 'seconds': time.time() - started, 'shapes': shapes, 'notReached': not_reached}
