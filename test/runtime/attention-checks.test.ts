/**
 * The numbers of an attention call are checked as given, before any conversion, in one place
 * shared by the kernel library (prepareCall) and the reference: Int32Array.from used to turn
 * prefixLen 2^32 + 5 into 5, NaN into 0 and 1.9 into 1, and any `threads` reached the library
 * (which now also clamps it to the hardware threads: kernel-library.test.ts).
 * Needs nothing (no compiler, no addon).
 */
import { describe, expect, test } from 'vitest';
import { generateModel } from '../../src/codegen/generate.js';
import { TidarcError } from '../../src/errors.js';
import { MAX_CPU_THREADS, checkInteger, checkPrefixLen } from '../../src/runtime/attention-checks.js';
import { type AttentionInputs, prepareCall } from '../../src/runtime/kernel-library.js';
import { referenceAttention } from '../../src/runtime/reference.js';
import { modelForShape } from '../helpers/models.js';

const HEAD_DIM = 64;
const variant = generateModel(modelForShape({ dtype: 'bf16', headDim: HEAD_DIM, qHeads: 2, kvHeads: 1 }, [2]), { arches: ['sm_80'] })
  .manifest.variants.find((v) => v.name === 'tidar_k2')!;

function inputs(patch: Partial<Record<keyof AttentionInputs, unknown>> = {}): AttentionInputs {
  const batch = typeof patch.batch === 'number' && Number.isInteger(patch.batch) && patch.batch > 0 && patch.batch < 8 ? patch.batch : 1;
  const cap = typeof patch.cacheCapacity === 'number' && Number.isInteger(patch.cacheCapacity) && patch.cacheCapacity >= 0 && patch.cacheCapacity < 64 ? patch.cacheCapacity : 16;
  const step = batch * variant.steps * HEAD_DIM;
  return {
    batch, cacheCapacity: cap, prefixLen: new Array<number>(batch).fill(3),
    q: new Uint16Array(step * 2), kCache: new Uint16Array(batch * cap * HEAD_DIM), vCache: new Uint16Array(batch * cap * HEAD_DIM),
    kStep: new Uint16Array(step), vStep: new Uint16Array(step),
    ...patch,
  } as AttentionInputs;
}

/** The error prepareCall throws for these inputs (fails the test if it returns). */
function refusal(patch: Partial<Record<keyof AttentionInputs, unknown>>): TidarcError {
  try {
    prepareCall(variant, inputs(patch), 4);
  } catch (e) {
    expect(e).toBeInstanceOf(TidarcError);
    return e as TidarcError;
  }
  throw new Error(`prepareCall accepted ${JSON.stringify(patch)}`);
}

