/**
 * The e2e part's fold-norms A/B (scripts/device-check/e2e.py, python3 only, no torch): last in the
 * plan, --no-fold-norms at Qwen3-0.6B's then Qwen3-8B's k = 8 at L = 4096, made only where the
 * default run folded (bench-step's `foldNorms`) or failed (the diagnosis); the rows put the
 * measured saving beside the predicted one (the bundle's unfolded prediction, in the run's mode);
 * the report gains the fold table; a CLI without --no-fold-norms is a refusal, not a failure.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { devicePy as py, hasPython as python } from '../helpers/device-check-python.js';
import { afterAll, describe, expect, test } from 'vitest';
import { writeE2ePredictions } from '../../src/bench/e2e-bundle.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-e2e-fold-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!python)('the e2e part with and without the folded norms (python3 only)', () => {
  test('the A/B runs where the default run folded; rows and report: measured saving beside predicted, in the run\'s mode', async () => {
    // A stand-in bench: MADE-UP figures, graphs 4 ms folded, 5 ms --no-fold-norms (AR); launch by launch 9 ms; PDL on.
    // 'off': the JSON says the fold was off by default (no A/B run, a note).
    // MADE-UP predictions: graphs with PDL 3.9 folded, 4.3 unfolded.
    const script = `import json, sys
from e2e import run_tidarc_plan, table_rows, NO_FOLD
from e2e_cost import GPU_PREFIXES, gpu_models
from e2e_report import write_e2e_reports
models = gpu_models()
s = lambda ms: {'stepMs': {'median': ms, 'p20': ms, 'p80': ms}, 'launchesPerStep': 100, 'hostMs': 0.1, 'gpuMs': ms}
mode = lambda g, l: {'graphs': {'gpuMs': g, 'hostMs': 0.03}, 'launchByLaunch': {'gpuMs': l, 'hostMs': 2.4}}
row = lambda step: {'prefix': 4096, 'step': step, **mode(4.4, 8.8), 'pdl': mode(3.9, 8.0), 'launches': 100, 'rooflineMs': 3.6,
                    'noFold': {**mode(4.9, 9.6), 'pdl': mode(4.3, 8.6), 'launches': 156}}
pred = {'machine': 'sample GPU', 'registers': 'sample', 'models': [{'spec': m[0], 'rows': [row('ar'), row('tidar_k8')]} for m in models]}
out = {}
for case in ('on', 'off'):
    calls = []
    def bench(i, L, k, no_graphs, no_pdl, no_fold=False):
        calls.append([models[i][0]['name'], L, k, no_graphs, no_pdl, no_fold])
        ms = 9 if no_graphs else 5 if no_fold else 4
        fold = {'foldNorms': False, 'foldNormsWhy': 'turned off (--no-fold-norms)'} if no_fold or case == 'off' else {'foldNorms': True}
        return {'tidar': s(ms + 0.5), 'ar': s(ms), 'pdl': True, **fold, 'seconds': 1}
    data = {'notes': [], 'skipped': [], 'tidarcRuns': []}
    runs, graphs, pdl = run_tidarc_plan(models, GPU_PREFIXES, bench, data, lambda: 1e9, lambda m: None)
    rows = table_rows(models, GPU_PREFIXES, {}, runs, graphs == 'supported', None, pred)
    report = dict(data, rows=rows, graphs=graphs, noPdl=pdl, backend='cuda', device={'name': 'sample GPU'}, predictions={'machine': 'sample GPU', 'registers': 'sample'})
    short = write_e2e_reports(report, sys.argv[1])
    pick = lambda model, step: next({k: r[k] for k in ('foldNorms', 'tidarcFoldMs', 'tidarcNoFoldMs', 'predictedFoldMs', 'predictedNoFoldMs', 'foldSaving')}
                                    for r in rows if r['model'] == model and r['prefix'] == 4096 and r['step'] == step)
    out[case] = {'calls': [c for c in calls if c[5]], 'all': len(calls), 'notes': data['notes'], 'noFold': data.get('noFold'), 'short': short,
                 'md': open(sys.argv[1] + '/e2e.md').read(), 'ar06': pick('qwen3-0.6b-shape', 'ar'), 'k8_8b': pick('qwen3-8b-shape-4l', 'tidar_k8'),
                 'runs': [r for r in data['tidarcRuns'] if r.get('noFold')]}
print(json.dumps(out))`;
    const dir = join(root, 'ab');
    mkdirSync(dir);
    const r = await py(['-c', script, dir]);
    expect(r.code, r.stderr).toBe(0);
    type Fig = { foldNorms: boolean | null; tidarcFoldMs: number | null; tidarcNoFoldMs: number | null; predictedFoldMs: number | null; predictedNoFoldMs: number | null; foldSaving: { measured: number | null; predicted: number | null } };
    type Case = { calls: unknown[][]; all: number; notes: string[]; noFold: string | undefined; short: string; md: string; ar06: Fig; k8_8b: Fig; runs: Record<string, unknown>[] };
    const { on, off } = JSON.parse(r.stdout) as Record<'on' | 'off', Case>;
    // The two A/B runs, last, the 0.6B's first.
    expect(on.calls).toEqual([['qwen3-0.6b-shape', 4096, 8, false, false, true], ['qwen3-8b-shape-4l', 4096, 8, false, false, true]]);
    expect(on.all).toBe(26);
    expect(on.noFold).toBe('supported');
    expect(on.runs.map((x) => [x['model'], x['foldNorms']])).toEqual([['qwen3-0.6b-shape', false], ['qwen3-8b-shape-4l', false]]);
    // AR: 4 folded against 5 unfolded = 20% measured; predicted with PDL (the run had it) and graphs: 1 - 3.9 / 4.3.
    expect(on.ar06).toEqual({ foldNorms: true, tidarcFoldMs: 4, tidarcNoFoldMs: 5, predictedFoldMs: 3.9, predictedNoFoldMs: 4.3, foldSaving: { measured: expect.closeTo(0.2, 12), predicted: expect.closeTo(1 - 3.9 / 4.3, 12) } });
    expect([on.k8_8b.tidarcFoldMs, on.k8_8b.tidarcNoFoldMs]).toEqual([4.5, 5.5]);
    expect(on.md).toMatch(/\| model \| L \| step \| mode \| folded ms \| --no-fold-norms ms \| measured saving \| predicted ms \(folded, unfolded\) \| predicted saving \|/);
    expect(on.md).toMatch(/^\| qwen3-0\.6b-shape \| 4096 \| ar \| graphs, PDL on \| 4\.000 \| 5\.000 \| 20\.0% \| 3\.900, 4\.300 \| 9\.3% \|$/m);
    expect(on.md).toMatch(/--no-fold-norms: supported\. transformers/);
    expect(on.short).toMatch(/e2e +qwen3-0\.6b-shape L=4096 +ar: .* --no-fold-norms +5\.00: fold saves 20\.0% \(predicted 9\.3%\)/);
    expect(on.short).not.toMatch(/FAILED/);
    // Off by default: no A/B run, a note per point says why; no fold table.
    expect([off.calls, off.all, off.noFold]).toEqual([[], 24, null]);  // noFold: data has none (JSON null)
    expect(off.notes.filter((n) => n.startsWith('no --no-fold-norms run'))).toEqual([
      'no --no-fold-norms run for qwen3-0.6b-shape L=4096 k=8: the fold was off by default (turned off (--no-fold-norms))',
      'no --no-fold-norms run for qwen3-8b-shape-4l L=4096 k=8: the fold was off by default (turned off (--no-fold-norms))',
    ]);
    expect(off.ar06.tidarcNoFoldMs).toBeNull();
    expect(off.md).not.toMatch(/folded ms/);
  });

  test('skips and diagnoses: no run after a run that did not run, a tidarc without the field, or the fold off; a failed default run gets one', async () => {
    const r = await py(['-c', `import json
from e2e import no_fold_skip, no_fold_diagnosis
s = lambda ms: {'stepMs': {'median': ms, 'p20': ms, 'p80': ms}}
failed = {'error': 'TidarcError: CUDA: tidarc_gemm_qkv: an illegal memory access', 'seconds': 3}
print(json.dumps({
  'skip': [no_fold_skip(x) for x in (None, failed, {'tidar': s(1), 'ar': s(1), 'foldNorms': True}, {'tidar': s(1), 'ar': s(1), 'foldNorms': False, 'foldNormsWhy': 'fp16 model'}, {'tidar': s(1), 'ar': s(1)})],
  'ran': no_fold_diagnosis('qwen3-0.6b-shape', 4096, 8, failed, {'tidar': s(1), 'ar': s(1)}),
  'also': no_fold_diagnosis('qwen3-0.6b-shape', 4096, 8, failed, {'error': 'out of memory'})}))`]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { skip: (string | null)[]; ran: string; also: string };
    expect(out.skip).toEqual(['', null, null, 'the fold was off by default (fp16 model)', 'bench-step reports no foldNorms field (a tidarc without the fold)']);
    expect(out.ran).toMatch(/^qwen3-0\.6b-shape L=4096 k=8: the default run failed \(TidarcError: .*\); with --no-fold-norms it ran: the folded norms/);
    expect(out.also).toMatch(/failed too \(out of memory\): not the fold alone$/);
  });

  test('tidarc_bench passes --no-fold-norms and records a CLI that refuses it as refused (a finding, not a failed run)', async () => {
    const fake = join(root, 'fake');
    mkdirSync(join(fake, 'bin'), { recursive: true });
    writeFileSync(join(fake, 'bin', 'tidarc.js'), `const a = process.argv.slice(2);
if (a.includes('--no-fold-norms') && process.env.REFUSE) { console.error("error: unknown option '--no-fold-norms'"); process.exit(1); }
const s = { stepMs: { median: 1, p20: 1, p80: 1 } };
console.log(JSON.stringify({ args: a, foldNorms: !a.includes('--no-fold-norms'), tidar: s, ar: s }));
`);
    const script = (refuse: boolean): string => `import json, os
from e2e import tidarc_bench
from e2e_report import failed_runs
env = {**os.environ, **({'REFUSE': '1'} if ${refuse ? 'True' : 'False'} else {})}
t = {'reps': 1, 'minSeconds': 0, 'warmup': 0}
rs = [tidarc_bench('${process.execPath}', '${fake}', 'ckpt', 8, 4096, 'cuda', False, t, env, 30, no_fold=f) for f in (False, True)]
runs = [{'model': 'm', 'prefix': 4096, 'draft': 8, 'noGraphs': False, 'noPdl': False, 'noFold': True, 'error': rs[1].get('refused')}]
print(json.dumps({'rs': rs, 'failed': len(failed_runs({'tidarcRuns': runs, 'noFold': 'unsupported: ' + str(rs[1].get('refused'))}))}))`;
    const ok = await py(['-c', script(false)]);
    expect(ok.code, ok.stderr).toBe(0);
    const [plain, noFold] = (JSON.parse(ok.stdout) as { rs: { args: string[]; foldNorms: boolean }[] }).rs;
    expect([plain!.args.includes('--no-fold-norms'), plain!.foldNorms, noFold!.args.includes('--no-fold-norms'), noFold!.foldNorms]).toEqual([false, true, true, false]);
    const refused = await py(['-c', script(true)]);
    expect(refused.code, refused.stderr).toBe(0);
    const out = JSON.parse(refused.stdout) as { rs: Record<string, unknown>[]; failed: number };
    expect(out.rs[1]!['refused']).toMatch(/unknown option '--no-fold-norms'/);
    expect(out.rs[1]!['error']).toBeUndefined();
    expect(out.failed).toBe(0);
  });

  test('prepare\'s predictions carry each folded step unfolded (noFold: 2 launches a layer more, slower), which the rows read in the run\'s mode', async () => {
    const bundle = join(root, 'bundle');
    mkdirSync(bundle);
    const written = await writeE2ePredictions(bundle, true);
    const spec = written.models[0]!.spec;
    for (const row of written.models[0]!.rows) {
      expect([row.foldedNorms, row.noFold?.launches], row.step).toEqual([2 * spec.layers, row.launches + 2 * spec.layers]);
      expect(row.noFold!.pdl.graphs.gpuMs, row.step).toBeGreaterThan(row.pdl.graphs.gpuMs);
    }
    const r = await py(['-c', `import json, sys
from e2e import load_predictions, table_rows, NO_FOLD
from e2e_cost import dry_models, DRY_PREFIXES
p = load_predictions(sys.argv[1])
s = lambda ms: {'stepMs': {'median': ms, 'p20': ms, 'p80': ms}, 'launchesPerStep': 19, 'hostMs': 0.1, 'gpuMs': ms}
runs = {(0, 16, 2, False): {'tidar': s(1.0), 'ar': s(0.9), 'pdl': True, 'foldNorms': True}, (0, 16, 2, NO_FOLD): {'tidar': s(1.2), 'ar': s(1.1), 'pdl': True, 'foldNorms': False}}
rows = table_rows(dry_models(), DRY_PREFIXES, {}, runs, True, None, p)
print(json.dumps([{k: r[k] for k in ('step', 'predictedFoldMs', 'predictedNoFoldMs', 'foldSaving')} for r in rows]))`, bundle]);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as { step: string; predictedFoldMs: number; predictedNoFoldMs: number; foldSaving: { measured: number; predicted: number } }[];
    for (const x of rows) {
      const w = written.models[0]!.rows.find((y) => y.step === x.step)!;
      // The default runs had PDL and graphs: the PDL graphs predictions, folded and not.
      expect([x.predictedFoldMs, x.predictedNoFoldMs]).toEqual([w.pdl.graphs.gpuMs, w.noFold!.pdl.graphs.gpuMs]);
      expect(x.foldSaving.predicted).toBeCloseTo(1 - w.pdl.graphs.gpuMs / w.noFold!.pdl.graphs.gpuMs, 12);
    }
    expect(rows.map((x) => x.foldSaving.measured)).toEqual([expect.closeTo(1 - 0.9 / 1.1, 12), expect.closeTo(1 - 1 / 1.2, 12)]);
  });
});
