/**
 * The step cost model's launch and host overheads (step-overheads.ts StepOverheads and
 * PdlOverheads), measured on the device instead of assumed: series of N launches of two GPU
 * operators timed by CUDA events, fitted as T(N) = a + s N, and host wall-clock times per call.
 *
 *   E         an "empty" kernel: tidarc_op_silu_mul with count 0 (grid 1, block 256): the PDL
 *             prologue (griddepcontrol.wait, launch_dependents) and a return, no memory access.
 *   S         a small operator as an AR step has them: tidarc_op_rmsnorm of 1 row x 4096 float32
 *             (float32 weights; grid 1, block 256): one DRAM round trip, one CTA.
 *   graph-X   a captured graph of N X launches (stream order makes each depend on the one before),
 *             replayed: the events bracket one cuGraphLaunch on an idle stream. -pdl: captured from
 *             programmatic launches (N - 1 programmatic edges), only where PDL is on.
 *   stream-E  N E launches issued one by one while the stream is still busy with device-to-device
 *             copies sized to outlast their issue (the host ahead), the events after the copies and
 *             after the last launch: what the GPU spends per launch when it never waits on the host.
 *   copies    N 64-byte uploads from pinned memory (uploadAsync) queued the same way.
 *   graph-E-copy  graph-E's N-node graph with one 64-byte pinned uploadAsync captured as its first
 *             node, as the runner captures a decode step's upload (gpu-runner.ts decodeStep), its
 *             replays alternating with graph-E's at each N: its times less graph-E's at the same N
 *             are that copy node's cost in a graph (graphCopyNodeS),
 *             what the cost model prices copyLatencyS + graphNodeGapS (step-timeline.ts stepIssue).
 *   host      wall time per CudaDevice.launch (argument bytes packed before the loop), per GpuOps
 *             call (packing included), per launchGraph of a 16-node E graph, per 64 B uploadAsync.
 *
 * deriveOverheads (pure) turns the fits into the model's constants, each with whether these series
 * identify it alone and where it comes from. An empty kernel's time is its launch ramp (rampS) and
 * a small one's its floor (smallKernelS), so the graph and stream slopes hold a gap plus rampS:
 * those constants are measured as sums and split with the assumed rampS (lowered to the empty
 * kernel's whole time per node where that is shorter, so no split goes below 0 and every measured
 * sum is kept).
 *
 * PDL (step-timeline.ts pdlKernel): each kernel calls launch_dependents right after its wait, so
 * kernel j is scheduled when kernel i's wait returns and runs its gap and ramp beside i's time after
 * that wait (the lead); j's wait returns max(waitReleaseS, gap + ramp - lead) after i's end. E has
 * nothing after its wait (no lead): graph-E-pdl's slope is gap + ramp again in the model (what a
 * programmatic edge saves beside it is reported, not used). S's lead is s(graph-S) - s(graph-E)
 * (smallKernelS - rampS), so s(graph-S-pdl) = max(waitReleaseS, s(graph-E) - lead) + lead: where the
 * lead hides the gap and ramp, waitReleaseS = s(graph-S-pdl) - s(graph-S) + s(graph-E).
 */
import { TidarcError } from '../errors.js';
import type { CudaDevice, DeviceBuffer, DeviceStats, GraphRef } from '../runtime/cuda/device.js';
import { statsSince } from '../runtime/cuda/device.js';
import { GpuOps } from '../runtime/cuda/gpu-ops.js';
import { DTYPE_CODE, SILU_MUL, opKernelName, packStruct } from '../runtime/cuda/op-abi.js';
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheads } from './step-cost-model.js';

export type SeriesName = 'graph-E' | 'graph-S' | 'graph-E-pdl' | 'graph-S-pdl' | 'stream-E' | 'copies' | 'graph-E-copy';
export const SERIES_NAMES: readonly SeriesName[] = ['graph-E', 'graph-S', 'graph-E-pdl', 'graph-S-pdl', 'stream-E', 'copies', 'graph-E-copy'];

/** A straight line through (n, seconds): least squares, with its coefficient of determination. */
export interface LineFit {
  readonly slopeS: number;
  readonly interceptS: number;
  readonly r2: number;
}

/** One series: the lengths, the median GPU milliseconds of each, and the fit of T(N) in seconds. */
export interface OverheadSeries extends LineFit {
  readonly n: readonly number[];
  readonly gpuMs: readonly number[];
}

