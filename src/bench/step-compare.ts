/**
 * `npm run bench:step -- --compare device-check.json`: the whole decode steps a device check's e2e
 * part measured (scripts/device-check/e2e.py table_rows: tidarcGraphsMs, tidarcLaunchesMs,
 * tidarcNoPdlMs) beside the step cost model's predictions of them, and how much of each miss the
 * constants the same check measured explain. Each row is predicted as the bundle did
 * (e2e-bundle.ts: the e2e part's specs, the sm_90a kernels where built, E2E_REGISTERS, PDL where the
 * row's default run had it, on the machine the check took predictions for) four times:
 *   assumed    the model's constants (what the bundle's `predicted` should equal: checked to 1e-6)
 *   ceilings   the Machine's copy and bf16 matmul rates replaced by the facts part's (`ceilings`);
 *              mma.sync, L2, shared memory, HBM latency and clock stay assumed
 *   overheads  the launch and host constants replaced by the overheads part's (`overheads`,
 *              launch-overhead-constants.ts measuredStepOverheads through step-overheads-file.ts,
 *              the graphs' upload node by its measured graphCopyNodeS where not doubted), and
 *              hostStepS by the one derived from the rows' host times where they have them
 *              (below): the decoder's work precedes a step's first kernel, so it is GPU time too
 *   both       both replaced.
 * explained = (both - base) / (measured - base) where |measured / base - 1| > 5%, base the bundled
 * prediction (the assumed recomputation where the bundle's differs or is missing: then a warning says
 * so). What is left, measured - both, is the kernels or a cost the model does not have (the gemm,
 * sm90a and attention parts time the kernels one by one). Every figure but `measured` is a prediction.
 * Host time: each run's bench-step hostMs beside the bundle's host prediction and the model's with the
 * overheads part's constants and hostStepS derived from these same rows (step-host.ts: one constant
 * for every row, so the table shows whether it explains them all), split into the launches' and
 * uploads' calls and the decoder's own, and its share of the step against issue 16's 5% target.
 * Pure: the parsed JSON in, a StepComparison out (its shape: step-comparison.ts), or a TidarcError
 * of one line; its text: step-compare-lines.ts comparisonLines (both re-exported here).
 */
import type { Machine } from '../codegen/machine.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { E2E_REGISTERS } from './e2e-bundle.js';
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepModelContext, type StepOverheads, type StepPrediction, measuredFold, predictStep, stepModelContext } from './step-cost-model.js';
import { type MeasuredStepOverheads, measuredOverheadsOf, usText } from './step-overheads-file.js';
import { HOST_SHARE_TARGET, type HostRow, deriveHostStep, machineOf, specOf, withHostStep, withHostStepReading } from './step-host.js';
import { BUNDLE_TOLERANCE, type CompareMode, MISS_SHARE, type ModeComparison, type ModeHost, type RowComparison, SETTINGS, type Setting, type StepComparison, modeText } from './step-comparison.js';

export * from './step-comparison.js';
export { comparisonLines, hostLines } from './step-compare-lines.js';

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** `base` with the copy and bf16 matmul rates a device measured (TB/s counting bytes read and written, TFLOP/s); every other figure kept. */
export function measuredCeilingsMachine(base: Machine, ceilings: { readonly copyTBs: number; readonly matmulTflops: number }): Machine {
  return { ...base, name: `${base.name} with measured ceilings`, copyBytesPerS: ceilings.copyTBs * 1e12, matmulFlops: ceilings.matmulTflops * 1e12 };
}

/** The e2e section's rows, or a one-line error saying why there are none (what the part recorded about itself). */
function e2eRows(doc: unknown, file: string): { e2e: Record<string, unknown>; rows: Record<string, unknown>[] } {
  const bad = (what: string): TidarcError => new TidarcError('invalid-json', `${file}: ${what}`);
  if (!isRecord(doc)) throw bad('not a JSON object (a device check\'s device-check.json expected)');
  const part = Array.isArray(doc.parts) ? (doc.parts as unknown[]).find((x) => isRecord(x) && x.name === 'e2e') as Record<string, unknown> | undefined : undefined;
  const status = part ? ` (its e2e part: ${String(part.status)}${typeof part.why === 'string' ? `, ${part.why}` : ''})` : Array.isArray(doc.parts) ? ' (it ran no e2e part)' : '';
  if (!('e2e' in doc)) throw bad(`no e2e section: nothing measured to compare${status}`);
  if (!isRecord(doc.e2e)) throw bad('its e2e section is not an object');
  const rows = doc.e2e.rows;
  if (!Array.isArray(rows)) throw bad(`e2e.rows: ${rows === undefined ? 'missing' : 'not a list'}${status}`);
  if (rows.length === 0) throw bad(`e2e.rows is empty: the e2e part measured no step${status}`);
  rows.forEach((r, i) => {
    if (!isRecord(r) || typeof r.model !== 'string' || num(r.layers) === null || num(r.prefix) === null || typeof r.step !== 'string') {
      throw bad(`e2e.rows[${i}]: not a step row (model, layers, prefix, step expected)`);
    }
    for (const k of ['tidarcGraphsMs', 'tidarcLaunchesMs', 'tidarcNoPdlMs']) {
      if (r[k] !== undefined && r[k] !== null && !(num(r[k])! > 0)) throw bad(`e2e.rows[${i}].${k}: ${JSON.stringify(r[k])} is not a positive number of ms or null`);
    }
  });
  return { e2e: doc.e2e, rows: rows as Record<string, unknown>[] };
}

