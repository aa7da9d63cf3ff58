/**
 * The decoder's own host work per step (step-overheads.ts StepOverheads.hostStepS), derived from a
 * device check's device-check.json: its e2e part ran the decoder (bench-step --json per step kind:
 * `hostMs`, the step's wall time outside its waits for the GPU; `launchesPerStep`; `medianMs`), its
 * overheads part measured the host's calls (hostGraphLaunchS, hostLaunchS, hostCopyS). Per e2e row and
 * run, what the calls do not account for is the decoder's own:
 *
 *   with graphs:       hostStepS = hostMs - launches x hostGraphLaunchS
 *   launch by launch:  hostStepS = hostMs - launches x hostLaunchS - uploads x hostCopyS
 *
 * launches: bench-step's launchesPerStep (graph and kernel launches the host issued a step; the
 * model's count where the run does not say); uploads: the cost model's own count for that model and
 * step kind (step-cost-model.ts StepPrediction.uploads, the recorded step's copies.uploads). With
 * graphs the upload is a node of the captured graph (gpu-runner.ts decodeStep): a replay issues no
 * upload call, as the cost model prices it (stepIssue). The download is not subtracted: bench-step counts the synchronous download among the waits (native-
 * time.ts CUDA_WAITS), outside hostMs. The graphs runs (the default and --no-pdl) and the launch-by-
 * launch ones are summarised apart (median, min, max): a launch's host time in the decoder (its
 * argument packing) need not be the overheads part's empty-kernel call. The constant is the graphs
 * runs' median (what the runtime runs by default), the launch-by-launch runs' where no graphs run has
 * a host time; below 0 it is priced as 0. A graphs run whose counted launchesPerStep is not 1 (a warm-up
 * or a recapture inside the timed window: kernel launches beside the replays, whose calls the graph
 * launch's constant does not price) stays a row, marked `excluded`, and is left out of the median (a note
 * names it). Pure: the parsed JSON in, the rows and lines out; never throws
 * on a partial file (no e2e part, failed rows, no overheads part): `why` says what is missing.
 */
import type { Machine } from '../codegen/machine.js';
import type { ModelSpec } from '../ir/model.js';
import { E2E_REGISTERS, e2eModels } from './e2e-bundle.js';
import { DEFAULT_PREDICTED, PREDICTED_MACHINES } from './predicted-machines.js';
import { STEP_OVERHEADS, type StepModelContext, type StepOverheads, type StepPrediction, measuredFold, predictStep, stepModelContext } from './step-cost-model.js';
import { type MeasuredStepOverheads, measuredOverheadsOf, parseJsonFile, usText, withDerivedHostStep } from './step-overheads-file.js';
import { summarize } from './stats.js';

/** Issue 16's target: host time per step at most this share of the step. */
export const HOST_SHARE_TARGET = 0.05;

/** The e2e part's runs: the default with graphs, launch by launch (--no-graphs), graphs with --no-pdl. */
export type HostRun = 'graphs' | 'launches' | 'noPdl';
/** What the host issues a step: one graph launch (graphs and noPdl runs), or every kernel. */
export type HostGroup = 'graphs' | 'launches';
const GROUP: Readonly<Record<HostRun, HostGroup>> = { graphs: 'graphs', noPdl: 'graphs', launches: 'launches' };

export interface HostRow {
  readonly model: string;
  readonly layers: number;
  readonly prefix: number;
  readonly step: string;
  readonly run: HostRun;
  readonly group: HostGroup;
  /** bench-step's hostMs and medianMs of the run (ms). */
  readonly hostMs: number;
  readonly stepMs: number | null;
  /** hostMs / stepMs (issue 16's "host time per step <= 5% of the step"), null without a step time. */
  readonly share: number | null;
  /** Launches the host issued a step, and where the count comes from. */
  readonly launches: number;
  readonly launchesFrom: 'measured' | 'model';
  /** The cost model's copies of the step (StepPrediction.uploads, .downloads). */
  readonly uploads: number;
  readonly downloads: number;
  /** launches x the launch call (+ uploads x hostCopyS launch by launch), ms: the calls' share of hostMs. */
  readonly callsMs: number;
  /** hostMs - callsMs, in seconds: this row's hostStepS. */
  readonly hostStepS: number;
  /** Why the row is left out of its group's spread and the constant (a graphs run that counted other than one launch a step). */
  readonly excluded?: string;
}

