/**
 * Fold-norms in the sm_90a GEMMs (tidarc_gemm_sm90a.cuh; tidarc_gemm_abi.h v6, compiled where
 * Reduction::kNormOut / kRowScale), rendered by src/codegen/gemm-sm90a.ts and compiled UNCHANGED
 * onto the SIMT emulator, no emulator findings allowed:
 *   - Producer (o: norm_weight set), bf16 N = 201 (a partial 64-column chunk, and a partial
 *     weight tile of 64 and of 128 rows), K = 328 (not whole k tiles), bias and the old out, at
 *     M = 1, 20, 72, 272 (token tiles 8, 32, 128: one consumer warpgroup; 2 x 136: two),
 *     split-K 1 and 3: out within float64; norm_out bitwise round16(fround(gamma * out)) of its
 *     own out; norm_sumsq bitwise the ABI's fixed chunk tree over that out; all three bitwise
 *     the same row at every M; and the 256-token tile (N = 137: a warpgroup wholly past N, whose
 *     chunk does not exist) at M = 200, split-K 2.
 *   - Consumer (qkv: row_sumsq set): bitwise fround(fround(acc * inv) + bias) of the same
 *     kernel's unscaled acc, inv tidarc_op_rmsnorm's expression over the row's chunks; within
 *     float64; SwiGLU (gate_up, interleaved, bf16 208 x 328) within float64.
 *   - Bitwise the mma.sync kernels' (tidarc_gemm.cuh, the same shape and split-K: a 9.0 device
 *     may run either family) for out, norm_out, norm_sumsq, the scaled out and SwiGLU's out.
 *   - Mutants caught: the tree in another order, the scale after the bias, no barrier between
 *     staging y and summing it, no barrier before the staged y is overwritten (the next chunk).
 *   - nvcc -arch=sm_90a (where installed): the o + qkv units (both codes) at split-K 1 and 3, and
 *     the 256-token one, without spills, stack or ptxas "Potential Performance Loss" (C7515:
 *     serialized wgmmas, which staging y first cost the two-warpgroup kernels).
 * Tagged: g++, nvcc.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePtxasReport, ptxasPerformanceLosses } from '../../src/build/ptxas.js';
import { runPool } from '../../src/build/pool.js';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { GEMM_SWIGLU_INTERLEAVE, interleaveGateUp } from '../../src/codegen/gemm-epilogue.js';
import type { GemmShape } from '../../src/codegen/gemm-plan.js';
import { sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';
import { buildGemmEmulator, type GemmRunResult, runGemmEmulator } from '../../src/emulate/gemm-emulator.js';
import { decode, encode } from '../../src/util/dtype.js';
import { seededRandom } from '../../src/util/random.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { type GemmProblem, gemmInputs, randomGemmProblem, referenceGemm, worstRatio, writeGemmUnit } from '../helpers/gemm.js';
import { type Sm90aRun, type Sm90aUnit, buildSm90aHarness, runSm90a, writeSm90aUnit } from './gemm-sm90a-emu.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const nvcc = await findNvcc();
const nvccPath = nvcc.found ? nvcc.tool.path : 'nvcc';
const sm90a = nvcc.found ? (await exec(nvccPath, ['--list-gpu-arch'])).stdout.includes('compute_90') : false;
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-sm90a-fold-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const CHUNK = 64;
const EPS = 1e-6;
const X_ROWS = 272;
const PROD: GemmShape = { n: 201, k: 328, dtype: 'bf16' };
const MS = [1, 20, 72, 272];
const SPLITS = [1, 3] as const;
const SWI: GemmShape = { n: 208, k: 328, dtype: 'bf16' };
const SWI_MS = [1, 72];
const T256: GemmShape = { n: 137, k: 200, dtype: 'bf16' };
const T256_M = 200;

// ---- the definition, in float64 ------------------------------------------------------------

/** tidarc_gemm_abi.h's chunk tree over y[from .. from + count) (0 past count). */
function chunkTree(y: ArrayLike<number>, from: number, count: number): number {
  const s = new Float64Array(CHUNK);
  for (let j = 0; j < count; j++) s[j] = y[from + j]! * y[from + j]!;
  for (let w = CHUNK / 2; w >= 1; w /= 2) for (let j = 0; j < w; j++) s[j] = s[j]! + s[j + w]!;
  return s[0]!;
}

