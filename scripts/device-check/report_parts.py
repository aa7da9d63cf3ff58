"""The device check report's sections for the parts themselves (device_check.py: which ran, in what
time, why one did not) and for the sm_90a GEMM part (issue 18). Standard library only."""


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
