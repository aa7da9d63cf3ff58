/**
 * A decode step's timeline from its priced launches (step-launch-price.ts): the GPU and host time
 * of its kernels run one by one, as one CUDA graph, and with PDL. Pure.
 *
 *   overheads   named in step-overheads.ts, with where each figure comes from. GPU time with graphs: the
 *               graph's start, the upload (a node of the graph), the kernels back to back with
 *               GRAPH_NODE_GAP_S between them, the download. Launch by launch: the host issues
 *               launch i at i x HOST_LAUNCH_S (after the upload call) and the GPU runs it at the
 *               later of that and the previous kernel's end + STREAM_GAP_S, so a step whose
 *               kernels are shorter than their issue waits on the host. Host time (what
 *               bench-step calls hostMs: the step's wall time outside its waits for the GPU, the
 *               synchronous download among them): the decoder's own work and the launches' (or
 *               the graph launch's) issue, plus launch by launch the upload call (stepIssue).
 *   PDL         programmatic dependent launch (pdlStepTimes; what an H200 runs by default): each
 *               kernel after the first is scheduled once its predecessor's CTAs have all started,
 *               where its CTAs fit beside them (occupancy.ts ctasBeside); then its node (or stream)
 *               gap and its floor's launch ramp pass during the predecessor's last wave, leaving the
 *               wait's release, and a GEMM's L2 prefetch (gemm-prefetch.ts) streams at the HBM rate
 *               the predecessor leaves idle, shortening its HBM time. PdlOverheads names the figures.
 *               The GEMM models have no latency-bound start term of their own (their HBM rate is
 *               Little's law's), so the prefetch shortens their HBM time only.
 */
import type { Machine } from '../codegen/machine.js';
import { ctasBeside } from '../codegen/occupancy.js';
import { fillRate } from '../codegen/in-flight-rate.js';
import { type LaunchPrice, prefetchedGemmS } from './step-launch-price.js';
import { PDL_OVERHEADS, type PdlOverheads, STEP_OVERHEADS, type StepOverheads, graphUploadNodeS } from './step-overheads.js';

export interface ModeTimes {
  /** GPU time of the step between events around it (upload to download). */
  readonly gpuS: number;
  /** Host time per step outside the waits for the GPU. */
  readonly hostS: number;
  /** gpuS less the kernels' own time: gaps, the graph's start, copies, waits on the host. */
  readonly overheadS: number;
}

/**
 * Where a step's kernels can start and what the host spends issuing them, as the runner issues a
 * step (gpu-runner.ts decodeStep). Launch by launch: the decoder's own work, the upload call (its
 * copy lands copyLatencyS later), then each launch. With graphs the upload is a node of the
 * captured graph (DeviceStepIo.upload inside the capture): the host fills the pinned inputs and
 * launches the graph, whose copy node runs after the graph's start (graphUploadNodeS: measured where
 * a device's file has graphCopyNodeS, else copyLatencyS + graphNodeGapS). The download is synchronous:
 * bench-step counts it among the waits, so it is GPU time (the tail) and not host time.
 */
function stepIssue(copies: { uploads: number; downloads: number; bytes: number }, machine: Machine, o: StepOverheads) {
  const directIssued = o.hostStepS + copies.uploads * o.hostCopyS;
  return {
    /** Launch by launch: the host's time when the upload call returns, and when its copy has landed. */
    directIssued, directUploaded: directIssued + copies.uploads * o.copyLatencyS,
    /** With graphs: when the graph's first kernel can start. */
    graphKernelsFrom: o.hostStepS + o.hostGraphLaunchS + o.graphStartS + copies.uploads * graphUploadNodeS(o),
    tail: copies.downloads * o.copyLatencyS + copies.bytes / machine.copyBytesPerS,
    graphHostS: o.hostStepS + o.hostGraphLaunchS,
    directHostS: (launches: number): number => directIssued + launches * o.hostLaunchS,
  };
}

/**
 * GPU and host time of the priced kernels run one by one (the host issues each) and as one graph.
 * Both timelines start where bench-step's first CUDA event does, before the decoder's own host
 * work (stepIssue: what comes before the first kernel).
 */
