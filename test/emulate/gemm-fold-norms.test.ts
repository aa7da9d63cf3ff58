/**
 * Fold-norms in the mma.sync GEMMs (tidarc_gemm_abi.h v6; Reduction::kNormOut / kRowScale),
 * compiled UNCHANGED onto the SIMT emulator:
 *   - Producer (a residual GEMM, o / down): N = 201 (odd: a partial 128- and 64-column tile and
 *     a partial 64-column chunk of the sums), K = 328 (not whole k tiles), with a bias and the
 *     old out, at M = 1, 2, 20, 72, 272, split-K 1 and 3: out within the float64 bound;
 *     norm_out bitwise round16(fround(gamma * out)) of the kernel's own out; norm_sumsq bitwise
 *     the fixed chunk tree (chunkTree below) over that out; all three bitwise the same row at
 *     every M and from other tile widths (64 and 128 columns, 4 and 8 warps) at M = 20.
 *   - Consumer (qkv, gate_up, lm_head: x is a norm_out, rows scaled by 1 / rms from row_sumsq):
 *     plain (same unit; with and without row_ids), bitwise fround(fround(acc * inv) + bias)
 *     where acc is the same kernel's unscaled output and inv tidarc_op_rmsnorm's expression over
 *     the source row's chunks, and within float64; SwiGLU (gate_up, interleaved) within float64;
 *     row statistics (lm_head, split-K 3) exactly tidarc_op_row_stats's rule on the scaled
 *     logits; bitwise the same row at every M.
 *   - fp16 kernels with the code forced in (the runtime folds bf16 only; the kernel is dtype-agnostic).
 *   - Mutants caught: the chunk tree summed in another order, the scale applied after the bias,
 *     no barrier between staging the tile and summing it, the sums' row taken without row_ids.
 * No emulator findings allowed. Tagged: g++.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import { GEMM_SWIGLU_INTERLEAVE } from '../../src/codegen/gemm-epilogue.js';
import type { GemmPlan, GemmShape, GemmTile } from '../../src/codegen/gemm-plan.js';
import { buildGemmEmulator, type GemmInputs, type GemmRunResult, runGemmEmulator } from '../../src/emulate/gemm-emulator.js';
import { encode } from '../../src/util/dtype.js';
import { seededRandom } from '../../src/util/random.js';
import { type GemmProblem, gemmInputs, randomGemmProblem, referenceGemm, worstRatio, writeGemmUnit } from '../helpers/gemm.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-gemm-fold-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const CHUNK = 64;
const EPS = 1e-6;
const PROD: GemmShape = { n: 201, k: 328, dtype: 'bf16' };
const PROD_MS = [1, 2, 20, 72, 272];
const SPLITS = [1, 3] as const;
const SWI: GemmShape = { n: 208, k: 328, dtype: 'bf16' };
const SWI_MS = [1, 20, 72];
const HEAD: GemmShape = { n: 300, k: 264, dtype: 'bf16' };
const HEAD_MS = [1, 20, 72];
const FP16: GemmShape = { ...PROD, dtype: 'fp16' };
const ROW_IDS_MS = [20, 72];
/** Other tiles at M = 20 than the planner's: 64 columns in 8 warps, 128 columns in 4. */
const TILES: readonly GemmTile[] = [{ blockM: 32, warpsM: 2, stages: 3, blockN: 64 }, { blockM: 32, warpsM: 1, stages: 3, warps: 4 }];

// ---- the definition, in float64 ------------------------------------------------------------

/** tidarc_gemm_abi.h's chunk tree over y[from .. from + count) (0 past count, count <= 64). */
function chunkTree(y: ArrayLike<number>, from: number, count: number): number {
  const s = new Float64Array(CHUNK);
  for (let j = 0; j < count; j++) s[j] = y[from + j]! * y[from + j]!;
  for (let w = CHUNK / 2; w >= 1; w /= 2) for (let j = 0; j < w; j++) s[j] = s[j]! + s[j + w]!;
  return s[0]!;
}

