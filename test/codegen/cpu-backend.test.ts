/**
 * The generated portable C++ kernels (the CPU backend) against the float64 reference, over
 * draft lengths, GQA ratios (incl. 6), head dims, dtypes, odd and different prefix lengths
 * per sequence, L = 0, and split-KV counts. Outputs are poisoned with NaN first, and the
 * unused cache tail holds NaN, so an unwritten element or a stray read fails.
 * Each shape compiles only the variants checked here (compileModel's variant filter): the prefill
 * chunk and mask blocks are half the C++ and were never run; a model runner over such a compile
 * is refused, which the last test checks.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { ModelRunner } from '../../src/runtime/model/forward.js';
import { KvCache } from '../../src/runtime/model/kv-cache.js';
import { modelWeights } from '../../src/runtime/model/weights.js';
import { stepVisibility } from '../../src/ir/mask.js';
import { causal, tidarDecode } from '../../src/ir/mask-builders.js';
import { decode } from '../../src/util/dtype.js';
import { type KernelLibrary, openKernelLibrary } from '../../src/runtime/kernel-library.js';
import { randomAttentionInputs, referenceAttention } from '../../src/runtime/reference.js';
import { modelForShape, type TestShape } from '../helpers/models.js';
import { writeRandomModel } from '../helpers/random-model.js';

const SHAPES: readonly TestShape[] = [
  { dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 2 },  // G = 1
  { dtype: 'fp16', headDim: 128, qHeads: 8, kvHeads: 2 }, // G = 4
  { dtype: 'bf16', headDim: 128, qHeads: 6, kvHeads: 1 }, // G = 6: tiles straddle tokens
  { dtype: 'fp16', headDim: 64, qHeads: 8, kvHeads: 1 },  // G = 8
];
const DRAFTS = [1, 2, 3, 4, 8, 16];
/** What the cases run: the decode steps. */
const VARIANTS = [...DRAFTS.map((k) => `tidar_k${k}`), 'ar'];
/** Output error bound: half an ulp of the output dtype near 1 plus fp32 accumulation slack. */
const TOLERANCE = { bf16: 8e-3, fp16: 1.5e-3 } as const;

const root = mkdtempSync(join(tmpdir(), 'tidarc-cpu-'));
const libraries = new Map<TestShape, KernelLibrary>();

beforeAll(async () => {
  for (const shape of SHAPES) {
    const outDir = join(root, `${shape.dtype}-${shape.headDim}-${shape.qHeads}-${shape.kvHeads}`);
    await compileModel({ spec: modelForShape(shape, DRAFTS), arches: ['sm_80'], outDir, build: 'cpu', variants: VARIANTS, log: () => undefined });
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
  for (const variant of VARIANTS) {
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

test('a filtered compile lists what it built; a call or a model runner that needs a variant it left out is a one-line error', async () => {
  const shape = SHAPES[0]!;
  const lib = libraries.get(shape)!;
  expect(lib.manifest.variants.map((v) => v.name)).toEqual(VARIANTS);
  const leftOut = ['block_k1', 'block_k2', 'block_k3', 'block_k4', 'block_k8', 'block_k16', 'prefill_c64'];
  expect(lib.manifest.omittedVariants).toEqual(leftOut);
  const oneLine = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      expect((e as Error).message).not.toContain('\n');
      return (e as Error).message;
    }
    throw new Error('no error');
  };
  expect(oneLine(() => lib.run('block_k4', {} as never))).toMatch(/variant left out of this compile by `tidarc compile --variant` \(variant = block_k4\); allowed: tidar_k1, .*, ar$/);
  // A real checkpoint of this shape: the runner refuses the kernels before it reads a weight.
  const ckpt = await loadCheckpoint(await writeRandomModel(root, modelForShape(shape, DRAFTS), 3));
  const cache = new KvCache({ layers: 1, kvHeads: shape.kvHeads, headDim: shape.headDim, capacity: 8 });
  expect(oneLine(() => new ModelRunner(ckpt.spec, modelWeights(ckpt), lib, cache, 1)))
    .toBe(`the compiled kernels lack variants this model runs (left out by \`tidarc compile --variant\`: compile without it) (variants = prefill_c64,${leftOut.slice(0, 6).join(',')}); allowed: kernels with ${[...VARIANTS, 'prefill_c64', ...leftOut.slice(0, 6)].join(', ')}`);
});
