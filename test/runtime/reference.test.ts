import { describe, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import {
  attentionSizes,
  randomAttentionInputs,
  referenceAttention,
  type AttentionCallShape,
  type ReferenceProblem,
} from '../../src/runtime/reference.js';

const all = (): boolean => true;
const none = (): boolean => false;

/** A problem of the given shape with every tensor zero. */
function zeros(shape: AttentionCallShape, prefixLen: number[]): ReferenceProblem {
  const s = attentionSizes(shape);
  return {
    ...shape,
    prefixLen,
    q: new Float64Array(s.q),
    kCache: new Float64Array(s.cache),
    vCache: new Float64Array(s.cache),
    kStep: new Float64Array(s.step),
    vStep: new Float64Array(s.step),
    visible: all,
  };
}

const one = { batch: 1, n: 1, qHeads: 1, kvHeads: 1, headDim: 1 };

describe('referenceAttention', () => {
  test('uniform scores give the mean of the visible values and lse = log(count)', () => {
    const p = zeros({ ...one, headDim: 2, n: 2, cacheCapacity: 4 }, [3]);
    // cache slot s holds v = (s, 10 s); step token t holds v = (100 + t, 0)
    for (let s = 0; s < 4; s++) p.vCache.set([s, 10 * s], s * 2);
    p.vStep.set([100, 0, 101, 0]);
    p.kCache.fill(0.5); // q = 0: scores are 0 whatever the keys are
    const causal = (tq: number, tk: number): boolean => tk <= tq;
    const { o, lse } = referenceAttention({ ...p, visible: causal });
    // token 0 sees slots 0..2 and step token 0; token 1 also step token 1
    expect(Array.from(o.subarray(0, 2))).toEqual([(0 + 1 + 2 + 100) / 4, (0 + 10 + 20 + 0) / 4]);
    expect(o[2]).toBeCloseTo((0 + 1 + 2 + 100 + 101) / 5, 14);
    expect(o[3]).toBeCloseTo(30 / 5, 14);
    expect(lse[0]).toBeCloseTo(Math.log(4), 14);
    expect(lse[1]).toBeCloseTo(Math.log(5), 14);
  });

  test('lse and weights follow the scaled scores', () => {
    // two keys with scores 0 and ln 3 (scale 1): weights 1/4 and 3/4
    const p = zeros({ ...one, cacheCapacity: 1 }, [1]);
    p.q[0] = 1;
    p.kCache[0] = 0;
    p.kStep[0] = Math.log(3);
    p.vCache[0] = 8;
    p.vStep[0] = -4;
    const { o, lse } = referenceAttention({ ...p, scale: 1 });
    expect(lse[0]).toBeCloseTo(Math.log(4), 14);
    expect(o[0]).toBeCloseTo(8 / 4 - (4 * 3) / 4, 14);
    // default scale 1/sqrt(headDim): with headDim 4 the scores halve
    const q = zeros({ ...one, headDim: 4, cacheCapacity: 0 }, [0]);
    q.q.fill(1);
    q.kStep.fill(1); // dot = 4, scaled = 2
    expect(referenceAttention(q).lse[0]).toBeCloseTo(2, 14);
  });

  test('maps query heads to KV heads in groups (GQA)', () => {
    const shape = { batch: 1, n: 1, qHeads: 6, kvHeads: 2, headDim: 1, cacheCapacity: 2 };
    const p = zeros(shape, [2]);
    // KV head h: cache values h + 1, step value 10 (h + 1); q = 0 -> plain mean
    for (let h = 0; h < 2; h++) {
      p.vCache.set([h + 1, h + 1], h * 2);
      p.vStep[h] = 10 * (h + 1);
    }
    const { o } = referenceAttention(p);
    expect(Array.from(o)).toEqual([4, 4, 4, 8, 8, 8]);
  });

  test('prefix lengths differ per sequence, and prefixVisible: false hides the prefix', () => {
    const shape = { batch: 2, n: 1, qHeads: 1, kvHeads: 1, headDim: 1, cacheCapacity: 3 };
    const p = zeros(shape, [1, 3]);
    p.vCache.set([1, 2, 3, 4, 5, 6]);
    p.vStep.set([10, 20]);
    expect(Array.from(referenceAttention(p).o)).toEqual([(1 + 10) / 2, (4 + 5 + 6 + 20) / 4]);
    const stepOnly = referenceAttention({ ...p, prefixVisible: false });
    expect(Array.from(stepOnly.o)).toEqual([10, 20]);
    expect(Array.from(stepOnly.lse)).toEqual([0, 0]);
  });

  test('a row that sees no key has o = 0 and lse = -Infinity', () => {
    const shape = { batch: 2, n: 2, qHeads: 1, kvHeads: 1, headDim: 2, cacheCapacity: 2 };
    const p = zeros(shape, [0, 2]);
    p.vCache.fill(1);
    p.vStep.fill(1);
    // token 0 sees nothing in-step; sequence 0 has no prefix
    const r = referenceAttention({ ...p, visible: (tq) => tq === 1 });
    expect(Array.from(r.o)).toEqual([0, 0, 1, 1, 1, 1, 1, 1]);
    expect(r.lse[0]).toBe(-Infinity);
    expect(r.lse[2]).toBeCloseTo(Math.log(2), 14);
    const nothing = referenceAttention({ ...p, visible: none, prefixVisible: false });
    expect(Array.from(nothing.lse)).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
    expect(nothing.o.every((x) => x === 0)).toBe(true);
  });

  test('is invariant to shifting all scores (softmax) and stable for large scores', () => {
    const p = zeros({ ...one, cacheCapacity: 2 }, [2]);
    p.q[0] = 1;
    p.kCache.set([1000, 1001]);
    p.kStep[0] = 999;
    p.vCache.set([1, 2]);
    p.vStep[0] = 3;
    const r = referenceAttention({ ...p, scale: 1 });
    const w = [Math.exp(-1), 1, Math.exp(-2)];
    const sum = w[0]! + w[1]! + w[2]!;
    expect(r.o[0]).toBeCloseTo((w[0]! * 1 + w[1]! * 2 + w[2]! * 3) / sum, 12);
    expect(r.lse[0]).toBeCloseTo(1001 + Math.log(sum), 10);
  });

  test('rejects inconsistent inputs with a TidarcError naming the field', () => {
    const shape = { batch: 1, n: 1, qHeads: 3, kvHeads: 2, headDim: 1, cacheCapacity: 1 };
    expect(() => referenceAttention(zeros(shape, [0]))).toThrow(/qHeads.*multiple of kvHeads/);
    const ok = { ...shape, qHeads: 2 };
    expect(() => referenceAttention(zeros(ok, [2]))).toThrow(/prefixLen\[0\] = 2/);
    expect(() => referenceAttention(zeros(ok, [0, 0]))).toThrow(/prefixLen.length/);
    const short = { ...zeros(ok, [1]), q: new Float64Array(1) };
    expect(() => referenceAttention(short)).toThrow(TidarcError);
    expect(() => referenceAttention(short)).toThrow(/q.length = 1.*2 for this shape/);
  });
});

describe('randomAttentionInputs', () => {
  const shape = { batch: 2, n: 3, qHeads: 4, kvHeads: 2, headDim: 8, cacheCapacity: 5 };

  test.for(['bf16', 'fp16'] as const)('%s: deterministic, values are the decoded bits', (dtype) => {
    const a = randomAttentionInputs({ ...shape, dtype, seed: 11, prefixLen: [2, 5] });
    const b = randomAttentionInputs({ ...shape, dtype, seed: 11, prefixLen: [2, 5] });
    expect(a.bits).toEqual(b.bits);
    const sizes = attentionSizes(shape);
    expect(a.bits.q.length).toBe(sizes.q);
    expect(a.bits.kCache.length).toBe(sizes.cache);
    expect(a.values.vStep.length).toBe(sizes.step);
    // values are exactly representable in the dtype, and not all equal
    expect(new Set(a.values.q).size).toBeGreaterThan(sizes.q / 2);
    expect(Array.from(a.prefixLen)).toEqual([2, 5]);
  });

  test('poisons the unused cache tail with NaN, which the reference never reads', () => {
    const inputs = randomAttentionInputs({ ...shape, dtype: 'bf16', seed: 5, prefixLen: [2, 5] });
    const { kCache, vCache } = inputs.values;
    const d = shape.headDim;
    // sequence 0, head 1: slots 0..1 finite, 2..4 NaN
    const base = (0 * 2 + 1) * shape.cacheCapacity * d;
    expect(kCache.subarray(base, base + 2 * d).every(Number.isFinite)).toBe(true);
    expect(vCache.subarray(base + 2 * d, base + 5 * d).every(Number.isNaN)).toBe(true);
    // sequence 1 uses the whole cache
    expect(kCache.subarray(2 * 5 * d).every(Number.isFinite)).toBe(true);
    const r = referenceAttention({
      ...inputs.shape,
      prefixLen: inputs.prefixLen,
      ...inputs.values,
      visible: (tq, tk) => tk <= tq,
    });
    expect(r.o.every(Number.isFinite)).toBe(true);
    expect(r.lse.every(Number.isFinite)).toBe(true);
    const clean = randomAttentionInputs({ ...shape, dtype: 'bf16', seed: 5, prefixLen: [2, 5], poisonCacheTail: false });
    expect(clean.values.kCache.every(Number.isFinite)).toBe(true);
  });

  test('draws prefix lengths in [0, cacheCapacity] when none are given; uniform stays in [-1, 1]', () => {
    const inputs = randomAttentionInputs({ ...shape, batch: 16, dtype: 'fp16', seed: 2, distribution: 'uniform' });
    expect(inputs.prefixLen.length).toBe(16);
    expect(inputs.prefixLen.every((L) => L >= 0 && L <= shape.cacheCapacity)).toBe(true);
    expect(new Set(inputs.prefixLen).size).toBeGreaterThan(1);
    expect(inputs.values.q.every((x) => x >= -1 && x <= 1)).toBe(true);
  });
});
