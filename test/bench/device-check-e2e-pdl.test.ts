/**
 * The e2e part's PDL runs (scripts/device-check/e2e.py, python3 only, no torch): the plan adds a
 * --no-pdl graphs run at each model's middle k at the largest L and drops as many --no-graphs runs
 * from the end of the order; the rows put the default run's PDL, the --no-pdl figure and the
 * matching predictions (PDL on where the run had it) side by side; the report gains the PDL columns
 * and line; a CLI without --no-pdl is a refusal, not a failure.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { writeE2ePredictions } from '../../src/bench/e2e-bundle.js';

const exec = promisify(execFile);
const DIR = resolve('scripts/device-check');
const python = await exec('python3', ['-c', 'pass']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-e2e-pdl-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function py(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec('python3', args, { maxBuffer: 64 << 20, cwd: DIR });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe.skipIf(!python)('the e2e part with and without PDL (python3 only)', () => {
  test('the plan: --no-pdl after the default run of Qwen3-8B\'s and 0.6B\'s k = 8 at L = 4096; as many commands as before, 0.6B\'s L = 1024 k = 4 / 16 --no-graphs dropped', async () => {
    const r = await py(['-c', `import json
from e2e import tidarc_plan
from e2e_cost import GPU_PREFIXES, DRY_PREFIXES, gpu_models, dry_models
m = gpu_models()
print(json.dumps({'gpu': [[m[i][0]['name'], L, k, mode] for i, L, k, mode in tidarc_plan(m, GPU_PREFIXES)], 'dry': tidarc_plan(dry_models(), DRY_PREFIXES)}))`]);
    expect(r.code, r.stderr).toBe(0);
    const { gpu, dry } = JSON.parse(r.stdout) as { gpu: [string, number, number, string][]; dry: unknown[] };
    expect(gpu).toHaveLength(2 * 2 * 3 * 2);  // 2 models x 2 L x 3 k x (default, --no-graphs): as before the --no-pdl runs
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
    expect(dry).toEqual([[0, 16, 2, 'default'], [0, 16, 2, 'no-pdl'], [0, 16, 2, 'no-graphs']]);
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