describe('prepareCall refuses numbers it would have coerced, naming the field', () => {
  test.each([
    [2 ** 32 + 5, '4294967301'],
    [Number.NaN, 'NaN'],
    [1.9, '1.9'],
    [-1, '-1'],
    [17, '17'],
    ['3', '"3"'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
  ])('prefixLen [%s]', (L, shown) => {
    const e = refusal({ prefixLen: [L] });
    expect(e.details.field).toBe('prefixLen[0]');
    expect(e.message).toBe(`invalid attention input (prefixLen[0] = ${shown}); allowed: an integer from 0 to cacheCapacity (16)`);
  });

  test('prefixLen of the wrong length or type', () => {
    expect(refusal({ prefixLen: [1, 2] }).message).toMatch(/\(prefixLen\.length = 2\); allowed: batch \(1\)/);
    expect(refusal({ prefixLen: new Uint32Array([1]) }).message).toMatch(/\(prefixLen = a Uint32Array\); allowed: an Int32Array or an array of integers/);
    expect(refusal({ prefixLen: undefined }).details.field).toBe('prefixLen');
  });

  test.each([
    ['batch', 0], ['batch', 1.5], ['batch', Number.NaN], ['batch', 2 ** 31],
    ['cacheCapacity', -1], ['cacheCapacity', 0.5], ['cacheCapacity', 2 ** 32 + 16],
    ['splits', 0], ['splits', 1.9], ['splits', 1025], ['splits', Number.NaN],
    ['threads', -1], ['threads', 2.5], ['threads', 20000], ['threads', MAX_CPU_THREADS + 1], ['threads', Number.NaN],
  ] as const)('%s = %s', (field, value) => {
    const e = refusal({ [field]: value });
    expect(e.code).toBe('invalid-argument');
    expect(e.details.field).toBe(field);
    expect(e.message).toMatch(new RegExp(`^invalid attention input \\(${field} = .*\\); allowed: an integer from \\d+ to \\d+$`));
  });

  test('buffers of the wrong type are named before their length is read', () => {
    expect(refusal({ q: undefined }).message).toBe('q must be a Uint16Array (q = undefined); allowed: a Uint16Array');
    expect(refusal({ kCache: new Float32Array(1) }).details.field).toBe('kCache');
    expect(refusal({ outputs: { o: new Uint16Array(2 * variant.steps * HEAD_DIM), lse: new Float64Array(2 * variant.steps) } }).details.field).toBe('outputs.lse');
  });

  test('valid edges pass unchanged: threads 0 and the maximum, splits 1024, cacheCapacity 0', () => {
    expect(prepareCall(variant, inputs({ threads: MAX_CPU_THREADS, splits: 1024 }), 4)).toMatchObject({ numThreads: MAX_CPU_THREADS, numSplits: 1024 });
    expect(prepareCall(variant, inputs({ threads: 0, splits: 1 }), 4)).toMatchObject({ numThreads: 0, numSplits: 1 });
    const empty = prepareCall(variant, inputs({ cacheCapacity: 0, prefixLen: Int32Array.of(0) }), 4);
    expect(empty.cacheCapacity).toBe(0);
    expect(Array.from(empty.prefixLen)).toEqual([0]);
  });
});

test('a large batch is a call like any other (the longest prefix was a spread: stack overflow)', () => {
  const unit = { ...variant, shape: { ...variant.shape, qHeads: 1, kvHeads: 1, headDim: 1 }, steps: 1, rows: 1, plan: { ...variant.plan, rowTiles: 1 } };
  const batch = 300_000;
  const args = prepareCall(unit, {
    batch, cacheCapacity: 1, prefixLen: new Int32Array(batch).fill(1), q: new Uint16Array(batch), kCache: new Uint16Array(batch),
    vCache: new Uint16Array(batch), kStep: new Uint16Array(batch), vStep: new Uint16Array(batch), threads: 1, splits: 1,
  }, 4);
  expect(args.batch).toBe(batch);
});

describe('the reference refuses the same calls with the same words', () => {
  const problem = (prefixLen: unknown, cacheCapacity = 2) => ({
    batch: 1, n: 1, qHeads: 1, kvHeads: 1, headDim: 1, cacheCapacity, prefixLen: prefixLen as number[],
    q: new Float32Array(1), kCache: new Float32Array(cacheCapacity), vCache: new Float32Array(cacheCapacity),
    kStep: new Float32Array(1), vStep: new Float32Array(1), visible: () => true,
  });
  test.each([[2 ** 32 + 1], [Number.NaN], [1.9]])('prefixLen [%s]', (L) => {
    const viaLibrary = refusal({ prefixLen: [L], cacheCapacity: 2, kCache: new Uint16Array(2 * HEAD_DIM), vCache: new Uint16Array(2 * HEAD_DIM) });
    expect(() => referenceAttention(problem([L]))).toThrow(viaLibrary.message);
  });
  test('and accepts an Int32Array as before', () => {
    expect(referenceAttention(problem(Int32Array.of(2))).lse[0]).toBeCloseTo(Math.log(3), 12);
  });
});

test('checkInteger and checkPrefixLen return what they checked', () => {
  expect(checkInteger('x', 7, 0, 9)).toBe(7);
  expect(() => checkInteger('x', 10, 0, 9)).toThrow('invalid attention input (x = 10); allowed: an integer from 0 to 9');
  expect(checkPrefixLen([0, 5], 2, 5)).toEqual(Int32Array.of(0, 5));
});