function invRms(sumsq: Float64Array, r: number, cols: number): number {
  const chunks = Math.ceil(cols / CHUNK);
  let total = 0;
  for (let c = 0; c < chunks; c++) total += sumsq[r * chunks + c]!;
  return Math.fround(1 / Math.sqrt(total / cols + Math.fround(EPS)));
}

/** Chunk sums a producer could have written: 1 / rms from about 0.3 to 2. */
function randomSumsq(rows: number, cols: number, seed: number): Float64Array {
  const rng = seededRandom(seed), chunks = Math.ceil(cols / CHUNK);
  return Float64Array.from({ length: rows * chunks }, (_, i) => Math.min(CHUNK, cols - (i % chunks) * CHUNK) * rng.uniform(0.25, 10) * (1 + rng.next() * 2 ** -30));
}

const gammaOf = (n: number): Float32Array => {
  const rng = seededRandom(43);
  return Float32Array.from({ length: n }, () => 1 + 0.5 * rng.normal());
};

/** norm_out and norm_sumsq exactly the definition over the run's own out. */
function producerExact(run: Pick<Sm90aRun, 'out' | 'normOut' | 'normSumsq'>, shape: GemmShape, m: number): { normOut: boolean; sumsq: boolean } {
  const gamma = gammaOf(shape.n), chunks = Math.ceil(shape.n / CHUNK);
  const want = encode(shape.dtype, Float32Array.from({ length: m * shape.n }, (_, i) => Math.fround(gamma[i % shape.n]! * run.out[i]!)));
  let sumsq = run.normSumsq !== undefined && run.normSumsq.length === m * chunks;
  for (let r = 0; sumsq && r < m; r++) {
    for (let c = 0; c < chunks; c++) sumsq &&= Object.is(run.normSumsq![r * chunks + c], chunkTree(run.out, r * shape.n + c * CHUNK, Math.min(CHUNK, shape.n - c * CHUNK)));
  }
  return { normOut: run.normOut !== undefined && Buffer.from(run.normOut.buffer, run.normOut.byteOffset, run.normOut.byteLength).equals(Buffer.from(want.buffer)), sumsq };
}

/** The consumer's out bitwise fround(fround(acc * inv) + bias) of its own unscaled acc. */
function scaledExactly(acc: Float32Array, scaled: Float32Array, p: GemmProblem, sumsq: Float64Array, m: number, k: number): boolean {
  const n = p.bias.length;
  for (let r = 0; r < m; r++) {
    const inv = invRms(sumsq, r, k);
    for (let c = 0; c < n; c++) if (!Object.is(scaled[r * n + c], Math.fround(Math.fround(acc[r * n + c]! * inv) + p.bias[c]!))) return false;
  }
  return true;
}

function scaledReference(shape: GemmShape, p: GemmProblem, rows: number, splitK: number, sumsq: Float64Array): { ref: Float64Array; bound: Float64Array } {
  const { ref, bound } = referenceGemm(shape, p, rows, splitK);
  const n = shape.n, out = new Float64Array(rows * n), b = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const inv = invRms(sumsq, r, shape.k);
    for (let c = 0; c < n; c++) {
      const i = r * n + c, s = inv * ref[i]!;
      out[i] = s + p.bias[c]!;
      b[i] = 1.01 * (inv * bound[i]! + 2 ** -24 * (Math.abs(s) + inv * bound[i]! + Math.abs(out[i]!))) + 1e-30;
    }
  }
  return { ref: out, bound: b };
}

/** silu(gate) * up of the scaled reference in natural column order, and its bound (gemm-fold-norms.test.ts's). */
function swigluReference(ref: Float64Array, bound: Float64Array, rows: number, n: number): { ref: Float64Array; bound: Float64Array } {
  const half = n / 2, out = new Float64Array(rows * half), b = new Float64Array(rows * half);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < half; c++) {
      const g = ref[r * n + c]!, u = ref[r * n + half + c]!, bg = bound[r * n + c]!, bu = bound[r * n + half + c]!;
      const silu = g / (1 + Math.exp(-g));
      out[r * half + c] = silu * u;
      const f32 = 1.1 * bg * (Math.abs(u) + bu) + (Math.abs(silu) + 1.1 * bg) * bu + 8 * 2 ** -24 * Math.abs(silu * u);
      b[r * half + c] = f32 + 2 ** -8 * (Math.abs(silu * u) + f32) + 1e-30;
    }
  }
  return { ref: out, bound: b };
}

// ---- runs -----------------------------------------------------------------------------------

