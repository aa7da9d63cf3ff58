/**
 * The launch overheads' measurement (src/bench/launch-overheads.ts, scripts/device-check/overheads.mjs):
 * the fit and the derivation on synthetic series made from known constants (they come back), a
 * run without PDL series (nulls that say why), and one run of overheads.mjs on the emulated driver
 * on this checkout's build (dist/, as npm ci leaves it): its one JSON line has the shape the device
 * check reads, and the device's counters moved by exactly the launches, graph replays and copies
 * its plan says. Emulated timings mean nothing: no assertion reads them.
 * Tagged: a C++ compiler (the emulated driver and operators).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type HostTimes, type LaunchOverheads, OVERHEAD_FIELDS, type OverheadSeriesSet, SERIES_NAMES, copyNodeWarnings, deriveGraphCopyNode, deriveOverheads, fitLine, fitWarnings, measureLaunchOverheads,
  measuredStepOverheads, seriesOf,
} from '../../src/bench/launch-overheads.js';
import { PDL_OVERHEADS, STEP_OVERHEADS } from '../../src/bench/step-cost-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import type { CudaDevice, DeviceStats } from '../../src/runtime/cuda/device.js';
import { OPS_ABI_BUFFER } from '../../src/runtime/cuda/gpu-ops.js';
import { OPS_ABI_VERSION } from '../../src/runtime/cuda/op-abi.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();

/** Known constants (seconds), none of them the model's defaults. */
const K = {
  gap: 0.61e-6, ramp: PDL_OVERHEADS.rampS, small: 2.6e-6, wait: 0.27e-6, start: 7.3e-6, stream: 2.4e-6, copy: 3.1e-6,
  hostLaunch: 4.2e-6, hostGraph: 5.5e-6, hostCopy: 3.9e-6, opLaunch: 4.8e-6, edgeGap: 0.35e-6,
  /** The copy node's own time in a graph (before the gap to the first kernel): not the stream's copy time. */
  copyNode: 2.3e-6,
};
const NS = [16, 64, 256];
/** Milliseconds at each length of `t(n)` in seconds. */
const series = (t: (n: number) => number) => seriesOf(NS, NS.map((n) => t(n) * 1e3));

/**
 * The series the model predicts from K: graphs timed from before the host's cuGraphLaunch, (N - 1)
 * node gaps. With PDL (step-timeline.ts pdlKernel), a kernel's gap and ramp run beside its
 * predecessor's time after the wait (the lead: small - ramp for S, nothing for E); the wait returns
 * max(wait, gap + ramp - lead) after the predecessor's end. E-pdl's programmatic edge is given a
 * shorter gap (edgeGap) than a node's, which the model does not price: it must not enter waitReleaseS.
 */
function synthetic(pdl: boolean, k: typeof K = K): OverheadSeriesSet {
  const lead = k.small - k.ramp;
  return {
    'graph-E': series((n) => k.hostGraph + k.start + n * k.ramp + (n - 1) * k.gap),
    'graph-S': series((n) => k.hostGraph + k.start + n * k.small + (n - 1) * k.gap),
    'graph-E-pdl': pdl ? series((n) => 9e-6 + n * (k.edgeGap + k.ramp)) : null,
    'graph-S-pdl': pdl ? series((n) => 9e-6 + n * (Math.max(k.wait, k.gap + k.ramp - lead) + lead)) : null,
    'stream-E': series((n) => 1e-6 + n * (k.stream + k.ramp)),
    copies: series((n) => 2e-6 + n * k.copy),
    // graph-E's graph with the upload as its first node: the node and one more gap before the first kernel.
    'graph-E-copy': series((n) => k.hostGraph + k.start + k.copyNode + k.gap + n * k.ramp + (n - 1) * k.gap),
  };
}
const HOST: HostTimes = { launchS: K.hostLaunch, graphLaunchS: K.hostGraph, copyS: K.hostCopy, opLaunchS: K.opLaunch };