function ceilingsOf(doc: Record<string, unknown>, notes: string[]): { copyTBs: number; matmulTflops: number } | null {
  const c = doc.ceilings;
  if (c === undefined) {
    notes.push('no measured ceilings (the file has no ceilings section): the ceilings column is the assumed machine\'s, "both" is the overheads alone');
    return null;
  }
  const copy = isRecord(c) ? num(c.copyTBs) : null, mm = isRecord(c) ? num(c.matmulTflops) : null;
  if (copy === null || mm === null || copy <= 0 || mm <= 0) {
    notes.push(`ceilings not used: ${JSON.stringify(c)} is not {copyTBs, matmulTflops} of positive numbers; the ceilings column is the assumed machine's`);
    return null;
  }
  return { copyTBs: copy, matmulTflops: mm };
}

function overheadsOf(doc: Record<string, unknown>, file: string, notes: string[]): MeasuredStepOverheads | null {
  if (doc.overheads === undefined) {
    notes.push('no measured overheads (the file has no overheads section): the overheads column is the assumed constants\', "both" is the ceilings alone');
    return null;
  }
  try {
    return measuredOverheadsOf({ overheads: doc.overheads }, file);
  } catch (e) {
    notes.push(`overheads not used: ${e instanceof Error ? e.message : String(e)}; the overheads column is the assumed constants'`);
    return null;
  }
}

/** The bundle's assumptions against the model's: the constants, the machine and the registers it says it priced with. */
function bundleNotes(e2e: Record<string, unknown>, machine: Machine, notes: string[]): void {
  const p = e2e.predictions;
  if (!isRecord(p)) {
    notes.push('the e2e section records no bundle predictions (e2e.predictions): the rows\' predictions, if any, cannot be traced to their constants');
    return;
  }
  const differ = (recorded: unknown, current: Readonly<Record<string, number>>): string[] =>
    isRecord(recorded) ? Object.keys(current).filter((k) => recorded[k] !== current[k]).map((k) => `${k} ${typeof recorded[k] === 'number' ? usText(recorded[k]) : String(recorded[k])} -> ${usText(current[k]!)} us`) : [];
  const d = [...differ(p.overheads, STEP_OVERHEADS as unknown as Record<string, number>), ...differ(p.pdlOverheads, PDL_OVERHEADS as unknown as Record<string, number>)];
  if (d.length > 0) notes.push(`the bundle was priced with other assumed constants than step-overheads.ts has now: ${d.join(', ')}`);
  if (typeof p.machine === 'string' && p.machine !== machine.name) notes.push(`the bundle's predictions say machine "${p.machine}", the recomputation prices "${machine.name}"`);
  if (typeof p.registers === 'string' && p.registers !== E2E_REGISTERS.source) notes.push(`the bundle's registers were "${p.registers}", the recomputation's are "${E2E_REGISTERS.source}"`);
}

/** A mode's GPU time of a prediction, ms, as e2e-bundle.ts's rows hold it (step-report.ts row: seconds x 1e3). */
function modeMs(p: StepPrediction, mode: CompareMode, pdl: boolean): number {
  if (mode === 'noPdl') return p.graphs.gpuS * 1e3;
  const t = pdl ? p.pdl : p;
  return (mode === 'graphs' ? t.graphs : t.direct).gpuS * 1e3;
}

const MODES: readonly { readonly mode: CompareMode; readonly measured: string; readonly bundled: string }[] = [
  { mode: 'graphs', measured: 'tidarcGraphsMs', bundled: 'graphsMs' },
  { mode: 'launches', measured: 'tidarcLaunchesMs', bundled: 'launchesMs' },
  { mode: 'noPdl', measured: 'tidarcNoPdlMs', bundled: 'noPdlGraphsMs' },
];

