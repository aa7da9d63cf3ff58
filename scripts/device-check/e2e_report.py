"""The end-to-end part's report (issue 16 item 5): e2e.md (the step table, the issue's goals, the dry
run's correctness check) from e2e.json, and the short lines printed last. Python's standard library
only, as report.py (which renders the same section inside device-check.md)."""
from pathlib import Path

from e2e_cost import AR
from machines import header


def _fmt(x, digits=2):
    return '-' if x is None else f'{x:.{digits}f}'


def _x(x):
    return '-' if x is None else f'{x:.2f}x'


def _mode(row):
    """The figures of tidarc's fastest available launch mode: graphs when measured, else launch by launch."""
    t = row.get('tidarc') or {}
    return ('graphs', t['graphs']) if t.get('graphs') else ('launches', t['launches']) if t.get('launches') else (None, None)


def _pdl(row):
    """The default run's programmatic dependent launch: on, off, or '-' where bench-step's JSON does not say."""
    return {True: 'on', False: 'off'}.get(row.get('pdl'), '-')


def step_table(rows, predicted=None):
    """predicted: the part's predictedFor, whose predictions the rows carry (machines.py). PDL: the default runs' (bench-step's
    `pdl`); graphs --no-pdl: the same graphs without PDL (measured at the points e2e.py's plan gives it), beside its prediction."""
    lines = ['| model | layers | L | step | tokens | tidarc graphs ms | tidarc launches ms | launches / step (graphs, launches) | host ms (graphs, launches) | '
             'transformers eager ms | roofline ms | bound | graphs / roofline | launches / roofline | eager / roofline | launches / graphs | eager / graphs | '
             'PDL | graphs --no-pdl ms (measured, predicted) | --no-pdl / graphs | '
             f'predicted ms ({header(predicted)}; graphs, launches; with PDL where the run had it) | measured / predicted (graphs, launches) |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        g, n = r['tidarc'].get('graphs'), r['tidarc'].get('launches')
        pair = lambda key, d: f"{_fmt(g[key], d) if g else '-'}, {_fmt(n[key], d) if n else '-'}"  # noqa: E731
        rf, q = r.get('roofline') or {}, r['ratios']
        lines.append(f"| {r['model']} | {r['layers']} | {r['prefix']} | {r['step']} | {r['tokens']} | {_fmt(r['tidarcGraphsMs'])} | {_fmt(r['tidarcLaunchesMs'])} | "
                     f"{pair('launchesPerStep', 0)} | {pair('hostMs', 3)} | {_fmt(r['hfEagerMs'])} | {_fmt(r['rooflineMs'], 3)} | {rf.get('bound', '-')} | "
                     f"{_x(q['graphsOverRoofline'])} | {_x(q['launchesOverRoofline'])} | {_x(q['hfOverRoofline'])} | {_x(q['launchesOverGraphs'])} | {_x(q['hfOverGraphs'])} | "
                     f"{_pdl(r)} | {_fmt(r.get('tidarcNoPdlMs'))}, {_fmt(r.get('predictedNoPdlMs'), 3)} | {_x(q.get('noPdlOverGraphs'))} | "
                     f"{_fmt(r.get('predictedGraphsMs'), 3)}, {_fmt(r.get('predictedLaunchesMs'), 3)} | {_x(q.get('graphsOverPredicted'))}, {_x(q.get('launchesOverPredicted'))} |")
    return lines


def host_us_per_launch(rows):
    """Host microseconds per kernel launch of the launch-by-launch runs (host ms / launches a step), per row:
    the cost GpuModelRunner.pass's comment assumes (~5 us) when it leaves the prefill uncaptured."""
    out = []
    for r in rows:
        n = (r.get('tidarc') or {}).get('launches')
        if n and n.get('launchesPerStep') and n.get('hostMs') is not None:
            out.append(1000 * n['hostMs'] / n['launchesPerStep'])
    return sorted(out)


def pdl_lines(rows):
    """What PDL gave where --no-pdl ran: graphs without PDL over the default graphs run, measured beside predicted."""
    done = [r for r in rows if r.get('tidarcNoPdlMs') and r.get('tidarcGraphsMs')]
    if not done:
        return []
    def predicted(r):
        p = r.get('predicted') or {}
        return f", predicted {p['noPdlGraphsMs'] / p['pdlGraphsMs']:.2f}x" if p.get('pdlGraphsMs') else ''
    return [('Programmatic dependent launch (graphs --no-pdl / graphs with PDL, each a median step): '
             + '; '.join(f"{r['model']} L={r['prefix']} {r['step']} {r['tidarcNoPdlMs']:.3f} / {r['tidarcGraphsMs']:.3f} ms = {r['ratios']['noPdlOverGraphs']:.2f}x"
                         f"{predicted(r)}" for r in done) + '.'), '']


def _pct(x):
    return '-' if x is None else f'{100 * x:.1f}%'


def fold_lines(rows):
    """The fold-norms A/B where --no-fold-norms ran: the default run (norms folded) against it, each a median step in the
    default run's mode, the measured saving beside the predicted one (the bundle's folded and unfolded predictions)."""
    done = [r for r in rows if r.get('tidarcNoFoldMs')]
    if not done:
        return []
    lines = ['Fold-norms (the RMSNorms folded into the GEMMs around them, on by default; --no-fold-norms: as before), each a median step '
             'in the default run\'s mode; saving: 1 - folded / unfolded, measured and predicted (src/bench/step-cost-model.ts, the same '
             'constants both ways):', '',
             '| model | L | step | mode | folded ms | --no-fold-norms ms | measured saving | predicted ms (folded, unfolded) | predicted saving |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in done:
        mode, _ = _mode(r)
        f = r.get('foldSaving') or {}
        lines.append(f"| {r['model']} | {r['prefix']} | {r['step']} | {mode or '-'}{', PDL ' + _pdl(r) if r.get('pdl') is not None else ''} | "
                     f"{_fmt(r.get('tidarcFoldMs'), 3)} | {_fmt(r['tidarcNoFoldMs'], 3)} | {_pct(f.get('measured'))} | "
                     f"{_fmt(r.get('predictedFoldMs'), 3)}, {_fmt(r.get('predictedNoFoldMs'), 3)} | {_pct(f.get('predicted'))} |")
    return lines + ['']


def goals(rows):
    """Issue 16's targets on an H200, from the rows (a goal whose points are missing is left out). Measured as tidarc runs by
    default: with PDL where the device allows it (the mode's label says so where bench-step's JSON does)."""
    at = lambda model, L, step: next((r for r in rows if r['model'].startswith(model) and r['prefix'] == L and r['step'] == step), None)  # noqa: E731
    out = []
    ar8, k8 = at('qwen3-8b', 4096, AR), at('qwen3-8b', 4096, 'tidar_k8')
    mode, f = _mode(ar8) if ar8 else (None, None)
    if mode and ar8.get('pdl') is not None:
        mode = f"{mode}, PDL {_pdl(ar8)}"
    if f and ar8.get('rooflineMs'):
        x = f['medianMs'] / ar8['rooflineMs']
        out.append((f'Qwen3-8B shape, L = 4096: AR step <= 1.25x its roofline ({mode})', f'{x:.2f}x', x <= 1.25))
    kmode, kf = _mode(k8) if k8 else (None, None)
    if f and kf and kmode == _mode(ar8)[0]:
        x = kf['medianMs'] / f['medianMs']
        out.append((f'Qwen3-8B shape, L = 4096: TiDAR k = 8 step <= 1.15x the AR step ({mode})', f'{x:.2f}x', x <= 1.15))
    hosts = [(fig['hostMs'] / fig['medianMs']) for r in (ar8, k8) if r for _, fig in [_mode(r)] if fig and fig.get('hostMs') is not None]
    if hosts:
        out.append((f'Qwen3-8B shape, L = 4096: host time per step <= 5% of the step ({mode}, AR and k = 8)', f'{100 * max(hosts):.1f}% (worst)', max(hosts) <= 0.05))
    small = [r for r in rows if r['model'].startswith('qwen3-0.6b') and r['step'] == AR]
    speedups = [r['ratios']['launchesOverGraphs'] for r in small if r['ratios']['launchesOverGraphs']]
    if speedups:
        out.append(('Qwen3-0.6B shape: graph-launched AR step >= 2x faster than launch by launch', f'{min(speedups):.2f}x (worst L)', min(speedups) >= 2))
    vs_hf = [r['hfEagerMs'] / fig['medianMs'] for r in small for _, fig in [_mode(r)] if fig and r['hfEagerMs']]
    if vs_hf:
        out.append((f"Qwen3-0.6B shape: AR step faster than transformers eager ({_mode(small[0])[0]})", f'{min(vs_hf):.2f}x (worst L)', min(vs_hf) > 1))
    return out


def e2e_lines(e):
    """The markdown section (without its heading), shared by e2e.md and device-check.md."""
    dev, hf, peaks = e.get('device', {}), e.get('hf', {}), e.get('peaks') or {}
    facts = ', '.join(str(dev[k]) + unit for k, unit in (('sms', ' SMs'), ('driverVersion', ' driver'), ('cuda', ' CUDA'), ('torch', ' torch'), ('nvidiaSmi', '')) if dev.get(k))
    lines = [f"Device: {dev.get('name', '?')}{' (' + facts + ')' if facts else ''}. tidarc: {e.get('backend')} backend, `tidarc bench-step --json` per (model, L, k), "
             f"CUDA graphs: {e.get('graphs', '?')}; --no-pdl: {e.get('noPdl', 'not run')}{'; --no-fold-norms: ' + e['noFold'] if e.get('noFold') else ''}. transformers {hf.get('transformers', '?')} eager ({hf.get('attention', '?')}, {hf.get('dtype', '?')}, torch {hf.get('torch', '?')}): "
             'a DynamicCache prefilled with L tokens, the same tokens per step (AR 1, TiDAR k(k+1)), the same lm_head rows (1, 2k - 1), argmax to the host, '
             'the cache cropped back to L after each step.', '',
             f"Roofline: max((weights + KV) / copy bandwidth, FLOPs / matmul rate) (src/bench/roofline.ts); rates measured in this run: {peaks.get('how', 'none')}.", '']
    for n in e.get('notes', []):
        lines += [f'Note: {n}.', '']
    ms = e.get('models', [])
    if ms:
        lines += ['Models: ' + '; '.join(f"{m['name']} ({m['layers']} of {m['fullLayers']} layers, checkpoint written in {_fmt(m.get('checkpointS'), 1)} s as {m.get('shards', '?')} shards; "
                                         f"kernels compiled and loaded by a first short run in {_fmt(m.get('warmUp', {}).get('seconds'), 1)} s"
                                         f"{', FAILED: ' + m['warmUp']['error'] if 'error' in m.get('warmUp', {}) else ''})" for m in ms) + '.', '']
    if e.get('rows'):
        pf = e.get('predictedFor')
        lines += step_table(e['rows'], pf) + ['']
        p = e.get('predictions')
        lines += [f"Predicted before this run (src/bench/step-cost-model.ts, `npm run bench:step`; the bundle's e2e_predictions.json): GPU ms between events around the step "
                  f"on {p.get('machine')}{'' if not pf or pf.get('thisGpu') else ' (not this GPU: ' + str(pf.get('gpu')) + ')'}, registers {p.get('registers')}; "
                  'measured / predicted compares the median step with it. How much of each miss the ceilings and the launch overheads measured in this run '
                  'explain (the rest: the kernels): `npm run bench:step -- --compare device-check.json` on a checkout (src/bench/step-compare.ts).' if p else
                  'Predicted: none (the bundle has no e2e_predictions.json: npm run device-check:prepare writes it).', '']
        lines += pdl_lines(e['rows'])
        lines += fold_lines(e['rows'])
        us = host_us_per_launch(e['rows'])
        if us:
            lines += [f"Host time per kernel launch, launch by launch (host ms / launches a step): median {us[len(us) // 2]:.2f} us "
                      f"({us[0]:.2f} to {us[-1]:.2f}, {len(us)} rows). The prefill is not captured as a graph while this stays near the "
                      '~5 us GpuModelRunner.pass assumes (a Qwen3-0.6B prefill is then host-bound, an 8B one is not).', '']
    g = goals(e.get('rows', []))
    if g and not e.get('dryRun'):
        lines += ['| goal (issue 16) | measured | met |', '|---|---|---|', *[f"| {a} | {b} | {'yes' if ok else 'NO'} |" for a, b, ok in g], '']
    c = e.get('correctness')
    if c:
        lines += [f"Correctness ({c['what']}{', transformers config changed: ' + str(c['overrides']) if c.get('overrides') else ''}): "
                  f"{sum(x['ok'] for x in c['cases'])} of {len(c['cases'])} prompts give the same first token.", '',
                  '| prompt | tidarc | transformers | top-2 logit margin | agreeing tokens | result |', '|---|---|---|---|---|---|']
        lines += [f"| {x['prompt']} | {x['tidarc']} | {x['transformers']} | {x['firstMargin']:.3f} | {x['agreeingPrefix']} of {len(x['tidarc'])} | {'ok' if x['ok'] else 'FAIL'} |" for x in c['cases']]
        lines += ['']
    if e.get('skipped'):
        lines += [f"Skipped for the part's time budget ({_fmt(e.get('budgetS'), 0)} s): {', '.join(e['skipped'])}.", '']
    return lines


def failed_runs(e):
    """tidarc runs that ended in an error (a --no-graphs, --no-pdl or --no-fold-norms the CLI refused is a finding, not a failure)."""
    return [r for r in e.get('tidarcRuns', []) if 'error' in r and not (r['noGraphs'] and 'unsupported' in str(e.get('graphs', '')))
            and not (r.get('noPdl') and 'unsupported' in str(e.get('noPdl', '')))
            and not (r.get('noFold') and 'unsupported' in str(e.get('noFold', '')))]


def short_lines(e):
    out = [f"e2e ({e.get('backend')} backend, graphs: {e.get('graphs', '?')}{', --no-pdl: ' + e['noPdl'] if e.get('noPdl') else ''}"
           f"{', --no-fold-norms: ' + e['noFold'] if e.get('noFold') else ''}): {len(e.get('rows', []))} step rows, {len(e.get('skipped', []))} points skipped"]
    failed = failed_runs(e)
    if failed:
        r = failed[0]
        out.append(f"e2e: {len(failed)} tidarc runs FAILED; first: {r['model']} L={r['prefix']} k={r['draft']}{' --no-graphs' if r['noGraphs'] else ''}{' --no-pdl' if r.get('noPdl') else ''}{' --no-fold-norms' if r.get('noFold') else ''}: {r['error']}")
    c = e.get('correctness')
    if c:
        out.append(f"e2e correctness (tidarc cpu vs transformers, first greedy token): {sum(x['ok'] for x in c['cases'])}/{len(c['cases'])} ok" + ('' if c['ok'] else ' FAILED'))
    for r in e.get('rows', []):
        out.append(f"e2e {r['model']:>22} L={r['prefix']:<5} {r['step']:>9}: tidarc graphs {_fmt(r['tidarcGraphsMs']):>8} ms  launches {_fmt(r['tidarcLaunchesMs']):>8}  "
                   f"eager {_fmt(r['hfEagerMs']):>8}  roofline {_fmt(r['rooflineMs'], 3):>8}  predicted {_fmt(r.get('predictedMs'), 3):>8}  measured/predicted {_x(r.get('measuredOverPredicted')):>7}"
                   + (f"  PDL {_pdl(r)}" if r.get('pdl') is not None else '')
                   + (f"  graphs --no-pdl {_fmt(r['tidarcNoPdlMs'])} (predicted {_fmt(r.get('predictedNoPdlMs'), 3)})" if r.get('tidarcNoPdlMs') else '')
                   + (f"  --no-fold-norms {_fmt(r['tidarcNoFoldMs'])}: fold saves {_pct((r.get('foldSaving') or {}).get('measured'))} "
                      f"(predicted {_pct((r.get('foldSaving') or {}).get('predicted'))})" if r.get('tidarcNoFoldMs') else ''))
    return out


def write_e2e_reports(e, out):
    dry = f" (dry run: {e.get('backend')} backend, torch CPU)" if e.get('dryRun') else ''
    title = f"# tidarc end-to-end step, {e.get('date', '?')}{dry}"
    (Path(out) / 'e2e.md').write_text('\n'.join([title, '', *e2e_lines(e)]) + '\n')
    return '\n'.join(short_lines(e))
