"""The device check's report: device-check.md (tables) and device-check.svg (a chart of the
benchmark) from the results object, and the short table printed last. Python's standard library
only, so recorded results can be re-rendered anywhere (device_check.py --report-only)."""
import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from xml.sax.saxutils import escape

from machines import header
from report_parts import overheads_lines, overheads_short, parts_lines, sm90a_attention_lines, sm90a_attention_short, sm90a_lines, sm90a_short
from tidarc_abi import AR_VARIANT, tidar_variant

BASELINES = ('tidarc', 'flex', 'sdpa')
HEURISTIC_SLACK = 1.1  # src/tune/report.ts: the heuristic is good on a shape within 10% of the tuned best
COLORS = {'tidarc': '#1b9e77', 'flex': '#d95f02', 'sdpa': '#7570b3'}


def _us(row, who):
    t = row.get(who)
    return t['medianUs'] if t else math.nan


def _fmt(x, digits=1):
    return '-' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'


def correctness_table(rows):
    lines = ['| model | variant | batch | splits | max error | tolerance | lse error | rule | result |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['model']} | {r['variant']} | {r['batch']} | {r['splits']} | {r['maxError']:.2e} | {r['tolerance']:.2e} | "
                     f"{r['lseMaxError']:.2e} | {r['rule']} | {'ok' if r['ok'] else 'FAIL'} |")
    return lines


def _sdpa(r):
    """The SDPA cell: its time and the backend that ran it (attention.time_sdpa: the fastest that runs the mask), or why none did."""
    t = r.get('sdpa')
    if not t:
        return 'error: ' + r.get('sdpaFailed', 'not run')
    return f"{_fmt(t['medianUs'])} ({t['backend']})" if t.get('backend') else _fmt(t['medianUs'])


def _tuned(r):
    """The CUDA search's best of the point's bucket, timed in the benchmark: 'w4-n64-s8 12.3' or '-'."""
    t = r.get('tuned')
    return f"{t['config']} {_fmt(t['medianUs'])}" if t else '-'


def bench_table(rows, predicted=None):
    """predicted: device-check.json's predictedFor, whose predictions the rows carry (machines.py)."""
    lines = [f'| step | n | prefix L | batch | splits | tidarc us (p20-p80) | predicted us ({header(predicted)}) | measured / predicted | tuned best us | Flex us | SDPA us | vs Flex | vs SDPA | TB/s | TFLOP/s | % copy | % matmul |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        t, f, s = _us(r, 'tidarc'), _us(r, 'flex'), _us(r, 'sdpa')
        lines.append(f"| {r['variant']} | {r['n']} | {r['prefix']} | {r['batch']} | {r.get('splits', 1)} | {_fmt(t)} ({_fmt(r['tidarc']['p20Us'])}-{_fmt(r['tidarc']['p80Us'])}) | "
                     f"{_fmt(r.get('predictedUs'))} | {_fmt(t / r['predictedUs'], 2) if r.get('predictedUs') else '-'} | {_tuned(r)} | "
                     f"{_fmt(f) if 'flex' in r else 'error: ' + r.get('flexError', 'not run')} | {_sdpa(r)} | {_fmt(f / t, 2)}x | {_fmt(s / t, 2)}x | "
                     f"{_fmt(r['tidarcTBs'], 2)} | {_fmt(r['tidarcTflops'])} | {_fmt(100 * r['copyShare'])} | {_fmt(100 * r['computeShare'])} |")
    return lines


def dry_bench_table(rows, predicted=None):
    """The dry run's benchmark: the rule's splits checked on the emulator (its microseconds are not a GPU's)."""
    lines = [f'| step | n | prefix L | batch | splits | workspace floats | emulator us | predicted us ({header(predicted)}) | max error | result |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['variant']} | {r['n']} | {r['prefix']} | {r['batch']} | {r['splits']} | {r['workspaceFloats']} | {_fmt(_us(r, 'tidarc'), 0)} | "
                     f"{_fmt(r['predictedUs'])} | {r['maxError']:.2e} | {'ok' if r['ok'] else 'FAIL'} |")
    return lines


def js_fixed(x, digits=1):
    """JavaScript's x.toFixed(digits) for a finite x >= 0 (what report.ts prints): the exact binary value rounded, a tie away
    from zero. Python's format rounds a tie to even (1.125 -> '1.12' where toFixed gives '1.13')."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def run_cells(r):
    """A run row's heuristic and tuned sides in words with their times (report.ts gemmReportLines' cells): 'not timed' for a
    side left out. gemm_tune.run_rows makes the rows. (heuristic, heuristic us or None, tuned, tuned us or None)."""
    h, b = r.get('heuristic'), r.get('tuned')
    return (h['what'] if h else f"{r['heuristicWhat']}: not timed", h['us'] if h else None, b['what'] if b else 'not timed', b['us'] if b else None)


def _tuned_kernel(run):
    """A run row's tuned kernel without its split-K ('b16w1s4', 'sm_90a t32'), or 'not timed'."""
    return run['tuned']['what'].split(' ', 2)[2] if run.get('tuned') else 'not timed'


