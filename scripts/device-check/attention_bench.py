"""tidarc's side of the attention benchmark, launched as the runtime would launch it (issue 15 item 5):
per point (variant, prefix L, batch) the split-KV count and workspace that grid.json's attentionBench
section gives (src/bench/attention-points.ts: the runtime's own rule, splitsFor's least estimated time
over the SMs at ptxas's occupancy; nothing of it is re-implemented here), with the cost model's
prediction beside the measurement; and, where the CUDA search (tune.py) timed the point's shape
bucket, its best configuration as a second row. Every timing names its splits.

The dry run times the points on the emulated driver after checking each launch against the float64
reference (the workspace of a split launch is exercised, not only allocated); its microseconds are the
emulator's and say nothing about a GPU."""
from kernels import LSE_TOLERANCE, launch_attention
from tune import NumpySets, tile_key, tile_of_config_key, variant_of


def bench_point(grid, name, prefix, batch):
    """grid.json's point for this launch, or None (a bundle prepared before issue 15: one split, as before)."""
    section = grid.get('attentionBench') or {}
    return next((p for p in section.get('points', []) if p['variant'] == name and p['prefix'] == prefix and p['batch'] == batch), None)


def point_grid(grid):
    """(variant, L, batch) of every point, in grid.json's order."""
    return [(p['variant'], p['prefix'], p['batch']) for p in (grid.get('attentionBench') or {}).get('points', [])]


def tuned_launch(grid, tune_section, name, prefix, batch):
    """The CUDA search's best for this point's bucket: (model, variant, splits, config key), or None when it timed none."""
    if not tune_section or 'tune' not in grid:
        return None
    rec = next((r for r in tune_section.get('buckets', []) if r.get('name') == name and r.get('batch') == batch and r.get('prefix') == prefix and 'best' in r), None)
    if rec is None:
        return None
    key, s = tile_of_config_key(rec['best'])
    tile = next((t for t in grid['tune']['tiles'] if tile_key(t) == key), None)
    if tile is None:
        return None
    return tile['model'], variant_of(tile['model'], name), s, rec['best']


def workspace_floats(model, v, batch, splits):
    return splits * batch * v['steps'] * model['qHeads'] * (model['headDim'] + 1) if splits > 1 else 0


def launcher(drv, bundle, model, v, batch, prefix, splits):
    """call(ptrs) for DeviceSets-style pointer lists [q, kc, vc, ks, vs, prefix, o, lse, workspace]."""
    return lambda ptrs: launch_attention(drv, bundle, model, v, ptrs, batch, prefix, splits)


def dry_bench(drv, bundle, grid, measure, log, predicted=None):
    """The dry run's benchmark: every point of the bundle at the rule's splits, checked, then timed on the emulator;
    predicted (machines.predicted_for): whose predictions grid carries, for the log line."""
    section = grid.get('attentionBench')
    if not section:
        return []
    model = next(m for m in grid['models'] if m['name'] == section['model'])
    rows = []
    for i, (name, prefix, batch) in enumerate(point_grid(grid)):
        point = bench_point(grid, name, prefix, batch)
        v = variant_of(model, name)
        sets = NumpySets(drv, model, v, batch, prefix, point['splits'], 2, 3000 + i)
        try:
            ref_o, ref_lse, tolerance, rule = sets.judge()
            call = launcher(drv, bundle, model, v, batch, prefix, point['splits'])
            err, lse_err = sets.check(call, ref_o, ref_lse)
            ok = err <= tolerance and lse_err <= LSE_TOLERANCE
            timing = measure(lambda j: call(sets.ptrs(j)), len(sets.inputs))
        finally:
            sets.free()
        row = {'variant': name, 'n': v['steps'], 'prefix': prefix, 'batch': batch, 'splits': point['splits'], 'workspaceFloats': sets.ws_bytes // 4,
               'tidarc': timing, 'maxError': err, 'lseMaxError': lse_err, 'tolerance': tolerance, 'ok': bool(ok),
               'predictedUs': point['predictedUs'], 'predictedBound': point['predictedBound'], **({'predictedFor': point['predictedFor']} if 'predictedFor' in point else {})}
        rows.append(row)
        log(f"bench (dry) {name} L={prefix} B={batch}: {point['splits']} splits, {'ok' if ok else 'WRONG'} (max error {err:.2e}), "
            f"{timing['medianUs']:.0f} us on the emulator (predicted on {(predicted or {}).get('name', 'the H200')}: {point['predictedUs']:.1f} us)")
    return rows
