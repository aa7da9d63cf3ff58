/**
 * The e2e part's PDL runs (scripts/device-check/e2e.py, python3 only, no torch): the plan adds a
 * --no-pdl graphs run at each model's middle k at the largest L and drops as many --no-graphs runs
 * from the end of the order; the rows put the default run's PDL, the --no-pdl figure and the
 * matching predictions (PDL on where the run had it) side by side; the report gains the PDL columns
 * and line; a CLI without --no-pdl is a refusal, not a failure.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { devicePy as py, hasPython as python } from '../helpers/device-check-python.js';
import { afterAll, describe, expect, test } from 'vitest';
import { writeE2ePredictions } from '../../src/bench/e2e-bundle.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-e2e-pdl-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!python)('the e2e part with and without PDL (python3 only)', () => {
  test('the plan: --no-pdl after the default run of Qwen3-8B\'s and 0.6B\'s k = 8 at L = 4096; as many commands as before, 0.6B\'s L = 1024 k = 4 / 16 --no-graphs dropped', async () => {
    const r = await py(['-c', `import json
from e2e import tidarc_plan
from e2e_cost import GPU_PREFIXES, DRY_PREFIXES, gpu_models, dry_models
m = gpu_models()
print(json.dumps({'gpu': [[m[i][0]['name'], L, k, mode] for i, L, k, mode in tidarc_plan(m, GPU_PREFIXES)], 'dry': tidarc_plan(dry_models(), DRY_PREFIXES)}))`]);
    expect(r.code, r.stderr).toBe(0);
    const { gpu, dry } = JSON.parse(r.stdout) as { gpu: [string, number, number, string][]; dry: unknown[] };
    expect(gpu).toHaveLength(2 * 2 * 3 * 2 + 2);  // 2 models x 2 L x 3 k x (default, --no-graphs): as before the --no-pdl runs; + the two --no-fold-norms runs
    expect(gpu.slice(-2)).toEqual([['qwen3-0.6b-shape', 4096, 8, 'no-fold-norms'], ['qwen3-8b-shape-4l', 4096, 8, 'no-fold-norms']]);  // last: a short budget drops them first
    expect(gpu.slice(0, 6)).toEqual([
      ['qwen3-8b-shape-4l', 4096, 8, 'default'], ['qwen3-8b-shape-4l', 4096, 8, 'no-pdl'], ['qwen3-8b-shape-4l', 4096, 8, 'no-graphs'],
      ['qwen3-0.6b-shape', 4096, 8, 'default'], ['qwen3-0.6b-shape', 4096, 8, 'no-pdl'], ['qwen3-0.6b-shape', 4096, 8, 'no-graphs'],
    ]);
    expect(gpu.filter((x) => x[3] === 'no-pdl')).toHaveLength(2);
    expect(gpu.filter((x) => x[3] === 'default')).toHaveLength(12);  // every point keeps its default run
    const noGraphs = gpu.filter((x) => x[3] === 'no-graphs').map((x) => `${x[0]} ${x[1]} ${x[2]}`);
    expect(noGraphs).toHaveLength(10);
    expect(noGraphs).not.toContain('qwen3-0.6b-shape 1024 4');
    expect(noGraphs).not.toContain('qwen3-0.6b-shape 1024 16');
    expect(noGraphs).toContain('qwen3-0.6b-shape 1024 8');  // the 0.6B AR at L = 1024 launch by launch (the 2x goal)
    expect(dry).toEqual([[0, 16, 2, 'default'], [0, 16, 2, 'no-pdl'], [0, 16, 2, 'no-graphs'], [0, 16, 2, 'no-fold-norms']]);
  });

  test('rows and report: the default run\'s PDL, graphs --no-pdl beside it, each against its own prediction (PDL on where the run had it)', async () => {
    // MADE-UP timings: default (graphs, PDL on) AR 4 ms, --no-pdl 5 ms, --no-graphs 9 ms; MADE-UP predictions: graphs 4.4 without PDL, 3.9 with.
    const script = `
import json, sys
from e2e import NO_PDL, table_rows
from e2e_cost import gpu_models
from e2e_report import write_e2e_reports
models = gpu_models(4)
def stats(ms): return {'stepMs': {'median': ms, 'p20': ms, 'p80': ms}, 'launchesPerStep': 100, 'hostMs': 0.1, 'gpuMs': ms}
runs = {}
for i in (0, 1):
    runs[(i, 4096, 8, False)] = {'tidar': stats(4.5), 'ar': stats(4.0), 'pdl': i == 1, 'pdlReason': 'sample'}
    runs[(i, 4096, 8, True)] = {'tidar': stats(9.5), 'ar': stats(9.0), 'pdl': i == 1}
    runs[(i, 4096, 8, NO_PDL)] = {'tidar': stats(5.5), 'ar': stats(5.0), 'pdl': False}
peaks = {'copyBytesPerMs': 4e9, 'matmulFlopsPerMs': 8e11, 'how': 'sample'}
row = lambda step: {'prefix': 4096, 'step': step, 'graphs': {'gpuMs': 4.4, 'hostMs': 0.03}, 'launchByLaunch': {'gpuMs': 8.8, 'hostMs': 2.4},
                    'pdl': {'graphs': {'gpuMs': 3.9, 'hostMs': 0.03}, 'launchByLaunch': {'gpuMs': 8.0, 'hostMs': 2.4}}, 'launches': 100, 'rooflineMs': 3.6}
pred = {'machine': 'sample GPU', 'registers': 'sample', 'models': [{'spec': models[1][0], 'rows': [row('ar'), row('tidar_k8')]}, {'spec': models[0][0], 'rows': [row('ar')]}]}
rows = table_rows(models, (4096,), {}, runs, True, peaks, pred)
data = {'rows': rows, 'predictions': {'machine': 'sample GPU', 'registers': 'sample'}, 'device': {'name': 'sample GPU'}, 'graphs': 'supported', 'noPdl': 'supported', 'backend': 'cuda', 'peaks': peaks,
        'tidarcRuns': [{'model': 'qwen3-0.6b-shape', 'prefix': 4096, 'draft': 8, 'noGraphs': False, 'noPdl': True, 'seconds': 1.0, 'error': "error: unknown option '--no-pdl'"}]}
print(write_e2e_reports(data, sys.argv[1]))
data['noPdl'] = "unsupported: error: unknown option '--no-pdl'"
print(write_e2e_reports(data, sys.argv[1]).splitlines()[0])
print(json.dumps(rows))
`;
    const out = join(root, 'report');
    mkdirSync(out);
    const r = await py(['-c', script, out]);
    expect(r.code, r.stderr).toBe(0);
    type Row = { model: string; step: string; pdl: boolean | null; tidarcGraphsMs: number; tidarcNoPdlMs: number | null; predictedGraphsMs: number; predictedLaunchesMs: number; predictedNoPdlMs: number; ratios: Record<string, number | null> };
    const rows = JSON.parse(r.stdout.trim().split('\n').pop()!) as Row[];
    const at = (model: string, step: string): Row => rows.find((x) => x.model === model && x.step === step)!;
    const ar8 = at('qwen3-8b-shape-4l', 'ar'), ar06 = at('qwen3-0.6b-shape', 'ar');
    // The 8B default run had PDL: its graphs and launch by launch are priced with PDL; --no-pdl against the plain prediction.
    expect([ar8.pdl, ar8.tidarcGraphsMs, ar8.tidarcNoPdlMs, ar8.predictedGraphsMs, ar8.predictedLaunchesMs, ar8.predictedNoPdlMs]).toEqual([true, 4, 5, 3.9, 8, 4.4]);
    expect(ar8.ratios['noPdlOverGraphs']).toBe(1.25);
    expect(ar8.ratios['noPdlOverPredicted']).toBeCloseTo(5 / 4.4, 9);
    expect(at('qwen3-8b-shape-4l', 'tidar_k8').tidarcNoPdlMs).toBe(5.5);
    // The 0.6B default run had no PDL: the plain prediction.
    expect([ar06.pdl, ar06.predictedGraphsMs, ar06.predictedLaunchesMs]).toEqual([false, 4.4, 8.8]);
    const md = readFileSync(join(out, 'e2e.md'), 'utf8');
    expect(md).toMatch(/\| PDL \| graphs --no-pdl ms \(measured, predicted\) \| --no-pdl \/ graphs \|/);
    expect(md).toMatch(/\| qwen3-8b-shape-4l \| 4 \| 4096 \| ar \|.*\| on \| 5\.00, 4\.400 \| 1\.25x \| 3\.900, 8\.000 \| 1\.03x, 1\.12x \|$/m);
    expect(md).toMatch(/\| qwen3-0\.6b-shape \| 28 \| 4096 \| ar \|.*\| off \| 5\.00, 4\.400 \| 1\.25x \| 4\.400, 8\.800 \|/m);
    expect(md).toMatch(/Programmatic dependent launch \(graphs --no-pdl \/ graphs with PDL, each a median step\): .*qwen3-8b-shape-4l L=4096 ar 5\.000 \/ 4\.000 ms = 1\.25x, predicted 1\.13x/);
    expect(md).toMatch(/\| Qwen3-8B shape, L = 4096: AR step <= 1\.25x its roofline \(graphs, PDL on\) \|/);
    expect(md).toMatch(/CUDA graphs: supported; --no-pdl: unsupported: error: unknown option '--no-pdl'\. transformers/);  // the second report's
    expect(r.stdout).toMatch(/e2e +qwen3-8b-shape-4l L=4096 +ar: .*PDL on +graphs --no-pdl +5\.00 \(predicted 4\.400\)/);
    // A --no-pdl the CLI refused: a finding, not a failed run.
    expect(r.stdout).toMatch(/e2e: 1 tidarc runs FAILED; first: qwen3-0\.6b-shape L=4096 k=8 --no-pdl/);
    expect(r.stdout).toMatch(/e2e \(cuda backend, graphs: supported, --no-pdl: unsupported: error: unknown option '--no-pdl'\): 8 step rows, 0 points skipped$/m);
    expect(r.stdout.split('\n').filter((l) => l.includes('FAILED'))).toHaveLength(1);
  });

  test('tidarc_bench passes --no-pdl and records a CLI that refuses it as refused', async () => {
    // A stand-in tidarc: refuses --no-pdl like commander, else prints bench-step-shaped JSON with its arguments.
    const fake = join(root, 'fake');
    mkdirSync(join(fake, 'bin'), { recursive: true });
    writeFileSync(join(fake, 'bin', 'tidarc.js'), `const a = process.argv.slice(2);
if (a.includes('--no-pdl') && process.env.REFUSE) { console.error("error: unknown option '--no-pdl'"); process.exit(1); }
const s = { stepMs: { median: 1, p20: 1, p80: 1 } };
console.log(JSON.stringify({ args: a, pdl: !a.includes('--no-pdl'), tidar: s, ar: s }));
`);
    const script = (refuse: boolean): string => `import json, os
from e2e import tidarc_bench
env = {**os.environ, **({'REFUSE': '1'} if ${refuse ? 'True' : 'False'} else {})}
t = {'reps': 1, 'minSeconds': 0, 'warmup': 0}
print(json.dumps([tidarc_bench('${process.execPath}', '${fake}', 'ckpt', 8, 4096, 'cuda', False, t, env, 30, no_pdl=p) for p in (False, True)]))`;
    const ok = await py(['-c', script(false)]);
    expect(ok.code, ok.stderr).toBe(0);
    const [plain, noPdl] = JSON.parse(ok.stdout) as { args: string[]; pdl: boolean }[];
    expect([plain!.args.includes('--no-pdl'), plain!.pdl, noPdl!.args.includes('--no-pdl'), noPdl!.pdl]).toEqual([false, true, true, false]);
    const refused = await py(['-c', script(true)]);
    expect(refused.code, refused.stderr).toBe(0);
    const [, r] = JSON.parse(refused.stdout) as Record<string, unknown>[];
    expect(r!['refused']).toMatch(/unknown option '--no-pdl'/);
    expect(r!['error']).toBeUndefined();
  });

  test('a failed default run gets its --no-pdl run as the diagnosis; a run with PDL off by default, or none, gets none', async () => {
    const r = await py(['-c', `import json
from e2e import no_pdl_skip, no_pdl_diagnosis
s = lambda ms: {'stepMs': {'median': ms, 'p20': ms, 'p80': ms}}
failed = {'error': 'TidarcError: CUDA: cannot launch tidarc_op_embed programmatically: CUDA_ERROR_INVALID_VALUE (programmatic dependent launch: run again with --no-pdl, ...)', 'seconds': 3}
print(json.dumps({
  'skip': [no_pdl_skip(x) for x in (None, failed, {'tidar': s(1), 'ar': s(1), 'pdl': True}, {'tidar': s(1), 'ar': s(1), 'pdl': False, 'pdlReason': 'turned off'}, {'tidar': s(1), 'ar': s(1)})],
  'ran': no_pdl_diagnosis('qwen3-0.6b-shape', 4096, 8, failed, {'tidar': s(1), 'ar': s(1), 'pdl': False}),
  'also': no_pdl_diagnosis('qwen3-0.6b-shape', 4096, 8, failed, {'error': 'out of memory'})}))`]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { skip: (string | null)[]; ran: string; also: string };
    expect(out.skip).toEqual(['', null, null, 'PDL was off by default (turned off)', 'PDL was off by default (bench-step reports no pdl field)']);
    expect(out.ran).toMatch(/^qwen3-0\.6b-shape L=4096 k=8: the default run failed \(TidarcError: CUDA: cannot launch .*\); with --no-pdl it ran: programmatic dependent launch is the likely cause/);
    expect(out.also).toMatch(/with --no-pdl it failed too \(out of memory\): not PDL alone$/);
  });

  test('after a diagnosis that points at PDL, every later run adds --no-pdl (one note says so) and the failed point\'s row takes its --no-pdl run; a --no-pdl run that fails too changes nothing', async () => {
    // A stand-in bench: MADE-UP figures, graphs 4 ms, launch by launch 9 ms; 'pdl-breaks': every run without --no-pdl fails
    // as a broken programmatic launch would; 'both-fail': the first point's default and --no-pdl runs fail, the rest run with PDL.
    const script = `import json, sys
from e2e import run_tidarc_plan, table_rows, NO_PDL
from e2e_cost import GPU_PREFIXES, gpu_models
from e2e_report import write_e2e_reports
models = gpu_models()
s = lambda ms: {'stepMs': {'median': ms, 'p20': ms, 'p80': ms}, 'launchesPerStep': 100, 'hostMs': 0.1, 'gpuMs': ms}
out = {}
for case in ('pdl-breaks', 'both-fail'):
    calls = []
    def bench(i, L, k, no_graphs, no_pdl, no_fold=False):
        calls.append([models[i][0]['name'], L, k, no_graphs, no_pdl] + (['no-fold-norms'] if no_fold else []))
        if case == 'pdl-breaks' and not no_pdl or case == 'both-fail' and len(calls) <= 2:
            return {'error': 'TidarcError: CUDA: cannot launch tidarc_op_rmsnorm programmatically: CUDA_ERROR_LAUNCH_FAILED' if not no_pdl else 'out of memory', 'seconds': 1}
        ms = 9 if no_graphs else 4
        return {'tidar': s(ms + 0.5), 'ar': s(ms), 'pdl': not no_pdl, 'pdlReason': 'turned off (--no-pdl)' if no_pdl else 'on', 'seconds': 1}
    data = {'notes': [], 'skipped': [], 'tidarcRuns': []}
    runs, graphs, pdl = run_tidarc_plan(models, GPU_PREFIXES, bench, data, lambda: 1e9, lambda m: None)
    rows = table_rows(models, GPU_PREFIXES, {}, runs, graphs == 'supported', None)
    pick = lambda model, L, step: next({k: r[k] for k in ('pdl', 'tidarcGraphsMs', 'tidarcLaunchesMs', 'tidarcNoPdlMs')} for r in rows if r['model'] == model and r['prefix'] == L and r['step'] == step)
    report = dict(data, rows=rows, graphs=graphs, noPdl=pdl, backend='cuda', device={'name': 'sample GPU'})
    sys.stderr.write(write_e2e_reports(report, sys.argv[1]))
    out[case] = {'calls': calls, 'notes': data['notes'], 'pdlOff': data.get('pdlOff'), 'forced': sum(1 for r in data['tidarcRuns'] if r.get('pdlOff')),
                 'md': open(sys.argv[1] + '/e2e.md').read(), 'ar8': pick('qwen3-8b-shape-4l', 4096, 'ar'), 'k8': pick('qwen3-8b-shape-4l', 4096, 'tidar_k8'),
                 'ar06': pick('qwen3-0.6b-shape', 4096, 'ar'), 'k4_06': pick('qwen3-0.6b-shape', 1024, 'tidar_k4')}
print(json.dumps(out))`;
    const dir = join(root, 'pdl-off');
    mkdirSync(dir);
    const r = await py(['-c', script, dir]);
    expect(r.code, r.stderr).toBe(0);
    type Fig = { pdl: boolean | null; tidarcGraphsMs: number | null; tidarcLaunchesMs: number | null; tidarcNoPdlMs: number | null };
    type Case = { calls: [string, number, number, boolean, boolean][]; notes: string[]; pdlOff: string | null; forced: number; md: string; ar8: Fig; k8: Fig; ar06: Fig; k4_06: Fig };
    const { 'pdl-breaks': broke, 'both-fail': both } = JSON.parse(r.stdout) as Record<'pdl-breaks' | 'both-fail', Case>;
    // PDL breaks: the first default run fails, its --no-pdl run runs; every later run has --no-pdl, 0.6B's planned --no-pdl run is not made.
    expect(broke.calls.slice(0, 3)).toEqual([['qwen3-8b-shape-4l', 4096, 8, false, false], ['qwen3-8b-shape-4l', 4096, 8, false, true], ['qwen3-8b-shape-4l', 4096, 8, true, true]]);
    // The plan's 24 less 0.6B's --no-pdl run (its default run has --no-pdl already), + 8B's --no-fold-norms run (its default run
    // failed: the diagnosis); 0.6B's is not made (the stand-in's JSON has no foldNorms field).
    expect(broke.calls).toHaveLength(24);
    expect(broke.calls[23]).toEqual(['qwen3-8b-shape-4l', 4096, 8, false, true, 'no-fold-norms']);
    expect(broke.calls.slice(1).every((c) => c[4])).toBe(true);
    expect(broke.calls.filter((c) => c[3])).toHaveLength(10);  // every --no-graphs run of the plan: graphs vs launch by launch
    expect(broke.forced).toBe(22);
    expect(broke.pdlOff).toBe('qwen3-8b-shape-4l L=4096 k=8');
    expect(broke.notes.filter((n) => /adds --no-pdl/.test(n))).toEqual([expect.stringMatching(/^every tidarc run after qwen3-8b-shape-4l L=4096 k=8's diagnosis .* adds --no-pdl: .*graphs against launch by launch/)]);
    expect(broke.notes.filter((n) => /likely cause/.test(n))).toHaveLength(1);
    expect(broke.notes.filter((n) => /^no --no-pdl run/.test(n))).toEqual([]);
    expect(broke.md.match(/adds --no-pdl/g)).toHaveLength(1);
    // The failed point's row: its --no-pdl run as the graphs figure (not beside itself), the --no-graphs --no-pdl run as launch by launch.
    expect(broke.ar8).toEqual({ pdl: false, tidarcGraphsMs: 4, tidarcLaunchesMs: 9, tidarcNoPdlMs: null });
    expect(broke.k8).toEqual({ pdl: false, tidarcGraphsMs: 4.5, tidarcLaunchesMs: 9.5, tidarcNoPdlMs: null });
    expect(broke.ar06).toEqual({ pdl: false, tidarcGraphsMs: 4, tidarcLaunchesMs: 9, tidarcNoPdlMs: null });
    expect(broke.k4_06).toEqual({ pdl: false, tidarcGraphsMs: 4.5, tidarcLaunchesMs: null, tidarcNoPdlMs: null });  // its --no-graphs run is not planned
    // Both fail: not PDL alone; later runs keep PDL (0.6B's planned --no-pdl run is made as before).
    expect(both.calls.slice(0, 2).map((c) => c[4])).toEqual([false, true]);
    expect(both.calls.slice(2).filter((c) => c[4])).toEqual([['qwen3-0.6b-shape', 4096, 8, false, true]]);
    expect(both.calls).toHaveLength(25);  // + 8B's --no-fold-norms run (the diagnosis of its failed default run)
    expect([both.pdlOff, both.forced]).toEqual([null, 0]);
    expect(both.notes.some((n) => /adds --no-pdl/.test(n))).toBe(false);
    expect(both.notes.some((n) => /failed too \(out of memory\): not PDL alone/.test(n))).toBe(true);
    expect(both.ar8).toEqual({ pdl: true, tidarcGraphsMs: 4, tidarcLaunchesMs: 9, tidarcNoPdlMs: null });  // AR from k = 4's run; k = 8's failed
    expect(both.ar06).toEqual({ pdl: true, tidarcGraphsMs: 4, tidarcLaunchesMs: 9, tidarcNoPdlMs: 4 });
  });

  test('prepare\'s predictions carry PDL: each row\'s pdl graphs, no slower than without, found by e2e.py', async () => {
    const bundle = join(root, 'bundle');
    mkdirSync(bundle);
    const written = await writeE2ePredictions(bundle, true);
    for (const row of written.models[0]!.rows) expect(row.pdl.graphs.gpuMs, row.step).toBeLessThanOrEqual(row.graphs.gpuMs);
    const r = await py(['-c', `import json, sys
from e2e import load_predictions, predicted_row
from e2e_cost import dry_models
p = load_predictions(sys.argv[1])
print(json.dumps(predicted_row(p, dry_models()[0][0], 16, 'ar')))`, bundle]);
    expect(r.code, r.stderr).toBe(0);
    const row = JSON.parse(r.stdout) as { graphs: { gpuMs: number }; pdl: { graphs: { gpuMs: number } } };
    expect(row.pdl.graphs.gpuMs).toBe(written.models[0]!.rows[0]!.pdl.graphs.gpuMs);
  });
});
