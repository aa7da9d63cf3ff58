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
 *             are that copy node's cost in a graph (graphCopyNodeS), which the assumed model prices
 *             copyLatencyS + graphNodeGapS (step-timeline.ts stepIssue; a file's measured node replaces it).
 *   host      wall time per CudaDevice.launch (argument bytes packed before the loop), per GpuOps
 *             call (packing included), per launchGraph of a 16-node E graph, per 64 B uploadAsync.
 *
 * The series' fits and warnings: launch-overhead-series.ts; the model's constants derived from them
 * (deriveOverheads, deriveGraphCopyNode, measuredStepOverheads): launch-overhead-constants.ts, both
 * re-exported here for the overheads part's callers.
 */
import { TidarcError } from '../errors.js';
import type { CudaDevice, DeviceBuffer, DeviceStats, GraphRef } from '../runtime/cuda/device.js';
import { statsSince } from '../runtime/cuda/device.js';
import { GpuOps } from '../runtime/cuda/gpu-ops.js';
import { DTYPE_CODE, SILU_MUL, opKernelName, packStruct } from '../runtime/cuda/op-abi.js';
import { type GraphLaunchHostFits, type OverheadSeries, type OverheadSeriesSet, type SeriesName, fitLine, fitWarnings, graphHostWarnings, median, seriesOf } from './launch-overhead-series.js';
import { type GraphCopyNode, type HostTimes, type MeasuredOverheads, copyNodeWarnings, deriveGraphCopyNode, deriveOverheads } from './launch-overhead-constants.js';

export * from './launch-overhead-series.js';
export * from './launch-overhead-constants.js';

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
  readonly graphLaunchHost: GraphLaunchHostFits;
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
    })) as GraphLaunchHostFits;
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
