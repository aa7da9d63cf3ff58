/**
 * The step roofline's arithmetic (src/bench/roofline.ts): the weights a step reads are the
 * checkpoint's parameters as the step uses them (counted independently through
 * parameterCount), the KV bytes and FLOPs of a hand-counted tiny model, and the roofline is the
 * larger of the memory and compute times. Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { stepRoofline } from '../../src/bench/step-bench.js';
import { ELEMENT_BYTES, roofline, stepCost } from '../../src/bench/roofline.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { parameterCount } from '../../src/model/checkpoint.js';

const TINY: ModelSpec = {
  name: 'roof', family: 'qwen3', layers: 2, hiddenSize: 8, queryHeads: 2, kvHeads: 1, headDim: 4, intermediateSize: 16,
  vocabSize: 10, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 9, draftLengths: [2],
};

describe('step cost', () => {
  test.for([
    ['qwen3, tied', TINY],
    ['qwen3, untied', { ...TINY, tieEmbeddings: false }],
    ['qwen2 (biases, no qk norm)', { ...TINY, family: 'qwen2', qkNorm: false }],
  ] as const)('%s: weights = the parameters, lm_head read once (tied or not), the embedding rows the step reads', ([, spec]) => {
    const { vocabSize: V, hiddenSize: H } = spec;
    for (const tokens of [1, 6]) {
      const c = stepCost(spec, { tokens, lmHeadRows: 1, prefix: 5 });
      const elements = parameterCount(spec) - V * H + (spec.tieEmbeddings ? V * H : 0) + tokens * H;
      expect(c.weightBytes).toBe(elements * ELEMENT_BYTES);
    }
  });

  test('KV bytes and FLOPs of the tiny model, counted by hand', () => {
    // Per layer: q 8x8, k 4x8, v 4x8, o 8x8, gate/up 16x8 each, down 8x16 = 64+32+32+64+384 = 576 weights.
    // AR at L = 5: linear 2 * 1 * 2 layers * 576 = 2304; lm_head 2 * 1 * 80 = 160;
    // attention 2 layers * 2 (QK^T, PV) * 2 * 1 token * 6 keys * 8 (q width) = 384.
    const ar = stepCost(TINY, { tokens: 1, lmHeadRows: 1, prefix: 5 });
    expect(ar.flops).toBe(2304 + 160 + 384);
    expect(ar.kvBytes).toBe(2 * 2 * 4 * 6 * ELEMENT_BYTES);  // layers * (K, V) * kv width * (L + 1) slots
    // TiDAR k = 2: 6 tokens, 3 lm_head rows.
    const t = stepCost(TINY, { tokens: 6, lmHeadRows: 3, prefix: 5 });
    expect(t.flops).toBe(2 * 6 * 2 * 576 + 2 * 3 * 80 + 2 * 2 * 2 * 6 * 11 * 8);
  });
});

describe('roofline', () => {
  test('the larger of (weights + KV) / copy bandwidth and FLOPs / matmul rate', () => {
    const cost = { weightBytes: 600, kvBytes: 400, flops: 5000 };
    expect(roofline(cost, { copyBytesPerMs: 100, matmulFlopsPerMs: 1000, how: '' })).toEqual({ memoryMs: 10, computeMs: 5, rooflineMs: 10, bound: 'memory' });
    expect(roofline(cost, { copyBytesPerMs: 1000, matmulFlopsPerMs: 1000, how: '' })).toEqual({ memoryMs: 1, computeMs: 5, rooflineMs: 5, bound: 'compute' });
  });

  test('bench-step\'s step kinds: AR is one token and one lm_head row, tidar_k<K> K(K+1) tokens and 2K - 1 rows', () => {
    const peaks = { copyBytesPerMs: 1e6, matmulFlopsPerMs: 1e9, how: '' };
    expect(stepRoofline(TINY, 'ar', 2, 5, peaks)).toEqual({ ...stepCost(TINY, { tokens: 1, lmHeadRows: 1, prefix: 5 }), ...roofline(stepCost(TINY, { tokens: 1, lmHeadRows: 1, prefix: 5 }), peaks) });
    expect(stepRoofline(TINY, 'tidar', 2, 5, peaks).flops).toBe(stepCost(TINY, { tokens: 6, lmHeadRows: 3, prefix: 5 }).flops);
  });
});