/** The producer's norm_sumsq of out [rows, n], as the kernel must write it. */
function expectedSumsq(out: Float32Array, rows: number, n: number): Float64Array {
  const chunks = Math.ceil(n / CHUNK), s = new Float64Array(rows * chunks);
  for (let r = 0; r < rows; r++) for (let c = 0; c < chunks; c++) s[r * chunks + c] = chunkTree(out, r * n + c * CHUNK, Math.min(CHUNK, n - c * CHUNK));
  return s;
}

/** The consumer's 1 / rms of source row sr: tidarc_op_rmsnorm's expression over the chunks in increasing order. */
function invRms(sumsq: Float64Array, sr: number, cols: number): number {
  const chunks = Math.ceil(cols / CHUNK);
  let total = 0;
  for (let c = 0; c < chunks; c++) total += sumsq[sr * chunks + c]!;
  return Math.fround(1 / Math.sqrt(total / cols + Math.fround(EPS)));
}

/** Chunk sums a producer could have written for xRows rows of width cols: 1 / rms from about 0.3 to 2. */
function randomSumsq(xRows: number, cols: number, seed: number): Float64Array {
  const rng = seededRandom(seed), chunks = Math.ceil(cols / CHUNK);
  return Float64Array.from({ length: xRows * chunks }, (_, i) => Math.min(CHUNK, cols - (i % chunks) * CHUNK) * rng.uniform(0.25, 10) * (1 + rng.next() * 2 ** -30));
}

/** The scaled float64 reference: inv[row] * acc + bias, and its bound from acc's bound plus the product's and the bias add's roundings. */
function scaledReference(shape: GemmShape, p: GemmProblem, rows: number, splitK: number, sumsq: Float64Array, rowIds?: Int32Array): { ref: Float64Array; bound: Float64Array } {
  const { ref, bound } = referenceGemm(shape, p, rows, splitK, rowIds ? { rowIds } : {});
  const n = shape.n, out = new Float64Array(rows * n), b = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const inv = invRms(sumsq, rowIds ? rowIds[r]! : r, shape.k);
    for (let c = 0; c < n; c++) {
      const i = r * n + c, scaled = inv * ref[i]!;
      out[i] = scaled + p.bias[c]!;
      b[i] = 1.01 * (inv * bound[i]! + 2 ** -24 * (Math.abs(scaled) + inv * bound[i]! + Math.abs(out[i]!))) + 1e-30;
    }
  }
  return { ref: out, bound: b };
}

/** SwiGLU over the interleaved columns of the scaled reference (gemm_store_swiglu's pairing), with the bound of gemm-epilogue.test.ts. */
function swigluOf(ref: Float64Array, bound: Float64Array, rows: number, n: number): { ref: Float64Array; bound: Float64Array } {
  const blk = GEMM_SWIGLU_INTERLEAVE, half = n / 2, out = new Float64Array(rows * half), b = new Float64Array(rows * half);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < n; c++) {
      if (Math.floor(c / blk) % 2 !== 0) continue;
      const g = ref[r * n + c]!, u = ref[r * n + c + blk]!, bg = bound[r * n + c]!, bu = bound[r * n + c + blk]!;
      const o = r * half + Math.floor(c / (2 * blk)) * blk + (c % blk);
      const silu = g / (1 + Math.exp(-g));
      out[o] = silu * u;
      const f32 = 1.1 * bg * (Math.abs(u) + bu) + (Math.abs(silu) + 1.1 * bg) * bu + 8 * 2 ** -24 * Math.abs(silu * u);
      b[o] = f32 + 2 ** -8 * (Math.abs(silu * u) + f32) + 1e-30;
    }
  }
  return { ref: out, bound: b };
}

/** tidarc_op_row_stats's rule on float32 logits: first maximum, NaN the maximum; lse in float64. */
function rowRule(logits: ArrayLike<number>, from: number, n: number): { argmax: number; max: number; lse: number } {
  let best = -Infinity, at = 0;
  for (let c = 0; c < n; c++) {
    const v = logits[from + c]!;
    if (Number.isNaN(v) || v > best) best = v, at = c;
    if (Number.isNaN(best)) break;
  }
  let s = 0;
  for (let c = 0; c < n; c++) s += Math.exp(logits[from + c]! - best);
  return { argmax: at, max: best, lse: best + Math.log(s) };
}