interface Runs { producer: Sm90aRun; acc: Sm90aRun; scaled: Sm90aRun }
const sm90aRuns = new Map<string, Runs>();  // `${split}:${m}`
const mmaRuns = new Map<string, { producer: GemmRunResult; scaled: GemmRunResult }>();
const swiRuns = new Map<number, { sm90a: Sm90aRun; mma: GemmRunResult }>();
let t256: Runs | undefined;
/** The units whose kernels ptxas checks: every one built here but the mutants'. */
const units: Sm90aUnit[] = [];

interface Mutant { readonly name: string; readonly from: string; readonly to: string; readonly run: 'producer' | 'consumer' }
const MUTANTS: readonly Mutant[] = [
  {
    name: 'the chunk tree summed in another order (neighbouring columns first)',
    from: '(sq(0) + sq(4)) + (sq(2) + sq(6));\n      norm_c[local * 8 + (j ^ ((local >> 1) & 7))] = lo + ((sq(1) + sq(5)) + (sq(3) + sq(7)));',
    to: '(sq(0) + sq(1)) + (sq(2) + sq(3));\n      norm_c[local * 8 + (j ^ ((local >> 1) & 7))] = lo + ((sq(4) + sq(5)) + (sq(6) + sq(7)));',
    run: 'producer',
  },
  {
    name: 'the scale applied after the bias',
    from: 'inv = inv_tile[r - t0], v = __fmul_rn(v, inv);',
    to: 'inv = inv_tile[r - t0], v = a.bias != nullptr ? __fmul_rn(v + a.bias[n], inv) - a.bias[n] : __fmul_rn(v, inv);',
    run: 'consumer',
  },
  { name: 'no barrier between staging y and summing it', from: '    gemm_group_sync<S::kConsumers>(group);  // the chunk\'s y is staged (and the last chunk\'s sums read)\n', to: '', run: 'producer' },
  { name: 'no barrier before the staged y is overwritten by the next chunk', from: '    gemm_group_sync<S::kConsumers>(group);  // the residue sums are in; y may be staged again\n', to: '', run: 'producer' },
];
const mutantCaught = new Map<string, string>();

const problems = { prod: randomGemmProblem(PROD, X_ROWS, 41), swi: randomGemmProblem(SWI, X_ROWS, 51), t256: randomGemmProblem(T256, T256_M, 57) };
const sums = { prod: randomSumsq(X_ROWS, PROD.k, 47), swi: randomSumsq(X_ROWS, SWI.k, 53) };
// The upload interleaves gate | up rows and the bias alike; the reference reads both in natural order.
const swiInterleaved: GemmProblem = { ...problems.swi, w: interleaveGateUp(problems.swi.w, SWI.k, GEMM_SWIGLU_INTERLEAVE), bias: interleaveGateUp(problems.swi.bias, 1, GEMM_SWIGLU_INTERLEAVE) };

async function buildSm90a(dir: string, shape: GemmShape, ms: readonly number[], splitK: number, roles: readonly string[], objects: readonly string[], mutant?: Mutant): Promise<{ unit: Sm90aUnit; exe: string; kernelOf: (m: number) => Sm90aUnit['kernels'][number] }> {
  mkdirSync(dir, { recursive: true });
  const unit = writeSm90aUnit(dir, shape, ms, splitK, roles);
  if (mutant) {
    const header = join(unit.cudaDir, 'tidarc_gemm_sm90a.cuh');
    const text = readFileSync(header, 'utf8');
    if (!text.includes(mutant.from)) throw new Error(`mutant "${mutant.name}": pattern not found`);
    writeFileSync(header, text.replace(mutant.from, mutant.to));
  }
  if (!mutant) units.push(unit);
  const exe = join(dir, 'gemm');
  await buildSm90aHarness(cxx.found ? cxx.tool.path : 'g++', shape, unit, objects, exe);
  return { unit, exe, kernelOf: (m) => unit.kernels.find((k) => k.tileT === sm90aTokenTile(m))! };
}

