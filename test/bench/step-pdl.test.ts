/**
 * Programmatic dependent launch in the step cost model (src/bench/step-timeline.ts pdlStepTimes):
 * a kernel whose CTAs fit beside its predecessor's loses its node gap and ramp (all but the wait's
 * release) and a GEMM its prefetched HBM time; one that does not fit keeps everything. Synthetic
 * launches, so each figure is known by hand; then one recorded step of a small model. Pure.
 */
import { describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { ctasBeside, occupancy } from '../../src/codegen/occupancy.js';
import {
  type LaunchPrice, PDL_OVERHEADS, STEP_OVERHEADS, type StepRegisters, pdlEarlyShare, pdlStepTimes, predictStep, prefetchedGemmS, stepModelContext, stepTimes,
} from '../../src/bench/step-cost-model.js';
import { smallSpec } from '../helpers/random-model.js';

const o = STEP_OVERHEADS, p = PDL_OVERHEADS;
const copies = { uploads: 1, downloads: 1, bytes: 64 };

/** A small operator at the floor: 132 CTAs of 256 threads, 32 registers, 2 KB of shared memory, few bytes. */
const small = (kernel: string, over: Partial<LaunchPrice> = {}): LaunchPrice => ({
  kernel, term: 'other', gpuS: o.smallKernelS, modelS: 0.2e-6, bytes: 1e5, ctas: 132, ctasPerSm: 8, resources: { registers: 32, sharedBytes: 2048, threads: 256 }, ...over,
});
/** A kernel that fills every SM's shared memory: one 200 KB CTA on each of the 132 SMs, 10 us, at the copy rate. */
const big = (kernel: string): LaunchPrice => ({
  kernel, term: 'attention', gpuS: 10e-6, modelS: 10e-6, bytes: 10e-6 * H200.copyBytesPerS, ctas: 132, ctasPerSm: 1, resources: { registers: 128, sharedBytes: 200 << 10, threads: 256 },
});

describe('PDL in the step cost model', () => {
  test('ctasBeside: beside nothing it is occupancy(); beside a full SM nothing fits; beside a 200 KB CTA the registers bind, then shared memory', () => {
    for (const k of [{ registers: 32, sharedBytes: 2048, threads: 256 }, { registers: 168, sharedBytes: 100_000, threads: 384 }, { registers: 255, sharedBytes: 0, threads: 128 }]) {
      expect(ctasBeside('sm_90', k, 0, k)).toBe(occupancy('sm_90', k).ctasPerSm);
      expect(ctasBeside('sm_90', k, occupancy('sm_90', k).ctasPerSm, k)).toBe(0);
    }
    const b = big('b').resources;
    // Registers: a sub-partition's 16384 less the big CTA's 2 warps of 128 x 32 leave 8192, 2 warps of 32 x 32 each: 4
    // (shared memory would allow (233472 - 205824) / 3072 = 9, threads (2048 - 256) / 256 = 7).
    expect(ctasBeside('sm_90', b, 1, small('s').resources)).toBe(4);
    expect(ctasBeside('sm_90', b, 1, { registers: 16, sharedBytes: 2048, threads: 256 })).toBe(7);
    expect(ctasBeside('sm_90', b, 1, { registers: 16, sharedBytes: 8192, threads: 128 })).toBe(Math.floor((233_472 - (200 * 1024 + 1024)) / (8192 + 1024)));
    expect(ctasBeside('sm_90', b, 1, b)).toBe(0);
  });

  test('two small kernels that fit: the second loses its node gap and ramp, all but the wait\'s release; launch by launch its stream gap', () => {
    const chain = [small('a'), small('b')];
    expect(pdlEarlyShare(chain[0]!, chain[1]!, H200)).toBe(1);
    const off = stepTimes(chain.map((x) => x.gpuS), copies, H200);
    const on = pdlStepTimes(chain, copies, H200);
    expect(on.pairs).toEqual({ all: 1, some: 0, none: 0 });
    // Kernel b: smallKernelS - rampS after the release, instead of smallKernelS after the node gap.
    expect(off.graphs.gpuS - on.graphs.gpuS).toBeCloseTo(o.graphNodeGapS - p.waitReleaseS + p.rampS, 12);
    expect(on.kernelS).toBeCloseTo(o.smallKernelS + o.smallKernelS - p.rampS, 12);
    // Launch by launch the host issues b 6 us after a, after a ended: no overlap, as without PDL.
    expect(on.direct.gpuS).toBeCloseTo(off.direct.gpuS, 12);
  });

  test('a second kernel that does not fit beside the first (shared memory): no overlap, the same time as without PDL', () => {
    const chain = [big('x'), big('y')];
    expect(pdlEarlyShare(chain[0]!, chain[1]!, H200)).toBe(0);
    const on = pdlStepTimes(chain, copies, H200);
    expect(on.pairs).toEqual({ all: 0, some: 0, none: 1 });
    expect(on.unfit).toEqual([{ from: 'x', to: 'y', count: 1, early: 0 }]);
    expect(on.graphs.gpuS).toBeCloseTo(stepTimes(chain.map((x) => x.gpuS), copies, H200).graphs.gpuS, 12);
    expect(on.prefetchedBytes).toBe(0);
  });

  test('a GEMM after a kernel that leaves HBM idle prefetches its weights at the idle rate; after an HBM-bound one it prefetches nothing', () => {
    // An HBM-bound GEMM: 40 MB of main-loop bytes (9.3 us) at the copy rate, its other terms well below.
    const mainBytes = 40e6, hbmS = mainBytes / H200.copyBytesPerS;
    const gemm: LaunchPrice = {
      kernel: 'g', term: 'gemm', gpuS: hbmS, modelS: hbmS, bytes: mainBytes, ctas: 48, ctasPerSm: 1, resources: { registers: 90, sharedBytes: 60_000, threads: 384 },
      prefetch: { prefetch: { ctas: 48, rows: 128, tileBytes: 16384, tiles: 8, bytesPerCta: 131072, launchBytes: 48 * 131072 }, mainBytes, hbmS, restS: hbmS / 10, tailS: 0 },
    };
    const idlePrev = small('n', { gpuS: 5e-6, modelS: 5e-6 });
    const on = pdlStepTimes([idlePrev, gemm], copies, H200);
    expect(on.pairs.all).toBe(1);
    // Streamed during the predecessor's 5 us less the node gap: at most the idle rate, at most the rule's bytes.
    const window = 5e-6 - o.graphNodeGapS;
    expect(on.prefetchedBytes).toBeGreaterThan(0);
    expect(on.prefetchedBytes).toBeLessThanOrEqual(Math.min(48 * 131072, (H200.copyBytesPerS - idlePrev.bytes / 5e-6) * window) + 1);
    expect(on.kernelS - 5e-6).toBeCloseTo(prefetchedGemmS(gemm.prefetch!, on.prefetchedBytes), 12);
    expect(on.prefetchedBytes).toBeCloseTo(48 * 131072, 0);  // the rule's bytes: the window would carry more
    expect(on.kernelS - 5e-6).toBeCloseTo(hbmS * (1 - 48 * 131072 / mainBytes), 12);
    // The same GEMM after a kernel at the copy rate: nothing idle, nothing prefetched; only the gap goes.
    const busy = pdlStepTimes([{ ...big('h'), resources: { registers: 32, sharedBytes: 0, threads: 128 }, ctasPerSm: 16 }, gemm], copies, H200);
    expect(busy.pairs.all).toBe(1);
    expect(busy.prefetchedBytes).toBeLessThan(1);  // bytes (rounding)
    expect(busy.kernelS).toBeCloseTo(10e-6 + hbmS, 11);
  });

  test('a recorded step: every pair counted, PDL never slower, never below the roofline', () => {
    const registers: StepRegisters = { gemm: () => 128, attention: () => 168, sm90a: () => 137, source: 'assumed (test)' };
    const c = stepModelContext(smallSpec('pdlsmall', [2]), H200, registers);
    for (const step of ['ar', 'tidar_k2']) {
      const s = predictStep(c, step, 64);
      expect(s.pdl.pairs.all + s.pdl.pairs.some + s.pdl.pairs.none, step).toBe(s.launches - 1);
      expect(s.pdl.graphs.gpuS, step).toBeLessThan(s.graphs.gpuS);
      expect(s.pdl.direct.gpuS, step).toBeLessThanOrEqual(s.direct.gpuS + 1e-12);
      expect(s.pdl.graphs.gpuS, step).toBeGreaterThanOrEqual(s.roofline.rooflineMs / 1e3);
      // Every pair that fits removes at least the node gap less the release.
      expect(s.graphs.gpuS - s.pdl.graphs.gpuS, step).toBeGreaterThanOrEqual((s.pdl.pairs.all + s.pdl.pairs.some) * (o.graphNodeGapS - p.waitReleaseS) - 1e-12);
    }
  });
});
