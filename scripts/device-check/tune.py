"""The device check's CUDA search (issue 6: `tidarc tune` on a GPU). The bundle's grid.json
`tune` section (src/bench/device-bundle.ts) lists, per variant and shape bucket, the
configurations to time (tile x split-KV, at most 40, the heuristic default first) and the
tuned variants compiled once per tile (warps, keys, rows a warp, cp.async stages). Per bucket:
  1. input sets on the device (rotated while timing so the KV cache comes cold from HBM when
     that is cheap; set 0 is the one checked), the float64 reference of set 0 and the tolerance
     (FA3's rule on a GPU, the emulator tests' fixed one in the dry run);
  2. per configuration: its output (poisoned with NaN first) against the reference; a wrong
     one, or one whose launch fails, is rejected and never chosen; a right one is timed: a
     warm-up, then 100 calls, or fewer slow ones filling 100 ms (at least 5): CUDA events on a
     GPU (each call queued behind a short spin kernel, so that the host's ctypes launches are
     not what is measured), the wall clock around call + synchronize in the dry run; median
     with p20/p80;
  3. a variant with an sm_90a kernel (TMA + wgmma; issue 18: `tidarc tune` compares both) has it
     checked and timed the same way at the bucket's sm90aSplits, right after the heuristic;
  4. best, heuristic, each tile's fastest split count and the sm_90a kernel's fastest into an entry
     of src/tune/db.ts's TuneDb (`compile --tuned` picks the kernel a 9.0 device runs from them).
A bucket stops starting configurations after --bucket-seconds (60), the part starts no bucket
after --tune-budget seconds; what was not reached is listed. The database is written as
tune-cuda.json under --out (`tidarc tune --report --db`, `tidarc compile --tuned` read it).
"""
import json
import math
import os
import shutil
import subprocess
import time

import numpy as np

from kernels import FA3_EPSILON, FIXED_TOLERANCE, LSE_TOLERANCE, compare, context_lost, from_bits, launch_attention, reference, reference_torch, sdpa_error_torch, to_bits

# As src/tune/tune-cpu.ts: MIN_REPS calls, or fewer slow ones filling MIN_TIME_S (at least MIN_CALLS).
MIN_REPS, MIN_TIME_S, MIN_CALLS = 100, 0.1, 5
# Spin before each timed GPU call, longer than the host's launches of one call (~30 us of ctypes):
# 200k cycles, about 100 us at the H200's 1.98 GHz.
LEAD_CYCLES = 200_000
# Input sets rotated while timing: enough distinct KV bytes to pass the H200's 50 MB L2 twice, at most 16.
COLD_BYTES, MAX_SETS = 120e6, 16
DB_FILE = 'tune-cuda.json'


def tile_key(t):
    """tileKey of src/codegen/arch.ts for a CUDA tile (a test holds the two together). A tile or
    configuration of a grid from before rows a warp and stages timed 16-row warps and 2 stages:
    read as those (space.ts asMeasuredOnCuda)."""
    return f"w{t['warps']}r{t.get('warpRows', 16)}-n{t['tileN']}p{t.get('stages', 2)}"


def config_key(c):
    """configKey of src/tune/space.ts (no threads on CUDA)."""
    return f"{tile_key(c)}-s{c['splits']}"


def tile_of_config_key(key):
    """The tile key and split count of a config_key."""
    tile, splits = key.rsplit('-s', 1)
    return tile, int(splits)


def plain_config(c):
    """A configuration as the database holds it (AttentionConfig): the tile, read as measured, and its splits."""
    return {'warps': c['warps'], 'tileN': c['tileN'], 'warpRows': c.get('warpRows', 16), 'stages': c.get('stages', 2), 'splits': c['splits']}


def nvcc_path():
    return os.environ.get('NVCC') or shutil.which('nvcc') or '/usr/local/cuda/bin/nvcc'


def nvcc_version(path=None):
    """nvcc's version as src/build/toolchain.ts reports it: the line of `nvcc --version` naming the release."""
    out = subprocess.run([path or nvcc_path(), '--version'], capture_output=True, text=True, timeout=20).stdout
    return next((line.strip() for line in out.split('\n') if 'release' in line), out.strip().split('\n')[-1].strip())