export type OverheadSeriesSet = Readonly<Record<'graph-E' | 'graph-S' | 'stream-E' | 'copies' | 'graph-E-copy', OverheadSeries> & Record<'graph-E-pdl' | 'graph-S-pdl', OverheadSeries | null>>;

/** Host wall seconds per call (medians over repeats of a loop). */
export interface HostTimes {
  /** CudaDevice.launch with its argument bytes packed before the loop: the N-API call and cuLaunchKernel. */
  readonly launchS: number;
  /** CudaDevice.launchGraph of a 16-node graph. */
  readonly graphLaunchS: number;
  /** CudaDevice.uploadAsync of 64 bytes from pinned memory. */
  readonly copyS: number;
  /** A GpuOps call (siluMul): launchS plus packing the argument struct, as the runtime issues a kernel. */
  readonly opLaunchS: number;
  /** The same call made programmatic (cuLaunchKernelEx with the PDL attribute), as the runtime issues a kernel with PDL on; absent where PDL is off. */
  readonly opLaunchPdlS?: number;
}

export type OverheadField = keyof StepOverheads | keyof PdlOverheads;

export interface MeasuredConstant {
  /** Seconds; null where these series do not measure it. */
  readonly value: number | null;
  /** Whether the series identify it alone (false: a measured sum split with an assumed figure, or not measured). */
  readonly identifiable: boolean;
  readonly from: string;
  /** Where not identifiable alone: the measured combination that `from` names, in seconds. */
  readonly measuredS?: number;
}

export type MeasuredOverheads = Readonly<Record<OverheadField, MeasuredConstant>>;

/** Every field of StepOverheads and PdlOverheads, in their declaration order. */
export const OVERHEAD_FIELDS: readonly OverheadField[] = [
  'hostLaunchS', 'streamGapS', 'graphNodeGapS', 'graphStartS', 'hostGraphLaunchS', 'copyLatencyS', 'hostCopyS', 'hostStepS', 'smallKernelS',
  'waitReleaseS', 'rampS',
];

/** Least squares of y on n; r2 = 1 where every y is equal and the line goes through them. */
export function fitLine(n: readonly number[], y: readonly number[]): LineFit {
  if (n.length !== y.length || n.length < 2 || new Set(n).size < 2) {
    throw new TidarcError('runtime', 'a launch overhead series needs at least two distinct lengths', { field: 'n', value: n.join(', ') });
  }
  const k = n.length;
  const mn = n.reduce((a, b) => a + b, 0) / k, my = y.reduce((a, b) => a + b, 0) / k;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < k; i++) {
    sxy += (n[i]! - mn) * (y[i]! - my);
    sxx += (n[i]! - mn) ** 2;
    syy += (y[i]! - my) ** 2;
  }
  const slopeS = sxy / sxx, interceptS = my - slopeS * mn;
  let res = 0;
  for (let i = 0; i < k; i++) res += (y[i]! - interceptS - slopeS * n[i]!) ** 2;
  return { slopeS, interceptS, r2: syy === 0 ? (res === 0 ? 1 : 0) : 1 - res / syy };
}

/** A series from its lengths and median GPU milliseconds. */
export function seriesOf(n: readonly number[], gpuMs: readonly number[]): OverheadSeries {
  return { n: [...n], gpuMs: [...gpuMs], ...fitLine(n, gpuMs.map((ms) => ms / 1e3)) };
}

const us = (s: number): string => `${(s * 1e6).toFixed(3)} us`;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** How far above gap + ramp - lead the S-pdl boundary must be to be taken for the release (noise in two slopes). */
const RELEASE_TOLERANCE_S = 0.02e-6;

/**
 * The model's constants from the series and host times (pure). `pdlWhy`: why the PDL series are
 * null (PDL off); `rampS`: the launch ramp assumed to split the sums it is part of (lowered to
 * s(graph-E) or s(stream-E) where either is shorter: an empty kernel's time per node bounds its ramp).
 */