export interface HostSpread {
  readonly rows: number;
  readonly medianS: number;
  readonly minS: number;
  readonly maxS: number;
}

/** The call constants the derivation subtracts, and whether each is the overheads part's measurement. */
export interface HostCalls {
  readonly hostLaunchS: number;
  readonly hostGraphLaunchS: number;
  readonly hostCopyS: number;
  readonly measured: { readonly hostLaunchS: boolean; readonly hostGraphLaunchS: boolean; readonly hostCopyS: boolean };
}

export interface HostStepDerivation {
  readonly rows: readonly HostRow[];
  readonly graphs: HostSpread | null;
  readonly launches: HostSpread | null;
  /** The constant (the graphs runs' median, else the launch-by-launch runs'; below 0 priced as 0), null where no row has a host time. */
  readonly hostStepS: number | null;
  /** The median it was taken from (before the clamp), and which runs. */
  readonly medianS: number | null;
  readonly from: HostGroup | null;
  readonly calls: HostCalls;
  /** Why nothing was derived (the file has no e2e rows with host times), null where hostStepS is a number. */
  readonly why: string | null;
  /** Rows left out and why, constants assumed, another device's constants. */
  readonly notes: readonly string[];
}

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** The predicted machine the check took (its predictedFor), the H200 where it names none or one this checkout lacks. */
export function machineOf(doc: Record<string, unknown>, e2e: Record<string, unknown>, notes: string[]): { machine: Machine; label: string } {
  const pf = isRecord(e2e.predictedFor) ? e2e.predictedFor : isRecord(doc.predictedFor) ? doc.predictedFor : undefined;
  const key = pf && typeof pf.machine === 'string' ? pf.machine : undefined;
  const hit = key ? PREDICTED_MACHINES.find((m) => m.key === key) : undefined;
  if (key && !hit) notes.push(`the check's predictions were for machine "${key}", which predicted-machines.ts does not have: priced for the ${DEFAULT_PREDICTED.machine.name}`);
  const label = pf && typeof pf.label === 'string' ? pf.label : (hit ?? DEFAULT_PREDICTED).key;
  return { machine: (hit ?? DEFAULT_PREDICTED).machine, label };
}

/** The spec of a row: the e2e part's standard models (e2e-bundle.ts e2eModels), else the spec the part recorded under e2e.models. */
export function specOf(row: Record<string, unknown>, dry: boolean, e2e: Record<string, unknown>): { spec: ModelSpec; recorded: boolean } | undefined {
  const std = e2eModels(dry).specs.find((s) => s.name === row.model && s.layers === row.layers);
  if (std) return { spec: std, recorded: false };
  const models = Array.isArray(e2e.models) ? e2e.models : [];
  const m = models.find((x): x is Record<string, unknown> => isRecord(x) && x.name === row.model && isRecord(x.spec) && (x.spec as Record<string, unknown>).layers === row.layers);
  return m ? { spec: m.spec as unknown as ModelSpec, recorded: true } : undefined;
}

/** The call constants: the overheads part's where it measured them, else the assumed ones. */
export function hostCalls(measured: MeasuredStepOverheads | null): HostCalls {
  const o = measured?.overheads ?? STEP_OVERHEADS;
  const was = (n: 'hostLaunchS' | 'hostGraphLaunchS' | 'hostCopyS'): boolean => measured?.readings.find((r) => r.name === n)?.replaced === true;
  return { hostLaunchS: o.hostLaunchS, hostGraphLaunchS: o.hostGraphLaunchS, hostCopyS: o.hostCopyS, measured: { hostLaunchS: was('hostLaunchS'), hostGraphLaunchS: was('hostGraphLaunchS'), hostCopyS: was('hostCopyS') } };
}

/** One run's residual: hostMs less its launches' calls and (launch by launch) its upload calls, in seconds. */
export function residualHostStepS(hostMs: number, group: HostGroup, launches: number, uploads: number, calls: Pick<HostCalls, 'hostLaunchS' | 'hostGraphLaunchS' | 'hostCopyS'>): number {
  return group === 'graphs' ? hostMs * 1e-3 - launches * calls.hostGraphLaunchS : hostMs * 1e-3 - launches * calls.hostLaunchS - uploads * calls.hostCopyS;
}