const producerCall = (m: number, shape: GemmShape) => ({ rows: m, bias: true, accumulate: true, normOut: { weight: gammaOf(shape.n) } });
const consumerCall = (m: number, sumsq: Float64Array, cols: number) => ({ rows: m, bias: true, rowScale: { sumsq, cols, eps: EPS } });

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  type Job = { kind: 'sm90a' | 'mma'; splitK: number } | { kind: 'swi' } | { kind: 't256' } | { kind: 'mutant'; mutant: Mutant };
  const jobs: Job[] = [
    ...SPLITS.flatMap((splitK): Job[] => [{ kind: 'sm90a', splitK }, { kind: 'mma', splitK }]), { kind: 'swi' }, { kind: 't256' },
    ...MUTANTS.map((mutant): Job => ({ kind: 'mutant', mutant })),
  ];
  await runPool(jobs, 2, async (job, i) => {
    const dir = join(root, `job${i}`);
    if (job.kind === 'sm90a') {
      // o and qkv of one shape: the unit has the producer's and the consumer's code.
      const b = await buildSm90a(dir, PROD, MS, job.splitK, ['o', 'qkv'], objects);
      for (const m of MS) {
        const k = b.kernelOf(m), launches = job.splitK > 1 ? { launches: 2 } : {};
        sm90aRuns.set(`${job.splitK}:${m}`, {
          producer: await runSm90a(b.exe, dir, PROD, b.unit, k, problems.prod, { ...producerCall(m, PROD), ...launches }),
          acc: await runSm90a(b.exe, dir, PROD, b.unit, k, problems.prod, { rows: m }),
          scaled: await runSm90a(b.exe, dir, PROD, b.unit, k, problems.prod, { ...consumerCall(m, sums.prod, PROD.k), ...launches }),
        });
      }
    } else if (job.kind === 'mma') {
      mkdirSync(dir, { recursive: true });
      const { source, cudaDir, plans } = writeGemmUnit(dir, PROD, MS, job.splitK, ['o', 'qkv']);
      const exe = join(dir, 'emu');
      await buildGemmEmulator(cxx.tool.path, source, cudaDir, plans, objects, exe);
      for (const plan of plans) {
        mmaRuns.set(`${job.splitK}:${plan.m}`, {
          producer: await runGemmEmulator(exe, plan, { ...gemmInputs(problems.prod, plan.m, { bias: true, accumulate: true }), normOut: { weight: gammaOf(PROD.n) } }, dir, `p${plan.m}`),
          scaled: await runGemmEmulator(exe, plan, { ...gemmInputs(problems.prod, plan.m, { bias: true }), rowScale: { sumsq: sums.prod, cols: PROD.k, eps: EPS } }, dir, `c${plan.m}`),
        });
      }
    } else if (job.kind === 'swi') {
      const b = await buildSm90a(dir, SWI, SWI_MS, 1, ['gate_up'], objects);
      const mdir = join(dir, 'mma');
      mkdirSync(mdir, { recursive: true });
      const { source, cudaDir, plans } = writeGemmUnit(mdir, SWI, SWI_MS, 1, ['gate_up']);
      await buildGemmEmulator(cxx.tool.path, source, cudaDir, plans, objects, join(mdir, 'emu'));
      for (const [i, m] of SWI_MS.entries()) {
        swiRuns.set(m, {
          sm90a: await runSm90a(b.exe, dir, SWI, b.unit, b.kernelOf(m), swiInterleaved, { ...consumerCall(m, sums.swi, SWI.k), epilogue: 1 }),
          mma: await runGemmEmulator(join(mdir, 'emu'), plans[i]!, { ...gemmInputs(swiInterleaved, m, { bias: true }), rowScale: { sumsq: sums.swi, cols: SWI.k, eps: EPS }, epilogue: 'swiglu' }, mdir, `s${m}`),
        });
      }
    } else if (job.kind === 't256') {
      const b = await buildSm90a(dir, T256, [T256_M], 2, ['o', 'qkv'], objects);
      const k = b.kernelOf(T256_M);
      t256 = {
        producer: await runSm90a(b.exe, dir, T256, b.unit, k, problems.t256, { ...producerCall(T256_M, T256), launches: 2 }),
        acc: await runSm90a(b.exe, dir, T256, b.unit, k, problems.t256, { rows: T256_M }),
        scaled: await runSm90a(b.exe, dir, T256, b.unit, k, problems.t256, consumerCall(T256_M, randomSumsq(T256_M, T256.k, 59), T256.k)),
      };
    } else if (job.kind === 'mutant') {
      const m = job.mutant, rows = 72;  // token tile 128: 72 tokens, three chunks of the staging tile
      const b = await buildSm90a(dir, PROD, [rows], 1, ['o', 'qkv'], objects, m);
      const k = b.kernelOf(rows);
      const problem = problems.prod;
      if (m.run === 'producer') {
        const run = await runSm90a(b.exe, dir, PROD, b.unit, k, problem, producerCall(rows, PROD));
        const exact = producerExact(run, PROD, rows);
        mutantCaught.set(m.name, [...Object.keys(run.counts), ...(run.completed ? [] : ['incomplete']), ...(exact.normOut ? [] : ['norm_out']), ...(exact.sumsq ? [] : ['norm_sumsq'])].join(', '));
      } else {
        const acc = await runSm90a(b.exe, dir, PROD, b.unit, k, problem, { rows });
        const scaled = await runSm90a(b.exe, dir, PROD, b.unit, k, problem, consumerCall(rows, sums.prod, PROD.k));
        mutantCaught.set(m.name, [...Object.keys(scaled.counts), ...(scaled.completed ? [] : ['incomplete']), ...(scaledExactly(acc.out, scaled.out, problem, sums.prod, rows, PROD.k) ? [] : ['scaled out'])].join(', '));
      }
    }
  });
}, 900_000);

