/**
 * Issue 16's targets, predicted (a benchmark of the cost model, not a test): whole decode steps
 * of Qwen3-8B's shape (36 layers) and Qwen3-0.6B's (28 layers, 1024 hidden, 16 / 8 heads of 128,
 * 3072 intermediate, tied embeddings) at L = 1024 and 4096, AR and TiDAR k = 4, 8, 16, on the
 * lent H200, as the cuda backend runs them (src/bench/step-cost-model.ts: the runtime's own
 * launches, each priced by its kernel's model, plus launch and host overheads with graphs and
 * launch by launch, each with programmatic dependent launch on, as an H200 runs them by default,
 * and off), on the kernels an H200 runs (sm_90a GEMMs and compute-bound attention, as
 * the kernel cache builds for a 9.0 device) and on the mma.sync kernels alone. Registers from
 * ptxas (sm_90) when nvcc is here, else assumed; the sm_90a kernels' as ptxas recorded (printed).
 *
 *   npm run bench:step        # the tables and the targets; --json for the figures
 *   npm run bench:step -- --overheads device-check.json   # with the launch and host constants a device measured
 *
 * --overheads FILE: scripts/device-check/overheads.mjs's JSON, or a device check's device-check.json
 * holding it (its `overheads` section): every constant it measured (not null) replaces the assumed one
 * (src/bench/step-overheads-file.ts), a line per constant says which, and the tables and targets
 * follow with them (--json: `overheads` / `pdlOverheads` are the constants used, `measuredOverheads`
 * the file's readings). Its graphCopyNodeS (the step's upload as a graph node, measured) prices that node
 * with graphs in place of copyLatencyS + graphNodeGapS, unless null or doubted by the part's own warning
 * (a line says which). A device-check.json with e2e rows also gives hostStepS, the decoder's own host
 * work a step: its runs' host time less their launches' and uploads' calls (src/bench/step-host.ts,
 * marked "derived from the e2e part's decoder steps"); overheads.mjs's JSON alone keeps the assumed one.
 * The steps stay predictions: only the constants are measured.
 *
 *   npm run bench:step -- --what-if fold-norms   # a built optimisation priced off and on (with --overheads FILE: with measured constants)
 *
 * --what-if NAME (src/bench/step-what-if.ts): the sm_90a steps priced without the change (fold-norms:
 * --no-fold-norms) and with it (the runtime's default), launches and GPU ms with graphs (PDL on and
 * off); --json for the rows.
 *
 *   npm run bench:step -- --compare device-check.json   # the e2e part's measured steps beside the predictions
 *
 * --compare FILE: a device check's device-check.json with an e2e section (src/bench/step-compare.ts):
 * per measured step, the bundle's prediction, the model's now with the assumed constants, with the
 * measured ceilings, with the measured overheads and with both, and the share of each miss the
 * measured constants explain; the residual is the kernels' or a cost the model lacks (--json: the rows).
 * Then the host time per run (bench-step's hostMs) beside the model's, re-predicted with the derived
 * hostStepS, its decoder and call parts, and issue 16's host target (<= 5% of the step).
 */
import { readFileSync } from 'node:fs';
import { H200 } from '../src/codegen/machine.js';
import { ARCHES } from '../src/codegen/arch.js';
import { planModelGemms } from '../src/codegen/gemm-model.js';
import { planAttention } from '../src/codegen/plan.js';
import { variantsForModel } from '../src/codegen/variant.js';
import { AR_VARIANT, tidarVariantName } from '../src/codegen/variant-name.js';
import type { ModelSpec } from '../src/ir/model.js';
import { PDL_OVERHEADS, type PdlOverheads, SM90A_RECORDED_REGISTERS, STEP_OVERHEADS, type StepOverheads, type StepPath, type StepRegisters, stepModelContext } from '../src/bench/step-cost-model.js';
import { WHAT_IFS, type WhatIf, type WhatIfStep, whatIfStep } from '../src/bench/step-what-if.js';
import { QWEN3_0_6B, QWEN3_8B, STEP_PREFIXES, type StepRow, issue16Targets, predictSteps } from '../src/bench/step-report.js';
import { measuredOverheadLines, overheadsLine, parseJsonFile, pdlLine } from '../src/bench/step-overheads-file.js';
import { type OverheadsWithHostStep, hostStepLines, readOverheadsWithHostStep } from '../src/bench/step-host.js';
import { compareSteps } from '../src/bench/step-compare.js';
import { comparisonLines } from '../src/bench/step-compare-lines.js';
import { attentionRegisters, gemmRegisters } from './ptxas-registers.js';