export function deriveOverheads(series: OverheadSeriesSet, host: HostTimes, o: { pdlWhy?: string; rampS?: number } = {}): MeasuredOverheads {
  const assumedRamp = o.rampS ?? PDL_OVERHEADS.rampS;
  const E = series['graph-E'], S = series['graph-S'], Ep = series['graph-E-pdl'], Sp = series['graph-S-pdl'], St = series['stream-E'];
  const ramp = Math.max(0, Math.min(assumedRamp, E.slopeS, St.slopeS));
  const lowered = ramp < assumedRamp;
  const assumed = lowered
    ? `a ramp of ${us(ramp)}: the ASSUMED rampS ${us(assumedRamp)} (PDL_OVERHEADS.rampS) lowered to min(s(graph-E), s(stream-E)), an empty kernel's whole time per node`
    : `the ASSUMED rampS ${us(ramp)} (PDL_OVERHEADS.rampS)`;
  const noPdl = `no PDL series: ${o.pdlWhy ?? 'PDL is off'}`;
  const split = (sumS: number, of: string, value: number, more = ''): MeasuredConstant => ({ value, identifiable: false, measuredS: sumS, from: `${of} = ${us(sumS)} measured; split with ${assumed}${more}` });
  const nodeGap = E.slopeS - ramp;
  // S's time after its wait (smallKernelS - rampS): under PDL the lead its successor's gap and ramp run beside.
  const lead = S.slopeS - E.slopeS;
  const waitRelease = (): MeasuredConstant => {
    if (!Ep || !Sp) return { value: null, identifiable: false, from: noPdl };
    const boundary = Sp.slopeS - lead;
    const exposed = E.slopeS - lead;
    const edge = `; s(graph-E-pdl) = ${us(Ep.slopeS)} against s(graph-E) = ${us(E.slopeS)} (E leaves no lead: the model has them equal; lower, a programmatic edge's own gap is shorter than a node's)`;
    const of = `s(graph-S-pdl) - (s(graph-S) - s(graph-E)) = ${us(Sp.slopeS)} - ${us(lead)}: the exposed time per programmatic edge after S's lead`;
    // The boundary is max(waitReleaseS, gap + ramp - lead): above gap + ramp - lead it is the release itself.
    return boundary > exposed + RELEASE_TOLERANCE_S
      ? { value: boundary, identifiable: true, from: `${of} (it hides gap + ramp - lead = ${us(exposed)})${edge}` }
      : { value: null, identifiable: false, measuredS: boundary, from: `${of}, not above gap + ramp - lead = ${us(exposed)}: S's lead is too short to expose the release, which is at most ${us(Math.max(0, boundary))}${edge}` };
  };
  return {
    hostLaunchS: {
      value: host.opLaunchS, identifiable: true,
      from: `host wall time per GpuOps call of E, its argument struct packed per call as the runtime issues a kernel (packing, N-API call, plain cuLaunchKernel; without the packing ${us(host.launchS)}`
        + `${host.opLaunchPdlS !== undefined ? `; programmatic, as with PDL on, ${us(host.opLaunchPdlS)}` : ''})`,
    },
    streamGapS: split(St.slopeS, 's(stream-E) = streamGapS + rampS (E launches one by one, the host ahead)', St.slopeS - ramp),
    graphNodeGapS: split(E.slopeS, 's(graph-E) = graphNodeGapS + rampS', nodeGap),
    graphStartS: {
      value: E.interceptS - host.graphLaunchS + nodeGap, identifiable: false, measuredS: E.interceptS,
      from: `a(graph-E) = ${us(E.interceptS)} measured (the events bracket cuGraphLaunch on an idle stream, so it holds the host's call, hostGraphLaunchS ${us(host.graphLaunchS)}); `
        + `the model's graph time is graphStartS + N kernels + (N - 1) node gaps after the host's call: graphStartS = a - hostGraphLaunchS + graphNodeGapS, the gap split with ${assumed}`,
    },
    hostGraphLaunchS: { value: host.graphLaunchS, identifiable: true, from: 'host wall time per CudaDevice.launchGraph of a 16-node E graph' },
    copyLatencyS: {
      value: series.copies.slopeS, identifiable: true,
      from: 's(copies): GPU time per 64 B pinned host -> device copy, queued back to back behind device copies (the stream\'s time per copy; a lone copy\'s latency, and a download\'s, may be longer; as a graph node, the step\'s upload with graphs: graphCopyNodeS)',
    },
    hostCopyS: { value: host.copyS, identifiable: true, from: 'host wall time per CudaDevice.uploadAsync of 64 B from pinned memory' },
    hostStepS: { value: null, identifiable: false, from: 'not measured here: the decoder\'s own host work per step needs a decoder (bench:step --overheads or --compare on a device-check.json derives it from the e2e part\'s steps: their host time less its launches\' and uploads\' calls, step-host.ts)' },
    smallKernelS: split(lead, 's(graph-S) - s(graph-E) = smallKernelS - rampS', lead + ramp),
    waitReleaseS: waitRelease(),
    rampS: lowered
      ? { value: ramp, identifiable: false, measuredS: Math.min(E.slopeS, St.slopeS), from: `at most min(s(graph-E), s(stream-E)) = ${us(ramp)}, below the ASSUMED ${us(assumedRamp)}: the ramp the sums are split with` }
      : { value: null, identifiable: false, from: `not separable from the gaps and smallKernelS by these series (each holds it in a sum); ${assumed} splits the sums` },
  };
}