describe('deriveOverheads', () => {
  test('the fit of an exact line gives its slope and intercept, r2 1; noise lowers r2; one length is refused', () => {
    expect(fitLine([1, 2, 4], [3, 5, 9])).toEqual({ slopeS: 2, interceptS: 1, r2: 1 });
    expect(fitLine([1, 2, 3], [7, 7, 7])).toEqual({ slopeS: 0, interceptS: 7, r2: 1 });
    const noisy = fitLine([1, 2, 3, 4], [1, 2.5, 2.8, 4.2]);
    expect(noisy.r2).toBeGreaterThan(0.8);
    expect(noisy.r2).toBeLessThan(1);
    expect(() => fitLine([16, 16], [1, 2])).toThrow(/two distinct lengths/);
  });

  test('known constants in, the same constants out, every field of StepOverheads and PdlOverheads present', () => {
    const m = deriveOverheads(synthetic(true), HOST);
    expect(Object.keys(m).sort()).toEqual([...Object.keys(STEP_OVERHEADS), ...Object.keys(PDL_OVERHEADS)].sort());
    expect(Object.keys(m).sort()).toEqual([...OVERHEAD_FIELDS].sort());
    const value = (f: keyof typeof m): number => m[f].value!;
    expect(value('waitReleaseS')).toBeCloseTo(K.wait, 12);
    expect(value('graphNodeGapS')).toBeCloseTo(K.gap, 12);
    expect(value('smallKernelS')).toBeCloseTo(K.small, 12);
    expect(value('graphStartS')).toBeCloseTo(K.start, 12);
    expect(value('streamGapS')).toBeCloseTo(K.stream, 12);
    expect(value('copyLatencyS')).toBeCloseTo(K.copy, 12);
    // The runtime packs each launch's struct (GpuOps): the model's hostLaunchS includes it.
    expect([value('hostLaunchS'), value('hostGraphLaunchS'), value('hostCopyS')]).toEqual([K.opLaunch, K.hostGraph, K.hostCopy]);
    // Identifiable alone: what no assumed figure enters.
    const alone = OVERHEAD_FIELDS.filter((f) => m[f].identifiable);
    expect(alone.sort()).toEqual(['copyLatencyS', 'hostCopyS', 'hostGraphLaunchS', 'hostLaunchS', 'waitReleaseS']);
    // The sums are measured as such; the cross-check is the same difference.
    expect(m.graphNodeGapS.measuredS).toBeCloseTo(K.gap + K.ramp, 12);
    expect(m.streamGapS.measuredS).toBeCloseTo(K.stream + K.ramp, 12);
    expect(m.smallKernelS.measuredS).toBeCloseTo(K.small - K.ramp, 12);
    // E-pdl's slope (a shorter programmatic edge, no lead) is reported beside s(graph-E), not taken for the release.
    expect(m.waitReleaseS.from).toContain(`s(graph-E-pdl) = ${((K.edgeGap + K.ramp) * 1e6).toFixed(3)} us against s(graph-E) = ${((K.gap + K.ramp) * 1e6).toFixed(3)} us`);
    expect(m.hostStepS).toMatchObject({ value: null, identifiable: false });
    expect(m.rampS).toMatchObject({ value: null, identifiable: false });
    for (const f of OVERHEAD_FIELDS) expect(m[f].from.length).toBeGreaterThan(20);
  });

  test('S\'s lead too short to expose the release: waitReleaseS null, its upper bound as measuredS', () => {
    // lead = 0.3 us < gap + ramp - wait: the boundary is gap + ramp - lead, not the release.
    const m = deriveOverheads(synthetic(true, { ...K, small: K.ramp + 0.3e-6 }), HOST);
    expect(m.waitReleaseS.value).toBeNull();
    expect(m.waitReleaseS.identifiable).toBe(false);
    expect(m.waitReleaseS.measuredS).toBeCloseTo(K.gap + K.ramp - 0.3e-6, 12);
    expect(m.waitReleaseS.from).toMatch(/too short to expose the release/);
    expect(measuredStepOverheads(m).pdl.waitReleaseS).toBe(PDL_OVERHEADS.waitReleaseS);
  });

  test('an empty kernel faster than the assumed ramp lowers the ramp: no split below 0, the measured sums kept', () => {
    const ramp = 0.5e-6;
    const m = deriveOverheads(synthetic(true, { ...K, ramp, gap: 0 }), HOST);
    expect(m.rampS).toMatchObject({ value: expect.closeTo(ramp, 12), identifiable: false });
    expect(m.graphNodeGapS.value).toBeCloseTo(0, 12);
    expect(m.streamGapS.value).toBeCloseTo(K.stream, 12);
    expect(m.smallKernelS.value).toBeCloseTo(K.small, 12);
    expect(m.graphNodeGapS.from).toContain('lowered to min(s(graph-E), s(stream-E))');
    const r = measuredStepOverheads(m);
    expect(r.clamped).toEqual([]);
    expect(r.pdl.rampS).toBeCloseTo(ramp, 12);
    // Per graph node the model's gap + floor is s(graph-S), as measured.
    expect(r.overheads.graphNodeGapS + r.overheads.smallKernelS).toBeCloseTo(m.graphNodeGapS.measuredS! + m.smallKernelS.measuredS!, 12);
  });

  test('fitWarnings names a series off its line, none for straight ones', () => {
    expect(fitWarnings(synthetic(true))).toEqual([]);
    const bent = { ...synthetic(false), copies: seriesOf(NS, [0.01, 0.5, 0.02]) };
    const w = fitWarnings(bent);
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(/^copies: r2 0\.\d+ below 0\.99/);
  });

  test('another assumed ramp moves the split values, not the measured sums', () => {
    const a = deriveOverheads(synthetic(true), HOST);
    const b = deriveOverheads(synthetic(true), HOST, { rampS: 0.5e-6 });
    expect(b.graphNodeGapS.value).toBeCloseTo(K.gap + 0.3e-6, 12);
    expect(b.smallKernelS.value).toBeCloseTo(K.small - 0.3e-6, 12);
    expect(b.graphNodeGapS.measuredS).toBe(a.graphNodeGapS.measuredS);
    expect(b.waitReleaseS.value).toBe(a.waitReleaseS.value);
  });

  test('without the PDL series: waitReleaseS null with the reason, no cross-check, the rest unchanged', () => {
    const why = 'the device\'s compute capability 8.0 is below 9.0';
    const m = deriveOverheads(synthetic(false), HOST, { pdlWhy: why });
    expect(m.waitReleaseS).toEqual({ value: null, identifiable: false, from: `no PDL series: ${why}` });
    expect(m.smallKernelS.value).toBeCloseTo(K.small, 12);
    expect(m.graphStartS.value).toBeCloseTo(K.start, 12);
  });
});