/** Without nvcc: what ptxas gave for these kernels at sm_90 (bench/attention.ts's recorded table; GEMMs at most 128). */
const ASSUMED = { gemm: 128, attention: 255 };

async function registersOf(spec: ModelSpec): Promise<StepRegisters> {
  const steps = new Set(['ar', ...spec.draftLengths.map((k) => `tidar_k${k}`)]);
  const plans = variantsForModel(spec).filter((v) => steps.has(v.name)).map((v) => planAttention(v, ARCHES.sm_90.tile, [ARCHES.sm_90]));
  const [g, a] = [await gemmRegisters(planModelGemms(spec, spec.draftLengths, ['sm_90']).units, spec.name), await attentionRegisters(plans)];
  return {
    gemm: (symbol) => g.registers?.get(symbol) ?? ASSUMED.gemm,
    attention: (variant) => a.registers?.get(variant) ?? ASSUMED.attention,
    sm90a: SM90A_RECORDED_REGISTERS,
    source: `${g.registers && a.registers ? g.source : `assumed (${ASSUMED.gemm} for GEMMs, ${ASSUMED.attention} for attention): ${g.registers ? a.source : g.source}`}; sm_90a kernels: recorded (ptxas, nvcc 13.0)`,
  };
}

const f = (x: number, d = 3): string => x.toFixed(d);

