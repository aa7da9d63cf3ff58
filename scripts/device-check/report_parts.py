"""The device check report's sections for the parts themselves (device_check.py: which ran, in what
time, why one did not), for the overheads part (the step cost model's launch and host constants, measured against
assumed) and for the sm90a part (issue 18: the sm_90a GEMM, and the sm_90a attention against its
mma.sync twin and FlexAttention). Standard library only."""


def _fmt(x, digits=1):
    return '-' if x is None else f'{x:.{digits}f}'


def parts_lines(data):
    """The run's plan and what came of each part; the tools the facts part found."""
    lines = []
    if data.get('bundleMissing'):
        lines += [f"The bundle lacks: {'; '.join(data['bundleMissing'])} (npm run device-check:prepare).", '']
    parts = data.get('parts', [])
    if parts:
        lines += [f"Budget {_fmt(data.get('budgetS'), 0)} s; each part in its own process, its window its share of the budget plus what earlier "
                  'parts left (attention and sm90a: their own shares only).', '', '| part | result | seconds | window s | note |', '|---|---|---|---|---|']
        lines += [f"| {r['name']} | {r['status']} | {_fmt(r.get('seconds'))} | {_fmt(r.get('windowS'))} | {r.get('why', '').replace('|', '/')} |" for r in parts]
        lines.append('')
    tools = data.get('tools')
    if tools:
        lines += ['Tools: ' + '; '.join(f'{k} {v}' for k, v in tools.items()) + '.', '']
    return lines


def sm90a_lines(s):
    """Per weight shape: every token tile (wgmma N) against float64, and bitwise against the first tile's output."""
    units = s.get('units', [])
    lines = ['Each kernel runs the same tokens through tensor maps (cuTensorMapEncodeTiled); a token tile is a wgmma N. Bitwise equal '
             'across tiles is what batch invariance of the sm_90a path needs: if a row differs, M-dependent tiles must not serve one runner.', '',
             '| weight | N x K | dtype | split-K | rows | token tiles | worst error / bound | tiles bitwise equal | result |', '|---|---|---|---|---|---|---|---|---|']
    for u in units:
        worst = [k['worst'] for k in u['kernels']]
        errors = [f"{k['symbol']}: {k['error']}" for k in u['kernels'] if 'error' in k]
        lines.append(f"| {u['label']} | {u['n']}x{u['k']} | {u['dtype']} | {u['splitK']} | {u['rows']} | {', '.join(str(k['tileT']) for k in u['kernels'])} | "
                     f"{'not finite' if None in worst or not worst else f'{max(worst):.3g}'} | {'yes' if all(k['bitwiseSameAsFirst'] for k in u['kernels']) else 'NO'} | "
                     f"{'ok' if u['ok'] else 'FAIL'} |" + (f" {'; '.join(errors)}" if errors else ''))
    return lines


def sm90a_short(s):
    units = s.get('units', [])
    bad = [u['label'] for u in units if not u['ok']]
    return (f"sm_90a GEMM: {len(units) - len(bad)}/{len(units)} weight shapes ok (float64, every wgmma N bitwise equal)"
            + (f"; FAILED: {', '.join(bad)}" if bad else ''))


def _err(x):
    return 'not finite' if x is None else f'{x:.2e}'


