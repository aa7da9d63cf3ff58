/**
 * The generated portable C++ kernels (the CPU backend) against the float64 reference, over
 * draft lengths, GQA ratios (incl. 6), head dims, dtypes, odd and different prefix lengths
 * per sequence, L = 0, and split-KV counts. Outputs are poisoned with NaN first, and the
 * unused cache tail holds NaN, so an unwritten element or a stray read fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { stepVisibility } from '../../src/ir/mask.js';
import { causal, tidarDecode } from '../../src/ir/mask-builders.js';
import { decode } from '../../src/util/dtype.js';
import { type KernelLibrary, openKernelLibrary } from '../../src/runtime/kernel-library.js';
import { randomAttentionInputs, referenceAttention } from '../../src/runtime/reference.js';
import { modelForShape, type TestShape } from '../helpers/models.js';

const SHAPES: readonly TestShape[] = [
  { dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 2 },  // G = 1
  { dtype: 'fp16', headDim: 128, qHeads: 8, kvHeads: 2 }, // G = 4
  { dtype: 'bf16', headDim: 128, qHeads: 6, kvHeads: 1 }, // G = 6: tiles straddle tokens
  { dtype: 'fp16', headDim: 64, qHeads: 8, kvHeads: 1 },  // G = 8
];
const DRAFTS = [1, 2, 3, 4, 8, 16];
/** Output error bound: half an ulp of the output dtype near 1 plus fp32 accumulation slack. */
const TOLERANCE = { bf16: 8e-3, fp16: 1.5e-3 } as const;

const root = mkdtempSync(join(tmpdir(), 'tidarc-cpu-'));
const libraries = new Map<TestShape, KernelLibrary>();

beforeAll(async () => {
  for (const shape of SHAPES) {
    const outDir = join(root, `${shape.dtype}-${shape.headDim}-${shape.qHeads}-${shape.kvHeads}`);
    await compileModel({ spec: modelForShape(shape, DRAFTS), arches: ['sm_80'], outDir, build: 'cpu', log: () => undefined });
    libraries.set(shape, openKernelLibrary(outDir, { backend: 'cpu' }));
  }
}, 600_000);

afterAll(() => {
  for (const lib of libraries.values()) lib.close();
  rmSync(root, { recursive: true, force: true });
});

interface Case {
  readonly shape: TestShape;
  readonly variant: string;
  readonly prefixLen: readonly number[];
  readonly splits: number;
}

function runCase({ shape, variant, prefixLen, splits }: Case, seed: number) {
  const lib = libraries.get(shape)!;
  const draft = variant === 'ar' ? 0 : Number(variant.slice('tidar_k'.length));
  const mask = draft === 0 ? causal(1) : tidarDecode(draft);
  const n = mask.tokens.length;
  const cacheCapacity = Math.max(...prefixLen) + 3;
  const inputs = randomAttentionInputs({ ...shape, batch: prefixLen.length, n, cacheCapacity, prefixLen, seed });
  const rows = prefixLen.length * n * shape.qHeads;
  const outputs = { o: new Uint16Array(rows * shape.headDim).fill(shape.dtype === 'bf16' ? 0x7fc0 : 0x7e00), lse: new Float32Array(rows).fill(Number.NaN) };
  const got = lib.run(variant, { batch: prefixLen.length, cacheCapacity, prefixLen, ...inputs.bits, splits, threads: 2, outputs });
  const table = stepVisibility(mask);
  const want = referenceAttention({ ...inputs.shape, prefixLen, ...inputs.values, visible: (tq, tk) => table[tq * n + tk] === 1 });
  const o = decode(shape.dtype, got.o);
  let maxErr = 0;
  let maxLseErr = 0;
  for (let i = 0; i < o.length; i++) maxErr = Math.max(maxErr, Number.isNaN(o[i]!) ? Infinity : Math.abs(o[i]! - want.o[i]!));
  for (let i = 0; i < rows; i++) {
    const a = got.lse[i]!, b = want.lse[i]!;
    maxLseErr = Math.max(maxLseErr, a === b ? 0 : Number.isNaN(a) ? Infinity : Math.abs(a - b));
  }
  return { maxErr, maxLseErr, splits: got.splits };
}

describe.for(SHAPES.map((s) => [`${s.dtype} d${s.headDim} G${s.qHeads / s.kvHeads}`, s] as const))('CPU backend %s', ([, shape]) => {
  const cases: Case[] = [];
  for (const variant of [...DRAFTS.map((k) => `tidar_k${k}`), 'ar']) {
    cases.push({ shape, variant, prefixLen: [17, 0, 37], splits: 1 });
    cases.push({ shape, variant, prefixLen: [1, 130], splits: 3 });
  }
  test.for(cases.map((c, i) => [`${c.variant} L=${c.prefixLen.join(',')} splits=${c.splits}`, c, i] as const))('%s', ([, c, i]) => {
    const r = runCase(c, 1000 + i);
    expect(r.splits).toBe(c.splits);
    expect(r.maxErr).toBeLessThan(TOLERANCE[shape.dtype]);
    expect(r.maxLseErr).toBeLessThan(2e-4 * 16);
  });
});

test('long prefix with the split heuristic, batch 2 with different L', () => {
  const shape = SHAPES[1]!;
  const r = runCase({ shape, variant: 'tidar_k4', prefixLen: [1000, 333], splits: 8 }, 7);
  expect(r.maxErr).toBeLessThan(TOLERANCE[shape.dtype]);
  expect(r.maxLseErr).toBeLessThan(5e-3);
});