function table(rows: readonly StepRow[]): string[] {
  const ar = (r: StepRow): StepRow => rows.find((x) => x.prefix === r.prefix && x.step === 'ar')!;
  const header = ['L', 'step', 'tokens', 'launches', 'GEMM us', 'attn us', 'other us', 'overhead us (PDL, off)', 'graphs+PDL ms', 'graphs ms (no PDL)', 'launches ms (PDL, off)', 'host ms (graphs, launches)', 'PDL pairs all/some/none', 'L2 prefetch MB', 'roofline ms', 'pred/roof', 'step/AR', 'fold saves (launches, graphs+PDL)'];
  const cells = rows.map((r) => [
    String(r.prefix), r.step, String(r.tokens), String(r.launches), f(r.gemmMs * 1e3, 1), f(r.attentionMs * 1e3, 1), f(r.otherMs * 1e3, 1), `${f(r.pdl.overheadMs * 1e3, 1)}, ${f(r.overheadMs * 1e3, 1)}`,
    f(r.pdl.graphs.gpuMs), f(r.graphs.gpuMs), `${f(r.pdl.launchByLaunch.gpuMs)}, ${f(r.launchByLaunch.gpuMs)}`, `${f(r.graphs.hostMs)}, ${f(r.launchByLaunch.hostMs)}`,
    `${r.pdl.pairs.all}/${r.pdl.pairs.some}/${r.pdl.pairs.none}`, f(r.pdl.prefetchedMB, 1), f(r.rooflineMs), f(r.pdl.graphs.gpuMs / r.rooflineMs, 2), f(r.pdl.graphs.gpuMs / ar(r).pdl.graphs.gpuMs, 2),
    r.noFold ? `${r.noFold.launches - r.launches}, ${(100 * (1 - r.pdl.graphs.gpuMs / r.noFold.pdl.graphs.gpuMs)).toFixed(1)}%` : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]): string => c.map((x, i) => (i < 2 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ');
  return [line(header), ...cells.map(line)];
}

/** The kernel pairs whose second kernel does not all fit beside the first (PDL overlap partial or none), with the steps they occur in. */
function unfitPairs(rows: readonly StepRow[]): string[] {
  const seen = new Map<string, { early: number; steps: Set<string> }>();
  for (const r of rows) {
    for (const u of r.pdl.unfit) {
      const key = `${u.from} -> ${u.to}`;
      const e = seen.get(key) ?? { early: u.early, steps: new Set<string>() };
      e.steps.add(`${r.step}${u.count > 1 ? ` x${u.count}` : ''}`);
      seen.set(key, e);
    }
  }
  return [...seen.entries()].map(([k, e]) => `${k}: ${e.early === 0 ? 'no overlap' : `${(100 * e.early).toFixed(0)}% of its CTAs early`} (${[...e.steps].join(', ')})`);
}

/** The file after `flag` and its text, undefined without the flag; one line where it names none or cannot be read. */
function flagFile(argv: readonly string[], flag: string, what: string): { file: string; text: string } | undefined {
  const at = argv.indexOf(flag);
  if (at < 0) return undefined;
  const file = argv[at + 1];
  if (file === undefined || file.startsWith('--')) throw new Error(`${flag} needs a file (${what})`);
  try {
    return { file, text: readFileSync(file, 'utf8') };
  } catch (e) {
    throw new Error(`${flag} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

/** --overheads FILE: the measured constants and the derived hostStepS, read before anything is priced (a bad file fails in one line, at once). */
function measuredOverheads(argv: readonly string[]): OverheadsWithHostStep | undefined {
  const f = flagFile(argv, '--overheads', 'overheads.mjs\'s JSON or a device-check.json');
  return f && readOverheadsWithHostStep(f.text, f.file);
}

/** --compare FILE: the device check's measured steps beside the predictions (a bad file or one without e2e rows fails in one line). */
function compare(argv: readonly string[]): boolean {
  const f = flagFile(argv, '--compare', 'a device check\'s device-check.json with an e2e section');
  if (!f) return false;
  if (argv.includes('--overheads')) throw new Error('--compare prices with the file\'s own measured overheads: leave out --overheads');
  const c = compareSteps(parseJsonFile(f.text, f.file), f.file);
  if (argv.includes('--json')) console.log(JSON.stringify(c, null, 2));
  else for (const l of comparisonLines(c)) console.log(l);
  return true;
}

/** --what-if NAME: the steps an H200 runs (sm_90a path) priced without and with a built optimisation (src/bench/step-what-if.ts). */
async function whatIf(argv: readonly string[], models: readonly ModelSpec[], o: StepOverheads, pdlO: PdlOverheads, from: string): Promise<boolean> {
  const at = argv.indexOf('--what-if');
  if (at < 0) return false;
  const name = argv[at + 1];
  if (!WHAT_IFS.includes(name as WhatIf)) throw new Error(`--what-if ${name ?? ''}: one of ${WHAT_IFS.join(', ')}`);
  const rows: (WhatIfStep & { model: string })[] = [];
  for (const spec of models) {
    const c = stepModelContext(spec, H200, await registersOf(spec), 'sm_90a');
    for (const L of STEP_PREFIXES) for (const step of [AR_VARIANT, ...spec.draftLengths.map(tidarVariantName)]) rows.push({ model: spec.name, ...whatIfStep(c, name as WhatIf, step, L, o, pdlO) });
  }
  if (argv.includes('--json')) {
    console.log(JSON.stringify({ whatIf: name, machine: H200.name, overheads: o, pdlOverheads: pdlO, rows }, null, 2));
    return true;
  }
  const pct = (x: { unfolded: number; folded: number }): string => {
    const less = 1 - x.folded / x.unfolded;
    return `${f(x.unfolded)} -> ${f(x.folded)} (${(100 * Math.abs(less)).toFixed(1)}% ${less >= 0 ? 'less' : 'more'})`;
  };
  console.log(`${name}: off (--no-fold-norms) -> on (the runtime's default; src/bench/step-what-if.ts says what it changes), predicted on the ${H200.name} for the kernels it runs (sm_90a path), constants ${from}:`);
  for (const r of rows) console.log(`  ${r.model.padEnd(18)} L=${String(r.prefix).padEnd(5)} ${r.step.padEnd(10)} norms folded ${r.foldedNorms}; launches ${r.launches.unfolded} -> ${r.launches.folded}; graphs+PDL ms ${pct(r.graphsPdlMs)}; graphs ms (no PDL) ${pct(r.graphsMs)}`);
  return true;
}

async function main(): Promise<void> {
  if (compare(process.argv)) return;
  const read = measuredOverheads(process.argv);
  const measured = read?.measured;
  const o = measured?.overheads ?? STEP_OVERHEADS, pdlO = measured?.pdlOverheads ?? PDL_OVERHEADS;
  const models = [QWEN3_8B, QWEN3_0_6B];
  if (await whatIf(process.argv, models, o, pdlO, measured ? `measured where ${measured.file} has them` : 'assumed (step-overheads.ts)')) return;
  // sm_90a: what an H200 runs (the kernel cache builds sm_90 and sm_90a for a 9.0 device); sm_90: the mma.sync kernels alone.
  const paths: readonly StepPath[] = ['sm_90a', 'sm_90'];
  const results: { spec: typeof QWEN3_8B; path: StepPath; registers: string; rows: StepRow[] }[] = [];
  for (const spec of models) {
    const registers = await registersOf(spec);
    for (const path of paths) results.push({ spec, path, registers: registers.source, rows: predictSteps(spec, STEP_PREFIXES, H200, registers, path, o, pdlO) });
  }
  const targets = paths.map((path) => ({ path, targets: issue16Targets(results.filter((r) => r.path === path).flatMap((r) => r.rows)) }));
  // One line with PDL off (plain launches: an sm_8x build, or --no-pdl): the target PDL moves most.
  const plain = paths.map((path) => ({ path, targets: issue16Targets(results.filter((r) => r.path === path).flatMap((r) => r.rows), 'plain').filter((t) => t.goal.includes('faster than launch by launch')) }));
  if (process.argv.includes('--json')) {
    const from = measured ? { measuredOverheads: { file: measured.file, device: measured.device, emulated: measured.emulated, readings: measured.readings, unknown: measured.unknown, graphCopyNode: measured.graphCopyNode ?? null, hostStep: read!.host } } : {};
    console.log(JSON.stringify({ machine: H200.name, overheads: o, pdlOverheads: pdlO, ...from, targetsWithoutPdl: plain, models: results.map((r) => ({ model: r.spec.name, layers: r.spec.layers, path: r.path, registers: r.registers, rows: r.rows })), targets }, null, 2));
    return;
  }
  console.log(`Whole decode steps on the ${H200.name}, predicted (src/bench/step-cost-model.ts): copy ${H200.copyBytesPerS / 1e12} TB/s, bf16 ${H200.matmulFlops / 1e12} TFLOP/s, mma.sync ${H200.mmaSyncFlops / 1e12}, L2 ${H200.l2BytesPerS / 1e12} TB/s (assumed).`);
  if (read) {
    for (const l of measuredOverheadLines(read.measured)) console.log(l);
    if (read.note) console.log(`  ${read.note}`);
    for (const l of hostStepLines(read.host)) console.log(`  ${l}`);
  }
  console.log(overheadsLine(o, measured !== undefined));
  console.log(pdlLine(pdlO, measured !== undefined));
  for (const r of results) {
    console.log(`\n${r.spec.name}, ${r.path === 'sm_90a' ? 'sm_90a GEMMs and compute-bound attention (what an H200 runs)' : 'mma.sync kernels only (an sm_90 compile)'}: ${r.spec.layers} layers, hidden ${r.spec.hiddenSize}, ${r.spec.queryHeads}/${r.spec.kvHeads} heads of ${r.spec.headDim}, intermediate ${r.spec.intermediateSize}; registers: ${r.registers}`);
    for (const l of table(r.rows)) console.log(`  ${l}`);
    const unfit = unfitPairs(r.rows);
    console.log(`  PDL: kernel pairs whose second kernel's CTAs do not all fit beside the first's: ${unfit.length === 0 ? 'none' : ''}`);
    for (const u of unfit) console.log(`    ${u}`);
  }
  console.log('\noverhead: GPU time with graphs less the kernels\' (the graph\'s start, node gaps, copies); graphs / launches ms: GPU time between events around the step;');
  console.log('graphs+PDL: programmatic dependent launch on (what an H200 runs by default), graphs (no PDL): plain launches (--no-pdl, or an sm_8x build);');
  console.log('host ms: the step\'s host time outside its waits for the GPU (bench-step\'s hostMs); pred/roof and step/AR with graphs+PDL.');
  console.log('Every step as the runtime runs it by default: the RMSNorms folded into the GEMMs around them where it folds them; fold saves: launches fewer');
  console.log('and graphs+PDL GPU time less than the same step with --no-fold-norms (same constants; bench:step --what-if fold-norms for both, PDL on and off).');
  const line = (t: { met: boolean; goal: string; predicted: string; responsible?: string }, suffix = ''): string => `  ${t.met ? 'met   ' : 'MISSED'}  ${t.goal}${suffix}: ${t.predicted}${t.responsible ? `; responsible: ${t.responsible}` : ''}`;
  for (const { path, targets: ts } of targets) {
    console.log(`\nIssue 16's targets on an H200, predicted with PDL on (${path === 'sm_90a' ? 'the kernels it runs: sm_90a where built' : 'mma.sync kernels only'}; the 0.6B 2x: graphs + PDL against launch by launch + PDL)${measured ? ', with the measured overheads' : ''}:`);
    for (const t of ts) console.log(line(t));
    for (const t of plain.find((x) => x.path === path)!.targets) console.log(line(t, ' [PDL off: graphs against launch by launch, plain launches]'));
  }
}

main().catch((e: unknown) => {
  console.error(`bench:step: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
