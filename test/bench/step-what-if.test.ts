/**
 * bench:step --what-if fold-norms (src/bench/step-what-if.ts): the RMSNorm after each residual
 * GEMM priced as folded into the GEMMs. On Qwen3-0.6B's shape (28 layers): 56 launches fewer a
 * step (the post-attention norm of every layer, the input norm of layers 1-27, the final norm;
 * layer 0's input norm after the embedding stays), every other launch unchanged but the residual
 * GEMMs' extra epilogue bytes, and the step faster with graphs, PDL on and off.
 */
import { describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { type StepRegisters, predictStep, stepModelContext } from '../../src/bench/step-cost-model.js';
import { foldNorms, whatIfStep } from '../../src/bench/step-what-if.js';
import { QWEN3_0_6B } from '../../src/bench/step-report.js';

const REGISTERS: StepRegisters = { gemm: () => 128, attention: () => 168, sm90a: () => 137, source: 'assumed (test)' };
const c = stepModelContext(QWEN3_0_6B, H200, REGISTERS, 'sm_90a');

describe('what if the RMSNorms were folded into the GEMMs (not built)', () => {
  test('the launches it removes and the bytes it adds', () => {
    const now = predictStep(c, 'tidar_k4', 1024);
    const { prices, folded } = foldNorms(now.prices, now.tokens, QWEN3_0_6B.hiddenSize, H200);
    const norms = (xs: readonly { kernel: string }[]): number => xs.filter((x) => x.kernel === 'tidarc_op_rmsnorm').length;
    expect(norms(now.prices)).toBe(2 * QWEN3_0_6B.layers + 1);
    expect([folded, norms(prices), prices.length]).toEqual([2 * QWEN3_0_6B.layers, 1, now.prices.length - 2 * QWEN3_0_6B.layers]);
    // The norm left is the first layer's, right after the embedding.
    expect(now.prices[prices.findIndex((x) => x.kernel === 'tidarc_op_rmsnorm') - 1]?.kernel).toMatch(/embed/);
    // Every kept launch is the same but the 56 residual GEMMs before a folded norm: each 20 rows x (1024 x 2 + 16 x 4) bytes
    // more, at the copy rate.
    const kept = now.prices.filter((x, i) => !(x.kernel === 'tidarc_op_rmsnorm' && now.prices[i - 1]?.term === 'gemm'));
    expect(kept).toHaveLength(prices.length);
    const grown = prices.filter((x, i) => x.bytes !== kept[i]!.bytes);
    expect(grown).toHaveLength(2 * QWEN3_0_6B.layers);
    prices.forEach((x, i) => {
      if (x.bytes === kept[i]!.bytes) return expect(x).toEqual(kept[i]);
      expect([x.term, x.role === 'o' || x.role === 'down', x.bytes - kept[i]!.bytes]).toEqual(['gemm', true, 20 * (1024 * 2 + 16 * 4)]);
      expect(x.gpuS - kept[i]!.gpuS).toBeCloseTo((x.bytes - kept[i]!.bytes) / H200.copyBytesPerS, 15);
    });
  });

  test('every step kind is faster, with PDL and without; fewer launches by exactly the folded norms', () => {
    for (const step of ['ar', 'tidar_k8']) {
      const w = whatIfStep(c, 'fold-norms', step, 4096);
      expect(w.launches.now - w.launches.then).toBe(2 * QWEN3_0_6B.layers);
      expect(w.graphsPdlMs.then).toBeLessThan(w.graphsPdlMs.now);
      expect(w.graphsMs.then).toBeLessThan(w.graphsMs.now);
      expect(w.graphsPdlMs.now).toBeCloseTo(predictStep(c, step, 4096).pdl.graphs.gpuS * 1e3, 12);
    }
  });
});
