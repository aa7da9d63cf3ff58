/**
 * The device check's end-to-end part (issue 16 item 5, scripts/device-check/e2e.py) without a GPU:
 * its roofline arithmetic is roofline.ts's; its rows (tidarc with and without graphs, transformers,
 * the roofline, the ratios) and the issue's goals come out right from bench-step results; and,
 * where torch and transformers are installed (CI installs neither and skips those tests), its
 * --dry-run on the cpu backend, whose correctness check (tidarc and transformers give the same
 * greedy first token on the same checkpoint) must fail when transformers' model differs.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { devicePy as py, hasPython as python } from '../helpers/device-check-python.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ModelSpec } from '../../src/ir/model.js';
import { type StepShape, stepCost } from '../../src/bench/roofline.js';
import { expectedTensors, hfConfigOf, specFromCheckpointConfig } from '../../src/model/checkpoint.js';
import { byteTokenizerConfig, formatByteTokenizerJson } from '../../src/model/tokenizer.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../helpers/emulated-driver.js';
import { E2E_PREDICTIONS, e2eModels, writeE2ePredictions } from '../../src/bench/e2e-bundle.js';

const exec = promisify(execFile);
// CI installs no torch; a machine where one was left installed by hand must not add minutes to CI's
// suite either (TIDARC_E2E_TORCH=1 runs them there).
const torch = python && (!process.env['CI'] || process.env['TIDARC_E2E_TORCH'] === '1')
  && await exec('python3', ['-c', 'import torch, transformers, safetensors']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-e2e-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!python)('the e2e part\'s arithmetic and report (python3 only)', () => {
  test('e2e_cost.step_cost is roofline.ts\'s stepCost on every model, prefix and step kind of the part', async () => {
    const r = await py(['e2e_cost.py']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as { spec: ModelSpec; shape: StepShape; cost: unknown }[];
    // 0.6B and 8B shapes x 2 prefixes x (AR, k = 4, 8, 16), the dry run's model x 3 prefixes x (AR, k = 2).
    expect(rows).toHaveLength(2 * 3 * 4 + 3 * 2);
    for (const row of rows) expect(row.cost, `${row.spec.name} ${JSON.stringify(row.shape)}`).toEqual(stepCost(row.spec, row.shape));
    const k16 = rows.find((x) => x.spec.name === 'qwen3-0.6b-shape' && x.shape.tokens === 272 && x.shape.prefix === 4096)!;
    expect(k16.shape.lmHeadRows).toBe(31);
  });

  test('the checkpoint e2e.py writes is the one init-model writes: config.json as hfConfigOf, read back as the same spec; the byte tokenizer', async () => {
    const script = `
import json
from e2e_hf import byte_tokenizer, hf_config
from e2e_cost import dry_models, gpu_models
print(json.dumps([{'spec': s, 'config': hf_config(s), 'tokenizer': byte_tokenizer(s)} for s, _ in gpu_models() + dry_models()]))
`;
    const r = await py(['-c', script]);
    expect(r.code, r.stderr).toBe(0);
    const models = JSON.parse(r.stdout) as { spec: ModelSpec; config: Record<string, unknown>; tokenizer: unknown }[];
    expect(models.map((m) => m.spec.name)).toEqual(['qwen3-0.6b-shape', 'qwen3-8b-shape-4l', 'e2e-tiny']);
    for (const m of models) {
      expect(m.config, m.spec.name).toEqual(hfConfigOf(m.spec, { eosTokenId: 256 }));
      expect(specFromCheckpointConfig(m.config, 'config.json', { requireMaskToken: true }), m.spec.name).toEqual(m.spec);
      expect(m.tokenizer).toEqual(JSON.parse(formatByteTokenizerJson(byteTokenizerConfig(m.spec.vocabSize, m.spec.maskTokenId))));
    }
  });

  test('the bundle\'s predictions are for e2e.py\'s very models, and e2e.py finds each (model, L, step) in what prepare writes', async () => {
    const r = await py(['-c', 'import json\nfrom e2e_cost import dry_models, gpu_models\nprint(json.dumps({"gpu": [s for s, _ in gpu_models()], "dry": [s for s, _ in dry_models()]}))']);
    expect(r.code, r.stderr).toBe(0);
    const specs = JSON.parse(r.stdout) as { gpu: ModelSpec[]; dry: ModelSpec[] };
    expect(e2eModels(false).specs).toEqual(specs.gpu);
    expect(e2eModels(true).specs).toEqual(specs.dry);
    const bundle = join(root, 'predictions-bundle');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(bundle);
    const written = await writeE2ePredictions(bundle, true);
    const found = await py(['-c', `import json, sys
from e2e import load_predictions, predicted_row
from e2e_cost import dry_models, step_name
p = load_predictions(sys.argv[1])
spec = dry_models()[0][0]
print(json.dumps([predicted_row(p, spec, 16, step_name(k)) for k in (0, 2)] + [predicted_row(p, {**spec, 'layers': 3}, 16, 'ar')]))`, bundle]);
    expect(found.code, found.stderr).toBe(0);
    expect(readFileSync(join(bundle, E2E_PREDICTIONS), 'utf8')).toContain('"e2e-tiny"');
    const rows = JSON.parse(found.stdout) as ({ step: string; graphs: { gpuMs: number }; launches: number } | null)[];
    expect(rows.slice(0, 2).map((x) => x?.step)).toEqual(['ar', 'tidar_k2']);
    expect(rows[0]!.graphs.gpuMs).toBe(written.models[0]!.rows[0]!.graphs.gpuMs);
    expect(rows[2]).toBeNull();  // another spec (the layer count) is not this model's prediction
  });

  test('rows from bench-step results: graphs and launch-by-launch runs, transformers, the roofline, the ratios and the goals', async () => {
    // MADE-UP timings in bench-step's JSON form: AR at 5 ms with graphs and 10 ms without, k = 8 at 5.5 and 11 ms.
    const script = `
import json, sys
from e2e import table_rows
from e2e_cost import gpu_models
from e2e_report import write_e2e_reports
models = gpu_models(4)
def stats(ms, launches, host): return {'stepMs': {'median': ms, 'p20': ms, 'p80': ms}, 'launchesPerStep': launches, 'hostMs': host, 'gpuMs': ms}
runs = {}
for i in (0, 1):
    for k in (4, 8, 16):
        runs[(i, 4096, k, False)] = {'tidar': stats(5 + k / 16, 1, 0.1), 'ar': stats(5, 1, 0.1)}
        runs[(i, 4096, k, True)] = {'tidar': stats(10 + k / 8, 400, 2.0), 'ar': stats(10, 400, 2.0)}
hf = {(i, 4096): {n: {'medianMs': 20.0} for n in ('ar', 'tidar_k4', 'tidar_k8', 'tidar_k16')} for i in (0, 1)}
peaks = {'copyBytesPerMs': 4e9, 'matmulFlopsPerMs': 8e11, 'how': 'sample'}
# A MADE-UP prediction for the 8B shape's AR step at L = 4096 only: 4 ms with graphs, 8 ms launch by launch.
pred = {'machine': 'sample GPU', 'registers': 'sample', 'models': [{'spec': models[1][0], 'rows': [
    {'prefix': 4096, 'step': 'ar', 'graphs': {'gpuMs': 4.0, 'hostMs': 0.03}, 'launchByLaunch': {'gpuMs': 8.0, 'hostMs': 2.4}, 'launches': 402, 'rooflineMs': 3.6}]}]}
on = table_rows(models, (4096,), hf, runs, True, peaks, pred)
off = table_rows(models, (4096,), hf, {p: r for p, r in runs.items() if not p[3]}, False, peaks, pred)
data = {'rows': on, 'predictions': {'machine': 'sample GPU', 'registers': 'sample'}, 'device': {'name': 'sample GPU'}, 'graphs': 'supported', 'backend': 'cuda', 'peaks': peaks, 'notes': ['sample'], 'skipped': ['tidarc x L=1024 k=4'],
        'tidarcRuns': [{'model': 'qwen3-8b-shape-4l', 'prefix': 1024, 'draft': 4, 'noGraphs': True, 'seconds': 1.0, 'error': 'tidarc: error: sample failure'}]}
print(write_e2e_reports(data, sys.argv[1]))
print(json.dumps({'on': on, 'off': off}))
`;
    const out = join(root, 'report');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(out);
    const r = await py(['-c', script, out]);
    expect(r.code, r.stderr).toBe(0);
    const { on, off } = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<'on' | 'off', { model: string; step: string; tidarcGraphsMs: number | null; tidarcLaunchesMs: number | null; hfEagerMs: number; rooflineMs: number; predictedMs: number | null; measuredOverPredicted: number | null; ratios: Record<string, number | null> }[]>;
    expect(on).toHaveLength(2 * 4);
    const ar8 = on.find((x) => x.model === 'qwen3-8b-shape-4l' && x.step === 'ar')!;
    const cost = stepCost(JSON.parse(JSON.stringify({ ...baseSpec8b(), layers: 4 })) as ModelSpec, { tokens: 1, lmHeadRows: 1, prefix: 4096 });
    expect(ar8.rooflineMs).toBeCloseTo((cost.weightBytes + cost.kvBytes) / 4e9, 9);
    expect([ar8.tidarcGraphsMs, ar8.tidarcLaunchesMs, ar8.hfEagerMs]).toEqual([5, 10, 20]);
    expect(ar8.ratios['launchesOverGraphs']).toBe(2);
    expect(ar8.ratios['hfOverGraphs']).toBe(4);
    expect(ar8.ratios['graphsOverRoofline']).toBeCloseTo(5 / ar8.rooflineMs, 9);
    expect(on.find((x) => x.model === 'qwen3-0.6b-shape' && x.step === 'tidar_k16')!.tidarcGraphsMs).toBe(6);
    // Without graphs the default run is launch by launch: no graphs column, no invented ratio.
    const offAr8 = off.find((x) => x.model === 'qwen3-8b-shape-4l' && x.step === 'ar')!;
    expect([offAr8.tidarcGraphsMs, offAr8.tidarcLaunchesMs, offAr8.ratios['launchesOverGraphs']]).toEqual([null, 5, null]);
    // Measured beside predicted: the fastest mode measured against its own prediction (graphs 5 / 4; launch by launch only: 5 / 8).
    expect([ar8.predictedMs, ar8.measuredOverPredicted, ar8.ratios['launchesOverPredicted']]).toEqual([4, 1.25, 1.25]);
    expect([offAr8.predictedMs, offAr8.measuredOverPredicted]).toEqual([8, 0.625]);
    expect(on.find((x) => x.model === 'qwen3-0.6b-shape' && x.step === 'ar')!.predictedMs).toBeNull();
    const md = readFileSync(join(out, 'e2e.md'), 'utf8');
    expect(md).toMatch(new RegExp(`\\| Qwen3-8B shape, L = 4096: AR step <= 1\\.25x its roofline \\(graphs\\) \\| ${(5 / ar8.rooflineMs).toFixed(2)}x \\| ${5 / ar8.rooflineMs <= 1.25 ? 'yes' : 'NO'} \\|`));
    expect(md).toMatch(/\| Qwen3-8B shape, L = 4096: TiDAR k = 8 step <= 1\.15x the AR step \(graphs\) \| 1\.10x \| yes \|/);
    expect(md).toMatch(/\| Qwen3-8B shape, L = 4096: host time per step <= 5% of the step \(graphs, AR and k = 8\) \| 2\.0% \(worst\) \| yes \|/);
    expect(md).toMatch(/\| Qwen3-0\.6B shape: graph-launched AR step >= 2x faster than launch by launch \| 2\.00x \(worst L\) \| yes \|/);
    expect(md).toMatch(/\| Qwen3-0\.6B shape: AR step faster than transformers eager \(graphs\) \| 4\.00x \(worst L\) \| yes \|/);
    expect(md).toMatch(/\| qwen3-8b-shape-4l \| 4 \| 4096 \| ar \| 1 \| 5\.00 \| 10\.00 \| 1, 400 \| 0\.100, 2\.000 \| 20\.00 \|.*\| 4\.000, 8\.000 \| 1\.25x, 1\.25x \|$/m);
    expect(md).toMatch(/\| qwen3-0\.6b-shape \| 28 \| 4096 \| ar \|.*\| -, - \| -, - \|$/m);
    expect(md).toMatch(/Predicted before this run \(src\/bench\/step-cost-model\.ts.*on sample GPU, registers sample/);
    expect(md).toMatch(/Skipped for the part's time budget/);
    // 2.0 host ms over 400 launches a step, in every launch-by-launch row.
    expect(md).toMatch(/Host time per kernel launch, launch by launch \(host ms \/ launches a step\): median 5\.00 us \(5\.00 to 5\.00, 8 rows\)/);
    expect(r.stdout).toMatch(/e2e +qwen3-8b-shape-4l L=4096 +ar: tidarc graphs +5\.00 ms +launches +10\.00 +eager +20\.00 +roofline +\S+ +predicted +4\.000 +measured\/predicted +1\.25x/);
    expect(r.stdout).toMatch(/e2e: 1 tidarc runs FAILED; first: qwen3-8b-shape-4l L=1024 k=4 --no-graphs: tidarc: error: sample failure/);
  });

  test('device_check.py --report-only renders a recorded e2e section inside device-check.md', async () => {
    const sample = join(root, 'with-e2e.json');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(sample, JSON.stringify({ format: 1, date: '2000-01-01', dryRun: false, device: { name: 'sample GPU' }, correctness: [],
      e2e: { backend: 'cuda', graphs: 'unsupported: error: unknown option \'--no-graphs\'', rows: [], skipped: ['the whole part: 0 s left of the deadline'],
        tidarcRuns: [{ model: 'm', prefix: 1024, draft: 8, noGraphs: true, seconds: 1, error: 'error: unknown option \'--no-graphs\'' }] } }));
    const out = join(root, 'report-only');
    const r = await py(['device_check.py', '--report-only', sample, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const md = readFileSync(join(out, 'device-check.md'), 'utf8');
    expect(md).toMatch(/## End to end: one decode step against transformers and the roofline \(issue 16 item 5\)/);
    expect(md).toMatch(/CUDA graphs: unsupported: error: unknown option '--no-graphs'/);
    expect(r.stdout).toMatch(/e2e \(cuda backend, graphs: unsupported[^)]*\): 0 step rows, 1 points skipped/);
    expect(r.stdout).not.toMatch(/FAILED/);  // a refused --no-graphs is a finding, not a failed run
  });
});

function baseSpec8b(): Omit<ModelSpec, 'layers'> {
  return JSON.parse(readFileSync(resolve('examples/qwen3-8b.json'), 'utf8')) as ModelSpec;
}

describe.skipIf(!torch)('e2e.py --dry-run (needs torch, transformers and safetensors; skipped without them and in CI; tidarc\'s dist and cpu backend)', () => {
  // The tests' shared kernel cache: the small model's cpu kernels compile once across runs of an unchanged checkout.
  let cache: string;
  beforeAll(async () => {
    cache = await sharedKernelCache();
  });

  test('transformers\' parameters of every e2e model are the tensors tidarc loads (names, shapes, the 8B shape\'s untied lm_head; the norms, which e2e.py draws as 1 + N(0, 0.2^2))', async () => {
    const script = `
import json, torch
from e2e_hf import hf_model_class
from e2e_cost import dry_models, gpu_models
out = []
for s, _ in gpu_models() + dry_models():
    cls, cfg = hf_model_class(torch, s)
    with torch.device('meta'):
        out.append({'spec': s, 'params': [[n, list(p.shape)] for n, p in cls(cfg).named_parameters()]})
print(json.dumps(out))
`;
    const r = await py(['-c', script]);
    expect(r.code, r.stderr).toBe(0);
    for (const m of JSON.parse(r.stdout.trim().split('\n').pop()!) as { spec: ModelSpec; params: [string, number[]][] }[]) {
      const expected = expectedTensors(m.spec);
      expect(m.params.map(([n, shape]) => `${n} ${shape.join('x')}`).sort(), m.spec.name).toEqual(expected.map((t) => `${t.name} ${t.shape.join('x')}`).sort());
      for (const t of expected) expect(t.name.endsWith('norm.weight'), t.name).toBe(t.role === 'norm');
    }
  }, 120_000);

  test('tidarc and transformers agree on the first greedy token; every step row has tidarc, transformers and the roofline', async () => {
    const out = join(root, 'dry');
    const r = await py(['e2e.py', '--dry-run', '--tidarc-root', resolve('.'), '--out', out], { ...process.env, TIDARC_CACHE: cache });
    expect(r.code, r.stderr).toBe(0);
    const data = JSON.parse(readFileSync(join(out, 'e2e.json'), 'utf8')) as {
      correctness: { ok: boolean; cases: { ok: boolean; tidarc: number[]; transformers: number[] }[] };
      models: { warmUp: { seconds: number; error?: string }; shards: number }[];
      graphs: string; rows: { step: string; tokens: number; tidarcGraphsMs: number | null; tidarcLaunchesMs: number; hfEagerMs: number; rooflineMs: number }[];
    };
    expect(data.correctness.cases).toHaveLength(3);
    for (const c of data.correctness.cases) expect(c.tidarc[0], JSON.stringify(c)).toBe(c.transformers[0]);
    expect(data.correctness.ok).toBe(true);
    expect(data.rows.map((x) => [x.step, x.tokens])).toEqual([['ar', 1], ['tidar_k2', 6]]);
    // The first short run compiled the kernels (no timed point waits for a compile); the checkpoint is sharded as the GPU run's are.
    expect(data.models[0]!.warmUp.error).toBeUndefined();
    expect(data.models[0]!.warmUp.seconds).toBeGreaterThan(0);
    expect(data.models[0]!.shards).toBeGreaterThan(1);
    for (const row of data.rows) {
      expect(row.tidarcLaunchesMs).toBeGreaterThan(0);
      expect(row.hfEagerMs).toBeGreaterThan(0);
      expect(row.rooflineMs).toBeGreaterThan(0);
      // The cpu backend launches no graphs: its one run is launch by launch, whatever the CLI did with --no-graphs.
      expect([data.graphs, row.tidarcGraphsMs]).toEqual([expect.stringMatching(/^not applicable: the cpu backend launches no graphs \(--no-graphs (accepted|unsupported: .*--no-graphs.*)\)$/), null]);
    }
    expect(readFileSync(join(out, 'e2e.md'), 'utf8')).toMatch(/3 of 3 prompts give the same first token/);
  }, 300_000);

  test('device_check.py\'s e2e part (its own process, after facts) on the emulated driver: tidarc\'s steps with graphs and launch by launch, fewer launches a step with graphs', async () => {
    const out = join(root, 'dry-cuda');
    // A bundle of the predictions alone (prepare's e2e_predictions.json): the part prints them beside what it measures.
    const bundle = join(root, 'dry-bundle');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(bundle);
    await writeE2ePredictions(bundle, true);
    const r = await py(['device_check.py', '--dry-run', '--parts', 'e2e', '--runtime-root', resolve('.'), '--bundle', bundle, '--out', out],
      { ...process.env, TIDARC_CACHE: cache, TIDARC_LIBCUDA: await sharedEmulatedDriver() });
    expect(r.code, r.stderr).toBe(0);
    type Figures = { medianMs: number; launchesPerStep: number };
    const check = JSON.parse(readFileSync(join(out, 'device-check.json'), 'utf8')) as { parts: { name: string; status: string }[]; e2e: unknown };
    expect(check.parts.map((p) => [p.name, p.status])).toEqual([['facts', 'ok'], ['e2e', 'ok']]);
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toContain('## End to end: one decode step against transformers and the roofline (issue 16 item 5)');
    expect(readFileSync(join(out, 'device-check.md'), 'utf8')).toMatch(/Predicted before this run \(src\/bench\/step-cost-model\.ts/);
    const data = check.e2e as {
      backend: string; graphs: string; rows: { step: string; tidarcGraphsMs: number; tidarcLaunchesMs: number; predictedMs: number; measuredOverPredicted: number; tidarc: Record<'graphs' | 'launches', Figures>; ratios: Record<string, number> }[];
    };
    expect([data.backend, data.graphs]).toEqual(['cuda', 'supported']);
    expect(data.rows.map((x) => x.step)).toEqual(['ar', 'tidar_k2']);
    for (const row of data.rows) {
      expect(row.tidarcGraphsMs).toBe(row.tidarc.graphs.medianMs);
      expect(row.tidarcLaunchesMs).toBe(row.tidarc.launches.medianMs);
      expect(row.ratios['launchesOverGraphs']).toBeCloseTo(row.tidarcLaunchesMs / row.tidarcGraphsMs, 9);
      expect(row.tidarc.graphs.launchesPerStep, row.step).toBeLessThan(row.tidarc.launches.launchesPerStep);
      // The H200 prediction beside the emulator's time (no speed: the columns, not the ratio, are the point).
      expect(row.predictedMs, row.step).toBeGreaterThan(0);
      expect(row.measuredOverPredicted).toBeCloseTo(row.tidarcGraphsMs / row.predictedMs, 9);
    }
  }, 600_000);

  test('the correctness check fails (exit 1) when transformers\' model differs (rope_theta 10000 -> 10)', async () => {
    const out = join(root, 'dry-wrong');
    const r = await py(['e2e.py', '--dry-run', '--correctness-only', '--tidarc-root', resolve('.'), '--out', out, '--hf-override', 'rope_theta=10'], { ...process.env, TIDARC_CACHE: cache });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/e2e correctness \(tidarc cpu vs transformers, first greedy token\): [0-2]\/3 ok FAILED/);
  }, 300_000);
});
