"""The device check report's sections for the parts themselves (device_check.py: which ran, in what
time, why one did not) and for the sm90a part (issue 18: the sm_90a GEMM, and the sm_90a attention against its
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