// ---- runs -----------------------------------------------------------------------------------

interface ProducerRun { readonly key: string; readonly m: number; readonly run: GemmRunResult }
interface ConsumerRun { readonly key: string; readonly m: number; readonly ids: boolean; readonly acc: GemmRunResult; readonly scaled: GemmRunResult }
const producers: ProducerRun[] = [];
const consumers: ConsumerRun[] = [];
const swiglus: { key: string; m: number; run: GemmRunResult; worst: number }[] = [];
const heads: { m: number; logits: GemmRunResult; stats: GemmRunResult }[] = [];

interface Mutant { readonly name: string; readonly from: string; readonly to: string; readonly run: 'producer' | 'consumer' | 'consumer-ids'; readonly oneTile?: true; readonly m?: number }
/** The stage-reuse mutants' shape: K = 64 is one k tile, so the last tile read is stage 0, where the epilogue's shared memory starts. */
const ONE_TILE: GemmShape = { n: 201, k: 64, dtype: 'bf16' };
const MUTANTS: readonly Mutant[] = [
  {
    name: 'the chunk tree summed in another order (left to right)',
    from: 'gemm_chunk_sumsq<0, 1>(tile + row * kStride + c * kGemmNormChunk)',
    to: '[&] { double s = 0.0; for (int q = 0; q < kGemmNormChunk; ++q) s += static_cast<double>(tile[row * kStride + c * kGemmNormChunk + q]) * tile[row * kStride + c * kGemmNormChunk + q]; return s; }()',
    run: 'producer',
  },
  {
    name: 'the scale applied after the bias',
    from: 'acc[i][j][2 * h + e] = __fmul_rn(acc[i][j][2 * h + e], inv);',
    to: '{ const int nn = n0 + wn0 + j * 8 + 2 * tg + e; const float bb = a.bias != nullptr && nn < C::kN ? a.bias[nn] : 0.0f; acc[i][j][2 * h + e] = __fmul_rn(acc[i][j][2 * h + e] + bb, inv) - bb; }',
    run: 'consumer',
  },
  { name: 'no barrier between staging the tile and summing it', from: '__syncthreads();  // the tile is whole before any thread sums a row of it', to: ';', run: 'producer' },
  {
    name: 'no barrier before the producer\'s tile overwrites the pipeline\'s stages',
    from: 'const int lane = threadIdx.x % 32, g = lane / 4, tg = lane % 4;\n  __syncthreads();  // every warp is done reading the pipeline\'s stages',
    to: 'const int lane = threadIdx.x % 32, g = lane / 4, tg = lane % 4;',
    run: 'producer', oneTile: true,
  },
  {
    name: 'no barrier before the consumer\'s 1 / rms overwrite the pipeline\'s stages',
    from: 'float* inv_s = reinterpret_cast<float*>(smem_raw);\n      __syncthreads();  // every warp is done reading the pipeline\'s stages',
    to: 'float* inv_s = reinterpret_cast<float*>(smem_raw);',
    run: 'consumer', oneTile: true, m: 272,  // a CTA of several warp rows: warps that read the W rows another warp's 1 / rms land on
  },
  { name: 'the sums\' row taken without row_ids', from: 'const int sr = a.row_ids != nullptr ? a.row_ids[r] : r;', to: 'const int sr = r;', run: 'consumer-ids' },
];
const mutantCaught = new Map<string, boolean>();

const producerProblem = (shape: GemmShape): GemmProblem => randomGemmProblem(shape, 272, 41);
const gammaOf = (n: number): Float32Array => {
  const rng = seededRandom(43);
  return Float32Array.from({ length: n }, () => 1 + 0.5 * rng.normal());
};
/** A permutation with repeats of the 272 source rows (row_ids gather). */
const rowIdsOf = (m: number): Int32Array => Int32Array.from({ length: m }, (_, r) => (r * 37 + 11) % 272);