def sm90a_attention_lines(a):
    """attention_sm90a.py's section (the sm90a part's 'attention'): both kernels against float64 at each split count, then per
    point the sm_90a kernel raced against its mma.sync twin (each at its fastest split count) and FlexAttention."""
    corr = a.get('correctness', [])
    lines = [f"Correctness: {sum(r['ok'] for r in corr)} of {len(corr)} launches (the sm_90a kernel and its mma.sync twin, each split count) "
             'within the tolerance of the float64 reference, NaN in the unused cache tail.', '',
             '| case | kernel | prefix | splits | max error | lse error | result |', '|---|---|---|---|---|---|---|']
    lines += [f"| {r['case']} | {'sm_90a' if r['kernel'] == 'sm90a' else 'mma.sync'} | {', '.join(map(str, r['prefix']))} | {r['splits']} | "
              f"{_err(r['maxError'])} | "
              f"{r['lseMaxError']:.2e} | {'ok' if r['ok'] else 'FAIL'} |" for r in corr]
    bench = a.get('bench', [])
    if bench:
        lines += ['', 'Each kernel at its fastest split count; FlexAttention compiled with the BlockMask of the same mask; CUDA events, median '
                  '(p20-p80); TFLOP/s of the useful FLOPs.', '',
                  '| case | prefix L | batch | sm_90a us (p20-p80) | splits | TFLOP/s | mma.sync us | splits | Flex us | sm_90a vs mma.sync | sm_90a vs Flex | max diff |',
                  '|---|---|---|---|---|---|---|---|---|---|---|---|']
        for r in bench:
            s, m, f = r['sm90a'], r['sm90'], r.get('flex')
            lines.append(f"| {r['case']} | {r['prefix']} | {r['batch']} | {_fmt(s['medianUs'])} ({_fmt(s['p20Us'])}-{_fmt(s['p80Us'])}) | {s['splits']} | "
                         f"{_fmt(s['tflops'])} | {_fmt(m['medianUs'])} | {m['splits']} | {_fmt(f['medianUs']) if f else 'error: ' + r.get('flexError', 'not run')} | "
                         f"{_fmt(r['sm90aVsSm90'], 2)}x | {_fmt(r.get('sm90aVsFlex'), 2) + 'x' if r.get('sm90aVsFlex') is not None else '-'} | "
                         f"{r['sm90aVsSm90MaxDiff']:.2e} |")
    if a.get('skipped'):
        lines += ['', f"Skipped for the time budget: {', '.join(a['skipped'])}."]
    return lines


def sm90a_attention_short(a):
    corr, bench = a.get('correctness', []), a.get('bench', [])
    bad = [f"{r['case']} {r['kernel']} splits {r['splits']}" for r in corr if not r['ok']]
    return ([f"sm_90a attention: {len(corr) - len(bad)}/{len(corr)} checks ok (float64, sm_90a and mma.sync)" + (f"; FAILED: {', '.join(bad[:8])}" if bad else '')]
            + [f"sm_90a attention {r['case']:>11} L={r['prefix']:<6} B={r['batch']}: sm_90a {_fmt(r['sm90a']['medianUs']):>8} us  mma.sync {_fmt(r['sm90']['medianUs']):>8}  "
               f"flex {_fmt(r['flex']['medianUs']) if r.get('flex') else '-':>8}" for r in bench])


# The step cost model's constants (src/bench/step-overheads.ts), in its order: StepOverheads, then PdlOverheads.
STEP_OVERHEAD_NAMES = ('hostLaunchS', 'streamGapS', 'graphNodeGapS', 'graphStartS', 'hostGraphLaunchS', 'copyLatencyS', 'hostCopyS', 'hostStepS', 'smallKernelS')
PDL_OVERHEAD_NAMES = ('waitReleaseS', 'rampS')
SERIES_NAMES = ('graph-E', 'graph-S', 'graph-E-pdl', 'graph-S-pdl', 'stream-E', 'copies', 'graph-E-copy')


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _us(s):
    """Seconds as microseconds, 3 decimals at most ('0.58', '8.6', '20'), or '-'."""
    return '-' if not _num(s) else f'{s * 1e6:.3f}'.rstrip('0').rstrip('.')


def _cell(x):
    return str(x).replace('|', '/').replace('\n', ' ')


def assumed_of(data):
    """The constants the bundle's predictions assume: the overheads part's copy (parts.py assumed_overheads), else the e2e
    part's (e2e.py keeps the predictions' overheads and pdlOverheads); ({name: seconds}, where they came from) or ({}, None)."""
    sec = data.get('overheads') if isinstance(data.get('overheads'), dict) else {}
    a = sec.get('assumed')
    if isinstance(a, dict) and isinstance(a.get('overheads'), dict):
        return {**a['overheads'], **(a.get('pdlOverheads') or {})}, f"the bundle's {a.get('file') or 'e2e_predictions.json'} ({a.get('machine') or '?'})"
    p = (data.get('e2e') or {}).get('predictions') or {}
    if isinstance(p.get('overheads'), dict):
        return {**p['overheads'], **(p.get('pdlOverheads') or {})}, f"the e2e part's predictions ({p.get('machine') or '?'})"
    return {}, None