export function stepTimes(kernels: readonly number[], copies: { uploads: number; downloads: number; bytes: number }, machine: Machine, o: StepOverheads = STEP_OVERHEADS): { graphs: ModeTimes; direct: ModeTimes } {
  const kernelS = kernels.reduce((a, b) => a + b, 0);
  const at = stepIssue(copies, machine, o);
  const graphGpu = at.graphKernelsFrom + kernelS + Math.max(0, kernels.length - 1) * o.graphNodeGapS + at.tail;
  // Launch by launch: the GPU runs each kernel once it is issued and the previous one is done.
  let host = at.directIssued, gpu = at.directUploaded - o.streamGapS;
  for (const k of kernels) {
    host += o.hostLaunchS;
    gpu = Math.max(gpu + o.streamGapS, host) + k;
  }
  const directGpu = gpu + at.tail;
  return {
    graphs: { gpuS: graphGpu, hostS: at.graphHostS, overheadS: graphGpu - kernelS },
    direct: { gpuS: directGpu, hostS: at.directHostS(kernels.length), overheadS: directGpu - kernelS },
  };
}

/** What PDL changes of a step: its times, and which kernel pairs overlap. */
export interface PdlStep {
  readonly graphs: ModeTimes;
  readonly direct: ModeTimes;
  /** The kernels' own time with PDL, graphs (floored kernels less their ramp, GEMMs less their prefetched HBM time). */
  readonly kernelS: number;
  /** Weight bytes the GEMMs had in L2 at their wait (graphs). */
  readonly prefetchedBytes: number;
  /** Kernel pairs (i, i + 1): all of i + 1's CTAs scheduled beside i's, some of them, none (no overlap). */
  readonly pairs: { readonly all: number; readonly some: number; readonly none: number };
  /** The pairs that do not fully fit, by kernel names: how often, and the share of the second's CTAs scheduled early (0: no overlap). */
  readonly unfit: readonly { readonly from: string; readonly to: string; readonly count: number; readonly early: number }[];
}

/**
 * The share of `next`'s CTAs scheduled while `prev` runs: on each SM holding prev's CTAs (at most
 * min(CTAs an SM holds, ceil(CTAs / SMs)) of them) as many as fit beside them (occupancy.ts
 * ctasBeside), on the SMs prev leaves empty as many as an SM holds. 0: no overlap. Any share
 * above 0 overlaps the gap and the ramp in full (the grid is launched; its other CTAs start as
 * prev's exit), the L2 prefetch in proportion (only the early CTAs issue theirs in time).
 */
export function pdlEarlyShare(prev: LaunchPrice, next: LaunchPrice, machine: Machine): number {
  const withPrev = Math.min(machine.sms, prev.ctas);
  const resident = Math.min(Math.max(1, prev.ctasPerSm), Math.ceil(prev.ctas / machine.sms));
  const beside = ctasBeside(machine.arch, prev.resources, resident, next.resources);
  const early = withPrev * beside + (machine.sms - withPrev) * next.ctasPerSm;
  return Math.min(1, early / Math.max(1, next.ctas));
}

/** Time from the moment `prev`'s last CTAs start to its end (its last wave): how long a dependent scheduled then runs beside it. */
export function pdlLeadS(prev: LaunchPrice, prevS: number, machine: Machine): number {
  return prevS / Math.max(1, Math.ceil(prev.ctas / (machine.sms * Math.max(1, prev.ctasPerSm))));
}

/**
 * One dependent kernel under PDL, scheduled `leadS` before its predecessor's end with `early` of
 * its CTAs: the gap before it (the node or stream gap `gapS` and its floor's ramp pass during the
 * lead; what does not fit in it stays exposed; at least the wait's release), its time (a floored
 * kernel at smallKernelS - rampS; a GEMM with the weight bytes it prefetched to L2 in the lead after
 * the gap and ramp, at the HBM rate the predecessor leaves idle and its early CTAs' bytes in flight
 * can pull, read at the L2 rate instead of HBM's).
 */