async function build(dir: string, shape: GemmShape, ms: readonly number[], splitK: number, roles: readonly string[], objects: readonly string[], o: { tiles?: Record<number, GemmTile>; force?: boolean; mutant?: Mutant } = {}): Promise<{ exe: string; plans: GemmPlan[] }> {
  const { source, cudaDir, plans } = writeGemmUnit(dir, shape, ms, splitK, roles, o.tiles ?? {}, o.force ? { fold: { normOut: true, rowScale: true } } : {});
  if (o.mutant) {
    const header = join(cudaDir, 'tidarc_gemm.cuh');
    const text = readFileSync(header, 'utf8');
    if (!text.includes(o.mutant.from)) throw new Error(`mutant "${o.mutant.name}": pattern not found`);
    writeFileSync(header, text.replace(o.mutant.from, o.mutant.to));
  }
  const exe = join(dir, 'emu');
  await buildGemmEmulator(cxx.found ? cxx.tool.path : 'g++', source, cudaDir, plans, objects, exe, roles.includes('lm_head'));
  return { exe, plans };
}

const producerInputs = (p: GemmProblem, m: number): GemmInputs => ({ ...gemmInputs(p, m, { bias: true, accumulate: true }), normOut: { weight: gammaOf(p.bias.length) } });
const consumerInputs = (p: GemmProblem, m: number, sumsq: Float64Array, rowIds?: Int32Array): GemmInputs =>
  ({ ...gemmInputs(p, m, { bias: true, ...(rowIds ? { rowIds } : {}) }), rowScale: { sumsq, cols: p.x.length / 272, eps: EPS } });
const accInputs = (p: GemmProblem, m: number, rowIds?: Int32Array): GemmInputs => gemmInputs(p, m, rowIds ? { rowIds } : {});

async function runProducerAndConsumer(exe: string, plans: readonly GemmPlan[], key: string, dir: string, p: GemmProblem, sumsq: Float64Array, idsMs: readonly number[]): Promise<void> {
  for (const plan of plans) {
    producers.push({ key, m: plan.m, run: await runGemmEmulator(exe, plan, producerInputs(p, plan.m), dir, `${key}-p${plan.m}`) });
    for (const ids of [false, ...(idsMs.includes(plan.m) ? [true] : [])]) {
      const rowIds = ids ? rowIdsOf(plan.m) : undefined;
      const acc = await runGemmEmulator(exe, plan, accInputs(p, plan.m, rowIds), dir, `${key}-a${plan.m}${ids}`);
      const scaled = await runGemmEmulator(exe, plan, consumerInputs(p, plan.m, sumsq, rowIds), dir, `${key}-c${plan.m}${ids}`);
      consumers.push({ key, m: plan.m, ids, acc, scaled });
    }
  }
}

/** The consumer's output bitwise fround(fround(acc * inv) + bias) of its own unscaled acc, inv of each row's source row. */
function scaledExactly(c: ConsumerRun, p: GemmProblem, sumsq: Float64Array): boolean {
  const n = p.bias.length, rowIds = c.ids ? rowIdsOf(c.m) : undefined;
  for (let r = 0; r < c.m; r++) {
    const inv = invRms(sumsq, rowIds ? rowIds[r]! : r, p.x.length / 272);
    for (let col = 0; col < n; col++) {
      const want = Math.fround(Math.fround(c.acc.out[r * n + col]! * inv) + p.bias[col]!);
      if (!Object.is(c.scaled.out[r * n + col], want)) return false;
    }
  }
  return true;
}

/** The producer's norm_out and norm_sumsq are exactly the definition over its own out. */
function producerExact(run: GemmRunResult, shape: GemmShape, m: number): { normOut: boolean; sumsq: boolean } {
  const gamma = gammaOf(shape.n);
  const scaled = Float32Array.from({ length: m * shape.n }, (_, i) => Math.fround(gamma[i % shape.n]! * run.out[i]!));
  const want = encode(shape.dtype, scaled);
  const sums = expectedSumsq(run.out, m, shape.n);
  return {
    normOut: run.normOut !== undefined && Buffer.from(run.normOut.buffer).equals(Buffer.from(want.buffer)),
    sumsq: run.normSumsq !== undefined && run.normSumsq.every((v, i) => Object.is(v, sums[i])),
  };
}

