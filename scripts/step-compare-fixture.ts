/**
 * test/bench/fixtures/device-check-e2e-compare.json: a device-check.json whose e2e rows' "measured"
 * steps are MADE UP from the step cost model's own predictions, for bench:step --compare
 * (src/bench/step-compare.ts) and its test. Each row says how it was made (`constructed`): with the
 * bundle's prediction b (e2e-bundle.ts's path: e2ePredictions on the H200) and the prediction x with
 * the file's measured ceilings and overheads (a Machine and measuredStepOverheads, with the sample's
 * graphCopyNodeS as the graphs' upload node, built here, not by step-compare.ts), a mode {share: s} measured m = b + (x - b) / s (so the constants explain s of
 * the miss), {miss: e} m = b (1 + e) (within 5%: nothing to explain); bundledOff f writes the bundled
 * predictions f times the model's (a bundle from another cost model: step-compare warns).
 *
 *   npx tsx scripts/step-compare-fixture.ts     # rewrites the fixture (after a cost-model change)
 *
 * The test builds the same document in memory (buildStepCompareFixture), so the committed file only
 * serves as a sample: a stale one shows as bench:step --compare's warnings, as a stale bundle would.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { H200 } from '../src/codegen/machine.js';
import type { ModelSpec } from '../src/ir/model.js';
import { E2E_REGISTERS, e2eModels } from '../src/bench/e2e-bundle.js';
import { type MeasuredOverheads, measuredStepOverheads } from '../src/bench/launch-overhead-constants.js';
import { type StepRow, e2ePredictions, predictSteps } from '../src/bench/step-report.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const STEP_COMPARE_FIXTURE = join(ROOT, 'test/bench/fixtures/device-check-e2e-compare.json');
const OVERHEADS_SAMPLE = join(ROOT, 'test/bench/fixtures/overheads-sample.json');

/** The made-up ceilings (an H200 measures about 4.3 TB/s and 790 TFLOP/s: these move the predictions well past 5%). */
export const FIXTURE_CEILINGS = { copyTBs: 3.6, matmulTflops: 700 } as const;

type Made = { readonly share: number } | { readonly miss: number };
export interface Construction {
  readonly model: 0 | 1;
  readonly prefix: number;
  readonly step: string;
  readonly pdl: boolean | null;
  readonly graphs?: Made;
  readonly launches?: Made;
  readonly noPdl?: Made;
  readonly bundledOff?: number;
}

/** The rows (model: 0 the 0.6B shape, 1 the 8B shape's layers the e2e part keeps), one prefix a model: the test prices every step kind of each prefix. */
export const CONSTRUCTIONS: readonly Construction[] = [
  { model: 0, prefix: 1024, step: 'ar', pdl: true, graphs: { share: 1 }, launches: { share: 0.5 }, noPdl: { miss: 0.02 } },
  { model: 0, prefix: 1024, step: 'tidar_k8', pdl: true, graphs: { share: 0.25 } },
  { model: 0, prefix: 1024, step: 'tidar_k4', pdl: false, graphs: { share: 0.5 }, launches: { share: 1 } },
  { model: 1, prefix: 4096, step: 'ar', pdl: true, graphs: { share: 0.5 }, noPdl: { share: 0.75 } },
  { model: 1, prefix: 4096, step: 'tidar_k8', pdl: true, graphs: { share: 0.5 }, bundledOff: 1.1 },
  { model: 1, prefix: 4096, step: 'tidar_k16', pdl: null },
];

const modeMs = (r: StepRow, mode: 'graphs' | 'launches' | 'noPdl', pdl: boolean): number =>
  mode === 'noPdl' ? r.graphs.gpuMs : mode === 'graphs' ? (pdl ? r.pdl.graphs.gpuMs : r.graphs.gpuMs) : (pdl ? r.pdl.launchByLaunch.gpuMs : r.launchByLaunch.gpuMs);