def _part_note(data, name):
    r = next((p for p in data.get('parts', []) if p.get('name') == name), None)
    return f"the {name} part {r['status']}" + (f" ({r['why']})" if r.get('why') else '') if r else f'the {name} part did not run'


def overheads_lines(data):
    """The overheads part (overheads.mjs): each StepOverheads / PdlOverheads constant assumed against measured, then the fitted
    series; one line when the part did not measure them. [] when the check had no such part in its plan."""
    sec = data.get('overheads')
    ran = any(p.get('name') == 'overheads' for p in data.get('parts', []))
    if not isinstance(sec, dict):
        return [f"Not measured: {_part_note(data, 'overheads')}.", ''] if ran else []
    try:
        return _overheads_table(sec, data)
    except Exception as e:  # noqa: BLE001 -- a malformed section is reported, never a crashed report
        return [f"The overheads section could not be rendered ({type(e).__name__}: {e}).", '']


def _overheads_table(sec, data):
    lines = []
    dev = sec.get('device') or {}
    cc = dev.get('computeCapability')
    pdl = sec.get('pdl') or {}
    k = sec.get('kernels') or {}
    if not sec.get('ok'):
        lines += [f"The measurement failed: {_cell(sec.get('error') or _part_note(data, 'overheads'))}.", '']
    measured = sec.get('measured') if isinstance(sec.get('measured'), dict) else {}
    if not measured:
        return lines or ['Not measured: overheads.mjs reported no constants.', '']
    lines += [f"Measured with overheads.mjs on {dev.get('name', '?')}" + (f" (compute capability {cc[0]}.{cc[1]})" if isinstance(cc, list) and len(cc) == 2 else '')
              + (' -- the emulated driver: its timings are the emulator\'s, not a GPU\'s' if sec.get('emulated') else '')
              + f"; PDL {'on' if pdl.get('on') else 'off'}" + (f" ({_cell(pdl['why'])})" if pdl.get('why') else '')
              + (f"; in {sec['seconds']:.0f} s" if _num(sec.get('seconds')) else '') + '.'
              + (f" Kernels: E (empty) = {_cell(k.get('empty', '?'))}; S (small) = {_cell(k.get('small', '?'))}." if k else ''), '']
    assumed, source = assumed_of(data)
    lines += [f"Assumed: {source or 'not known (the bundle carries no e2e_predictions.json)'}; src/bench/step-overheads.ts says where each figure comes from. "
              'Not identifiable: the series give this constant only in a sum with another, split here with that one\'s assumed value '
              '(`npm run bench:step -- --overheads device-check.json` prices the steps with the measured values).', '',
              '| constant | assumed us | measured us | measured / assumed | identifiable | from |', '|---|---|---|---|---|---|']
    names = [n for n in STEP_OVERHEAD_NAMES + PDL_OVERHEAD_NAMES if n in measured or n in assumed]
    names += [n for n in measured if n not in names]
    for n in names:
        m = measured.get(n) if isinstance(measured.get(n), dict) else {}
        a, v = assumed.get(n), m.get('value')
        ratio = f'{v / a:.2f}x' if _num(v) and _num(a) and a else '-'
        ident = '-' if n not in measured else 'yes' if m.get('identifiable') else 'no'
        shown = _us(v) if _num(v) else 'not measured' if n in measured else 'not reported'
        lines.append(f"| {n} | {_us(a)} | {shown} | {ratio} | {ident} | {_cell(m.get('from', ''))} |")
        if n == 'copyLatencyS':
            lines += _copy_node_rows(sec, assumed)
    series = sec.get('series') if isinstance(sec.get('series'), dict) else {}
    if series:
        lines += ['', 'The series: N launches (or copies) each, GPU time by events, fitted T(N) = intercept + slope x N (least squares).', '',
                  '| series | N | GPU ms | slope us | intercept us | r^2 |', '|---|---|---|---|---|---|']
        for n in [s for s in SERIES_NAMES if s in series] + [s for s in series if s not in SERIES_NAMES]:
            s = series[n]
            if not isinstance(s, dict):
                lines.append(f"| {n} | not measured{' (' + _cell(pdl.get('why')) + ')' if n.endswith('-pdl') and not pdl.get('on') and pdl.get('why') else ''} | | | | |")
                continue
            ms = ', '.join(f'{x:.4g}' for x in s.get('gpuMs', []) if _num(x))
            r2 = f"{s['r2']:.4f}" if _num(s.get('r2')) else '-'
            lines.append(f"| {n} | {', '.join(str(x) for x in s.get('n', []))} | {ms} | {_us(s.get('slopeS'))} | {_us(s.get('interceptS'))} | {r2} |")
    host = sec.get('host') if isinstance(sec.get('host'), dict) else {}
    if host:
        lines += ['', 'Host, by the wall clock: ' + '; '.join(f'{k} {_us(v)} us' for k, v in host.items()) + '.']
    warnings = [w for w in sec.get('warnings') or [] if isinstance(w, str)] if isinstance(sec.get('warnings'), list) else []
    if warnings:
        lines += ['', f"Warnings: {'; '.join(_cell(w) for w in warnings)}."]
    return lines + ['']