const problems = {
  prod: producerProblem(PROD), oneTile: producerProblem(ONE_TILE), fp16: producerProblem(FP16), swi: randomGemmProblem(SWI, 272, 51), head: randomGemmProblem(HEAD, 272, 61),
};
const sums = { prod: randomSumsq(272, PROD.k, 47), oneTile: randomSumsq(272, ONE_TILE.k, 49), swi: randomSumsq(272, SWI.k, 53), head: randomSumsq(272, HEAD.k, 63) };

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  type Job = { kind: 'prod'; splitK: number } | { kind: 'tile'; tile: GemmTile } | { kind: 'fp16' } | { kind: 'swi' } | { kind: 'head' } | { kind: 'mutant'; mutant: Mutant };
  const jobs: Job[] = [
    ...SPLITS.map((splitK): Job => ({ kind: 'prod', splitK })), ...TILES.map((tile): Job => ({ kind: 'tile', tile })),
    { kind: 'fp16' }, { kind: 'swi' }, { kind: 'head' }, ...MUTANTS.map((mutant): Job => ({ kind: 'mutant', mutant })),
  ];
  await runPool(jobs, 2, async (job, i) => {
    const dir = join(root, `job${i}`);
    if (job.kind === 'prod') {
      // o and qkv of one shape: the unit has both the producer and the consumer code.
      const { exe, plans } = await build(dir, PROD, PROD_MS, job.splitK, ['o', 'qkv'], objects);
      await runProducerAndConsumer(exe, plans, `bf16 split-K ${job.splitK}`, dir, problems.prod, sums.prod, ROW_IDS_MS);
    } else if (job.kind === 'tile') {
      const { exe, plans } = await build(dir, PROD, [20], 1, ['o', 'qkv'], objects, { tiles: { 20: job.tile } });
      await runProducerAndConsumer(exe, plans, `tile ${JSON.stringify(job.tile)}`, dir, problems.prod, sums.prod, []);
    } else if (job.kind === 'fp16') {
      const { exe, plans } = await build(dir, FP16, [1, 20], 1, ['o', 'qkv'], objects, { force: true });
      await runProducerAndConsumer(exe, plans, 'fp16', dir, problems.fp16, sums.prod, [20]);
    } else if (job.kind === 'swi') {
      const { exe, plans } = await build(dir, SWI, SWI_MS, 1, ['gate_up'], objects);
      for (const plan of plans) {
        const run = await runGemmEmulator(exe, plan, { ...consumerInputs(problems.swi, plan.m, sums.swi), epilogue: 'swiglu' }, dir, `s${plan.m}`);
        const { ref, bound } = scaledReference(SWI, problems.swi, plan.m, 1, sums.swi);
        const s = swigluOf(ref, bound, plan.m, SWI.n);
        swiglus.push({ key: 'split-K 1', m: plan.m, run, worst: worstRatio(run.out, s.ref, s.bound) });
      }
    } else if (job.kind === 'head') {
      const { exe, plans } = await build(dir, HEAD, HEAD_MS, 3, ['lm_head'], objects);
      for (const plan of plans) {
        const logits = await runGemmEmulator(exe, plan, consumerInputs(problems.head, plan.m, sums.head), dir, `l${plan.m}`);
        const stats = await runGemmEmulator(exe, plan, { ...consumerInputs(problems.head, plan.m, sums.head), epilogue: 'rowStats' }, dir, `h${plan.m}`);
        heads.push({ m: plan.m, logits, stats });
      }
    } else {
      const m = job.mutant, mm = m.m ?? 20;
      const [shape, problem, sumsq] = m.oneTile ? [ONE_TILE, problems.oneTile, sums.oneTile] : [PROD, problems.prod, sums.prod];
      const { exe, plans } = await build(dir, shape, [mm], 1, ['o', 'qkv'], objects, { mutant: m });
      const plan = plans[0]!;
      if (m.run === 'producer') {
        const run = await runGemmEmulator(exe, plan, producerInputs(problem, mm), dir, 'p');
        const exact = producerExact(run, shape, mm);
        mutantCaught.set(m.name, run.findings.length > 0 || !run.completed || !exact.normOut || !exact.sumsq);
      } else {
        const rowIds = m.run === 'consumer-ids' ? rowIdsOf(mm) : undefined;
        const acc = await runGemmEmulator(exe, plan, accInputs(problem, mm, rowIds), dir, 'a');
        const scaled = await runGemmEmulator(exe, plan, consumerInputs(problem, mm, sumsq, rowIds), dir, 'c');
        const c: ConsumerRun = { key: 'mutant', m: mm, ids: rowIds !== undefined, acc, scaled };
        mutantCaught.set(m.name, scaled.findings.length > 0 || !scaled.completed || !scaledExactly(c, problem, sumsq));
      }
    }
  });
}, 900_000);

