/**
 * `npm run bench:step -- --overheads FILE`: the step cost model's launch and host constants
 * (step-overheads.ts StepOverheads, PdlOverheads) replaced by those a device measured. FILE is
 * scripts/device-check/overheads.mjs's JSON line, or a device check's device-check.json holding it
 * as its `overheads` section. Every constant whose measured value is a number replaces the assumed
 * one, identifiable alone or not (a constant the series give only in a sum was split with an
 * assumed term: the file says which); null leaves the assumption; below 0 counts as 0
 * (launch-overhead-constants.ts measuredStepOverheads, the one rule for it). The file's
 * graphCopyNodeS (the step's upload as a graph node, measured) becomes StepOverheads.graphCopyNodeS,
 * priced in place of copyLatencyS + graphNodeGapS, unless its value is null (the series did not run)
 * or the part's own warning flagged it doubtful (launch-overhead-constants.ts copyNodeWarnings).
 * Pure: the text in, the constants out, or a TidarcError naming the file and what is wrong with it.
 */
import { H200 } from '../codegen/machine.js';
import { TidarcError } from '../errors.js';
import { type MeasuredConstant, type MeasuredOverheads, isCopyNodeDoubt, measuredStepOverheads } from './launch-overhead-constants.js';
import { machineForGpu } from './predicted-machines.js';
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheadConstant, type StepOverheads } from './step-overheads.js';

export type OverheadName = StepOverheadConstant | keyof PdlOverheads;

/** One constant of the file: the assumed value, the measured one (null: not measured), whether the series give it alone, how. */
export interface OverheadReading {
  readonly name: OverheadName;
  readonly assumedS: number;
  readonly measuredS: number | null;
  readonly identifiable: boolean;
  readonly from: string;
  /** Whether the model now uses the measured value (a number). */
  readonly replaced: boolean;
  /** A measured value below 0 (noise, or a ramp shorter than the assumed one), priced as 0. */
  readonly clamped: boolean;
  /** Not the overheads part's series but derived from other parts (hostStepS: step-host.ts, the e2e part's decoder steps). */
  readonly derived?: boolean;
}

export interface MeasuredStepOverheads {
  readonly file: string;
  /** The device the file measured, e.g. 'NVIDIA H200 (9.0)', and whether it was the emulated driver. */
  readonly device: string;
  readonly emulated: boolean;
  /** The constants the model prices the steps with: measured where replaced, else assumed. */
  readonly overheads: StepOverheads;
  readonly pdlOverheads: PdlOverheads;
  /** Every constant of both sets, in the model's order. */
  readonly readings: readonly OverheadReading[];
  /** Entries of the file's `measured` that name no constant of the model (ignored). */
  readonly unknown: readonly string[];
  /**
   * The step's upload as a graph node (overheads.mjs graphCopyNodeS: graph-E-copy against graph-E), absent from files
   * without a value. `used`: `overheads.graphCopyNodeS` holds it (below 0: 0) and the graphs timeline prices the node
   * with it instead of copyLatencyS + graphNodeGapS; not used where the part's own warning (`doubt`) flagged it doubtful.
   */
  readonly graphCopyNode?: { readonly measuredS: number; readonly from: string; readonly used: boolean; readonly doubt?: string };
}

/** A value past this many seconds is not a launch or host overhead (another unit, or a broken measurement). */
const MAX_OVERHEAD_S = 1;

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * The measured constants of `text` (the contents of `file`) over `base` and `basePdl` (the model's
 * assumptions). Throws TidarcError('invalid-json') with one line naming the file and the problem:
 * not JSON, neither overheads.mjs's object nor a device-check.json with one, a failed measurement
 * (ok: false), a malformed entry, a value that is not seconds.
 */
export function readMeasuredOverheads(text: string, file: string, base: StepOverheads = STEP_OVERHEADS, basePdl: PdlOverheads = PDL_OVERHEADS): MeasuredStepOverheads {
  return measuredOverheadsOf(parseJsonFile(text, file), file, base, basePdl);
}

/** The parsed JSON of `file`, or a TidarcError('invalid-json') of one line (JSON.parse's message can hold a newline). */
export function parseJsonFile(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TidarcError('invalid-json', `${file}: not JSON (${(e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ')})`);
  }
}