/** Compares every e2e row of a parsed device-check.json (`file` names it in messages). Throws a one-line TidarcError where it has no e2e rows. */
export function compareSteps(doc: unknown, file: string): StepComparison {
  const { e2e, rows } = e2eRows(doc, file);
  const d = doc as Record<string, unknown>;
  const notes: string[] = [];
  const dry = d.dryRun === true;
  if (dry) notes.push('a DRY RUN: the e2e part measured the small model on a CPU or emulated backend, not the GPU these predictions price; the ratios say nothing of the model');
  const { machine, label } = machineOf(d, e2e, notes);
  const ceilings = ceilingsOf(d, notes);
  const calls = overheadsOf(d, file, notes);
  bundleNotes(e2e, machine, notes);
  // One compile per model and machine (the context holds the machine), shared by its rows and settings.
  const contexts = new Map<string, StepModelContext>();
  const context = (spec: ModelSpec, m: Machine): StepModelContext => {
    const key = `${spec.name}/${spec.layers}/${m.name}`;
    let c = contexts.get(key);
    if (!c) contexts.set(key, (c = stepModelContext(spec, m, E2E_REGISTERS, 'sm_90a')));
    return c;
  };
  // The decoder's host time: hostStepS from the rows' host times, the calls priced with the overheads part's constants.
  const host = deriveHostStep(d, calls, (r) => {
    const found = specOf(r, dry, e2e);
    return found ? predictStep(context(found.spec, machine), String(r.step), r.prefix as number, undefined, undefined, measuredFold(r)) : `no spec of ${String(r.model)} with ${String(r.layers)} layers`;
  });
  // The overheads part's constants with that hostStepS, as bench:step --overheads prices with them: the decoder's
  // host work comes before a step's first kernel, so it is GPU time too (step-timeline.ts stepIssue).
  const measured = calls && withHostStepReading(calls, host);
  const ceilMachine = ceilings ? measuredCeilingsMachine(machine, ceilings) : machine;
  const constants: Readonly<Record<Setting, { machine: Machine; o: StepOverheads; p: PdlOverheads }>> = {
    assumed: { machine, o: STEP_OVERHEADS, p: PDL_OVERHEADS },
    ceilings: { machine: ceilMachine, o: STEP_OVERHEADS, p: PDL_OVERHEADS },
    overheads: { machine, o: measured?.overheads ?? STEP_OVERHEADS, p: measured?.pdlOverheads ?? PDL_OVERHEADS },
    both: { machine: ceilMachine, o: measured?.overheads ?? STEP_OVERHEADS, p: measured?.pdlOverheads ?? PDL_OVERHEADS },
  };
  const hostO = withHostStep(measured?.overheads ?? STEP_OVERHEADS, host), hostP = measured?.pdlOverheads ?? PDL_OVERHEADS;
  const hostRow = (r: Record<string, unknown>, mode: CompareMode): HostRow | undefined =>
    host.rows.find((x) => x.model === r.model && x.layers === r.layers && x.prefix === r.prefix && x.step === r.step && x.run === mode);
  const out: RowComparison[] = [];
  const allWarnings: string[] = [];
  const recordedSpecs = new Set<string>();
  for (const r of rows) {
    const name = `${String(r.model)} L=${String(r.prefix)} ${String(r.step)}`;
    const warnings: string[] = [];
    const pdl = r.pdl === true ? true : r.pdl === false ? false : null;
    const base = { model: r.model as string, layers: r.layers as number, prefix: r.prefix as number, step: r.step as string, pdl };
    const present = MODES.filter((m) => num(r[m.measured]) !== null);
    if (present.length === 0) {
      out.push({ ...base, modes: [], warnings });
      continue;
    }
    const found = specOf(r, dry, e2e);
    if (!found) {
      warnings.push(`${name}: no spec of ${String(r.model)} with ${String(r.layers)} layers (neither the e2e part's models, e2e-bundle.ts e2eModels, nor e2e.models): not predicted`);
      out.push({ ...base, modes: [], unpriced: true, warnings });
      allWarnings.push(...warnings);
      continue;
    }
    if (found.recorded) recordedSpecs.add(`${found.spec.name} (${found.spec.layers} layers)`);
    const predictions = Object.fromEntries(SETTINGS.map((s) => {
      const k = constants[s];
      return [s, predictStep(context(found.spec, k.machine), r.step as string, r.prefix as number, k.o, k.p, measuredFold(r))];
    })) as Record<Setting, StepPrediction>;
    const bundled = isRecord(r.predicted) ? r.predicted : null;
    let hostPrediction: StepPrediction | undefined;
    if (bundled && typeof bundled.pdl === 'boolean' && bundled.pdl !== (pdl === true)) {
      warnings.push(`${name}: the bundled prediction is ${bundled.pdl ? 'PDL\'s' : 'plain launches\''} but the run ${pdl ? 'had PDL' : 'did not say it had PDL'}`);
    }
    const modes = present.map(({ mode, measured: mk, bundled: bk }): ModeComparison => {
      const withPdl = mode !== 'noPdl' && pdl === true;
      const m = num(r[mk])!;
      const predictedMs = Object.fromEntries(SETTINGS.map((s) => [s, modeMs(predictions[s], mode, withPdl)])) as Record<Setting, number>;
      const b = bundled ? num(bundled[bk]) : null;
      const matches = b === null ? null : Math.abs(b - predictedMs.assumed) <= BUNDLE_TOLERANCE * Math.abs(predictedMs.assumed);
      if (matches === false) {
        warnings.push(`${name} (${modeText(mode, mode === 'noPdl' ? false : pdl)}): the bundled prediction ${b!.toFixed(4)} ms is not the model's ${predictedMs.assumed.toFixed(4)} ms now `
          + `(${((b! / predictedMs.assumed - 1) * 100).toFixed(2)}%): the cost model changed since the bundle was made; shares are against the model's figure`);
      }
      const baseMs = matches === true ? b! : predictedMs.assumed;
      const miss = m / baseMs - 1;
      const share = (x: number): number => (x - baseMs) / (m - baseMs);
      return {
        mode, pdl: withPdl, measuredMs: m, bundledMs: b, predictedMs, bundleMatches: matches, base: matches === true ? 'bundled' : 'assumed', baseMs,
        measuredOverBase: m / baseMs, measuredOverBoth: m / predictedMs.both,
        explained: Math.abs(miss) > MISS_SHARE ? { ceilings: share(predictedMs.ceilings), overheads: share(predictedMs.overheads), both: share(predictedMs.both) } : null,
        residualMs: m - predictedMs.both,
        host: ((): ModeHost | null => {
          const h = hostRow(r, mode);
          if (!h) return null;
          hostPrediction ??= predictStep(context(found.spec, machine), r.step as string, r.prefix as number, hostO, hostP, measuredFold(r));
          const t = mode === 'launches' ? (withPdl ? hostPrediction.pdl.direct : hostPrediction.direct) : (withPdl ? hostPrediction.pdl.graphs : hostPrediction.graphs);
          const hb = bundled ? num(bundled[mode === 'launches' ? 'hostLaunchesMs' : 'hostGraphsMs']) : null;
          return {
            measuredMs: h.hostMs, bundledMs: hb, predictedMs: t.hostS * 1e3, callsMs: h.callsMs, decoderMs: h.hostStepS * 1e3,
            share: h.share, met: h.share === null ? null : h.share <= HOST_SHARE_TARGET,
          };
        })(),
      };
    });
    if (!bundled) warnings.push(`${name}: the row has no bundled prediction (the bundle lacked this spec or step): shares are against the model's figure`);
    out.push({ ...base, modes, warnings });
    allWarnings.push(...warnings);
  }
  const partialLayers = (Array.isArray(e2e.models) ? e2e.models : []).filter((x): x is Record<string, unknown> => isRecord(x) && num(x.layers) !== null && num(x.fullLayers) !== null && (x.layers as number) < (x.fullLayers as number))
    .map((x) => `${String(x.name)}: ${String(x.layers)} of ${String(x.fullLayers)}`);
  if (recordedSpecs.size > 0) notes.push(`not the e2e part's standard models, priced with the spec the part recorded (e2e.models): ${[...recordedSpecs].join(', ')}`);
  const dev = isRecord(d.device) ? d.device : isRecord(e2e.device) ? e2e.device : {};
  return {
    file, device: typeof dev.name === 'string' ? dev.name : 'an unnamed device', date: typeof d.date === 'string' ? d.date : null, dryRun: dry,
    machine: machine.name, machineLabel: label,
    ceilings: ceilings ? { ...ceilings, assumedCopyTBs: machine.copyBytesPerS / 1e12, assumedMatmulTflops: machine.matmulFlops / 1e12 } : null,
    overheads: measured, host, partialLayers, notes, warnings: allWarnings, rows: out,
  };
}