export function pdlKernel(prev: LaunchPrice, prevS: number, next: LaunchPrice, early: number, leadS: number, gapS: number, machine: Machine,
  o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): { boundaryS: number; kernelS: number; prefetchedBytes: number } {
  if (early <= 0 || leadS <= 0) return { boundaryS: gapS, kernelS: next.gpuS, prefetchedBytes: 0 };
  const rampFloor = Math.max(0, o.smallKernelS - p.rampS);
  const rampS = Math.max(0, next.gpuS - Math.max(next.modelS, rampFloor));
  let prefetchedBytes = 0, modelS = next.modelS;
  if (next.prefetch) {
    const idle = Math.max(0, machine.copyBytesPerS - prev.bytes / prevS);
    const pf = next.prefetch.prefetch;
    const fill = fillRate(machine, { bytesPerCta: pf.bytesPerCta, ctas: Math.max(1, Math.round(early * next.ctas)), ctasPerSm: Math.max(1, next.ctasPerSm) }).bytesPerS;
    const window = Math.max(0, leadS - gapS - rampS);
    prefetchedBytes = Math.min(pf.launchBytes * early, Math.min(idle, fill) * window, next.prefetch.mainBytes);
    modelS = prefetchedGemmS(next.prefetch, prefetchedBytes);
  }
  return { boundaryS: Math.max(p.waitReleaseS, gapS + rampS - leadS), kernelS: Math.max(modelS, rampFloor), prefetchedBytes };
}

/**
 * The step with PDL on: stepTimes' timelines with each kernel after the first (the first follows
 * the upload, a copy) launched as a programmatic dependent of the one before (pdlKernel). Launch
 * by launch a kernel is scheduled early only when the host issued it before its predecessor's end
 * (the lead is cut to what is left of it then); a host-bound step keeps its gaps.
 */
export function pdlStepTimes(prices: readonly LaunchPrice[], copies: { uploads: number; downloads: number; bytes: number }, machine: Machine,
  o: StepOverheads = STEP_OVERHEADS, p: PdlOverheads = PDL_OVERHEADS): PdlStep {
  const at = stepIssue(copies, machine, o);
  const early = prices.map((x, j) => (j === 0 ? 0 : pdlEarlyShare(prices[j - 1]!, x, machine)));
  // Graphs: the kernels back to back, each boundary as pdlKernel prices it.
  let graphKernels = 0, graphGaps = 0, prefetchedBytes = 0, prevS = 0;
  prices.forEach((x, j) => {
    if (j === 0) {
      graphKernels += (prevS = x.gpuS);
      return;
    }
    const prev = prices[j - 1]!;
    const r = pdlKernel(prev, prevS, x, early[j]!, pdlLeadS(prev, prevS, machine), o.graphNodeGapS, machine, o, p);
    graphKernels += r.kernelS;
    graphGaps += r.boundaryS;
    prefetchedBytes += r.prefetchedBytes;
    prevS = r.kernelS;
  });
  const graphGpu = at.graphKernelsFrom + graphKernels + graphGaps + at.tail;
  // Launch by launch: the host issues kernel j at its time; the GPU schedules it early only if that is before i's end.
  let host = at.directIssued, end = at.directUploaded - o.streamGapS, directKernels = 0;
  prevS = 0;
  prices.forEach((x, j) => {
    host += o.hostLaunchS;
    const prev = j > 0 ? prices[j - 1]! : undefined;
    const lead = prev ? Math.min(pdlLeadS(prev, prevS, machine), end - host) : 0;
    if (prev && early[j]! > 0 && lead > 0) {
      const r = pdlKernel(prev, prevS, x, early[j]!, lead, o.streamGapS, machine, o, p);
      end += r.boundaryS + r.kernelS;
      prevS = r.kernelS;
    } else {
      end = Math.max(end + o.streamGapS, host) + x.gpuS;
      prevS = x.gpuS;
    }
    directKernels += prevS;
  });
  const directGpu = end + at.tail;
  const unfit = new Map<string, { from: string; to: string; count: number; early: number }>();
  early.forEach((e, j) => {
    if (j === 0 || e >= 1) return;
    const key = `${prices[j - 1]!.kernel} -> ${prices[j]!.kernel}`;
    const u = unfit.get(key) ?? { from: prices[j - 1]!.kernel, to: prices[j]!.kernel, count: 0, early: e };
    unfit.set(key, { ...u, count: u.count + 1 });
  });
  const pairs = early.slice(1);
  return {
    graphs: { gpuS: graphGpu, hostS: at.graphHostS, overheadS: graphGpu - graphKernels },
    direct: { gpuS: directGpu, hostS: at.directHostS(prices.length), overheadS: directGpu - directKernels },
    kernelS: graphKernels, prefetchedBytes,
    pairs: { all: pairs.filter((e) => e >= 1).length, some: pairs.filter((e) => e > 0 && e < 1).length, none: pairs.filter((e) => e <= 0).length },
    unfit: [...unfit.values()],
  };
}