describe('deriveGraphCopyNode: the step\'s upload as a graph node', () => {
  test('graph-E-copy less graph-E at each N is the node (copy + one gap), beside the model\'s price copyLatencyS + graphNodeGapS', () => {
    const s = synthetic(true);
    const m = deriveOverheads(s, HOST);
    const c = deriveGraphCopyNode(s, m);
    expect(c.value).toBeCloseTo(K.copyNode + K.gap, 12);
    expect(c.identifiable).toBe(true);
    expect(c.pairedS).toHaveLength(NS.length);
    for (const d of c.pairedS) expect(d).toBeCloseTo(K.copyNode + K.gap, 12);
    expect(c.interceptDiffS).toBeCloseTo(K.copyNode + K.gap, 12);
    expect(c.slopeDiffS).toBeCloseTo(0, 12);
    // The model's price with this run's constants (s(copies), the split gap) and with the assumed ones: the two differ here.
    expect(c.model.valueS).toBeCloseTo(K.copy + K.gap, 12);
    expect([c.model.copyLatencyS, c.model.graphNodeGapS].map((x) => x * 1e6)).toEqual([expect.closeTo(K.copy * 1e6, 6), expect.closeTo(K.gap * 1e6, 6)]);
    expect(c.model.assumedS).toBe(STEP_OVERHEADS.copyLatencyS + STEP_OVERHEADS.graphNodeGapS);
    expect(c.from).toMatch(/^median over N = 16, 64, 256 of T\(graph-E-copy, N\) - T\(graph-E, N\) = /);
    expect(c.model.from).toContain('(measured) + graphNodeGapS');
    expect(copyNodeWarnings(c, s)).toEqual([]);
  });

  test('the paired median holds against one noisy length; a node that changes the slope is named; unmeasured constants price with the assumed ones', () => {
    const s = synthetic(false);
    // One length 5 us off: the intercept difference moves, the median of the paired times does not.
    const noisy = { ...s, 'graph-E-copy': seriesOf(NS, s['graph-E-copy'].gpuMs.map((ms, i) => ms + (i === 2 ? 5e-3 : 0))) };
    const c = deriveGraphCopyNode(noisy, deriveOverheads(noisy, HOST));
    expect(c.value).toBeCloseTo(K.copyNode + K.gap, 12);
    expect(Math.abs(c.interceptDiffS - c.value)).toBeGreaterThan(0.5e-6);
    expect(copyNodeWarnings(c, noisy)).toEqual([]);
    // A node that adds time per kernel too (0.5 us a node): not a fixed cost, named.
    const bent = { ...s, 'graph-E-copy': series((n) => K.hostGraph + K.start + K.copyNode + K.gap + n * (K.ramp + 0.5e-6) + (n - 1) * K.gap) };
    expect(copyNodeWarnings(deriveGraphCopyNode(bent, deriveOverheads(bent, HOST)), bent))
      .toEqual([expect.stringMatching(/^graph-E-copy: its slope is 0\.500 us a node off graph-E's 1\.410 us: the copy node changed more than a fixed cost, graphCopyNodeS \(\d+\.\d{3} us\) is doubtful$/)]);
    const m = deriveOverheads(s, HOST);
    const none = { ...m, copyLatencyS: { value: null, identifiable: false, from: 'x' }, graphNodeGapS: { value: -1e-7, identifiable: false, from: 'y' } };
    const a = deriveGraphCopyNode(s, none);
    // null: the assumed figure; below 0: 0, as measuredStepOverheads prices it.
    expect(a.model.valueS).toBe(STEP_OVERHEADS.copyLatencyS);
    expect(a.model.from).toContain('(assumed)');
  });
});

describe('measuredStepOverheads', () => {
  test('measured figures replace the model\'s, nulls keep them, a negative split counts as 0', () => {
    const m = deriveOverheads(synthetic(true), HOST);
    const r = measuredStepOverheads(m);
    expect(r.overheads.graphNodeGapS).toBeCloseTo(K.gap, 12);
    expect(r.overheads.hostLaunchS).toBe(K.opLaunch);
    expect(r.overheads.hostStepS).toBe(STEP_OVERHEADS.hostStepS);
    expect(r.pdl).toEqual({ waitReleaseS: m.waitReleaseS.value, rampS: PDL_OVERHEADS.rampS });
    expect([...r.replaced].sort()).toEqual(OVERHEAD_FIELDS.filter((f) => f !== 'hostStepS' && f !== 'rampS').sort());
    expect(r.clamped).toEqual([]);
    // A graph launch whose host call outlasts its whole fixed cost on the GPU: graphStartS's split goes below 0.
    const fast = deriveOverheads({ ...synthetic(false), 'graph-E': series((n) => 1e-6 + n * (K.gap + K.ramp)) }, HOST, { pdlWhy: 'off' });
    const f = measuredStepOverheads(fast);
    expect(fast.graphStartS.value).toBeLessThan(0);
    expect(f.overheads.graphStartS).toBe(0);
    expect(f.clamped).toEqual(['graphStartS']);
    expect(f.pdl.waitReleaseS).toBe(PDL_OVERHEADS.waitReleaseS);
  });
});

/**
 * A stand-in CudaDevice with a GPU timeline in real milliseconds: each copy, launch, upload and
 * graph replay queues GPU time after what is queued; an event reads the timeline; eventElapsed's
 * wait (timeGpu) and synchronize spin until the queue is done, as a GPU's do.
 */
function standInDevice(copyMs: number, graphHostMsPerNode = 0) {
  let gpuEnd = 0, next = 0x10000;
  const queue = (ms: number): void => void (gpuEnd = Math.max(gpuEnd, performance.now()) + ms);
  const drain = (): void => {
    while (performance.now() < gpuEnd) { /* the GPU's work */ }
  };
  let capturing: { n: number; copies: number } | undefined;
  const stats: DeviceStats = { kernelLaunches: 0, programmaticLaunches: 0, graphLaunches: 0, graphKernels: 0, graphProgrammaticKernels: 0, uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0 };
  const device = {
    programmaticLaunch: false, stats,
    alloc: (bytes: number, label: string) => ({ ptr: (next += 1 << 20), bytes, label }),
    allocPinned: (bytes: number, label: string) => ({ buffer: new ArrayBuffer(bytes), label }),
    free: () => undefined, freePinned: () => undefined, destroyGraph: () => undefined, upload: () => undefined, fill: () => undefined,
    download: (b: { label: string }, dst: Int32Array) => void (b.label === OPS_ABI_BUFFER && (dst[0] = OPS_ABI_VERSION)),
    kernel: (_: string, name: string) => ({ name }),
    launch: () => void (capturing ? capturing.n++ : queue(0.002)),
    copy: (_d: unknown, _da: number, _s: unknown, _sa: number, bytes: number) => queue(bytes > 64 ? copyMs : 0.003),
    uploadAsync: () => void (capturing ? capturing.copies++ : queue(0.003)),
    capture: (_: string, record: () => void) => {
      capturing = { n: 0, copies: 0 };
      record();
      const ref = capturing;
      capturing = undefined;
      return ref;
    },
    launchGraph: (ref: { n: number; copies: number }) => {
      const until = performance.now() + graphHostMsPerNode * ref.n;
      while (performance.now() < until) { /* the host's call */ }
      queue(0.005 + 0.004 * ref.copies + 0.002 * ref.n);
    },
    synchronize: drain,
    timeGpu: (work: () => void) => {
      const start = Math.max(gpuEnd, performance.now());
      const t0 = performance.now();
      work();
      const hostMs = performance.now() - t0;
      const end = Math.max(gpuEnd, performance.now());
      drain();
      return { gpuMs: end - start, hostMs };
    },
  };
  return device as unknown as CudaDevice;
}

describe('measureLaunchOverheads on a stand-in device with a GPU timeline', () => {
  test('the queue margin is the copies\' GPU time less the host\'s issue, not less the wait for the GPU after it; hostLaunchS is the GpuOps call', () => {
    // 20 ms copies: a loaded machine's pause of a few ms in the host's issue (the CI's, 0.8 ms past a 2 ms copy) stays inside the margin.
    const r = measureLaunchOverheads(standInDevice(20), '/stand-in/tidarc_ops.fatbin', {
      ns: [1, 2, 4], repeats: 1, hostIterations: 3, graphHostIterations: 2, pdl: { on: false, why: 'a stand-in' }, copyBytes: 1 << 20, maxCopies: 4,
    });
    expect(r.queue.copyMs).toBeGreaterThan(19);
    expect(r.queue.copyMs).toBeLessThan(25);
    // Each timed run queued a 20 ms copy ahead of a few microseconds of issue: the host stayed ahead. Less the wait for the
    // GPU after the work (the old margin), it would be below 0 in every run.
    expect(r.queue.minMarginMs).toBeGreaterThan(10);
    expect(r.warnings.filter((w) => /queued copies/.test(w))).toEqual([]);
    expect(r.measured.hostLaunchS.value).toBe(r.host.opLaunchS);
  });

  test('a cuGraphLaunch whose host time grows with N is fitted and named in the warnings', () => {
    const r = measureLaunchOverheads(standInDevice(0.2, 0.05), '/stand-in/tidarc_ops.fatbin', {
      ns: [1, 4, 8], repeats: 3, hostIterations: 3, graphHostIterations: 2, pdl: { on: false, why: 'a stand-in' }, copyBytes: 1 << 20, maxCopies: 4,
    });
    const h = r.graphLaunchHost['graph-E']!;
    expect(h.n).toEqual([1, 4, 8]);
    // 50 us a node, medians of 3 (a loaded machine's pauses aside).
    expect(h.slopeS).toBeGreaterThan(30e-6);
    expect(h.slopeS).toBeLessThan(100e-6);
    expect(Object.keys(r.graphLaunchHost).sort()).toEqual(['graph-E', 'graph-E-copy', 'graph-S']);
    expect(r.warnings.filter((w) => /^graph-[ES](-copy)?: cuGraphLaunch's host time grows/.test(w))).toHaveLength(3);
  });

  test('graph-E-copy: the upload captured as the graph\'s first node, its cost in a graph the paired difference with graph-E', () => {
    // The stand-in's copy node takes 4 us of GPU time in a replay.
    const r = measureLaunchOverheads(standInDevice(0.2), '/stand-in/tidarc_ops.fatbin', {
      ns: [1, 4, 8], repeats: 5, hostIterations: 3, graphHostIterations: 2, pdl: { on: false, why: 'a stand-in' }, copyBytes: 1 << 20, maxCopies: 4,
    });
    expect(r.series['graph-E-copy'].n).toEqual([1, 4, 8]);
    expect(r.graphCopyNodeS.pairedS).toHaveLength(3);
    // Medians of host-timed stand-in replays: a loaded machine's pauses aside, about 4 us.
    expect(r.graphCopyNodeS.value).toBeGreaterThan(2e-6);
    expect(r.graphCopyNodeS.value).toBeLessThan(30e-6);
    expect(r.graphCopyNodeS.model.valueS).toBeCloseTo(Math.max(0, r.measured.copyLatencyS.value!) + Math.max(0, r.measured.graphNodeGapS.value!), 15);
  });

  test('graph-E and graph-E-copy replays alternate at each N, so their paired times share the clock\'s drift', () => {
    const device = standInDevice(0.2) as unknown as { capture: (label: string, record: () => void) => object; launchGraph: (ref: object) => void };
    const labels = new Map<object, string>(), replays: string[] = [];
    const { capture, launchGraph } = device;
    device.capture = (label, record) => {
      const ref = capture(label, record);
      labels.set(ref, label);
      return ref;
    };
    device.launchGraph = (ref) => (replays.push(labels.get(ref)!), launchGraph(ref));
    measureLaunchOverheads(device as unknown as CudaDevice, '/stand-in/tidarc_ops.fatbin', {
      ns: [1, 4], repeats: 3, hostIterations: 2, graphHostIterations: 2, pdl: { on: false, why: 'a stand-in' }, copyBytes: 1 << 20, maxCopies: 4,
    });
    const paired = replays.filter((l) => /^graph-E(-copy)? x /.test(l));
    // Per N: one warm replay of each, then E, copy three times over.
    const perN = (n: number): string[] => ['graph-E', 'graph-E-copy', ...Array.from({ length: 3 }, () => ['graph-E', 'graph-E-copy']).flat()].map((l) => `${l} x ${n}`);
    expect(paired).toEqual([...perN(1), ...perN(4)]);
  });
});

interface OverheadsJson extends Pick<LaunchOverheads, 'kernels' | 'host' | 'measured' | 'graphCopyNodeS' | 'plan' | 'stats' | 'queue' | 'graphLaunchHost' | 'warnings'> {
  format: number; backend: string; emulated: boolean; ok: boolean; error?: string; seconds: number;
  device: { name: string; computeCapability: [number, number] };
  pdl: { on: boolean; why: string };
  series: Record<string, { n: number[]; gpuMs: number[]; slopeS: number; interceptS: number; r2: number } | null>;
}

/**
 * The counters a run of `plan` leaves: host loops (launch, GpuOps call, with PDL a programmatic
 * GpuOps call, 16-node graph, upload) once per repeat; stream-E's launches and the copies' uploads per length and repeat; each graph
 * series' warm and timed replays of N kernels (N - 1 of them programmatic with PDL).
 */
function expectedStats(plan: LaunchOverheads['plan'], pdl: boolean): DeviceStats {
  const sumN = plan.ns.reduce((a, b) => a + b, 0);
  const replays = plan.warmReplays + plan.repeats;
  // graph-E, graph-S, graph-E-copy (its replays each run one upload node), and with PDL graph-E-pdl, graph-S-pdl.
  const graphSeries = pdl ? 5 : 3;
  const uploads = plan.repeats * plan.hostIterations + plan.repeats * sumN + plan.ns.length * replays;
  // Host loops: CudaDevice.launch and the GpuOps call, and with PDL the programmatic GpuOps call.
  const hostLoops = pdl ? 3 : 2;
  return {
    kernelLaunches: hostLoops * plan.repeats * plan.hostIterations + plan.repeats * sumN,
    programmaticLaunches: pdl ? plan.repeats * plan.hostIterations : 0,
    graphLaunches: plan.repeats * plan.graphHostIterations + graphSeries * plan.ns.length * replays,
    graphKernels: plan.repeats * plan.graphHostIterations * plan.hostGraphNodes + graphSeries * sumN * replays,
    graphProgrammaticKernels: pdl ? 2 * replays * (sumN - plan.ns.length) : 0,
    uploads, uploadBytes: 64 * uploads, downloads: 0, downloadBytes: 0,
  };
}

describe.skipIf(!cxx.found)('overheads.mjs on the emulated driver', () => {
  const work = mkdtempSync(join(tmpdir(), 'tidarc-overheads-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  let out: OverheadsJson;
  let lines: string[];
  beforeAll(async () => {
    const env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache() };
    const { stdout } = await exec(process.execPath, [resolve('scripts/device-check/overheads.mjs'), resolve('.'), work, '120'], { env, maxBuffer: 16 << 20, timeout: 180_000 });
    lines = stdout.trim().split('\n');
    out = JSON.parse(lines[0]!) as OverheadsJson;
  }, 200_000);

  test('one JSON line of the device check\'s shape, ok', () => {
    expect(lines).toHaveLength(1);
    expect(out.error).toBeUndefined();
    expect(out).toMatchObject({ format: 1, backend: 'cuda', emulated: true, ok: true, device: { computeCapability: [9, 0] } });
    expect(out.device.name).toMatch(/^tidarc emulated/);
    expect(typeof out.seconds).toBe('number');
    expect(out.kernels.empty).toMatch(/tidarc_op_silu_mul.*grid \[1\], block \[256\]/);
    expect(out.kernels.small).toMatch(/tidarc_op_rmsnorm, 1 row x 4096 float32.*grid \[1\], block \[256\]/);
    // The emulated driver is 9.0 with cuLaunchKernelEx, and the emulator's entry keeps the PDL contract: the PDL series run.
    expect(out.pdl.on).toBe(true);
    expect(Object.keys(out.series).sort()).toEqual([...SERIES_NAMES].sort());
    for (const name of SERIES_NAMES) {
      const s = out.series[name]!;
      expect(Object.keys(s).sort()).toEqual(['gpuMs', 'interceptS', 'n', 'r2', 'slopeS']);
      expect(s.n).toEqual(out.plan.ns);
      expect(s.gpuMs).toHaveLength(s.n.length);
      for (const v of [...s.gpuMs, s.slopeS, s.interceptS, s.r2]) expect(Number.isFinite(v)).toBe(true);
    }
    for (const k of ['launchS', 'graphLaunchS', 'copyS', 'opLaunchS', 'opLaunchPdlS'] as const) expect(out.host[k]).toBeGreaterThan(0);
    expect(out.measured.hostLaunchS.from).toMatch(/; programmatic, as with PDL on, \d+\.\d{3} us\)$/);
    expect(Object.keys(out.measured).sort()).toEqual([...Object.keys(STEP_OVERHEADS), ...Object.keys(PDL_OVERHEADS)].sort());
    for (const f of OVERHEAD_FIELDS) {
      const m = out.measured[f];
      expect(typeof m.identifiable).toBe('boolean');
      expect(typeof m.from).toBe('string');
      expect(m.value === null || Number.isFinite(m.value)).toBe(true);
    }
    // From the PDL series either way (whether S's lead exposes the release depends on the emulator's timings: not asserted).
    expect(out.measured.waitReleaseS.from).toMatch(/^s\(graph-S-pdl\) - \(s\(graph-S\) - s\(graph-E\)\) = /);
    expect(out.measured.hostStepS.value).toBeNull();
    expect(Object.keys(out.graphLaunchHost).sort()).toEqual(['graph-E', 'graph-E-copy', 'graph-E-pdl', 'graph-S', 'graph-S-pdl']);
    // The copy node against the model's price of it (emulated times: the shape only).
    const c = out.graphCopyNodeS;
    expect(c).toMatchObject({ identifiable: true, from: expect.stringMatching(/^median over N = 1, 2, 3 of T\(graph-E-copy, N\) - T\(graph-E, N\)/) });
    expect(c.pairedS).toHaveLength(out.plan.ns.length);
    for (const v of [c.value, c.interceptDiffS, c.slopeDiffS, c.model.valueS, c.model.assumedS]) expect(Number.isFinite(v)).toBe(true);
    expect(c.model.assumedS).toBe(STEP_OVERHEADS.copyLatencyS + STEP_OVERHEADS.graphNodeGapS);
    for (const h of Object.values(out.graphLaunchHost)) expect(h!.hostMs).toHaveLength(out.plan.ns.length);
  });

  test('a spent budget or no usable CUDA: one line {ok: false, error}, exit status 0', async () => {
    const run = async (env: NodeJS.ProcessEnv, budget: string[]) => {
      const { stdout } = await exec(process.execPath, [resolve('scripts/device-check/overheads.mjs'), resolve('.'), work, ...budget], { env, maxBuffer: 1 << 20, timeout: 60_000 });
      const outLines = stdout.trim().split('\n');
      expect(outLines).toHaveLength(1);
      return JSON.parse(outLines[0]!) as { ok: boolean; error: string; seconds: number };
    };
    const spent = await run({ ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache() }, ['0']);
    expect(spent).toMatchObject({ ok: false, error: expect.stringMatching(/^out of time: the budget of 0 s ended while /) });
    const none = await run({ ...process.env, TIDARC_LIBCUDA: join(work, 'no-such-libcuda.so') }, []);
    expect(none).toMatchObject({ ok: false, error: expect.stringMatching(/^CUDA is not usable: /) });
  }, 120_000);

  test('a driver that refuses programmatic launches: the load\'s PDL probe turns PDL off, the series run without it (ok)', async () => {
    const env = { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache(), TIDARC_FAKE_REFUSE_PROGRAMMATIC: '1' };
    const { stdout } = await exec(process.execPath, [resolve('scripts/device-check/overheads.mjs'), resolve('.'), work, '120'], { env, maxBuffer: 16 << 20, timeout: 180_000 });
    const r = JSON.parse(stdout.trim()) as OverheadsJson;
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.pdl.on).toBe(false);
    expect(r.pdl.why).toMatch(/^the driver refused programmatic dependent launch at load/);
    expect([r.series['graph-E-pdl'], r.series['graph-S-pdl']]).toEqual([null, null]);
    expect(r.measured.waitReleaseS).toMatchObject({ value: null, from: expect.stringContaining('the driver refused') });
    expect(r.stats).toEqual(expectedStats(r.plan, false));
  }, 200_000);

  test('the device\'s counters moved by exactly the launches, replays and copies the plan claims', () => {
    expect(out.plan.ns.length).toBeGreaterThanOrEqual(2);
    expect(out.stats).toEqual(expectedStats(out.plan, out.pdl.on));
    expect(out.stats.graphProgrammaticKernels).toBeGreaterThan(0);
  });
});