function spread(xs: readonly number[]): HostSpread | null {
  if (xs.length === 0) return null;
  const s = summarize(xs);
  return { rows: xs.length, medianS: s.median, minS: s.min, maxS: s.max };
}

/** The row's step kind priced with the assumed constants (its launches and copies do not depend on them), or a reason. */
export type RowPredictor = (row: Record<string, unknown>) => StepPrediction | string;

/** A predictor over `doc`'s e2e section: the spec of each row (specOf), one compile per model (stepModelContext) on `machine`. */
export function rowPredictor(e2e: Record<string, unknown>, dry: boolean, machine: Machine): RowPredictor {
  const contexts = new Map<string, StepModelContext>();
  return (r) => {
    const found = specOf(r, dry, e2e);
    if (!found) return `no spec of ${String(r.model)} with ${String(r.layers)} layers`;
    const key = `${found.spec.name}/${found.spec.layers}`;
    let c = contexts.get(key);
    if (!c) contexts.set(key, (c = stepModelContext(found.spec, machine, E2E_REGISTERS, 'sm_90a')));
    return predictStep(c, String(r.step), r.prefix as number, undefined, undefined, measuredFold(r));
  };
}

/** The device a section names ('NVIDIA H200'), without a compute capability. */
const deviceName = (x: unknown): string | null => (isRecord(x) && typeof x.name === 'string' ? x.name : null);

/**
 * hostStepS from `doc`'s e2e rows, the calls priced with `measured` (the overheads part's constants, or
 * null: the assumed ones, said in the notes). `predict` gives a row's launches and copies (default: a
 * rowPredictor on the machine the check predicted for).
 */