/**
 * The step's upload as a graph node, measured (not a constant of StepOverheads: the model prices it
 * copyLatencyS + graphNodeGapS, step-timeline.ts stepIssue; this says whether that holds).
 */
export interface GraphCopyNode {
  /** Seconds: the median over N of T(graph-E-copy, N) - T(graph-E, N), the paired times at each length. */
  readonly value: number;
  /** The two series differ by the copy node alone: no assumed figure enters. */
  readonly identifiable: true;
  readonly from: string;
  /** T(graph-E-copy, N) - T(graph-E, N) per length, seconds. */
  readonly pairedS: readonly number[];
  /** a(graph-E-copy) - a(graph-E) and s(graph-E-copy) - s(graph-E) (the node is a fixed cost: the slopes should agree). */
  readonly interceptDiffS: number;
  readonly slopeDiffS: number;
  /** The model's price of the node, copyLatencyS + graphNodeGapS: with this run's constants (measured; a split below 0 as 0) and with the assumed ones. */
  readonly model: { readonly valueS: number; readonly copyLatencyS: number; readonly graphNodeGapS: number; readonly assumedS: number; readonly from: string };
}

/** A copy node's slope difference past this share of s(graph-E) (and 0.05 us) is named in the warnings: the node changed more than a fixed cost. */
const COPY_NODE_SLOPE_SHARE = 0.1;

/**
 * graphCopyNodeS from graph-E-copy against graph-E (pure), beside the model's price of the node with
 * `m`'s constants (deriveOverheads of the same run) and with `base`'s (the assumed ones).
 */
export function deriveGraphCopyNode(series: OverheadSeriesSet, m: MeasuredOverheads, base: StepOverheads = STEP_OVERHEADS): GraphCopyNode {
  const E = series['graph-E'], C = series['graph-E-copy'];
  const paired = E.n.length === C.n.length && E.n.every((n, i) => n === C.n[i]);
  const pairedS = paired ? C.gpuMs.map((ms, i) => (ms - E.gpuMs[i]!) / 1e3) : [];
  const interceptDiffS = C.interceptS - E.interceptS, slopeDiffS = C.slopeS - E.slopeS;
  const value = paired ? median(pairedS) : interceptDiffS;
  const pick = (f: 'copyLatencyS' | 'graphNodeGapS'): number => {
    const v = m[f].value;
    return v === null || !Number.isFinite(v) ? base[f] : Math.max(0, v);
  };
  const copyLatencyS = pick('copyLatencyS'), graphNodeGapS = pick('graphNodeGapS');
  const said = (f: 'copyLatencyS' | 'graphNodeGapS'): string => (m[f].value === null ? 'assumed' : m[f].identifiable ? 'measured' : 'measured, split with the assumed rampS');
  return {
    value, identifiable: true, pairedS, interceptDiffS, slopeDiffS,
    from: paired
      ? `median over N = ${E.n.join(', ')} of T(graph-E-copy, N) - T(graph-E, N) = ${pairedS.map(us).join(', ')}: one 64 B pinned uploadAsync captured as the first node of graph-E's graph, as the runner captures a step's upload`
        + ` (a(graph-E-copy) - a(graph-E) = ${us(interceptDiffS)}, s(graph-E-copy) - s(graph-E) = ${us(slopeDiffS)})`
      : `a(graph-E-copy) - a(graph-E) = ${us(interceptDiffS)} (the series' lengths differ: no paired times): one 64 B pinned uploadAsync captured as the first node of graph-E's graph`,
    model: {
      valueS: copyLatencyS + graphNodeGapS, copyLatencyS, graphNodeGapS, assumedS: base.copyLatencyS + base.graphNodeGapS,
      from: `the model's price of the node (step-timeline.ts stepIssue): copyLatencyS ${us(copyLatencyS)} (${said('copyLatencyS')}) + graphNodeGapS ${us(graphNodeGapS)} (${said('graphNodeGapS')}); assumed ${us(base.copyLatencyS)} + ${us(base.graphNodeGapS)}`,
    },
  };
}

