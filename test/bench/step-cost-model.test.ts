/**
 * The whole-step cost model (src/bench/step-cost-model.ts): its launches are the ones the cuda
 * runtime issues (counted by the emulated driver through `tidarc bench-step --no-graphs`), a
 * step's prediction is never below its roofline, and a graph is never slower than the same
 * launches one by one. Needs: g++ for the emulated driver (the count); nothing for the rest.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { H200 } from '../../src/codegen/machine.js';
import { SM90A_RECORDED_REGISTERS, STEP_OVERHEADS, type StepRegisters, predictStep, stepModelContext, stepTimes } from '../../src/bench/step-cost-model.js';
import { sm90aRegisters } from '../../src/codegen/gemm-sm90a.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-step-model-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** emulated-backend.test.ts's model: its kernels are already in the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
const REGISTERS: StepRegisters = { gemm: () => 128, attention: () => 168, sm90a: () => 137, source: 'assumed (test)' };

describe('the step cost model', () => {
  const c = stepModelContext(SMALL, H200, REGISTERS);

  test.each(['ar', 'tidar_k2'])('%s: every launch priced by its kernel\'s model; the prediction is at least the roofline; graphs never slower', (step) => {
    const p = predictStep(c, step, 20);
    // Per layer one attention launch and the four GEMMs (qkv, o, gate_up, down); lm_head once with its row statistics' merge
    // (greedy TiDAR too: one pass over the verify and every candidate next-draft row, next_drafts picks from it).
    expect(p.prices.filter((x) => x.term === 'attention')).toHaveLength(SMALL.layers);
    expect(p.prices.filter((x) => x.term === 'gemm')).toHaveLength(4 * SMALL.layers + 2);
    expect(p.prices.filter((x) => x.role === 'lm_head')).toHaveLength(2);
    expect(p.prices.filter((x) => x.kernel === 'tidarc_op_next_drafts')).toHaveLength(step === 'ar' ? 0 : 1);
    expect(p.gemmS + p.attentionS + p.otherS).toBeCloseTo(p.kernelS, 12);
    for (const x of p.prices) expect(x.gpuS, x.kernel).toBeGreaterThanOrEqual(STEP_OVERHEADS.smallKernelS);
    expect(p.graphs.gpuS).toBeGreaterThanOrEqual(p.roofline.rooflineMs / 1e3);
    expect(p.direct.gpuS).toBeGreaterThanOrEqual(p.graphs.gpuS);
    expect(p.direct.hostS).toBeGreaterThan(p.graphs.hostS);
  });

  test('a Qwen3-8B-wide step (2 layers) is GEMM-bound and above its roofline; its k = 8 step costs more than AR; the sm_90a path prices the sm_90a kernels', () => {
    const wide = smallSpec('wide', [8], { layers: 2, hiddenSize: 4096, queryHeads: 32, kvHeads: 8, headDim: 128, intermediateSize: 12288 });
    const w = stepModelContext(wide, H200, REGISTERS);
    const [ar, k8] = [predictStep(w, 'ar', 4096), predictStep(w, 'tidar_k8', 4096)];
    for (const p of [ar, k8]) {
      expect(p.graphs.gpuS, p.step).toBeGreaterThanOrEqual(p.roofline.rooflineMs / 1e3);
      expect(p.gemmS, p.step).toBeGreaterThan(p.attentionS + p.otherS);
    }
    expect(k8.kernelS).toBeGreaterThan(ar.kernelS);
    // What an H200 runs (sm_90 and sm_90a built): the layers' GEMMs on the sm_90a kernels where the compile's cost-model choice
    // takes them (gemmsSm90a[].heuristic), lm_head on mma.sync; k = 8's attention (G = 4) has an sm_90a kernel, and the choice
    // takes it too (sm90a.heuristic: predicted ratio < 1 since the sm_90a softmax is priced from measured SASS, sass-counts-sm90a.ts;
    // it was > 1 with the assumed softmax factor), once a layer.
    const h = stepModelContext(wide, H200, REGISTERS, 'sm_90a');
    const k8a = predictStep(h, 'tidar_k8', 4096);
    const heuristic = h.manifest.variants.find((v) => v.name === 'tidar_k8')!.sm90a!.heuristic!;
    expect(heuristic.kernel).toBe('sm_90a');
    const sm90aUnits = h.manifest.gemmsSm90a!.filter((g) => g.heuristic!.kernel === 'sm_90a').length;
    expect(sm90aUnits).toBeGreaterThan(0);
    expect(k8a.prices.filter((x) => x.kernel.endsWith('sm90a') || /_sm90a_t\d+$/.test(x.kernel)).map((x) => x.term).sort()).toEqual([...Array<string>(2).fill('attention'), ...Array<string>(2 * sm90aUnits).fill('gemm')]);
    expect(k8a.launches).toBe(k8.launches);
    expect(k8a.graphs.gpuS).toBeGreaterThanOrEqual(k8a.roofline.rooflineMs / 1e3);
  });

  test('the sm_90a GEMMs are priced at their own registers: the recorded figure of their token tile and split-K (ptxas\'s table)', () => {
    const wide = smallSpec('wide', [8], { layers: 2, hiddenSize: 4096, queryHeads: 32, kvHeads: 8, headDim: 128, intermediateSize: 12288 });
    const asked: { symbol: string; gemm?: { tileT: number; splitK: number }; registers: number }[] = [];
    const recording: StepRegisters = { ...REGISTERS, sm90a: (symbol, gemm) => {
      const registers = SM90A_RECORDED_REGISTERS(symbol, gemm);
      asked.push({ symbol, ...(gemm ? { gemm } : {}), registers });
      return registers;
    } };
    const h = stepModelContext(wide, H200, recording, 'sm_90a');
    predictStep(h, 'tidar_k8', 4096);
    const gemms = asked.filter((a) => !a.symbol.includes('_attn_'));
    expect(gemms.length).toBeGreaterThan(0);
    for (const a of gemms) {
      const u = h.manifest.gemmsSm90a!.find((g) => g.kernels.some((k) => k.symbol === a.symbol))!;
      expect(a.gemm, a.symbol).toEqual({ tileT: u.kernels.find((k) => k.symbol === a.symbol)!.tileT, splitK: u.splitK });
      expect(a.registers, a.symbol).toBe(sm90aRegisters(a.gemm!.tileT, a.gemm!.splitK));
    }
    expect(new Set(gemms.map((a) => a.registers)).size).toBeGreaterThan(1);  // per token tile and split-K, not one flat figure (the old 137, which the fold-norms producers' split-K 128-token kernels now happen to use)
  });

  test('launch by launch, kernels shorter than their issue wait on the host; a graph does not', () => {
    const tiny = Array<number>(100).fill(1e-6);
    const t = stepTimes(tiny, { uploads: 1, downloads: 1, bytes: 0 }, H200);
    // 100 launches issued 6 us apart cannot finish before the last one is issued.
    expect(t.direct.gpuS).toBeGreaterThanOrEqual(100 * STEP_OVERHEADS.hostLaunchS);
    expect(t.graphs.gpuS).toBeLessThan(t.direct.gpuS / 2);
    // Long kernels: the host runs ahead and only the stream gaps remain.
    const long = stepTimes(Array<number>(10).fill(1e-3), { uploads: 1, downloads: 1, bytes: 0 }, H200);
    expect(long.direct.gpuS - long.graphs.gpuS).toBeLessThan(10 * STEP_OVERHEADS.streamGapS);
  });
});

describe.skipIf(!cxx.found)('the step cost model counts the launches the runtime makes (emulated driver)', () => {
  test('launches a step = what bench-step --no-graphs counts through the driver, AR and TiDAR k = 2', { timeout: 600_000 }, async () => {
    const dir = await writeRandomModel(join(root, 'bench'), SMALL, 6);
    const { stdout } = await exec(process.execPath, [
      resolve('bin/tidarc.js'), 'bench-step', dir, '--backend', 'cuda', '--no-graphs', '--prefix', '4', '--reps', '1', '--min-seconds', '0', '--warmup', '0', '--json',
    ], { env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver(), TIDARC_CACHE: await sharedKernelCache() }, maxBuffer: 64 << 20 });
    const r = JSON.parse(stdout) as { graphs: boolean; prefix: number; tidar: { launchesPerStep: number }; ar: { launchesPerStep: number } };
    expect(r.graphs).toBe(false);
    const c = stepModelContext(SMALL, H200, REGISTERS);
    expect(predictStep(c, 'ar', r.prefix).launches).toBe(r.ar.launchesPerStep);
    expect(predictStep(c, 'tidar_k2', r.prefix).launches).toBe(r.tidar.launchesPerStep);
  });
});