export function deriveHostStep(doc: unknown, measured: MeasuredStepOverheads | null, predict?: RowPredictor): HostStepDerivation {
  const calls = hostCalls(measured);
  const notes: string[] = [];
  const none = (why: string): HostStepDerivation => ({ rows: [], graphs: null, launches: null, hostStepS: null, medianS: null, from: null, calls, why, notes });
  if (!isRecord(doc)) return none('not a JSON object');
  if ('measured' in doc && !('e2e' in doc)) return none('overheads.mjs\'s JSON alone: it holds no decoder steps (a device-check.json with e2e rows does)');
  const part = Array.isArray(doc.parts) ? (doc.parts as unknown[]).find((x) => isRecord(x) && x.name === 'e2e') as Record<string, unknown> | undefined : undefined;
  const said = part ? `its e2e part: ${String(part.status)}${typeof part.why === 'string' ? `, ${part.why}` : ''}` : Array.isArray(doc.parts) ? 'it ran no e2e part' : '';
  const status = said ? ` (${said})` : '';
  if (!('e2e' in doc)) return none(`no e2e section: no decoder steps to derive it from${status}`);
  const e2e = doc.e2e;
  if (!isRecord(e2e) || !Array.isArray(e2e.rows)) return none(`its e2e section has no rows${status}`);
  const dry = doc.dryRun === true || e2e.dryRun === true;
  if (e2e.backend === 'cpu') return none('the e2e part ran the cpu backend (a dry run): its hostMs is the time outside the native calls, not the issue of GPU work');
  const calls3 = (['hostLaunchS', 'hostGraphLaunchS', 'hostCopyS'] as const);
  const assumed = calls3.filter((n) => !calls.measured[n]);
  if (!measured) notes.push(`no overheads part's constants: the calls are priced with the assumed ${calls3.map((n) => `${n} ${usText(calls[n])} us`).join(', ')}`);
  else if (assumed.length > 0) notes.push(`not measured by the overheads part, assumed: ${assumed.map((n) => `${n} ${usText(calls[n])} us`).join(', ')}`);
  if (measured?.emulated) notes.push('the overheads part ran on the EMULATED driver: its call constants are not a GPU host\'s');
  if (dry) notes.push('a DRY RUN: the e2e part\'s steps ran on the emulated driver, not a GPU');
  const rowDevice = deviceName(doc.device) ?? deviceName(e2e.device);
  if (measured && rowDevice && !measured.device.startsWith(rowDevice)) notes.push(`the overheads part measured ${measured.device}, the e2e rows ran on ${rowDevice}: the call constants are another device's`);
  const predictor = predict ?? rowPredictor(e2e, dry, machineOf(doc, e2e, []).machine);
  const rows: HostRow[] = [];
  const skipped = new Map<string, string[]>();
  const skip = (why: string, what: string): void => void skipped.set(why, [...(skipped.get(why) ?? []), what]);
  for (const r of e2e.rows as unknown[]) {
    if (!isRecord(r) || typeof r.model !== 'string' || num(r.layers) === null || num(r.prefix) === null || typeof r.step !== 'string') {
      skip('not a step row', JSON.stringify(r).slice(0, 40));
      continue;
    }
    const name = `${r.model} L=${String(r.prefix)} ${r.step}`;
    const tidarc = isRecord(r.tidarc) ? r.tidarc : {};
    let prediction: StepPrediction | string | undefined;
    for (const run of ['graphs', 'launches', 'noPdl'] as const) {
      const f = tidarc[run];
      if (f === null || f === undefined) continue;  // not run, or failed: the GPU comparison says so
      const hostMs = isRecord(f) ? num(f.hostMs) : null;
      if (hostMs === null || hostMs < 0) {
        skip('no host time (bench-step\'s hostMs missing or not a number of ms)', `${name} ${run}`);
        continue;
      }
      prediction ??= predictor(r);
      if (typeof prediction === 'string') {
        skip(prediction, `${name} ${run}`);
        continue;
      }
      const group = GROUP[run];
      const counted = num((f as Record<string, unknown>).launchesPerStep);
      const launches = counted !== null && counted >= 0 ? counted : group === 'graphs' ? 1 : prediction.launches;
      const stepMs = num((f as Record<string, unknown>).medianMs);
      const hostStepS = residualHostStepS(hostMs, group, launches, prediction.uploads, calls);
      const expected = group === 'graphs' ? 1 : prediction.launches;
      const mismatch = counted !== null && Math.abs(counted - expected) > 0.5;
      // With graphs a step is one graph launch: more (a warm-up or recapture inside the timed window) are kernel launches whose
      // calls hostGraphLaunchS does not price, so the residual is not the decoder's alone.
      const excluded = mismatch && group === 'graphs';
      rows.push({
        model: r.model, layers: r.layers as number, prefix: r.prefix as number, step: r.step, run, group, hostMs, stepMs: stepMs !== null && stepMs > 0 ? stepMs : null,
        share: stepMs !== null && stepMs > 0 ? hostMs / stepMs : null, launches, launchesFrom: counted !== null && counted >= 0 ? 'measured' : 'model',
        uploads: prediction.uploads, downloads: prediction.downloads, callsMs: hostMs - hostStepS * 1e3, hostStepS,
        ...(excluded ? { excluded: `bench-step counted ${counted} launches a step, not the one graph launch` } : {}),
      });
      if (excluded) {
        skip('graphs runs that counted other than one launch a step: a warm-up or recapture in the timed window adds kernel launches, which the graph launch\'s call constant does not price', `${name} ${run} (${counted} launches)`);
      } else if (mismatch) {
        notes.push(`${name} ${run}: bench-step counted ${counted} launches a step, the cost model's step has ${expected}: priced with the counted ones`);
      }
    }
  }
  for (const [why, what] of skipped) notes.push(`left out (${why}): ${what.join(', ')}`);
  const kept = rows.filter((x) => x.excluded === undefined);
  const graphs = spread(kept.filter((x) => x.group === 'graphs').map((x) => x.hostStepS));
  const launches = spread(kept.filter((x) => x.group === 'launches').map((x) => x.hostStepS));
  const from: HostGroup | null = graphs ? 'graphs' : launches ? 'launches' : null;
  const medianS = (graphs ?? launches)?.medianS ?? null;
  if (medianS === null) {
    if (rows.length > 0) return { ...none(`every run with a host time was left out (${rows.length}: see the notes)`), rows, notes };
    return { ...none(`no e2e row has a host time (${(e2e.rows as unknown[]).length} rows${said ? `; ${said}` : ''})`), notes };
  }
  if (medianS < 0) notes.push(`the ${from} runs' median residual is ${usText(medianS)} us, below 0 (the calls' constants exceed the measured host time): priced as 0`);
  return { rows, graphs, launches, hostStepS: Math.max(0, medianS), medianS, from, calls, why: null, notes };
}