/** graph-E-copy's slope off graph-E's: the copy node did not add a fixed cost alone (a warning, or none). */
export function copyNodeWarnings(c: GraphCopyNode, series: OverheadSeriesSet): string[] {
  const E = series['graph-E'];
  return Math.abs(c.slopeDiffS) > Math.max(COPY_NODE_SLOPE_SHARE * Math.abs(E.slopeS), 0.05e-6)
    ? [`graph-E-copy: its slope is ${us(c.slopeDiffS)} a node off graph-E's ${us(E.slopeS)}: the copy node changed more than a fixed cost, graphCopyNodeS (${us(c.value)}) is doubtful`]
    : [];
}

/**
 * A graph series whose cuGraphLaunch host time grows by more than `share` of its GPU slope per node:
 * the events bracket the call, so where the GPU waits for the whole call the slope holds host time.
 */
export function graphHostWarnings(series: OverheadSeriesSet, host: LaunchOverheads['graphLaunchHost'], share = 0.1): string[] {
  return (Object.entries(host) as [SeriesName, { slopeS: number; hostMs: readonly number[]; n: readonly number[] }][]).flatMap(([name, h]) => {
    const s = series[name];
    return s && h.slopeS > share * s.slopeS
      ? [`${name}: cuGraphLaunch's host time grows ${us(h.slopeS)} a node (${h.hostMs.map((ms) => ms.toFixed(4)).join(', ')} ms at N = ${h.n.join(', ')}) against the GPU's ${us(s.slopeS)}: the slope may hold host time`]
      : [];
  });
}

/** What makes the fits doubtful: a series whose line explains less than `minR2` of its variance. */
export function fitWarnings(series: OverheadSeriesSet, minR2 = 0.99): string[] {
  return SERIES_NAMES.flatMap((name) => {
    const s = series[name];
    return s && !(s.r2 >= minR2) ? [`${name}: r2 ${s.r2.toFixed(4)} below ${minR2} (times ${s.gpuMs.map((ms) => ms.toFixed(4)).join(', ')} ms at N = ${s.n.join(', ')}): its slope is doubtful`] : [];
  });
}

/**
 * The model's overheads with the measured figures in place of `base`'s (a null value keeps the
 * base figure; a split value below 0, noise or a ramp shorter than the one assumed, counts as 0):
 * what step-cost-model.ts prices a step with to compare it with the step measured on that device.
 */
export function measuredStepOverheads(m: MeasuredOverheads, base: StepOverheads = STEP_OVERHEADS, basePdl: PdlOverheads = PDL_OVERHEADS): {
  readonly overheads: StepOverheads; readonly pdl: PdlOverheads; readonly replaced: readonly OverheadField[]; readonly clamped: readonly OverheadField[];
} {
  const replaced: OverheadField[] = [], clamped: OverheadField[] = [];
  const pick = (f: OverheadField, fallback: number): number => {
    const v = m[f].value;
    if (v === null || !Number.isFinite(v)) return fallback;
    replaced.push(f);
    if (v < 0) clamped.push(f);
    return Math.max(0, v);
  };
  const overheads = Object.fromEntries((Object.keys(base) as (keyof StepOverheads)[]).map((f) => [f, pick(f, base[f])])) as unknown as StepOverheads;
  const pdl = Object.fromEntries((Object.keys(basePdl) as (keyof PdlOverheads)[]).map((f) => [f, pick(f, basePdl[f])])) as unknown as PdlOverheads;
  return { overheads, pdl, replaced, clamped };
}

/** What measureLaunchOverheads runs. */
export interface MeasureOptions {
  /** Series lengths (at least two distinct; a GPU: 16, 64, 256). */
  readonly ns: readonly number[];
  /** Timed repeats per length (the median is kept). */
  readonly repeats: number;
  /** Calls per host loop (kernel launches and copies). */
  readonly hostIterations: number;
  /** Graph launches per host loop (each replays 16 kernels: kept short so the launch queue never fills). */
  readonly graphHostIterations: number;
  /** Whether the ops module's kernels may launch programmatically (pdl.ts programmaticLaunchFor), and why (not). */
  readonly pdl: { readonly on: boolean; readonly why: string };
  /** Bytes of the device-to-device copy that keeps the stream busy (a GPU: 64 MiB). */
  readonly copyBytes: number;
  /** Most queued copies ahead of one timed run. */
  readonly maxCopies: number;
  /** performance.now() past which no further series starts (a TidarcError). */
  readonly deadlineMs?: number;
}