/** readMeasuredOverheads on the parsed document (a device-check.json another reader has parsed already). */
export function measuredOverheadsOf(doc: unknown, file: string, base: StepOverheads = STEP_OVERHEADS, basePdl: PdlOverheads = PDL_OVERHEADS): MeasuredStepOverheads {
  const bad = (what: string): TidarcError => new TidarcError('invalid-json', `${file}: ${what}`);
  if (!isRecord(doc)) throw bad('not a JSON object');
  // overheads.mjs's line has `measured`; a device-check.json holds it as its `overheads` section.
  let o: Record<string, unknown>, where = '';
  if ('measured' in doc || ('ok' in doc && !('overheads' in doc))) {
    o = doc;
  } else if ('overheads' in doc) {
    if (!isRecord(doc.overheads)) throw bad('its overheads section is not an object');
    o = doc.overheads;
    where = 'overheads.';
  } else {
    if (Array.isArray(doc.parts)) {
      const part = (doc.parts as unknown[]).find((x) => isRecord(x) && x.name === 'overheads') as Record<string, unknown> | undefined;
      throw bad(`a device check's results without an overheads section (${part ? `its overheads part: ${String(part.status)}${typeof part.why === 'string' ? `, ${part.why}` : ''}` : 'it ran no overheads part'})`);
    }
    throw bad('neither overheads.mjs\'s JSON (no "measured") nor a device-check.json with an overheads section');
  }
  if (o.ok === false) throw bad(`the measurement failed (${where}ok: false${typeof o.error === 'string' ? `: ${o.error}` : ''})`);
  if (!isRecord(o.measured)) throw bad(`${where}measured: ${o.measured === undefined ? 'missing' : 'not an object'}`);
  const measured = o.measured;
  const names = [...Object.keys(base), ...Object.keys(basePdl)].filter((n) => n !== 'graphCopyNodeS') as OverheadName[];
  const defaults = { ...base, ...basePdl } as Readonly<Record<OverheadName, number>>;
  const checked = Object.fromEntries(names.map((name): [OverheadName, MeasuredConstant] => {
    const m = measured[name];
    const field = `${where}measured.${name}`;
    if (m === undefined) return [name, { value: null, identifiable: false, from: 'not in the file' }];
    if (!isRecord(m)) throw bad(`${field}: not an object ({value, identifiable, from})`);
    const v = m.value;
    if (v !== null && (typeof v !== 'number' || !Number.isFinite(v))) throw bad(`${field}.value: ${JSON.stringify(v)} is neither a number of seconds nor null`);
    if (typeof v === 'number' && v > MAX_OVERHEAD_S) throw bad(`${field}.value: ${v} s is not a launch or host overhead (seconds expected)`);
    return [name, { value: v, identifiable: m.identifiable === true, from: typeof m.from === 'string' ? m.from : '' }];
  })) as MeasuredOverheads;
  const priced = measuredStepOverheads(checked, base, basePdl);
  const readings = names.map((name): OverheadReading => ({
    name, assumedS: defaults[name], measuredS: checked[name].value, identifiable: checked[name].identifiable, from: checked[name].from,
    replaced: priced.replaced.includes(name), clamped: priced.clamped.includes(name),
  }));
  const pdlOverheads = priced.pdl;
  let graphCopyNode: MeasuredStepOverheads['graphCopyNode'];
  // A series that did not run leaves value null (overheads.mjs's JSON of a NaN): as a file without the figure, not a bad file.
  if (o.graphCopyNodeS !== undefined && !(isRecord(o.graphCopyNodeS) && o.graphCopyNodeS.value === null)) {
    const g = o.graphCopyNodeS;
    const field = `${where}graphCopyNodeS`;
    if (!isRecord(g)) throw bad(`${field}: not an object ({value, identifiable, from})`);
    if (typeof g.value !== 'number' || !Number.isFinite(g.value)) throw bad(`${field}.value: ${JSON.stringify(g.value)} is not a number of seconds`);
    if (Math.abs(g.value) > MAX_OVERHEAD_S) throw bad(`${field}.value: ${g.value} s is not a copy node's time (seconds expected)`);
    // The run that measured it says where it doubts it: copyNodeWarnings' line among its warnings.
    const doubt = (Array.isArray(o.warnings) ? o.warnings : []).find((w): w is string => typeof w === 'string' && isCopyNodeDoubt(w));
    graphCopyNode = { measuredS: g.value, from: typeof g.from === 'string' ? g.from : '', used: doubt === undefined, ...(doubt !== undefined ? { doubt } : {}) };
  }
  const overheads: StepOverheads = graphCopyNode?.used ? { ...priced.overheads, graphCopyNodeS: Math.max(0, graphCopyNode.measuredS) } : priced.overheads;
  const dev = isRecord(o.device) ? o.device : {};
  const cc = Array.isArray(dev.computeCapability) ? ` (${dev.computeCapability.join('.')})` : '';
  return {
    file, device: `${typeof dev.name === 'string' ? dev.name : 'an unnamed device'}${cc}`, emulated: o.emulated === true, overheads, pdlOverheads, readings,
    unknown: Object.keys(measured).filter((k) => !names.includes(k as OverheadName)),
    ...(graphCopyNode ? { graphCopyNode } : {}),
  };
}