def gemm_tune_lines(tu):
    """Per searched weight shape: per M the heuristic against the tuned tile, then (a 9.0 device) both kernel families and the winner."""
    lines = ['| GEMM | M | heuristic | us | tuned | us | heuristic / tuned |', '|---|---|---|---|---|---|---|']
    races = []
    for r in tu['shapes']:
        if r.get('error'):
            lines.append(f"| {r['role']} | - | FAILED: {r['error']} | | | | |")
        planned_for = f" for {r['heuristicArches']}" if r.get('heuristicArches') else ''  # the arches the bundle planned it for
        for run in r.get('rows') or []:  # gemm_tune.run_rows: report.ts gemmRunRows's rows and words
            heuristic, h_us, tuned, t_us = run_cells(run)
            # In report.ts gemmReportLines' digits (toFixed), so the cells are tune --report's.
            us = lambda x: '-' if x is None else js_fixed(x)  # noqa: E731
            ratio = f'{js_fixed(h_us / t_us, 2)}x' if h_us is not None and t_us is not None else '-'
            lines.append(f"| {r['role']} | {run['m']} | {heuristic}{planned_for} | {us(h_us)} | {tuned} | {us(t_us)} | {ratio} |")
        if r.get('race'):
            races.append(f"- {r['role']}: {r['race']}")
    if races:
        lines += ['', 'Kernel families on this 9.0 device (one family and split-K run every M of a weight shape):', *races]
    if tu.get('contextLost'):
        lines += ['', f"The search stopped: {tu['contextLost']}." + (f" Not searched: {', '.join(tu['notReached'])}." if tu.get('notReached') else '')]
    return lines


