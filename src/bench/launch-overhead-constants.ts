/**
 * The step cost model's launch and host constants (step-overheads.ts StepOverheads and
 * PdlOverheads) from the overheads part's series and host times (launch-overheads.ts says what E,
 * S and each series run and measures them; their fits: launch-overhead-series.ts). Pure: fits in,
 * constants out, each with whether these series identify it alone and where it comes from.
 *
 * An empty kernel's time is its launch ramp (rampS) and
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
 *
 * The step's upload as a graph node (graphCopyNodeS): graph-E-copy's paired times less graph-E's,
 * beside the model's price of it, copyLatencyS + graphNodeGapS (step-timeline.ts stepIssue).
 */
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheadConstant, type StepOverheads } from './step-overheads.js';
import { type OverheadSeriesSet, median, us } from './launch-overhead-series.js';

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

export type OverheadField = StepOverheadConstant | keyof PdlOverheads;

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
 * The step's upload as a graph node, measured: what the assumed model prices copyLatencyS +
 * graphNodeGapS (step-timeline.ts stepIssue); bench:step --overheads prices the node with it instead
 * (StepOverheads.graphCopyNodeS, step-overheads-file.ts) unless copyNodeWarnings doubts it.
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

/** How copyNodeWarnings' warning begins: a reader of the part's JSON finds it by this (isCopyNodeDoubt). */
const COPY_NODE_DOUBT = 'graph-E-copy: its slope is ';

/** graph-E-copy's slope off graph-E's: the copy node did not add a fixed cost alone (a warning, or none). */
export function copyNodeWarnings(c: GraphCopyNode, series: OverheadSeriesSet): string[] {
  const E = series['graph-E'];
  return Math.abs(c.slopeDiffS) > Math.max(COPY_NODE_SLOPE_SHARE * Math.abs(E.slopeS), 0.05e-6)
    ? [`${COPY_NODE_DOUBT}${us(c.slopeDiffS)} a node off graph-E's ${us(E.slopeS)}: the copy node changed more than a fixed cost, graphCopyNodeS (${us(c.value)}) is doubtful`]
    : [];
}

/** Whether one of the part's warnings is copyNodeWarnings': graphCopyNodeS flagged doubtful by the run that measured it. */
export function isCopyNodeDoubt(warning: string): boolean {
  return warning.startsWith(COPY_NODE_DOUBT);
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
  // graphCopyNodeS is no constant of this record (the file's graphCopyNodeS section: step-overheads-file.ts): kept as `base` has it.
  const fields = (Object.keys(base) as (keyof StepOverheads)[]).filter((f): f is StepOverheadConstant => f !== 'graphCopyNodeS');
  const overheads = { ...base, ...Object.fromEntries(fields.map((f) => [f, pick(f, base[f])])) } as StepOverheads;
  const pdl = Object.fromEntries((Object.keys(basePdl) as (keyof PdlOverheads)[]).map((f) => [f, pick(f, basePdl[f])])) as unknown as PdlOverheads;
  return { overheads, pdl, replaced, clamped };
}