/** Microseconds to at most 3 decimals, trailing zeros dropped (8.6e-6 * 1e6 would print 8.600000000000001). */
export const usText = (s: number): string => String(Number((s * 1e6).toFixed(3)));

/**
 * `m` with hostStepS replaced by `valueS`, derived from the e2e part's decoder steps (step-host.ts
 * deriveHostStep: the median residual, before any clamp); below 0 it is priced as 0, as a measured one.
 * `from` says how it was derived.
 */
export function withDerivedHostStep(m: MeasuredStepOverheads, valueS: number, from: string): MeasuredStepOverheads {
  if (!Number.isFinite(valueS)) throw new TidarcError('invalid-json', `${m.file}: the derived hostStepS ${valueS} is not a number of seconds`);
  return {
    ...m,
    overheads: { ...m.overheads, hostStepS: Math.max(0, valueS) },
    readings: m.readings.map((r) => (r.name === 'hostStepS' ? { ...r, measuredS: valueS, identifiable: true, from, replaced: true, clamped: valueS < 0, derived: true } : r)),
  };
}

/** What bench:step prints before its tables: where the constants come from, one line per replaced constant, then those left assumed. */
export function measuredOverheadLines(m: MeasuredStepOverheads): string[] {
  const replaced = m.readings.filter((r) => r.replaced);
  // The GPU names the device check matches to its machines (predicted-machines.ts): 'NVIDIA H200', not 'NVIDIA GH200 ...'.
  const gpu = machineForGpu(m.device);
  const other = !m.emulated && !(gpu.matched && gpu.predicted.machine === H200) ? ', not the H200 these tables price' : '';
  const derived = replaced.filter((r) => r.derived);
  const lines = [`Overheads measured on ${m.device}${m.emulated ? ' by the EMULATED driver (its timings are not a GPU\'s)' : other} (${m.file}): ${replaced.length} of ${m.readings.length} constants replaced`
    + `${derived.length > 0 ? ` (${derived.map((r) => r.name).join(', ')} derived from the e2e part's decoder steps)` : ''}.`];
  for (const r of replaced) {
    const value = r.clamped ? `0 us (${usText(r.measuredS!)} us ${r.derived ? 'derived' : 'measured'}, below 0: priced as 0)` : `${usText(r.measuredS!)} us`;
    lines.push(r.derived
      ? `  ${r.name}: assumed ${usText(r.assumedS)} us -> derived ${value} (from the e2e part's decoder steps: ${r.from})`
      : `  ${r.name}: assumed ${usText(r.assumedS)} us -> measured ${value} (${r.identifiable ? 'identifiable' : 'not identifiable alone: split with an assumed term'})`);
  }
  lines.push(graphCopyNodeLine(m));
  const kept = m.readings.filter((r) => !r.replaced);
  if (kept.length > 0) lines.push(`  kept as assumed: ${kept.map((r) => `${r.name} ${usText(r.assumedS)} us (${r.from === 'not in the file' ? r.from : 'not measured'})`).join(', ')}`);
  const series = replaced.filter((r) => !r.derived);
  lines.push(`  identifiable: ${series.filter((r) => r.identifiable).map((r) => r.name).join(', ') || 'none'}; not identifiable alone: ${series.filter((r) => !r.identifiable).map((r) => r.name).join(', ') || 'none'}`);
  if (m.unknown.length > 0) lines.push(`  ignored (no such constant in step-overheads.ts): ${m.unknown.join(', ')}`);
  return lines;
}

/**
 * Where the price of the step's upload as a graph node comes from: the file's graphCopyNodeS (used,
 * or flagged doubtful and left out), or copyLatencyS + graphNodeGapS with the constants `m` prices
 * with (measured where replaced) where the file has no value.
 */
export function graphCopyNodeLine(m: MeasuredStepOverheads): string {
  const o = m.overheads;
  const sum = o.copyLatencyS + o.graphNodeGapS;
  const src = (n: OverheadName): string => (m.readings.find((r) => r.name === n)?.replaced ? 'measured' : 'assumed');
  const price = `copyLatencyS + graphNodeGapS = ${usText(o.copyLatencyS)} (${src('copyLatencyS')}) + ${usText(o.graphNodeGapS)} (${src('graphNodeGapS')}) = ${usText(sum)} us`;
  const head = '  graphCopyNodeS (the step\'s upload as a graph node, with graphs):';
  const c = m.graphCopyNode;
  if (!c) return `${head} none in the file (from before graph-E-copy, or its series did not run): priced ${price}`;
  if (!c.used) return `${head} measured ${usText(c.measuredS)} us, NOT used: the overheads part flagged it doubtful (${c.doubt}); priced ${price}`;
  const diff = c.measuredS - sum;
  const verdict = Math.abs(diff) < 0.005e-6 ? 'the same' : `${usText(Math.abs(diff))} us ${diff < 0 ? 'more' : 'less'} than measured`;
  const value = c.measuredS < 0 ? `0 us (${usText(c.measuredS)} us measured, below 0: priced as 0)` : `${usText(c.measuredS)} us`;
  return `${head} ${price} -> measured ${value}, priced as measured (the sum: ${verdict}${sum > 0 ? `, measured / sum ${(c.measuredS / sum).toFixed(2)}x` : ''})`;
}

/** bench:step's line of the StepOverheads it prices with (measured: some replaced by a device's). */
export function overheadsLine(o: StepOverheads, measured: boolean): string {
  const us = usText;
  return `Overheads (us; ${measured ? 'measured where replaced above, else as assumed in step-overheads.ts' : 'sources in step-overheads.ts'}): host per launch ${us(o.hostLaunchS)}, stream gap ${us(o.streamGapS)}, graph node gap ${us(o.graphNodeGapS)}, graph start ${us(o.graphStartS)}, host graph launch ${us(o.hostGraphLaunchS)}, copy latency ${us(o.copyLatencyS)}, host per copy ${us(o.hostCopyS)}, decoder host per step ${us(o.hostStepS)}, kernel floor ${us(o.smallKernelS)}`
    + `${o.graphCopyNodeS !== undefined ? `, graph upload node ${us(o.graphCopyNodeS)} (measured graphCopyNodeS, not copy latency + graph node gap)` : ''}.`;
}

/** bench:step's line of the PdlOverheads it prices with. */
export function pdlLine(p: PdlOverheads, measured: boolean): string {
  const us = usText;
  return measured
    ? `PDL (us; measured where replaced above, else assumed, step-overheads.ts PdlOverheads): wait release ${us(p.waitReleaseS)}, launch ramp ${us(p.rampS)} (of the kernel floor); GEMM L2 prefetch before the wait: gemm-prefetch.ts. The steps are still predictions: the cost model with these constants.`
    : `PDL (us; assumed, step-overheads.ts PdlOverheads): wait release ${us(p.waitReleaseS)}, launch ramp ${us(p.rampS)} (of the kernel floor); GEMM L2 prefetch before the wait: gemm-prefetch.ts. All figures are predictions: nothing here was measured on an H200.`;
}
