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
  type HostTimes, type LaunchOverheads, OVERHEAD_FIELDS, type OverheadSeriesSet, SERIES_NAMES, deriveOverheads, fitLine, measuredStepOverheads, seriesOf,
} from '../../src/bench/launch-overheads.js';
import { PDL_OVERHEADS, STEP_OVERHEADS } from '../../src/bench/step-cost-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import type { DeviceStats } from '../../src/runtime/cuda/device.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();

/** Known constants (seconds), none of them the model's defaults. */
const K = {
  gap: 0.61e-6, ramp: PDL_OVERHEADS.rampS, small: 1.9e-6, wait: 0.27e-6, start: 7.3e-6, stream: 2.4e-6, copy: 3.1e-6,
  hostLaunch: 4.2e-6, hostGraph: 5.5e-6, hostCopy: 3.9e-6, opLaunch: 4.8e-6,
};
const NS = [16, 64, 256];
/** Milliseconds at each length of `t(n)` in seconds. */
const series = (t: (n: number) => number) => seriesOf(NS, NS.map((n) => t(n) * 1e3));

/** The series the model predicts from K: graphs timed from before the host's cuGraphLaunch, (N - 1) node gaps. */
function synthetic(pdl: boolean): OverheadSeriesSet {
  return {
    'graph-E': series((n) => K.hostGraph + K.start + n * K.ramp + (n - 1) * K.gap),
    'graph-S': series((n) => K.hostGraph + K.start + n * K.small + (n - 1) * K.gap),
    'graph-E-pdl': pdl ? series((n) => 9e-6 + n * K.wait) : null,
    'graph-S-pdl': pdl ? series((n) => 9e-6 + n * (K.wait + K.small - K.ramp)) : null,
    'stream-E': series((n) => 1e-6 + n * (K.stream + K.ramp)),
    copies: series((n) => 2e-6 + n * K.copy),
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
    expect([value('hostLaunchS'), value('hostGraphLaunchS'), value('hostCopyS')]).toEqual([K.hostLaunch, K.hostGraph, K.hostCopy]);
    // Identifiable alone: what no assumed figure enters.
    const alone = OVERHEAD_FIELDS.filter((f) => m[f].identifiable);
    expect(alone.sort()).toEqual(['copyLatencyS', 'hostCopyS', 'hostGraphLaunchS', 'hostLaunchS', 'waitReleaseS']);
    // The sums are measured as such; the cross-check is the same difference.
    expect(m.graphNodeGapS.measuredS).toBeCloseTo(K.gap + K.ramp, 12);
    expect(m.streamGapS.measuredS).toBeCloseTo(K.stream + K.ramp, 12);
    expect(m.smallKernelS.measuredS).toBeCloseTo(K.small - K.ramp, 12);
    expect(m.smallKernelS.from).toContain(`cross-check with PDL: s(graph-S-pdl) - s(graph-E-pdl) = ${((K.small - K.ramp) * 1e6).toFixed(3)} us`);
    expect(m.hostStepS).toMatchObject({ value: null, identifiable: false });
    expect(m.rampS).toMatchObject({ value: null, identifiable: false });
    for (const f of OVERHEAD_FIELDS) expect(m[f].from.length).toBeGreaterThan(20);
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
    expect(m.smallKernelS.from).toContain(`no PDL cross-check (no PDL series: ${why})`);
    expect(m.smallKernelS.value).toBeCloseTo(K.small, 12);
    expect(m.graphStartS.value).toBeCloseTo(K.start, 12);
  });
});

describe('measuredStepOverheads', () => {
  test('measured figures replace the model\'s, nulls keep them, a negative split counts as 0', () => {
    const m = deriveOverheads(synthetic(true), HOST);
    const r = measuredStepOverheads(m);
    expect(r.overheads.graphNodeGapS).toBeCloseTo(K.gap, 12);
    expect(r.overheads.hostLaunchS).toBe(K.hostLaunch);
    expect(r.overheads.hostStepS).toBe(STEP_OVERHEADS.hostStepS);
    expect(r.pdl).toEqual({ waitReleaseS: m.waitReleaseS.value, rampS: PDL_OVERHEADS.rampS });
    expect([...r.replaced].sort()).toEqual(OVERHEAD_FIELDS.filter((f) => f !== 'hostStepS' && f !== 'rampS').sort());
    expect(r.clamped).toEqual([]);
    // An empty kernel faster than the assumed ramp: the node gap's split goes below 0.
    const fast = deriveOverheads({ ...synthetic(false), 'graph-E': series((n) => 10e-6 + n * 0.5e-6) }, HOST, { pdlWhy: 'off' });
    const f = measuredStepOverheads(fast);
    expect(fast.graphNodeGapS.value).toBeLessThan(0);
    expect(f.overheads.graphNodeGapS).toBe(0);
    expect(f.clamped).toContain('graphNodeGapS');
    expect(f.pdl.waitReleaseS).toBe(PDL_OVERHEADS.waitReleaseS);
  });
});

interface OverheadsJson extends Pick<LaunchOverheads, 'kernels' | 'host' | 'measured' | 'plan' | 'stats' | 'queue' | 'warnings'> {
  format: number; backend: string; emulated: boolean; ok: boolean; error?: string; seconds: number;
  device: { name: string; computeCapability: [number, number] };
  pdl: { on: boolean; why: string };
  series: Record<string, { n: number[]; gpuMs: number[]; slopeS: number; interceptS: number; r2: number } | null>;
}

/**
 * The counters a run of `plan` leaves: host loops (launch, GpuOps call, 16-node graph, upload)
 * once per repeat; stream-E's launches and the copies' uploads per length and repeat; each graph
 * series' warm and timed replays of N kernels (N - 1 of them programmatic with PDL).
 */
function expectedStats(plan: LaunchOverheads['plan'], pdl: boolean): DeviceStats {
  const sumN = plan.ns.reduce((a, b) => a + b, 0);
  const replays = plan.warmReplays + plan.repeats;
  const graphSeries = pdl ? 4 : 2;
  const uploads = plan.repeats * plan.hostIterations + plan.repeats * sumN;
  return {
    kernelLaunches: 2 * plan.repeats * plan.hostIterations + plan.repeats * sumN,
    programmaticLaunches: 0,
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
    for (const k of ['launchS', 'graphLaunchS', 'copyS'] as const) expect(out.host[k]).toBeGreaterThan(0);
    expect(Object.keys(out.measured).sort()).toEqual([...Object.keys(STEP_OVERHEADS), ...Object.keys(PDL_OVERHEADS)].sort());
    for (const f of OVERHEAD_FIELDS) {
      const m = out.measured[f];
      expect(typeof m.identifiable).toBe('boolean');
      expect(typeof m.from).toBe('string');
      expect(m.value === null || Number.isFinite(m.value)).toBe(true);
    }
    expect(out.measured.waitReleaseS.identifiable).toBe(true);
    expect(out.measured.hostStepS.value).toBeNull();
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

  test('the device\'s counters moved by exactly the launches, replays and copies the plan claims', () => {
    expect(out.plan.ns.length).toBeGreaterThanOrEqual(2);
    expect(out.stats).toEqual(expectedStats(out.plan, out.pdl.on));
    expect(out.stats.graphProgrammaticKernels).toBeGreaterThan(0);
  });
});