const f32bits = (a: Float32Array, from: number, count: number): Buffer => Buffer.from(a.buffer, a.byteOffset + from * 4, count * 4);
const sameRows = (a: Float32Array | Uint16Array | Float64Array, b: typeof a, rows: number, width: number): boolean => {
  const e = a.BYTES_PER_ELEMENT;
  return Buffer.from(a.buffer, a.byteOffset, rows * width * e).equals(Buffer.from(b.buffer, b.byteOffset, rows * width * e));
};

const PROD_KEYS = [...SPLITS.map((s) => `bf16 split-K ${s}`), 'fp16'];
const shapeOf = (key: string): GemmShape => (key === 'fp16' ? FP16 : PROD);
const problemOf = (key: string): GemmProblem => (key === 'fp16' ? problems.fp16 : problems.prod);

describe.skipIf(!cxx.found)('fold-norms producer (o, down): out, norm_out = round16(gamma * out), norm_sumsq by the fixed tree', () => {
  test.for(PROD_KEYS.flatMap((k) => (k === 'fp16' ? [1, 20] : PROD_MS).map((m) => [`${k} M=${m}`, k, m] as const)))('%s', ([, key, m]) => {
    const row = producers.find((p) => p.key === key && p.m === m)!;
    expect(row.run.findings, JSON.stringify(row.run.findings.slice(0, 3))).toEqual([]);
    expect(row.run.completed).toBe(true);
    const shape = shapeOf(key), splitK = key.endsWith('3') ? 3 : 1;
    const { ref, bound } = referenceGemm(shape, problemOf(key), m, splitK, { bias: true, accumulate: true });
    expect(worstRatio(row.run.out, ref, bound)).toBeLessThanOrEqual(1);
    expect(producerExact(row.run, shape, m)).toEqual({ normOut: true, sumsq: true });
  });
  test.for(SPLITS.map((s) => [s] as const))('split-K %s: out, norm_out and norm_sumsq bitwise the same row at M = 1, 2, 20, 72, 272', ([s]) => {
    const runs = PROD_MS.map((m) => producers.find((p) => p.key === `bf16 split-K ${s}` && p.m === m)!.run);
    const big = runs[runs.length - 1]!, chunks = Math.ceil(PROD.n / CHUNK);
    for (const [i, r] of runs.entries()) {
      const m = PROD_MS[i]!;
      expect(sameRows(r.out, big.out, m, PROD.n), `out M=${m}`).toBe(true);
      expect(sameRows(r.normOut!, big.normOut!, m, PROD.n), `norm_out M=${m}`).toBe(true);
      expect(sameRows(r.normSumsq!, big.normSumsq!, m, chunks), `norm_sumsq M=${m}`).toBe(true);
    }
  });
  test('other tiles (64 columns in 8 warps, 128 in 4) give the planner\'s bits at M = 20', () => {
    const base = producers.find((p) => p.key === 'bf16 split-K 1' && p.m === 20)!.run;
    const others = producers.filter((p) => p.key.startsWith('tile'));
    expect(others).toHaveLength(TILES.length);
    for (const o of others) {
      expect(o.run.findings).toEqual([]);
      expect([sameRows(o.run.out, base.out, 20, PROD.n), sameRows(o.run.normOut!, base.normOut!, 20, PROD.n), sameRows(o.run.normSumsq!, base.normSumsq!, 20, Math.ceil(PROD.n / CHUNK))], o.key).toEqual([true, true, true]);
    }
  });
});