export interface LaunchOverheads {
  readonly kernels: { readonly empty: string; readonly small: string };
  readonly series: OverheadSeriesSet;
  readonly host: HostTimes;
  readonly measured: MeasuredOverheads;
  /** The step's upload as a graph node: graph-E-copy against graph-E, beside the model's price of it. */
  readonly graphCopyNodeS: GraphCopyNode;
  /** The counts this run's launches leave in DeviceStats (what measureLaunchOverheads issued after its setup). */
  readonly stats: DeviceStats;
  /** The parameters the run used (the stats follow from them). */
  readonly plan: { readonly ns: readonly number[]; readonly repeats: number; readonly hostIterations: number; readonly graphHostIterations: number; readonly hostGraphNodes: number; readonly warmReplays: number };
  /** The queue ahead of stream-E and copies: one copy's GPU ms, and the least margin (ms) by which the copies outlasted the host's issue of the timed work (> 0: host ahead throughout). */
  readonly queue: { readonly copyBytes: number; readonly copyMs: number; readonly minMarginMs: number };
  /**
   * The host's time in the timed cuGraphLaunch calls of each graph series, per length (median ms), and its fit in seconds:
   * hostGraphLaunchS is timed on a 16-node graph, and the events bracket the call, so a call that grows with N would enter the slope.
   */
  readonly graphLaunchHost: Readonly<Partial<Record<SeriesName, { readonly n: readonly number[]; readonly hostMs: readonly number[]; readonly slopeS: number; readonly interceptS: number }>>>;
  /** What makes a figure doubtful (the host behind the queue, a series off its line: fitWarnings, a graph launch's host time growing with N: graphHostWarnings); empty where nothing did. */
  readonly warnings: readonly string[];
}

const HOST_GRAPH_NODES = 16;
const SMALL_COLS = 4096;
const COPY_BYTES = 64;


/**
 * Times the series on `device` with the GPU operators of `modulePath` (tidarc_ops: its ABI is
 * checked first). Everything issued after the setup (buffers, the first launch of each kernel) is
 * in `stats`, so a test can check the launches against what the plan says.
 */