const us = (s: number): string => usText(s);

/** The derivation in a few lines: the constant, each group's spread, how the calls were priced, the notes. */
export function hostStepLines(d: HostStepDerivation, indent = '  '): string[] {
  if (d.hostStepS === null) return [`hostStepS: kept as assumed (${us(STEP_OVERHEADS.hostStepS)} us): not derived: ${d.why}`, ...d.notes.map((n) => `${indent}${n}`)];
  const group = (g: HostSpread | null, what: string): string => (g ? `${what}: median ${us(g.medianS)} us (min ${us(g.minS)}, max ${us(g.maxS)}) over ${g.rows} run${g.rows === 1 ? '' : 's'}` : `${what}: none with a host time`);
  const c = d.calls;
  const src = (n: keyof HostCalls['measured']): string => (c.measured[n] ? 'measured' : 'assumed');
  return [
    `hostStepS: ${us(d.hostStepS)} us, derived from the e2e part's decoder steps (the ${d.from} runs' median of hostMs less the launches' and uploads' calls).`,
    `${indent}${group(d.graphs, 'graphs runs (one graph launch a step)')}; ${group(d.launches, 'launch-by-launch runs')}.`,
    `${indent}calls subtracted: graph launch ${us(c.hostGraphLaunchS)} us (${src('hostGraphLaunchS')}), kernel launch ${us(c.hostLaunchS)} us (${src('hostLaunchS')}), upload ${us(c.hostCopyS)} us (${src('hostCopyS')}) x the cost model's uploads (launch by launch only: with graphs the upload is a node of the captured graph, no call); the synchronous download is one of bench-step's waits, outside hostMs.`,
    ...d.notes.map((n) => `${indent}${n}`),
  ];
}

/** `o` with the derived hostStepS where there is one. */
export function withHostStep(o: StepOverheads, d: HostStepDerivation): StepOverheads {
  return d.hostStepS === null ? o : { ...o, hostStepS: d.hostStepS };
}

export interface OverheadsWithHostStep {
  /** The constants bench:step prices with: the overheads part's, hostStepS derived where the file has decoder steps. */
  readonly measured: MeasuredStepOverheads;
  readonly host: HostStepDerivation;
  /** Where the file has no usable overheads section but decoder steps: why, and that the rest stays assumed. */
  readonly note?: string;
}

/**
 * bench:step --overheads FILE: the overheads part's constants (step-overheads-file.ts) with hostStepS
 * derived from the file's e2e rows where it has them; overheads.mjs's JSON alone keeps the assumed
 * hostStepS (host.why says so). A device-check.json without a usable overheads section but with
 * decoder steps: the assumed constants and the derived hostStepS (note). Throws the overheads reader's
 * one-line TidarcError where the file has neither.
 */
export function readOverheadsWithHostStep(text: string, file: string): OverheadsWithHostStep {
  const doc = parseJsonFile(text, file);
  let measured: MeasuredStepOverheads | null = null, failure: unknown;
  try {
    measured = measuredOverheadsOf(doc, file);
  } catch (e) {
    failure = e;
  }
  const host = deriveHostStep(doc, measured);
  let note: string | undefined;
  if (!measured) {
    if (host.medianS === null) throw failure;
    const device = isRecord(doc) ? doc.device : undefined;
    measured = measuredOverheadsOf({ measured: {}, device }, file);
    note = `no overheads part's constants (${failure instanceof Error ? failure.message : String(failure)}): every other constant stays assumed`;
  }
  return { measured: withHostStepReading(measured, host), host, ...(note ? { note } : {}) };
}

/** `measured` with hostStepS replaced by the derived one (a reading marked derived, saying from which runs), unchanged where none was derived. */
export function withHostStepReading(measured: MeasuredStepOverheads, host: HostStepDerivation): MeasuredStepOverheads {
  if (host.medianS === null || host.from === null) return measured;
  const n = (host.from === 'graphs' ? host.graphs : host.launches)!.rows;
  const from = `the median over ${n} ${host.from === 'graphs' ? 'graphs' : 'launch-by-launch'} run${n === 1 ? '' : 's'} of hostMs less the launches' and uploads' calls`;
  return withDerivedHostStep(measured, host.medianS, from);
}