/** The fixture, its predictions computed now (the bundle's path for b, a hand-built machine and the sample's overheads for x). */
export function buildStepCompareFixture(): Record<string, unknown> {
  const overheadsDoc = JSON.parse(readFileSync(OVERHEADS_SAMPLE, 'utf8')) as { measured: MeasuredOverheads; graphCopyNodeS: { value: number } };
  const measured = measuredStepOverheads(overheadsDoc.measured);
  // The sample's measured upload node (no warning doubts it) prices the graphs' upload, as a device's file does.
  const overheads = { ...measured.overheads, graphCopyNodeS: overheadsDoc.graphCopyNodeS.value };
  const machine = { ...H200, copyBytesPerS: FIXTURE_CEILINGS.copyTBs * 1e12, matmulFlops: FIXTURE_CEILINGS.matmulTflops * 1e12 };
  const specs = e2eModels(false).specs;
  const prefixes = (i: number): number[] => [...new Set(CONSTRUCTIONS.filter((c) => c.model === i).map((c) => c.prefix))];
  // The bundle's path (e2e-bundle.ts writeE2ePredictions), a model at a time at its prefixes here.
  const bundle = specs.map((s, i) => e2ePredictions([s], prefixes(i), H200, E2E_REGISTERS, 'sm_90a'));
  const both = specs.map((s, i) => predictSteps(s, prefixes(i), machine, E2E_REGISTERS, 'sm_90a', overheads, measured.pdl));
  const find = (rows: readonly StepRow[], c: Construction): StepRow => rows.find((r) => r.prefix === c.prefix && r.step === c.step)!;
  const rows = CONSTRUCTIONS.map((c) => {
    const spec: ModelSpec = specs[c.model]!;
    const b = find(bundle[c.model]!.models[0]!.rows, c), x = find(both[c.model]!, c);
    const on = c.pdl === true;
    const made = (mode: 'graphs' | 'launches' | 'noPdl'): number | null => {
      const how = c[mode];
      if (!how) return null;
      const bm = modeMs(b, mode, on && mode !== 'noPdl'), xm = modeMs(x, mode, on && mode !== 'noPdl');
      return 'share' in how ? bm + (xm - bm) / how.share : bm * (1 + how.miss);
    };
    const off = c.bundledOff ?? 1;
    const pg = on ? b.pdl.graphs : b.graphs, pl = on ? b.pdl.launchByLaunch : b.launchByLaunch;
    const m = { graphs: made('graphs'), launches: made('launches'), noPdl: made('noPdl') };
    const predicted = {
      graphsMs: pg.gpuMs * off, launchesMs: pl.gpuMs * off, hostGraphsMs: pg.hostMs, hostLaunchesMs: pl.hostMs, noPdlGraphsMs: b.graphs.gpuMs * off,
      pdlGraphsMs: b.pdl.graphs.gpuMs * off, pdl: on, launchesPerStep: b.launches, rooflineMs: b.rooflineMs,
    };
    return {
      // As the runtime runs the step by default: the norms folded where it folds them (e2e.py rows' foldNorms).
      model: spec.name, layers: spec.layers, prefix: c.prefix, step: c.step, tokens: b.tokens, pdl: c.pdl, foldNorms: b.foldedNorms > 0,
      tidarcGraphsMs: m.graphs, tidarcLaunchesMs: m.launches, tidarcNoPdlMs: m.noPdl, hfEagerMs: null, rooflineMs: b.rooflineMs,
      predicted, predictedGraphsMs: predicted.graphsMs, predictedLaunchesMs: predicted.launchesMs, predictedNoPdlMs: predicted.noPdlGraphsMs,
      predictedMs: m.graphs !== null ? predicted.graphsMs : predicted.launchesMs,
      measuredOverPredicted: m.graphs !== null ? m.graphs / predicted.graphsMs : m.launches !== null ? m.launches / predicted.launchesMs : null,
      constructed: c,
    };
  });
  const predictedFor = { machine: 'H200', name: H200.name, gpu: 'NVIDIA H200', thisGpu: true, label: 'H200', copyTBs: H200.copyBytesPerS / 1e12, matmulTflops: H200.matmulFlops / 1e12 };
  return {
    format: 1, date: '2000-01-01',
    note: 'MADE-UP measured steps, constructed from the step cost model\'s predictions (scripts/step-compare-fixture.ts) for bench:step --compare\'s test; not a measurement',
    dryRun: false, device: { name: 'NVIDIA H200', sms: 132, capability: '9.0' }, predictedFor,
    parts: [{ name: 'facts', status: 'ok' }, { name: 'overheads', status: 'ok' }, { name: 'e2e', status: 'ok' }],
    ceilings: FIXTURE_CEILINGS, overheads: overheadsDoc,
    e2e: {
      format: 1, dryRun: false, backend: 'cuda', graphs: 'on',
      models: specs.map((s, i) => ({ name: s.name, layers: s.layers, fullLayers: i === 0 ? 28 : 36, spec: s })),
      rows, predictions: { machine: bundle[0]!.machine, registers: bundle[0]!.registers, overheads: bundle[0]!.overheads, pdlOverheads: bundle[0]!.pdlOverheads }, predictedFor,
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(STEP_COMPARE_FIXTURE, `${JSON.stringify(buildStepCompareFixture(), null, 1)}\n`);
  console.log(`wrote ${STEP_COMPARE_FIXTURE}`);
}