function expectClean(run: Sm90aRun): void {
  expect(run.messages, run.messages.join('\n')).toEqual([]);
  expect(run.completed).toBe(true);
}
const bytes = (a: Float32Array | Uint16Array | Float64Array, count: number): Buffer => Buffer.from(a.buffer, a.byteOffset, count * a.BYTES_PER_ELEMENT);

describe.skipIf(!cxx.found)('sm_90a fold-norms producer (o): out, norm_out = round16(gamma * out), norm_sumsq by the fixed tree', () => {
  test.for(SPLITS.flatMap((s) => MS.map((m) => [`split-K ${s}, M = ${m}`, s, m] as const)))('%s: within float64, norm_out and norm_sumsq exactly the definition over out', ([, s, m]) => {
    const run = sm90aRuns.get(`${s}:${m}`)!.producer;
    expectClean(run);
    const { ref, bound } = referenceGemm(PROD, problems.prod, m, s, { bias: true, accumulate: true });
    expect(worstRatio(run.out, ref, bound)).toBeLessThanOrEqual(1);
    expect(producerExact(run, PROD, m)).toEqual({ normOut: true, sumsq: true });
  });

  test.for(SPLITS.map((s) => [s] as const))('split-K %i: out, norm_out and norm_sumsq bitwise the same row at M = 1, 20, 72 and 272', ([s]) => {
    const big = sm90aRuns.get(`${s}:272`)!.producer, chunks = Math.ceil(PROD.n / CHUNK);
    for (const m of MS) {
      const r = sm90aRuns.get(`${s}:${m}`)!.producer;
      expect(bytes(r.out, m * PROD.n).equals(bytes(big.out, m * PROD.n)), `out M = ${m}`).toBe(true);
      expect(bytes(r.normOut!, m * PROD.n).equals(bytes(big.normOut!, m * PROD.n)), `norm_out M = ${m}`).toBe(true);
      expect(bytes(r.normSumsq!, m * chunks).equals(bytes(big.normSumsq!, m * chunks)), `norm_sumsq M = ${m}`).toBe(true);
    }
  });

  test('the 256-token tile (N = 137: the second warpgroup of the last weight tile wholly past N), split-K 2, M = 200', () => {
    expect(sm90aTokenTile(T256_M)).toBe(256);
    expectClean(t256!.producer);
    const { ref, bound } = referenceGemm(T256, problems.t256, T256_M, 2, { bias: true, accumulate: true });
    expect(worstRatio(t256!.producer.out, ref, bound)).toBeLessThanOrEqual(1);
    expect(producerExact(t256!.producer, T256, T256_M)).toEqual({ normOut: true, sumsq: true });
  });
});