export function measureLaunchOverheads(device: CudaDevice, modulePath: string, o: MeasureOptions): LaunchOverheads {
  if (o.repeats < 1 || o.hostIterations < 1 || o.graphHostIterations < 1) throw new TidarcError('runtime', 'launch overheads: repeats and host iterations must be at least 1');
  if (o.pdl.on && !device.programmaticLaunch) throw new TidarcError('runtime', 'launch overheads: PDL is on but the driver has no cuLaunchKernelEx');
  const ops = new GpuOps(device, modulePath);
  const opsPdl = o.pdl.on ? new GpuOps(device, modulePath, { programmatic: true }) : undefined;
  const buffers: DeviceBuffer[] = [];
  const alloc = (bytes: number, label: string): DeviceBuffer => (buffers.push(device.alloc(bytes, label)), buffers[buffers.length - 1]!);
  const e = alloc(4, 'empty kernel operand');
  const x = alloc(4 * SMALL_COLS, 'rmsnorm x'), w = alloc(4 * SMALL_COLS, 'rmsnorm w'), y = alloc(4 * SMALL_COLS, 'rmsnorm out');
  const src = alloc(o.copyBytes, 'queue copy source'), dst = alloc(o.copyBytes, 'queue copy target'), small = alloc(COPY_BYTES, 'small copy target');
  const pinned = device.allocPinned(COPY_BYTES, 'small copy source');
  const graphs: GraphRef[] = [];
  try {
    device.upload(x, Float32Array.from({ length: SMALL_COLS }, (_, i) => Math.sin(i * 0.37)));
    device.upload(w, Float32Array.from({ length: SMALL_COLS }, (_, i) => 0.5 + i / SMALL_COLS));
    device.fill(src, 0);
    const empty = (g: GpuOps): void => g.siluMul(e, e, e, 0);
    const norm = (g: GpuOps): void => g.rmsnorm(x, { buf: w, dtype: 'f32', rows: 1, cols: SMALL_COLS }, 1e-6, y, 1);
    // Load both kernels (a capture may not load one) before the counts start.
    empty(ops);
    norm(ops);
    device.synchronize();
    const s0 = device.stats;
    const check = (what: string): void => {
      if (o.deadlineMs !== undefined && performance.now() > o.deadlineMs) throw new TidarcError('runtime', `launch overheads: out of time before ${what}`, { field: 'budget' });
    };

    // Host: wall time per call, the GPU left to catch up between loops.
    const hostLoop = (iterations: number, call: () => void): number => {
      const per: number[] = [];
      for (let r = 0; r < o.repeats; r++) {
        const t0 = performance.now();
        for (let i = 0; i < iterations; i++) call();
        per.push((performance.now() - t0) / 1e3 / iterations);
        device.synchronize();
      }
      return median(per);
    };
    check('the host times');
    const fn = device.kernel(modulePath, opKernelName('silu_mul'));
    const args = packStruct(SILU_MUL, { gate: e.ptr, up: e.ptr, out: e.ptr, count: 0, outDtype: DTYPE_CODE.f32 });
    const launchS = hostLoop(o.hostIterations, () => device.launch(fn, [1], [256], 0, args));
    const opLaunchS = hostLoop(o.hostIterations, () => empty(ops));
    // Right after kernels: every call programmatic (CudaDevice.launch makes one so only after a kernel).
    const opLaunchPdlS = opsPdl ? hostLoop(o.hostIterations, () => empty(opsPdl)) : undefined;
    const g16 = device.capture('16 empty kernels', () => {
      for (let i = 0; i < HOST_GRAPH_NODES; i++) empty(ops);
    });
    graphs.push(g16);
    const graphLaunchS = hostLoop(o.graphHostIterations, () => device.launchGraph(g16));
    const copyS = hostLoop(o.hostIterations, () => device.uploadAsync(small, pinned));
    const host: HostTimes = { launchS, graphLaunchS, copyS, opLaunchS, ...(opLaunchPdlS !== undefined ? { opLaunchPdlS } : {}) };

    // The queue: copies whose GPU time outlasts the host's issue of what follows them.
    check('the queued series');
    const copyMs = median(Array.from({ length: 3 }, () => device.timeGpu(() => device.copy(dst, 0, src, 0, o.copyBytes)).gpuMs));
    let minMarginMs = Infinity;
    const queued = (n: number, perCallS: number, work: () => void): number => {
      // Twice the host's issue time of the work, plus 50 us for the events.
      const copies = Math.min(o.maxCopies, Math.max(1, Math.ceil((2 * n * perCallS * 1e3 + 0.05) / Math.max(copyMs, 1e-6))));
      const t0 = performance.now();
      for (let i = 0; i < copies; i++) device.copy(dst, 0, src, 0, o.copyBytes);
      const t1 = performance.now();
      const t = device.timeGpu(work);
      // The host ahead: the copies still ran when it had issued the last of the work (t1 + its issue time;
      // timeGpu returns after the end event, so the time after it holds the GPU's work too).
      minMarginMs = Math.min(minMarginMs, copies * copyMs - (t1 - t0 + t.hostMs));
      return t.gpuMs;
    };
    const queuedSeries = (perCallS: number, call: () => void): OverheadSeries => seriesOf(o.ns, o.ns.map((n) => {
      const times: number[] = [];
      for (let r = 0; r < o.repeats; r++) {
        times.push(queued(n, perCallS, () => {
          for (let i = 0; i < n; i++) call();
        }));
      }
      device.synchronize();
      return median(times);
    }));
    const streamE = queuedSeries(opLaunchS, () => empty(ops));
    const copies = queuedSeries(copyS, () => device.uploadAsync(small, pinned));

    // Graphs: one warm replay, then the timed ones.
    // The host's time in each timed cuGraphLaunch, per series and length (its fit: graphLaunchHost).
    const graphHostMs: Partial<Record<SeriesName, number[]>> = {};
    const graphSeries = (label: SeriesName, g: GpuOps, kernel: (g: GpuOps) => void): OverheadSeries => {
      check(label);
      const hostMs: number[] = (graphHostMs[label] = []);
      return seriesOf(o.ns, o.ns.map((n) => {
        const ref = device.capture(`${label} x ${n}`, () => {
          for (let i = 0; i < n; i++) kernel(g);
        });
        graphs.push(ref);
        device.launchGraph(ref);
        device.synchronize();
        const times = Array.from({ length: o.repeats }, () => device.timeGpu(() => device.launchGraph(ref)));
        hostMs.push(median(times.map((t) => t.hostMs)));
        return median(times.map((t) => t.gpuMs));
      }));
    };
    // graph-E and graph-E-copy at each N with their timed replays alternating (E, copy, E, copy, ...): the paired
    // times, whose difference is the copy node, share the GPU clock's drift over the run (one series after the other would not).
    const pairedGraphSeries = (): [OverheadSeries, OverheadSeries] => {
      check('graph-E');
      const labels = ['graph-E', 'graph-E-copy'] as const;
      const hostMs = labels.map((l) => (graphHostMs[l] = [] as number[]));
      const gpuMs: number[][] = [[], []];
      for (const n of o.ns) {
        const refs = labels.map((l) => device.capture(`${l} x ${n}`, () => {
          if (l === 'graph-E-copy') device.uploadAsync(small, pinned);
          for (let i = 0; i < n; i++) empty(ops);
        }));
        graphs.push(...refs);
        for (const ref of refs) device.launchGraph(ref);
        device.synchronize();
        const times: ReturnType<typeof device.timeGpu>[][] = [[], []];
        for (let r = 0; r < o.repeats; r++) refs.forEach((ref, i) => times[i]!.push(device.timeGpu(() => device.launchGraph(ref))));
        times.forEach((t, i) => {
          hostMs[i]!.push(median(t.map((x) => x.hostMs)));
          gpuMs[i]!.push(median(t.map((x) => x.gpuMs)));
        });
      }
      return [seriesOf(o.ns, gpuMs[0]!), seriesOf(o.ns, gpuMs[1]!)];
    };
    const [graphE, graphECopy] = pairedGraphSeries();
    const series: OverheadSeriesSet = {
      'graph-E': graphE,
      'graph-S': graphSeries('graph-S', ops, norm),
      'graph-E-pdl': opsPdl ? graphSeries('graph-E-pdl', opsPdl, empty) : null,
      'graph-S-pdl': opsPdl ? graphSeries('graph-S-pdl', opsPdl, norm) : null,
      'stream-E': streamE,
      copies,
      'graph-E-copy': graphECopy,
    };
    device.synchronize();
    const stats = statsSince(s0, device.stats);
    const graphLaunchHost = Object.fromEntries(Object.entries(graphHostMs).map(([name, ms]) => {
      const fit = fitLine(o.ns, ms.map((x) => x / 1e3));
      return [name, { n: [...o.ns], hostMs: ms, slopeS: fit.slopeS, interceptS: fit.interceptS }];
    })) as LaunchOverheads['graphLaunchHost'];
    const measured = deriveOverheads(series, host, o.pdl.on ? {} : { pdlWhy: o.pdl.why });
    const graphCopyNodeS = deriveGraphCopyNode(series, measured);
    return {
      kernels: {
        empty: 'tidarc_op_silu_mul, count 0: grid [1], block [256], no shared memory (the PDL prologue and a return)',
        small: `tidarc_op_rmsnorm, 1 row x ${SMALL_COLS} float32 (float32 weights): grid [1], block [256]`,
      },
      series, host, measured, graphCopyNodeS,
      stats,
      plan: { ns: [...o.ns], repeats: o.repeats, hostIterations: o.hostIterations, graphHostIterations: o.graphHostIterations, hostGraphNodes: HOST_GRAPH_NODES, warmReplays: 1 },
      queue: { copyBytes: o.copyBytes, copyMs, minMarginMs },
      graphLaunchHost,
      warnings: [
        ...(minMarginMs > 0 ? [] : [`the queued copies did not outlast the host's issue in every run (least margin ${minMarginMs.toFixed(3)} ms): stream-E and copies may hold host time`]),
        ...fitWarnings(series),
        ...graphHostWarnings(series, graphLaunchHost),
        ...copyNodeWarnings(graphCopyNodeS, series),
      ],
    };
  } finally {
    for (const g of graphs) device.destroyGraph(g);
    device.synchronize();
    device.freePinned(pinned);
    for (const b of buffers) device.free(b);
  }
}