def cxx_version():
    """The dry run's compiler (the emulator's modules are g++ builds): the first line of --version, as toolchain.ts's findCxx."""
    cxx = os.environ.get('CXX') or shutil.which('g++') or shutil.which('c++') or 'c++'
    return subprocess.run([cxx, '--version'], capture_output=True, text=True, timeout=20).stdout.split('\n')[0].strip()


def cuda_meta(tidarc, machine):
    """cudaTuneMeta of src/tune/cuda-meta.ts (a test holds the two together)."""
    v = machine['driverVersion']
    return {'tidarc': tidarc, 'compiler': machine['compiler'], 'backend': 'cuda', 'device': f"{machine['name']} x {machine['sms']} SMs",
            'driver': f'{v // 1000}.{(v % 1000) // 10}'}


def rep_count(per_call_s):
    return MIN_REPS if per_call_s * MIN_REPS <= MIN_TIME_S else max(MIN_CALLS, math.ceil(MIN_TIME_S / max(per_call_s, 1e-9)))


def quantiles(us):
    s = sorted(us)
    q = lambda f: s[min(len(s) - 1, int(f * len(s)))]  # noqa: E731
    return {'medianUs': q(0.5), 'p20Us': q(0.2), 'p80Us': q(0.8), 'reps': len(s)}


# Dry run: timed calls after the warm-up. The emulator's times say nothing of a GPU's, so the dry run
# proves the protocol's code (warm-up, rotated sets, quantiles), not its statistics; the protocol's
# 5 to 100 calls (rep_count) cost seconds of emulated launches a configuration in every test.
DRY_CALLS = 3


def wall_timer(drv):
    """Dry run: the wall clock around call + synchronize (the emulator has no events), DRY_CALLS calls."""
    def measure(call, sets):
        call(0)
        drv.synchronize()
        us = []
        for i in range(DRY_CALLS):
            t = time.perf_counter()
            call((i + 1) % sets)
            drv.synchronize()
            us.append((time.perf_counter() - t) * 1e6)
        return quantiles(us)
    return measure


def event_timer(torch):
    """GPU: CUDA events around each call, the call queued behind a spin kernel (torch.cuda._sleep) so it starts when the GPU reaches it."""
    sleep = getattr(torch.cuda, '_sleep', None)

    def measure(call, sets):
        call(0)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        call(1 % sets)
        torch.cuda.synchronize()
        reps = rep_count(time.perf_counter() - t0)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            if sleep:
                sleep(LEAD_CYCLES)
            starts[i].record()
            call(i % sets)
            ends[i].record()
        torch.cuda.synchronize()
        return quantiles([s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)])
    return measure


