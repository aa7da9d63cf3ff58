/**
 * bench:step --what-if fold-norms (src/bench/step-what-if.ts): the step as the runtime runs it by
 * default (the RMSNorms folded into the GEMMs around them) against --no-fold-norms, both the
 * runner's own launches priced by predictStep with the same constants. On Qwen3-0.6B's shape (28
 * layers, bf16): 56 launches fewer a step (the post-attention norm of every layer, the input norm
 * of layers 1-27, the final norm; layer 0's input norm after the embedding stays), every kept
 * launch priced the same but the producer GEMMs (o, down: + M N 2 + M ceil(N / 64) 8 bytes) and
 * the consumers (qkv, gate_up, lm_head: + M chunks 8), and the step faster with graphs, PDL on and off.
 */
import { describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { type StepPath, type StepRegisters, predictStep, stepModelContext } from '../../src/bench/step-cost-model.js';
import { whatIfStep } from '../../src/bench/step-what-if.js';
import { QWEN3_0_6B } from '../../src/bench/step-report.js';

const REGISTERS: StepRegisters = { gemm: () => 128, attention: () => 168, sm90a: () => 137, source: 'assumed (test)' };
const RMSNORM = 'tidarc_op_rmsnorm';
const L = QWEN3_0_6B.layers, H = QWEN3_0_6B.hiddenSize, CHUNKS = Math.ceil(H / 64);

describe.each<StepPath>(['sm_90a', 'sm_90'])('the RMSNorms folded into the GEMMs, priced as built (%s)', (path) => {
  const c = stepModelContext(QWEN3_0_6B, H200, REGISTERS, path);

  test('the launches it removes and the bytes it moves, launch by launch', () => {
    const folded = predictStep(c, 'tidar_k4', 1024), unfolded = predictStep(c, 'tidar_k4', 1024, undefined, undefined, { foldNorms: false });
    const norms = (xs: readonly { kernel: string }[]): number => xs.filter((x) => x.kernel === RMSNORM).length;
    expect([norms(unfolded.prices), unfolded.foldedNorms]).toEqual([2 * L + 1, 0]);
    expect([norms(folded.prices), folded.foldedNorms, folded.launches]).toEqual([1, 2 * L, unfolded.launches - 2 * L]);
    // The norm left is the first layer's, right after the embedding.
    expect(folded.prices[folded.prices.findIndex((x) => x.kernel === RMSNORM) - 1]?.kernel).toMatch(/embed/);
    // Every other launch in the same order, the same price, but the GEMMs on either side of a folded norm.
    const kept = unfolded.prices.filter((x, i) => !(x.kernel === RMSNORM && unfolded.prices[i - 1]?.term === 'gemm'));
    expect(kept.map((x) => x.kernel)).toEqual(folded.prices.map((x) => x.kernel));
    const producers = folded.prices.filter((x) => x.fold && 'normOut' in x.fold), consumers = folded.prices.filter((x) => x.fold && 'rowScaleChunks' in x.fold);
    expect(producers.map((x) => x.role)).toEqual(Array.from({ length: L }, () => ['o', 'down']).flat());
    expect(consumers).toHaveLength(2 * L);  // qkv of layers 1-27, gate_up of every layer, the lm_head's
    folded.prices.forEach((x, i) => {
      const was = kept[i]!;
      if (!x.fold) return expect(x).toEqual(was);
      const { fold, ...rest } = x, more = rest.bytes - was.bytes;
      if ('normOut' in fold) {
        expect(more).toBe(folded.tokens * (H * 2 + CHUNKS * 8));  // M N 2 + M ceil(N / 64) 8, N = hidden
      } else if (x.role === 'lm_head') {
        // Its rows are the step's lm_head rows (fewer than its tokens): M chunks 8 for some whole M.
        expect(fold.rowScaleChunks).toBe(CHUNKS);
        expect([more > 0, Number.isInteger(more / (CHUNKS * 8)), more < folded.tokens * CHUNKS * 8]).toEqual([true, true, true]);
      } else {
        expect([fold.rowScaleChunks, more]).toEqual([CHUNKS, folded.tokens * CHUNKS * 8]);
      }
      expect(rest.gpuS).toBeGreaterThanOrEqual(was.gpuS);
    });
  });

  test('--what-if fold-norms: the two predictStep figures; fewer launches by exactly the folded norms, faster with PDL and without', () => {
    for (const step of ['ar', 'tidar_k8']) {
      const w = whatIfStep(c, 'fold-norms', step, 4096);
      const on = predictStep(c, step, 4096), off = predictStep(c, step, 4096, undefined, undefined, { foldNorms: false });
      expect(w).toEqual({
        step, prefix: 4096, foldedNorms: 2 * L, launches: { unfolded: off.launches, folded: on.launches },
        graphsPdlMs: { unfolded: off.pdl.graphs.gpuS * 1e3, folded: on.pdl.graphs.gpuS * 1e3 }, graphsMs: { unfolded: off.graphs.gpuS * 1e3, folded: on.graphs.gpuS * 1e3 },
      });
      expect(w.launches.unfolded - w.launches.folded).toBe(2 * L);
      expect(w.graphsPdlMs.folded).toBeLessThan(w.graphsPdlMs.unfolded);
      expect(w.graphsMs.folded).toBeLessThan(w.graphsMs.unfolded);
    }
  });
});