def _copy_node(sec, assumed):
    """overheads.mjs's graphCopyNodeS (the step's upload as a graph node: graph-E-copy against graph-E) and the model's price of
    it, copyLatencyS + graphNodeGapS, assumed (the bundle's constants, else the part's own assumedS) and with the measured
    constants; None where the section has no such figure (an older overheads.mjs)."""
    c = sec.get('graphCopyNodeS')
    if not isinstance(c, dict):
        return None
    model = c.get('model') if isinstance(c.get('model'), dict) else {}
    a = assumed.get('copyLatencyS'), assumed.get('graphNodeGapS')
    price = a[0] + a[1] if _num(a[0]) and _num(a[1]) else model.get('assumedS')
    return c, model, price


def _copy_node_rows(sec, assumed):
    """The table's graphCopyNodeS row, beside copyLatencyS: the assumed column is the model's assumed price of the node."""
    got = _copy_node(sec, assumed)
    if got is None:
        return []
    c, model, price = got
    v = c.get('value')
    ratio = f'{v / price:.2f}x' if _num(v) and _num(price) and price else '-'
    shown = _us(v) if _num(v) else 'not measured'
    priced = (f"; the model prices it copyLatencyS + graphNodeGapS = {_us(model['valueS'])} us with the measured constants, {_us(price)} us assumed"
              if _num(model.get('valueS')) else '; the model prices it copyLatencyS + graphNodeGapS')
    return [f"| graphCopyNodeS (the step's upload as a graph node; bench:step --overheads prices it with this) | {_us(price)} | {shown} | {ratio} | {'yes' if c.get('identifiable') else 'no'} | "
            f"{_cell(c.get('from', ''))}{priced} |"]


def overheads_short(data):
    """The summary line: each measured constant against its assumed value, or why there is none; None without the part."""
    sec = data.get('overheads')
    if not isinstance(sec, dict):
        ran = any(p.get('name') == 'overheads' for p in data.get('parts', []))
        return f"overheads: not measured ({_part_note(data, 'overheads')})" if ran else None
    measured = sec.get('measured') if isinstance(sec.get('measured'), dict) else {}
    if not sec.get('ok') and not measured:
        return f"overheads: FAILED {_cell(sec.get('error', ''))}"
    assumed, _ = assumed_of(data)
    cells = [f"{n} {_us(m['value'])}" + (f"/{_us(assumed[n])}" if _num(assumed.get(n)) else '') + ('' if m.get('identifiable') else '*')
             for n, m in measured.items() if isinstance(m, dict) and _num(m.get('value'))]
    node = _copy_node(sec, assumed)
    if node is not None and _num(node[0].get('value')):
        # Beside copyLatencyS: the copy node measured against the model's assumed price of it (copyLatencyS + graphNodeGapS).
        at = next((i + 1 for i, c in enumerate(cells) if c.startswith('copyLatencyS ')), len(cells))
        cells.insert(at, f"graphCopyNodeS {_us(node[0]['value'])}" + (f"/{_us(node[2])}" if _num(node[2]) else ''))
    warnings = len(sec.get('warnings') or []) if isinstance(sec.get('warnings'), list) else 0
    return (f"overheads ({'FAILED, ' if not sec.get('ok') else ''}us measured/assumed{', emulator' if sec.get('emulated') else ''}; * not identifiable alone): "
            + (', '.join(cells) or 'none measured') + (f'; {warnings} warning(s) in device-check.md' if warnings else ''))
