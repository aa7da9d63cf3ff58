/**
 * The step cost model's launch and host constants (step-cost-model.ts; step-timeline.ts reads
 * them): what issuing a step's kernels one by one, as one CUDA graph or with PDL costs beside the
 * kernels themselves, each with where its figure comes from. launch-overheads.ts measures them on
 * a device; step-overheads-file.ts reads such a measurement back in their place.
 */
/**
 * Launch and host costs. Each is a figure someone measured on other hardware or an assumption,
 * never an H200 measurement: the device check's e2e part measures the step (and the host
 * microseconds per launch) to replace them.
 */
export interface StepOverheads {
  /**
   * Host time to issue one kernel from tidarc: JS packing of the argument, the N-API call and
   * cuLaunchKernel. 6 us: /work/shared/docs/performance-model.md says 5-7 us for this path;
   * cuLaunchKernel alone enqueues in ~2.7 us and a launch + its share of a sync costs ~6.4 us
   * (github.com/ahrefs/ocannl/issues/488, RTX 5070 Ti, CUDA 13.3); ~5 us per cudaLaunchKernel
   * (github.com/pegainfer-project/pegainfer/pull/163, nsys notes).
   */
  readonly hostLaunchS: number;
  /**
   * GPU idle between two dependent kernels issued one by one on a stream, when the host is ahead:
   * 2 us (machine.ts H200.launchGapS, the figure the GEMM and attention models already use).
   */
  readonly streamGapS: number;
  /**
   * The same gap inside a replayed CUDA graph: 0.58 us a node (a replayed chain of N no-op
   * kernels costs ~15 us + 0.58 us x N, github.com/ahrefs/ocannl/issues/488).
   */
  readonly graphNodeGapS: number;
  /**
   * What a graph replay costs on the GPU's timeline beyond one plain launch: ~15 us fixed per
   * replay (ocannl#488, with its synchronize) less one launch with its sync (~6.4 us): 8.6 us.
   */
  readonly graphStartS: number;
  /** Host time of cuGraphLaunch for a straight-line graph: assumed 5 us (no H100/H200 figure found; NVIDIA's CUDA 12.6 notes call it constant in the node count). */
  readonly hostGraphLaunchS: number;
  /**
   * Latency of one small host<->device copy on the stream (pinned, tens of bytes): assumed 3 us each
   * way. With graphs the step's upload is a memcpy node, priced as this + graphNodeGapS unless a
   * device measured the node itself (graphCopyNodeS).
   */
  readonly copyLatencyS: number;
  /** Host time of one copy call (N-API + cuMemcpy*Async): assumed 5 us, like a launch. */
  readonly hostCopyS: number;
  /** The decoder's own host work per step (JS: the step input, the pinned fill, reading the result): assumed 20 us. */
  readonly hostStepS: number;
  /** Floor of a small operator kernel (one DRAM round trip, one CTA wave): assumed 1.5 us. */
  readonly smallKernelS: number;
  /**
   * The step's upload as a node of its graph, up to the first kernel's start: only where a device
   * measured it (the overheads part's graphCopyNodeS, graph-E-copy's times less graph-E's;
   * step-overheads-file.ts reads it). Absent, as in STEP_OVERHEADS: copyLatencyS + graphNodeGapS
   * (graphUploadNodeS), an assumption no series checked.
   */
  readonly graphCopyNodeS?: number;
}

export const STEP_OVERHEADS: StepOverheads = {
  hostLaunchS: 6e-6, streamGapS: 2e-6, graphNodeGapS: 0.58e-6, graphStartS: 8.6e-6, hostGraphLaunchS: 5e-6,
  copyLatencyS: 3e-6, hostCopyS: 5e-6, hostStepS: 20e-6, smallKernelS: 1.5e-6,
};

/** The constants every set of StepOverheads has (graphCopyNodeS only where a device measured it): what a device's file may replace one by one. */
export type StepOverheadConstant = Exclude<keyof StepOverheads, 'graphCopyNodeS'>;

/** What a step's upload costs as a node of its graph: the measured node where `o` has one, else the stream's copy plus a node's gap. */
export function graphUploadNodeS(o: StepOverheads): number {
  return o.graphCopyNodeS ?? o.copyLatencyS + o.graphNodeGapS;
}

/**
 * Programmatic dependent launch (PDL: the kernels' griddepcontrol contract, cuLaunchKernelEx with
 * programmatic stream serialization, captured as programmatic graph edges). Kernel j's CTAs are
 * scheduled once every CTA of kernel i (its predecessor) has started, since each calls
 * launch_dependents right after its wait, and only where they fit beside i's resident CTAs
 * (occupancy.ts ctasBeside: registers, shared memory, threads, CTA slots). Then, before j's wait
 * returns: the graph node's gap (or the stream's) and j's launch ramp pass while i runs, and a
 * GEMM's L2 prefetch of its weight slice (gemm-prefetch.ts) streams at the HBM rate i leaves idle.
 * None of these figures was measured on an H200: the device check's e2e part times the steps with
 * PDL on and off to check them.
 */
export interface PdlOverheads {
  /**
   * Exposed time between kernel i's end and kernel j's wait returning when j was scheduled early
   * (i's completion and memory flush signalled to j's waiting CTAs): ASSUMED 0.3 us. No H100/H200
   * figure was found; pegainfer-project/pegainfer#569 measured (%globaltimer, graph with
   * programmatic edges, unnamed GPU at 1755 MHz) that PDL removes 0.96 us of an empty kernel
   * pair's gap, which with this model's 0.58 us node gap + 0.8 us ramp leaves ~0.4 us.
   */
  readonly waitReleaseS: number;
  /**
   * A kernel's launch ramp (its CTAs dispatched, their prologue up to the wait): the part of the
   * floor smallKernelS (one DRAM round trip, one CTA wave) that is not the round trip, i.e.
   * smallKernelS - Machine.hbmLatencyS = 1.5 - 0.7 = 0.8 us (both assumed, see their sources).
   * Only the floor prices a ramp (the GEMM and attention models have none), so PDL lowers only a
   * floored kernel's time, to smallKernelS - rampS: the DRAM round trip after its wait remains.
   */
  readonly rampS: number;
}

export const PDL_OVERHEADS: PdlOverheads = { waitReleaseS: 0.3e-6, rampS: 0.8e-6 };