class DeviceSets:
    """One bucket's device memory: input sets, the prefix lengths, the output and the split-KV workspace (sized for the most splits)."""

    def __init__(self, drv, model, v, batch, prefix, max_splits):
        self.drv, self.model, self.v, self.batch, self.prefix = drv, model, v, batch, prefix
        n, Hq, D = v['steps'], model['qHeads'], model['headDim']
        self.rows = batch * n * Hq
        self.o_bytes, self.lse_bytes = self.rows * D * 2, self.rows * 4
        self.owned = [drv.alloc(self.o_bytes), drv.alloc(self.lse_bytes)]
        self.o, self.lse = self.owned
        self.ws_bytes = max_splits * self.rows * (D + 1) * 4 if max_splits > 1 else 0
        self.ws = drv.alloc(self.ws_bytes) if self.ws_bytes else 0
        lengths = np.full(batch, prefix, np.int32)
        self.prefix_ptr = drv.alloc(lengths.nbytes)
        drv.upload(self.prefix_ptr, lengths)
        self.owned += [p for p in (self.ws, self.prefix_ptr) if p]
        self.inputs = []  # per set: the device pointers of q, kc, vc, ks, vs

    def shapes(self):
        B, n, Hq, Hkv, D, L = self.batch, self.v['steps'], self.model['qHeads'], self.model['kvHeads'], self.model['headDim'], self.prefix
        return {'q': (B, n, Hq, D), 'kc': (B, Hkv, max(L, 1), D), 'vc': (B, Hkv, max(L, 1), D), 'ks': (B, n, Hkv, D), 'vs': (B, n, Hkv, D)}

    def ptrs(self, i):
        return [*self.inputs[i % len(self.inputs)], self.prefix_ptr, self.o, self.lse, self.ws]

    def check(self, launch, ref_o, ref_lse):
        """Set 0 through `launch` into NaN-poisoned outputs: (max error, lse error). The workspace is poisoned too: the
        previous configuration's partials must not stand in for rows this one leaves unwritten."""
        self.drv.fill(self.o, 0xFF, self.o_bytes)
        self.drv.fill(self.lse, 0xFF, self.lse_bytes)
        if self.ws:
            self.drv.fill(self.ws, 0xFF, self.ws_bytes)
        launch(self.ptrs(0))
        self.drv.synchronize()
        o_bits = np.empty(self.o_bytes // 2, np.uint16)
        lse = np.empty(self.rows, np.float32)
        self.drv.download(self.o, o_bits)
        self.drv.download(self.lse, lse)
        return compare(o_bits, lse, ref_o, ref_lse, self.model['dtype'])

    def free(self):
        for p in self.owned:
            self.drv.free(p)
        self.owned = []


class NumpySets(DeviceSets):
    """Dry run: numpy inputs uploaded through the driver, the numpy float64 reference, the fixed tolerance."""

    def __init__(self, drv, model, v, batch, prefix, max_splits, count, seed):
        super().__init__(drv, model, v, batch, prefix, max_splits)
        rng = np.random.default_rng(seed)
        self.values = None
        for _ in range(count):
            bits = {k: to_bits(rng.standard_normal(s), model['dtype']) for k, s in self.shapes().items()}
            ptrs = [drv.alloc(bits[k].nbytes) for k in ('q', 'kc', 'vc', 'ks', 'vs')]
            for p, k in zip(ptrs, ('q', 'kc', 'vc', 'ks', 'vs')):
                drv.upload(p, bits[k])
            self.owned += ptrs
            self.inputs.append(ptrs)
            if self.values is None:
                self.values = bits

    def judge(self):
        x = {k: from_bits(b, self.model['dtype']) for k, b in self.values.items()}
        ref_o, ref_lse = reference(self.model, self.v, x['q'], x['kc'], x['vc'], x['ks'], x['vs'], [self.prefix] * self.batch)
        return ref_o, ref_lse, FIXED_TOLERANCE[self.model['dtype']], 'fixed (dry run)'


class TorchSets(DeviceSets):
    """GPU: inputs drawn by torch on the device (no host copy of a 16k-token cache), the float64 reference and SDPA's error there."""

    def __init__(self, torch, drv, model, v, batch, prefix, max_splits, count, seed):
        super().__init__(drv, model, v, batch, prefix, max_splits)
        self.torch = torch
        dt = torch.bfloat16 if model['dtype'] == 'bf16' else torch.float16
        g = torch.Generator(device='cuda')
        g.manual_seed(seed)
        self.sets = [{k: torch.randn(*s, generator=g, device='cuda', dtype=torch.float32).to(dt) for k, s in self.shapes().items()} for _ in range(count)]
        self.inputs = [[x[k].data_ptr() for k in ('q', 'kc', 'vc', 'ks', 'vs')] for x in self.sets]
        torch.cuda.synchronize()

    def judge(self):
        x, prefix = self.sets[0], [self.prefix] * self.batch
        ref_o, ref_lse = reference_torch(self.torch, self.model, self.v, x['q'], x['kc'], x['vc'], x['ks'], x['vs'], prefix)
        baseline, backend = sdpa_error_torch(self.torch, self.model, self.v, x['q'], x['kc'], x['vc'], x['ks'], x['vs'], prefix, ref_o)
        return ref_o, ref_lse, 2 * baseline + FA3_EPSILON, f"2 x SDPA {self.model['dtype']} error ({baseline:.2e}, {backend}) + {FA3_EPSILON:g}"

    def free(self):
        super().free()
        self.sets, self.inputs = [], []
        self.torch.cuda.empty_cache()


def cold_sets(model, batch, prefix):
    """How many input sets a GPU bucket rotates (the benchmark's rule)."""
    kv_bytes = 2 * batch * model['kvHeads'] * max(prefix, 1) * model['headDim'] * 2
    return max(1, min(MAX_SETS, math.ceil(COLD_BYTES / kv_bytes)))


def variant_of(model, name):
    return next(v for v in model['variants'] if v['name'] == name)


class ContextLost(RuntimeError):
    """A configuration's error was sticky (kernels.context_lost): every later launch in this process would fail with it,
    so the search stops instead of rejecting each remaining configuration with the same error."""


def reject(drv, rejected, entry, e):
    """Record a configuration whose launch or check raised; raise ContextLost where the error left the context lost."""
    why = str(e).splitlines()[0][:200]
    rejected.append({**entry, 'why': why})
    lost = context_lost(drv)
    if lost:
        raise ContextLost(f'the CUDA context was lost at {entry} ({why}); it now reports {lost}') from e


def tune_bucket(drv, bundle, tiles, variant, b, make_sets, measure, bucket_s, seed):
    """One (variant, bucket): every configuration checked, the right ones timed; the record of device-check.json."""
    started = time.time()
    configs = b['configs']
    tile = lambda c: tiles[tile_key(c)]  # noqa: E731
    first = tile(configs[0])['model']
    sm90a = variant.get('sm90a')
    sm90a_splits = b.get('sm90aSplits', []) if sm90a else []
    sets = make_sets(first, variant_of(first, variant['name']), b['batch'], b['prefix'], max(c['splits'] for c in configs + [{'splits': s} for s in sm90a_splits]), seed)
    rec = {'variant': variant['key'], 'name': variant['name'], 'bucket': b['bucket'], 'batch': b['batch'], 'prefix': b['prefix'],
           'feasible': b['feasible'], 'configs': len(configs), 'heuristic': config_key(b['heuristic']), 'timed': [], 'rejected': [], 'notReached': []}
    try:
        ref_o, ref_lse, tolerance, rule = sets.judge()
        rec['tolerance'], rec['rule'] = tolerance, rule
        # The sm_90a kernel right after the heuristic: a bucket's time limit cuts tiles, never it.
        sm90a_at = lambda: time_sm90a(drv, bundle, first, variant_of(first, variant['name']), sm90a, b, sm90a_splits, sets, measure, ref_o, ref_lse, tolerance,  # noqa: E731
                                      lambda: time.time() - started > bucket_s)
        for i, c in enumerate(configs):
            if i == 1 and sm90a_splits:
                rec['sm90a'] = sm90a_at()
            key = config_key(c)
            if time.time() - started > bucket_s:
                rec['notReached'].append(key)
                continue
            model = tile(c)['model']
            v = variant_of(model, variant['name'])
            call = lambda ptrs, model=model, v=v, c=c: launch_attention(drv, bundle, model, v, ptrs, b['batch'], b['prefix'], c['splits'])  # noqa: E731
            try:
                err, lse_err = sets.check(call, ref_o, ref_lse)
            except RuntimeError as e:  # a launch that fails is a wrong configuration (or, if sticky, the end of the search)
                reject(drv, rec['rejected'], {'config': key}, e)
                continue
            if not (err <= tolerance and lse_err <= LSE_TOLERANCE):
                rec['rejected'].append({'config': key, 'why': f'max error {err:.2e} (tolerance {tolerance:.2e}), lse error {lse_err:.2e}'})
                continue
            rec['timed'].append({'config': key, **measure(lambda i, call=call: call(sets.ptrs(i)), len(sets.inputs)), 'maxError': err})
        if sm90a_splits and 'sm90a' not in rec:  # the heuristic was the only configuration
            rec['sm90a'] = sm90a_at()
    finally:
        try:
            sets.free()
        except RuntimeError:  # a lost context fails the free too; the error that lost it is what the record keeps
            if not context_lost(drv):
                raise
    rec['seconds'] = time.time() - started
    h = next((t for t in rec['timed'] if t['config'] == rec['heuristic']), None)
    if h is None:
        rec['error'] = f"the heuristic {rec['heuristic']} gave a wrong result or did not run"
        return rec
    best = min(rec['timed'], key=lambda t: t['medianUs'])
    rec.update(best=best['config'], bestUs=best['medianUs'], heuristicUs=h['medianUs'])
    if rec.get('sm90a', {}).get('timed'):
        fast = min(rec['sm90a']['timed'], key=lambda t: t['medianUs'])
        rec['sm90a'].update(best=fast['splits'], bestUs=fast['medianUs'])
        rec['faster'] = 'sm_90a' if fast['medianUs'] < best['medianUs'] else 'sm_90'
    return rec


def time_sm90a(drv, bundle, model, v, kernel, b, splits_list, sets, measure, ref_o, ref_lse, tolerance, past_limit):
    """The variant's sm_90a kernel at each split count on the bucket's sets, checked like the tiles (a wrong or failing one
    is rejected, never chosen): {'symbol', 'timed': [{'splits', medianUs, ...}], 'rejected', 'notReached'}."""
    from attention_sm90a import launcher
    case = {'steps': v['steps'], 'sm90a': kernel}
    out = {'symbol': kernel['symbol'], 'timed': [], 'rejected': [], 'notReached': []}
    for s in splits_list:
        if past_limit():
            out['notReached'].append(s)
            continue
        call = lambda ptrs, s=s: launcher(drv, bundle, model, case, 'sm90a', ptrs, b['batch'], b['prefix'], s)()  # noqa: E731
        try:
            err, lse_err = sets.check(call, ref_o, ref_lse)
        except RuntimeError as e:
            reject(drv, out['rejected'], {'splits': s}, e)
            continue
        if not (err <= tolerance and lse_err <= LSE_TOLERANCE):
            out['rejected'].append({'splits': s, 'why': f'max error {err:.2e} (tolerance {tolerance:.2e}), lse error {lse_err:.2e}'})
            continue
        out['timed'].append({'splits': s, **measure(lambda i, call=call: call(sets.ptrs(i)), len(sets.inputs)), 'maxError': err})
    return out


def build_sm90a_units(bundle, grid, log):
    """The tuned variants' sm_90a units (nvcc, sm_90a alone) whose fatbin is missing: on the GPU machine when nothing was prebuilt."""
    units = [v['sm90a'] for v in grid.get('tune', {}).get('variants', []) if v.get('sm90a') and not (bundle / v['sm90a']['fatbin']).exists()]
    for k in units:
        out = bundle / k['fatbin']
        r = subprocess.run([nvcc_path(), *k['nvccFlags'], '-o', str(out), str(bundle / k['source'])], capture_output=True, text=True, cwd=out.parent)
        if r.returncode != 0:
            raise RuntimeError(f"nvcc failed on {k['source']}:\n{r.stderr[-2000:]}")
        log(f"nvcc: {k['fatbin']} (sm_90a)")
    return len(units)


def db_entry(rec, b, meta, date):
    """The TuneEntry of src/tune/db.ts for a bucket's record."""
    timing = lambda t: {'medianUs': t['medianUs'], 'p20Us': t['p20Us'], 'p80Us': t['p80Us']}  # noqa: E731
    by_key = {config_key(c): c for c in b['configs']}
    best = next(t for t in rec['timed'] if t['config'] == rec['best'])
    h = next(t for t in rec['timed'] if t['config'] == rec['heuristic'])
    by_tile = {}  # per tile, its fastest split count: what `compile --tuned` weighs tiles by across shapes
    for t in rec['timed']:
        c = by_key[t['config']]
        name = tile_key(c)
        if name not in by_tile or t['medianUs'] < by_tile[name]['medianUs']:
            by_tile[name] = {'splits': c['splits'], 'medianUs': t['medianUs']}
    sm90a = rec.get('sm90a', {})
    return {'variant': rec['variant'], 'bucket': rec['bucket'], 'best': plain_config(by_key[rec['best']]), 'bestTiming': timing(best),
            'heuristic': plain_config(b['heuristic']), 'heuristicTiming': timing(h), 'timed': len(rec['timed']),
            'rejected': [r['config'] for r in rec['rejected']], 'byTile': dict(sorted(by_tile.items())),
            **({'sm90a': {'splits': sm90a['best'], 'medianUs': sm90a['bestUs']}} if 'best' in sm90a else {}), 'meta': meta, 'date': date}


def write_db(path, entries):
    """Merged into what the file holds, keys sorted, as writeTuneDb writes it."""
    db = json.loads(path.read_text()) if path.exists() else {'format': 1, 'entries': {}}
    for e in entries:
        db['entries'][f"{e['variant']} | {e['bucket']}"] = e
    # The GEMM search's entries (gemm_tune.py) are kept as they are.
    db = {'format': 1, 'entries': dict(sorted(db['entries'].items())), **({'gemms': db['gemms']} if db.get('gemms') else {})}
    path.write_text(json.dumps(db, indent=1, allow_nan=False) + '\n')


def tune(drv, bundle, grid, out, make_sets, measure, machine, budget_s, bucket_s, log):
    """The search over the bundle's tune section; writes tune-cuda.json; returns the section of device-check.json."""
    t = grid['tune']
    tiles = {tile_key(x): x for x in t['tiles']}
    meta = cuda_meta(t['tidarc'], machine)
    date = time.strftime('%Y-%m-%d', time.gmtime())
    started, records, entries, skipped = time.time(), [], [], []
    work = [(variant, b) for variant in t['variants'] for b in variant['buckets']]
    lost = None
    for i, (variant, b) in enumerate(work):
        what = f"{variant['key']} | {b['bucket']}"
        if lost or time.time() - started >= budget_s:
            skipped.append(what)
            continue
        try:
            rec = tune_bucket(drv, bundle, tiles, variant, b, make_sets, measure, bucket_s, 2000 + i)
        except ContextLost as e:  # the process's context is unusable: the later buckets are skipped, not failed one by one
            lost = str(e)[:300]
            rec = {'variant': variant['key'], 'name': variant['name'], 'bucket': b['bucket'], 'heuristic': config_key(b['heuristic']),
                   'timed': [], 'rejected': [], 'notReached': [], 'error': lost}
        except Exception as e:  # noqa: BLE001 -- one bucket's failure is a result; the others still run
            rec = {'variant': variant['key'], 'name': variant['name'], 'bucket': b['bucket'], 'heuristic': config_key(b['heuristic']),
                   'timed': [], 'rejected': [], 'notReached': [], 'error': str(e).splitlines()[0][:300]}
            gone = context_lost(drv)  # a fault while timing: sticky too
            if gone:
                lost = f"{rec['error']}; the CUDA context now reports {gone}"[:300]
        records.append(rec)
        if 'error' in rec:
            log(f"tune [{i + 1}/{len(work)}] {what}: FAILED: {rec['error']}")
            continue
        entries.append(db_entry(rec, b, meta, date))
        fast = rec.get('sm90a', {})
        vs = (f"; sm_90a {fast['bestUs']:.1f} us at {fast['best']} splits: {rec['faster']} is faster" if 'best' in fast
              else f"; sm_90a: {len(fast['rejected'])} rejected, none timed" if fast else '')
        log(f"tune [{i + 1}/{len(work)}] {what}: best {rec['best']} {rec['bestUs']:.1f} us; heuristic {rec['heuristic']} {rec['heuristicUs']:.1f} us "
            f"({rec['heuristicUs'] / rec['bestUs']:.2f}x); {len(rec['timed'])} timed, {len(rec['rejected'])} rejected, {rec['seconds']:.1f} s{vs}")
    write_db(out / DB_FILE, entries)
    return {'file': DB_FILE, 'meta': meta, 'machine': machine, 'slots': t['slots'], 'maxConfigs': t['maxConfigs'], 'budgetS': budget_s,
            'bucketS': bucket_s, 'seconds': time.time() - started, 'buckets': records, 'skipped': skipped, **({'contextLost': lost} if lost else {}),
            **({'note': f"the heuristic's split rule counted {t['slots']} SMs; this device has {machine['sms']}"} if machine['sms'] != t['slots'] else {})}