describe.skipIf(!cxx.found)('fold-norms consumer (qkv, gate_up, lm_head): rows scaled by 1 / rms before the bias and the epilogues', () => {
  test.for(PROD_KEYS.flatMap((k) => (k === 'fp16' ? [1, 20] : PROD_MS).flatMap((m) => [false, ...(ROW_IDS_MS.includes(m) ? [true] : [])].map((ids) => [`${k} M=${m}${ids ? ' row_ids' : ''}`, k, m, ids] as const))))('%s: bitwise fround(fround(acc * inv) + bias), within float64', ([, key, m, ids]) => {
    const c = consumers.find((x) => x.key === key && x.m === m && x.ids === ids)!;
    for (const r of [c.acc, c.scaled]) {
      expect(r.findings, JSON.stringify(r.findings.slice(0, 3))).toEqual([]);
      expect(r.completed).toBe(true);
    }
    expect(scaledExactly(c, problemOf(key), sums.prod)).toBe(true);
    const { ref, bound } = scaledReference(shapeOf(key), problemOf(key), m, key.endsWith('3') ? 3 : 1, sums.prod, ids ? rowIdsOf(m) : undefined);
    expect(worstRatio(c.scaled.out, ref, bound)).toBeLessThanOrEqual(1);
  });
  test('the scaled rows are bitwise the same at every M and from the other tiles', () => {
    for (const s of SPLITS) {
      const runs = PROD_MS.map((m) => consumers.find((c) => c.key === `bf16 split-K ${s}` && c.m === m && !c.ids)!.scaled.out);
      for (const [i, o] of runs.entries()) expect(sameRows(o, runs[runs.length - 1]!, PROD_MS[i]!, PROD.n), `split-K ${s} M=${PROD_MS[i]}`).toBe(true);
    }
    const base = consumers.find((c) => c.key === 'bf16 split-K 1' && c.m === 20 && !c.ids)!.scaled.out;
    for (const o of consumers.filter((c) => c.key.startsWith('tile'))) expect(sameRows(o.scaled.out, base, 20, PROD.n), o.key).toBe(true);
  });
  test.for(SWI_MS.map((m) => [m] as const))('gate_up SwiGLU M=%s: silu(inv g + b) * (inv u + b) within float64, the row bitwise the same at every M', ([m]) => {
    const s = swiglus.find((x) => x.m === m)!;
    expect(s.run.findings, JSON.stringify(s.run.findings.slice(0, 3))).toEqual([]);
    expect(s.worst).toBeLessThanOrEqual(1);
    const big = swiglus.find((x) => x.m === SWI_MS[SWI_MS.length - 1])!;
    expect(f32bits(s.run.out, 0, m * SWI.n / 2).equals(f32bits(big.run.out, 0, m * SWI.n / 2))).toBe(true);
  });
  test.for(HEAD_MS.map((m) => [m] as const))('lm_head row statistics (split-K 3) M=%s: tidarc_op_row_stats\'s rule on the scaled logits', ([m]) => {
    const h = heads.find((x) => x.m === m)!;
    for (const r of [h.logits, h.stats]) expect(r.findings, JSON.stringify(r.findings.slice(0, 3))).toEqual([]);
    const st = h.stats.stats!;
    const { ref, bound } = scaledReference(HEAD, problems.head, m, 3, sums.head);
    expect(worstRatio(h.logits.out, ref, bound)).toBeLessThanOrEqual(1);
    for (let r = 0; r < m; r++) {
      const own = rowRule(h.logits.out, r * HEAD.n, HEAD.n);
      expect(st.argmax[r], `row ${r}`).toBe(own.argmax);
      expect(Object.is(st.max[r], Math.fround(own.max)), `row ${r} max`).toBe(true);
      expect(Math.abs(st.lse[r]! - own.lse), `row ${r} lse`).toBeLessThan(4e-6 * Math.max(1, Math.abs(own.lse)));
    }
    const big = heads.find((x) => x.m === HEAD_MS[HEAD_MS.length - 1])!.stats.stats!;
    for (const k of ['max', 'lse'] as const) expect(f32bits(st[k], 0, m).equals(f32bits(big[k], 0, m)), k).toBe(true);
  });
});

describe.skipIf(!cxx.found)('mutants of the fold-norms code are caught', () => {
  test.for(MUTANTS.map((m) => [m.name] as const))('%s', ([name]) => {
    expect(mutantCaught.get(name)).toBe(true);
  });
});