describe.skipIf(!cxx.found)('sm_90a fold-norms consumer (qkv, gate_up): rows scaled by 1 / rms before the bias and SwiGLU', () => {
  test.for(SPLITS.flatMap((s) => MS.map((m) => [`split-K ${s}, M = ${m}`, s, m] as const)))('%s: bitwise fround(fround(acc * inv) + bias), within float64', ([, s, m]) => {
    const { acc, scaled } = sm90aRuns.get(`${s}:${m}`)!;
    expectClean(acc);
    expectClean(scaled);
    expect(scaledExactly(acc.out, scaled.out, problems.prod, sums.prod, m, PROD.k)).toBe(true);
    const { ref, bound } = scaledReference(PROD, problems.prod, m, s, sums.prod);
    expect(worstRatio(scaled.out, ref, bound)).toBeLessThanOrEqual(1);
  });

  test('the 256-token tile, split-K 2, M = 200: bitwise fround(fround(acc * inv) + bias)', () => {
    expectClean(t256!.scaled);
    expect(scaledExactly(t256!.acc.out, t256!.scaled.out, problems.t256, randomSumsq(T256_M, T256.k, 59), T256_M, T256.k)).toBe(true);
  });

  test.for(SWI_MS.map((m) => [m] as const))('SwiGLU over interleaved gate | up, M = %i: silu(inv g + b) * (inv u + b) within float64', ([m]) => {
    const run = swiRuns.get(m)!.sm90a;
    expectClean(run);
    const { ref, bound } = scaledReference(SWI, problems.swi, m, 1, sums.swi);
    const s = swigluReference(ref, bound, m, SWI.n);
    const out = decode(SWI.dtype, new Uint16Array(run.out.buffer, run.out.byteOffset, m * SWI.n / 2));
    expect(worstRatio(Float32Array.from(out), s.ref, s.bound)).toBeLessThanOrEqual(1);
  });
});

describe.skipIf(!cxx.found)('sm_90a and mma.sync fold-norms agree bit for bit (a 9.0 device may run either family)', () => {
  test.for(SPLITS.flatMap((s) => MS.map((m) => [`split-K ${s}, M = ${m}`, s, m] as const)))('%s: out, norm_out, norm_sumsq and the scaled out', ([, s, m]) => {
    const a = sm90aRuns.get(`${s}:${m}`)!, b = mmaRuns.get(`${s}:${m}`)!;
    expect(b.producer.findings).toEqual([]);
    const chunks = Math.ceil(PROD.n / CHUNK);
    expect(bytes(a.producer.out, m * PROD.n).equals(bytes(b.producer.out, m * PROD.n)), 'out').toBe(true);
    expect(bytes(a.producer.normOut!, m * PROD.n).equals(bytes(b.producer.normOut!, m * PROD.n)), 'norm_out').toBe(true);
    expect(bytes(a.producer.normSumsq!, m * chunks).equals(bytes(b.producer.normSumsq!, m * chunks)), 'norm_sumsq').toBe(true);
    expect(bytes(a.scaled.out, m * PROD.n).equals(bytes(b.scaled.out, m * PROD.n)), 'scaled out').toBe(true);
  });

  test.for(SWI_MS.map((m) => [m] as const))('SwiGLU with the row scale, M = %i', ([m]) => {
    const { sm90a, mma } = swiRuns.get(m)!;
    const half = new Uint16Array(sm90a.out.buffer, sm90a.out.byteOffset, m * SWI.n / 2);
    expect(Buffer.from(encode(SWI.dtype, mma.out).buffer).equals(Buffer.from(half.buffer, half.byteOffset, half.byteLength))).toBe(true);
  });
});

describe.skipIf(!cxx.found || !sm90a)('nvcc -arch=sm_90a: the fold-norms units', () => {
  test('every kernel without spills, stack or serialized wgmmas', async () => {
    expect(units.length).toBeGreaterThanOrEqual(4);
    for (const [i, unit] of units.entries()) {
      const { stderr } = await exec(nvccPath, ['-std=c++17', '-O3', '-cubin', '-Xptxas', '-v', ARCHES.sm_90a.gencode, `-I${unit.cudaDir}`, '-o', join(root, `u${i}.cubin`), unit.source], { maxBuffer: 64 << 20 });
      expect(ptxasPerformanceLosses(stderr)).toEqual([]);
      const report = parsePtxasReport(stderr)['sm_90a'] ?? {};
      for (const k of unit.kernels) {
        const r = report[k.symbol];
        expect(r, k.symbol).toBeDefined();
        expect(r!.spillStoreBytes + r!.spillLoadBytes + r!.stackBytes, k.symbol).toBe(0);
        console.log(`${k.symbol} (split-K ${unit.reduction.splitK}): ${r!.registers} registers`);
      }
    }
  }, 300_000);
});

describe.skipIf(!cxx.found)('mutants of the sm_90a fold-norms code are caught', () => {
  test.for(MUTANTS.map((m) => [m.name] as const))('%s', ([name]) => {
    const by = mutantCaught.get(name) ?? '';
    console.log(`${name}: caught by ${by || 'nothing'}`);
    expect(by, 'nothing caught it').not.toBe('');
  });
});