def tune_lines(t):
    """The CUDA search: per shape bucket the heuristic default against the tuned best, and issue 6's goals."""
    if t.get('contextLost') and not t.get('buckets'):
        return [f"Not run: {t['contextLost']}."], 0, 0
    done = [r for r in t.get('buckets', []) if 'best' in r]
    lines = ['| variant | shape | heuristic | us (p20-p80) | tuned best | us (p20-p80) | heuristic / best | timed | rejected | s |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in t.get('buckets', []):
        if 'best' not in r:
            lines.append(f"| {r['variant']} | {r['bucket']} | {r['heuristic']} | FAILED: {r.get('error', '?')} | | | | {len(r['timed'])} | {len(r['rejected'])} | |")
            continue
        timing = {x['config']: x for x in r['timed']}
        h, b = timing[r['heuristic']], timing[r['best']]
        lines.append(f"| {r['variant']} | {r['bucket']} | {r['heuristic']} | {_fmt(h['medianUs'])} ({_fmt(h['p20Us'])}-{_fmt(h['p80Us'])}) | {r['best']} | "
                     f"{_fmt(b['medianUs'])} ({_fmt(b['p20Us'])}-{_fmt(b['p80Us'])}) | {r['heuristicUs'] / r['bestUs']:.2f}x | {len(r['timed'])} of {r.get('configs', '?')} ({r.get('feasible', '?')} feasible) | "
                     f"{len(r['rejected'])} | {_fmt(r.get('seconds'))} |")
    good = sum(r['heuristicUs'] / r['bestUs'] <= HEURISTIC_SLACK for r in done)
    lines += ['', f"Heuristic within {round(100 * (HEURISTIC_SLACK - 1))}% of the tuned best on {good} of {len(done)} shapes "
              f"({100 * good / len(done) if done else 0:.0f}%; goal 90%). "
              f"Timed per shape bucket: at most {max((len(r['timed']) for r in done), default=0)} configurations (limit {t.get('maxConfigs', '?')}) "
              f"and {_fmt(max((r.get('seconds', 0) for r in done), default=0))} s (limit {_fmt(t.get('bucketS'), 0)} s); the search took {_fmt(t.get('seconds'))} s."]
    sm90a = [f"{r['variant']} | {r['bucket']}: " + (f"{_fmt(r['sm90a']['bestUs'])} us at {r['sm90a']['best']} splits vs the best tile's {_fmt(r['bestUs'])} us: {r['faster']} is faster"
                                                     if 'bestUs' in r['sm90a'] and 'best' in r else f"none timed ({len(r['sm90a']['rejected'])} rejected)")
             for r in t.get('buckets', []) if r.get('sm90a')]
    if sm90a:
        lines += ['', f"The sm_90a kernel (TMA + wgmma) at its fastest split count: {'; '.join(sm90a)}."]
    rejected = [f"{r['variant']} | {r['bucket']}: {x['config']} ({x['why']})" for r in t.get('buckets', []) for x in r['rejected']]
    if rejected:
        lines += ['', f"Rejected (wrong output or failed launch, never chosen): {'; '.join(rejected)}."]
    cut = [f"{r['variant']} | {r['bucket']}: {', '.join(r['notReached'])}" for r in t.get('buckets', []) if r.get('notReached')]
    if cut:
        lines += ['', f"Not reached in a bucket's time: {'; '.join(cut)}."]
    if t.get('contextLost') and t.get('buckets'):
        lines += ['', f"The search stopped, the CUDA context lost: {t['contextLost']}." + (f" Not searched: {', '.join(t['skipped'])}." if t.get('skipped') else '')]
    elif t.get('skipped'):
        lines += ['', f"Buckets skipped for the search's budget: {', '.join(t['skipped'])}."]
    if t.get('note'):
        lines += ['', f"Note: {t['note']}."]
    meta = t.get('meta', {})
    lines += ['', f"Database: `{t.get('file', 'tune-cuda.json')}` (meta: tidarc {meta.get('tidarc')}, {meta.get('compiler')}, {meta.get('device')}, driver {meta.get('driver')})."]
    return lines, good, len(done)


def gemm_lines(g, predicted=None):
    """The GEMM part (issue 14): correctness and invariance per kernel, then tidarc vs torch with the prediction
    (for g's predictedFor, else device-check.json's: machines.py)."""
    predicted = g.get('predictedFor') or predicted
    corr = g.get('correctness', [])
    lines = [f"Correctness: {sum(r['ok'] for r in corr)} of {len(corr)} kernels within the float32 bound and bitwise equal, row for row, "
             'to the smallest-M kernel of their weight shape.', '',
             '| weight | N x K | M | split-K | worst error / bound | invariant | result |', '|---|---|---|---|---|---|---|']
    lines += [f"| {r['role']} | {r['unit']} | {r['m']} | {r['splitK']} | {_fmt(r['worstRatio'], 3) if r['worstRatio'] is not None else 'not finite'} | {'yes' if r['invariant'] else 'NO'} | {'ok' if r['ok'] else 'FAIL'} |" for r in corr]
    bench = g.get('bench', [])
    if bench:
        lines += ['', 'tidarc: fp32 activations rounded to bf16 as they are staged; torch: F.linear on bf16 activations (cuBLAS). Same weights, '
                  'rotated past the L2; CUDA events, 10 warm-up, 100 timed calls, median (p20-p80). TB/s counts weights + fp32 activations + fp32 output.', '',
                  f'| weight | N x K | M | split-K | regs | tidarc us (p20-p80) | torch us | vs torch | TB/s | TFLOP/s | % copy | % matmul | predicted us ({header(predicted)}) | measured / predicted |',
                  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
        for r in bench:
            t = r['tidarc']
            lines.append(f"| {r['role']} | {r['n']}x{r['k']} | {r['m']} | {r['splitK']} | {r.get('registers') or '-'} | {_fmt(t['medianUs'])} ({_fmt(t['p20Us'])}-{_fmt(t['p80Us'])}) | "
                         f"{_fmt(r['torch']['medianUs'])} | {_fmt(r['vsTorch'], 2)}x | {_fmt(r['tidarcTBs'], 2)} | {_fmt(r['tidarcTflops'])} | {_fmt(100 * r['copyShare'])} | "
                         f"{_fmt(100 * r['matmulShare'])} | {_fmt(r['predictedUs'])} ({r['predictedBound']}) | {_fmt(r['measuredOverPredicted'], 2)} |")
        small = [r for r in bench if r['m'] <= 72]
        big = [r for r in bench if r['m'] == 272]
        lines += ['', '| goal (issue 14) | measured | met |', '|---|---|---|']
        if small:
            lines.append(f"| M <= 72: >= 80% of copy bandwidth | {100 * min(r['copyShare'] for r in small):.0f}% (worst point) | {'yes' if min(r['copyShare'] for r in small) >= 0.8 else 'NO'} |")
            lines.append(f"| M <= 72: at least as fast as torch.matmul | {min(r['vsTorch'] for r in small):.2f}x (worst point) | {'yes' if min(r['vsTorch'] for r in small) >= 1 else 'NO'} |")
        if big:
            lines.append(f"| M = 272: >= 50% of the bf16 matmul rate | {100 * min(r['matmulShare'] for r in big):.0f}% (worst point) | {'yes' if min(r['matmulShare'] for r in big) >= 0.5 else 'NO'} |")
    if g.get('skipped'):
        lines += ['', f"Skipped for the time budget: {', '.join(g['skipped'])}."]
    return lines


def goals(rows):
    """The issue's goals, from the benchmark rows (None where the grid lacks the points)."""
    def at(variant, L, B=1):
        return next((r for r in rows if r['variant'] == variant and r['prefix'] == L and r['batch'] == B), None)
    out = []
    k16 = [r for r in rows if r['variant'] == tidar_variant(16) and r['prefix'] >= 4096 and 'flex' in r]
    if k16:
        worst = min(_us(r, 'flex') / _us(r, 'tidarc') for r in k16)
        out.append(('TiDAR k=16 step >= 1.3x faster than FlexAttention (L >= 4k)', f'{worst:.2f}x (worst point)', worst >= 1.3))
    big_ar = [r for r in rows if r['variant'] == AR_VARIANT and 2 * r['batch'] * 8 * r['prefix'] * 128 * 2 >= 256e6]
    if big_ar:
        share = min(r['copyShare'] for r in big_ar)
        out.append(('AR step >= 85% of copy bandwidth at >= 256 MB of KV', f'{100 * share:.0f}% (worst point)', share >= 0.85))
    ratios = [(_us(at(tidar_variant(4), L, B), 'tidarc') / _us(at(AR_VARIANT, L, B), 'tidarc')) for L in (4096, 16384, 65536) for B in (1, 8)
              if at(tidar_variant(4), L, B) and at(AR_VARIANT, L, B)]
    if ratios:
        out.append(('k=4 step <= 1.15x the AR step (L >= 4k)', f'{max(ratios):.2f}x (worst point)', max(ratios) <= 1.15))
    return out


def svg_chart(rows, width=960, bar_h=9):
    """Horizontal bars, one group per benchmark point, log-scaled microseconds."""
    if not rows:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="40"><text x="10" y="25">no benchmark points</text></svg>\n'
    vals = [_us(r, w) for r in rows for w in BASELINES if not math.isnan(_us(r, w))]
    lo, hi = math.log10(min(vals)) - 0.1, math.log10(max(vals)) + 0.1
    left, group_h = 190, 3 * bar_h + 8
    height = 40 + group_h * len(rows)
    x = lambda us: left + (width - left - 20) * (math.log10(us) - lo) / (hi - lo)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             '<text x="10" y="16" font-size="13">attention step time, microseconds (log scale; shorter is better)</text>']
    for i, who in enumerate(BASELINES):
        parts.append(f'<rect x="{left + 120 * i}" y="24" width="10" height="10" fill="{COLORS[who]}"/><text x="{left + 14 + 120 * i}" y="33">{who}</text>')
    for g, r in enumerate(rows):
        y0 = 40 + g * group_h
        parts.append(f'<text x="10" y="{y0 + 2 * bar_h}">{escape(r["variant"])} L={r["prefix"]} B={r["batch"]}</text>')
        for i, who in enumerate(BASELINES):
            us = _us(r, who)
            if math.isnan(us):
                continue
            parts.append(f'<rect x="{left}" y="{y0 + i * bar_h}" width="{max(1.0, x(us) - left):.1f}" height="{bar_h - 1}" fill="{COLORS[who]}"/>'
                         f'<text x="{x(us) + 3:.1f}" y="{y0 + i * bar_h + bar_h - 1}" font-size="9">{us:.0f}</text>')
    parts.append('</svg>')
    return '\n'.join(parts) + '\n'


def _pdl_off_verdict(off):
    """The runtime part's PDL-off pass in a few words: its runs' result and whether their tokens equal PDL on's."""
    runs, same = off.get('runs', []), off.get('tokensEqual')
    tokens = 'same tokens as PDL on' if same else 'tokens DIFFER from PDL on (a PDL race?)' if same is False else 'nothing compared'
    skipped = f", {len(off['skipped'])} skipped for the budget" if off.get('skipped') else ''
    threw = f", then it threw: {escape(off['error'])}" if off.get('error') else ''
    return f"{sum(1 for r in runs if r.get('ok'))}/{len(runs)} ok, {tokens}{skipped}{threw}"


def runtime_pdl_off_lines(off):
    """The runtime part's second pass with PDL off (runtime_check.mjs pdlOff): both results side by side, or why it did not run."""
    if not off:
        return []
    if 'runs' not in off:
        return [f"With PDL off: not run ({off.get('skipped', '?')}).", '']
    if off.get('afterFailure') and off.get('notRun'):
        return [f"With PDL off, after PDL on failed: not run ({escape(off['notRun'])}).", '']
    if off.get('afterFailure'):
        lines = [f"Once more with PDL off, in a fresh process after PDL on failed: {sum(1 for r in off['runs'] if r.get('ok'))}/{len(off['runs'])} runs ok"
                 + (f" ({escape(off['stopped'])}: the runs it finished)" if off.get('stopped') else '')
                 + (f", then it threw: {escape(off['error'])}" if off.get('error') and off.get('error') != off.get('stopped') else '')
                 + (f", {len(off['skipped'])} skipped for the budget" if off.get('skipped') else '') + '.', '']
        if off['runs']:
            lines += ['| prompt | k | PDL off: TiDAR == AR | PDL off: cache layer 0 differing, max rel. diff |', '|---|---|---|---|']
            lines += [f"| {escape(r['prompt'])} | {r['draft']} | {'yes' if r['equal'] else 'NO'} | {r['layer0Differing']}, {r['maxRelDiff']:.2e} |" for r in off['runs']]
            lines += ['']
        return lines
    pdl = off.get('pdl') or {}
    lines = [f"Once more with PDL off (loadModel pdl: false; {'on' if pdl.get('on') else 'off'}: {pdl.get('why', '?')}), the same model, prompts and k: "
             f"{_pdl_off_verdict(off)}" + (f" ({off.get('skippedWhy')}: {', '.join(escape(x['prompt']) + ' k=' + str(x['draft']) for x in off['skipped'])})" if off.get('skipped') else '') + '.', '']
    if off['runs']:
        lines += ['| prompt | k | PDL off: TiDAR == AR | PDL off: cache layer 0 differing, max rel. diff | tokens == PDL on\'s |', '|---|---|---|---|---|']
        lines += [f"| {escape(r['prompt'])} | {r['draft']} | {'yes' if r['equal'] else 'NO'} | {r['layer0Differing']}, {r['maxRelDiff']:.2e} | {'yes' if r.get('samePdlOn') else 'NO'} |" for r in off['runs']]
        lines += ['']
    return lines


def write_reports(data, out):
    out = Path(out)
    dev = data.get('device', {})
    corr = data.get('correctness', [])
    bench = data.get('bench', [])
    failed = [r for r in corr if not r['ok']]
    facts = [f'{dev[k]}{unit}' for k, unit in (('sms', ' SMs'), ('capability', ' capability'), ('driverVersion', ' driver'), ('cuda', ' CUDA'), ('torch', ' torch'), ('nvidiaSmi', ''), ('driver', '')) if dev.get(k)]
    md = [f"# tidarc device check, {data.get('date', '?')}{' (dry run on the emulated driver)' if data.get('dryRun') else ''}", '',
          f"Device: {dev.get('name', '?')}{' (' + ', '.join(facts) + ')' if facts else ''}.", '']
    md += parts_lines(data)
    pf = data.get('predictedFor')
    if pf:
        md += [f"Predicted figures (cost models, src/bench via the bundle): for {pf['name']}"
               + ('' if pf['thisGpu'] else f", which is not this GPU ({pf.get('gpu') or 'unknown'}): no machine of the bundle's machines.json matches it") + '.', '']
    if 'ceilings' in data:
        c = data['ceilings']
        rates = f" (the cost models assume {pf['copyTBs']:.2f} TB/s and {pf['matmulTflops']:.0f} TFLOP/s for {pf['name']})" if pf and pf.get('copyTBs') else ''
        md += [f"Ceilings measured in this run: device-to-device copy {c['copyTBs']:.2f} TB/s, bf16 matmul {c['matmulTflops']:.0f} TFLOP/s{rates}.", '']
    md += [f'## Correctness: {len(corr) - len(failed)} of {len(corr)} checks ok', '', *correctness_table(corr), '']
    if bench and data.get('dryRun'):
        md += ['## Benchmark points (dry run: the runtime\'s split-KV count and workspace, checked; emulator times)', '', *dry_bench_table(bench, data.get('predictedFor')), '']
    elif bench:
        md += ['## Benchmark (Qwen3-8B attention: 32 query heads, 8 KV heads, head dim 128, bf16)', '',
               'Same process, same tensors. tidarc: the generated kernel through the driver API. FlexAttention: torch.compile(flex_attention) with a '
               'BlockMask from the same in-step visibility (create_block_mask per point). SDPA: scaled_dot_product_attention with a dense boolean '
               'mask [n, L + n] and enable_gqa, at the fastest of its backends (flash, memory-efficient, cuDNN, math: each forced alone, every one '
               'that runs the mask timed), named beside its time. Baselines read keys as [B, H, L + n, D] (cache and step concatenated once, outside the timing). CUDA events, '
               '10 warm-up, 100 timed calls over rotated inputs (cold L2), median (p20-p80). tidarc runs at the split-KV count and workspace '
               'the runtime would use (splits; predicted: src/codegen/attention-cost-model.ts at the same count), and at the CUDA search\'s best '
               'configuration of the shape bucket when the search timed it (tuned best).', '', *bench_table(bench, data.get('predictedFor')), '']
        g = goals(bench)
        if g:
            md += ['## Goals', '', '| goal | measured | met |', '|---|---|---|', *[f'| {a} | {b} | {"yes" if ok else "NO"} |' for a, b, ok in g], '']
    gm = data.get('gemm')
    if gm:
        md += ['## GEMMs of the linear layers (issue 14)', '', *gemm_lines(gm, data.get('predictedFor')), '']
        if gm.get('tune', {}).get('shapes'):
            md += ['### The GEMM search (tune-cuda.json `gemms`)', '', *gemm_tune_lines(gm['tune']), '']
    if data.get('sm90a'):
        md += ['## sm_90a GEMM: the same sum for every wgmma N (issue 18)', '', *sm90a_lines(data['sm90a']), '']
        if data['sm90a'].get('attention'):
            md += ['## sm_90a attention against its mma.sync twin and FlexAttention (issue 18)', '', *sm90a_attention_lines(data['sm90a']['attention']), '']
    tn = data.get('tune')
    if tn:
        lines, good, total = tune_lines(tn)
        md += ['## Tuning: the CUDA search (heuristic default vs tuned best)', '',
               'Per shape bucket, every configuration (warps x keys per tile x split-KV) is first checked against the float64 reference, '
               'then timed (warm-up, 100 calls over rotated inputs or fewer slow ones filling 100 ms, median with p20-p80).', '', *lines, '']
    rt = data.get('runtime')
    if rt:
        pdl = rt.get('pdl')
        pdl = '' if not pdl else ' Programmatic dependent launch: ' + ('on' if pdl.get('on') else 'off') + f" ({pdl.get('why', '')})."
        error = ' '.join(map(str, rt['error'])) if isinstance(rt.get('error'), list) else str(rt.get('error') or '')
        if rt.get('reason') or not error:
            md += ['## tidarc runtime on the cuda backend', '', f"Backend: {rt.get('backend', '?')} ({rt.get('reason', '?')}).{pdl}", '']
            if error:  # the model loaded, then the check threw
                md += [f"The check FAILED: {escape(error)}", '']
        else:  # the model did not load (or the script failed before it said which backend)
            md += ['## tidarc runtime on the cuda backend', '', f"The model did not load, or the check failed before it ran: {escape(error)}.{pdl}", '']
        if rt.get('loadLines'):  # the load's device lines: the memory preflight's figures, the weights on the device, PDL
            md += ['The load said:', '', *[f"- {escape(str(line))}" for line in rt['loadLines']], '']
        if rt.get('diagnosis'):
            md += [f"Diagnosis: {escape(rt['diagnosis'])}", '']
        if rt.get('runs'):
            md += ['| prompt | k | TiDAR == AR | AR forwards | TiDAR forwards | cache: layer 0 differing | max rel. diff | written past length |', '|---|---|---|---|---|---|---|---|']
            md += [f"| {escape(r['prompt'])} | {r['draft']} | {'yes' if r['equal'] else 'NO'} | {r['arNfe']} | {r['tidarNfe']} | {r['layer0Differing']} | {r['maxRelDiff']:.2e} | {r['writtenPastLength']} |" for r in rt['runs']]
            md += ['']
        md += runtime_pdl_off_lines(rt.get('pdlOff'))
    oh = overheads_lines(data)
    if oh:
        md += ['## Launch and host overheads: measured vs assumed (src/bench/step-cost-model.ts)', '', *oh]
    e2e = data.get('e2e')
    if e2e:
        from e2e_report import e2e_lines
        md += ['## End to end: one decode step against transformers and the roofline (issue 16 item 5)', '', *e2e_lines(e2e)]
    if data.get('benchSkipped'):
        md += [f"Skipped for the time budget: {', '.join(data['benchSkipped'])}.", '']
    (out / 'device-check.md').write_text('\n'.join(md) + '\n')
    (out / 'device-check.svg').write_text(svg_chart([] if data.get('dryRun') else bench))
    short = [f"correctness: {len(corr) - len(failed)}/{len(corr)} ok" + (f"; FAILED: {', '.join(r['model'] + '/' + r['variant'] for r in failed[:8])}" if failed else '')]
    if pf:
        short.append(f"predicted figures: for {pf['name']}" + ('' if pf['thisGpu'] else f" (not this GPU: {pf.get('gpu') or 'unknown'})"))
    if tn:
        short.append(f"tune: not run: {tn['contextLost']}" if tn.get('contextLost') and not tn.get('buckets') else
                     f"tune: heuristic within 10% of the tuned best on {good} of {total} shapes; {tn.get('file', 'tune-cuda.json')}"
                     + (f"; FAILED: {', '.join(r['variant'] + ' | ' + r['bucket'] for r in tn['buckets'] if 'best' not in r)}" if total < len(tn.get('buckets', [])) else ''))
    if gm:
        bad = [r for r in gm.get('correctness', []) if not r['ok']]
        short.append(f"gemm: {len(gm.get('correctness', [])) - len(bad)}/{len(gm.get('correctness', []))} kernels ok (float64 reference, bitwise invariance)"
                     + (f"; FAILED: {', '.join(r['role'] + ' M=' + str(r['m']) for r in bad[:8])}" if bad else ''))
        epi = gm.get('epilogues', [])
        if epi:
            bad = [r for r in epi if not r['ok']]
            short.append(f"gemm epilogues: {len(epi) - len(bad)}/{len(epi)} ok (SwiGLU, lm_head row statistics vs the plain kernel's output)"
                         + (f"; FAILED: {', '.join(r['epilogue'] + ' M=' + str(r['m']) for r in bad[:8])}" if bad else ''))
        tu = gm.get('tune')
        if tu:
            done = [r for r in tu['shapes'] if 'splitK' in r]
            short.append(f"gemm tune: {len(done)} of {len(tu['shapes']) + len(tu.get('notReached', []))} shapes tuned "
                         f"({sum(r['timed'] for r in tu['shapes'])} candidates timed, {sum(len(r['rejected']) for r in tu['shapes'])} rejected); {tu['file']}"
                         + ''.join(f"; {r['role']}: split-K {r['splitK']} " + ', '.join(f"M={v['m']} {_tuned_kernel(v)}" for v in r['rows'])
                                   + (f" ({'the sm_90a' if r['kernel'] == 'sm_90a' else 'the mma.sync'} kernel at every M)" if 'kernel' in r else '') for r in done)
                         + ''.join(f"; {r['role']}: FAILED: {r['error']}" for r in tu['shapes'] if r.get('error')))
        for r in gm.get('bench', []):
            short.append(f"gemm {r['role']:>8} M={r['m']:<4}: tidarc {_fmt(r['tidarc']['medianUs']):>8} us  torch {_fmt(r['torch']['medianUs']):>8}  "
                         f"predicted {_fmt(r['predictedUs']):>8}  {_fmt(100 * r['copyShare'], 0)}% copy")
    if data.get('sm90a'):
        short.append(sm90a_short(data['sm90a']))
        if data['sm90a'].get('attention'):
            short += sm90a_attention_short(data['sm90a']['attention'])
    oh_short = overheads_short(data)
    if oh_short:
        short.append(oh_short)
    if rt:
        short.append(f"runtime (cuda backend, greedy TiDAR == AR, exact cache): {'ok' if rt.get('ok') else 'FAILED'}{'' if rt.get('ok') else ' ' + str(rt.get('error', ''))}"
                     + (f"; PDL off: {_pdl_off_verdict(rt['pdlOff'])}" if (rt.get('pdlOff') or {}).get('runs') is not None else ''))
    if e2e:
        from e2e_report import short_lines
        short += short_lines(e2e)
    for r in bench:
        short.append(f"{r['variant']:>10} L={r['prefix']:<6} B={r['batch']}: tidarc {_fmt(_us(r, 'tidarc')):>8} us at {r.get('splits', 1):>2} splits  "
                     f"predicted {_fmt(r.get('predictedUs')):>8}  tuned {_tuned(r):>16}  flex {_fmt(_us(r, 'flex')):>8}  sdpa {_fmt(_us(r, 'sdpa')):>8}"
                     + (f" ({r['sdpa']['backend']})" if r.get('sdpa', {}).get('backend') else '')
                     + ('' if r.get('ok', True) else '  WRONG'))
    return '\n'.join(short)
