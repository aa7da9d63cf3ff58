/**
 * The sm_90a GEMM (templates/cuda/tidarc_gemm_sm90a.cuh: TMA producer warp, 4-stage mbarrier
 * ring, two wgmma consumer warpgroups; out^T = W x^T) rendered by src/codegen/gemm-sm90a.ts and
 * compiled UNCHANGED onto the SIMT emulator, against float64, with no emulator findings, at
 * M = 1, 20, 72, 272 (token tiles 8, 32, 128 and 2 x 136), bias and residual add:
 *   - bf16, N = 200 (a full and a partial 128-row weight tile), K = 520 (9 k tiles, the last
 *     partial), split-K 3 (parts of 3 k tiles, summed inside the launch by each output tile's
 *     last CTA), launched twice in a row on the same counters (the old out restored): the
 *     first launch must leave them 0;
 *   - fp16, N = 160, K = 392 (7 k tiles: the 4-stage ring wraps), split-K 1, a gate | up
 *     weight: the plain epilogue, and SwiGLU over the rows interleaved as the upload does at
 *     M = 1 and 72;
 *   - the 256-token tile (M = 137 to 256, and multiples of 256: prefill chunks), which the M
 *     above never pick: bf16, N = 137 (a full and a 9-row weight tile of 128 rows), K = 200 (4 k
 *     tiles, the last 8 wide), M = 200 (one partial token tile) and 512 (two), split-K 1 and 2
 *     (parts of 2 k tiles, launched twice on the same counters; 168 registers, the cap for 288
 *     threads);
 *   - batch invariance by construction: every row bitwise the same at M = 1, 20, 72 and 272,
 *     and at M = 200 and 512 on the 256-token tile;
 *   - nvcc -arch=sm_90a: every kernel without spills or stack, and no ptxas "Potential
 *     Performance Loss" (C7520's serialized wgmmas and kin) (registers, shared memory and
 *     stages printed); each unit's kernels checked against that unit's report (the two
 *     256-token units share their symbol).
 * Tagged: g++, nvcc.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePtxasReport, ptxasPerformanceLosses, type PtxasByArch } from '../../src/build/ptxas.js';
import { runPool } from '../../src/build/pool.js';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { GEMM_SWIGLU_INTERLEAVE, interleaveGateUp } from '../../src/codegen/gemm-epilogue.js';
import type { GemmShape } from '../../src/codegen/gemm-plan.js';
import { sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { type DType, decode } from '../../src/util/dtype.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { type GemmProblem, randomGemmProblem, referenceGemm, worstRatio } from '../helpers/gemm.js';
import { type Sm90aRun, type Sm90aUnit, buildSm90aHarness, runSm90a, writeSm90aUnit } from './gemm-sm90a-emu.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const nvcc = await findNvcc();
const sm90a = nvcc.found ? (await exec(nvcc.tool.path, ['--list-gpu-arch'])).stdout.includes('compute_90') : false;
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-sm90a-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const PLAIN: GemmShape = { n: 200, k: 520, dtype: 'bf16' };
const MS = [1, 20, 72, 272];
const SPLITS = [1, 3] as const;
const I = 80;
/** The shape each split-K runs on: split-K 1 on the gate | up weight, with SwiGLU too. */
const SWIGLU: GemmShape = { n: 2 * I, k: 392, dtype: 'fp16' };
const SHAPE_OF = { 1: SWIGLU, 3: PLAIN } as const;
const SWIGLU_MS = [1, 72];
/** The SwiGLU output's element type (tidarc_gemm_abi.h: 16-bit from ABI 4 on, float32 before). */
const SWIGLU_16BIT = Number(/TIDARC_GEMM_ABI_VERSION (\d+)/.exec(readTemplateFile('cuda/tidarc_gemm_abi.h'))![1]) >= 4;
/** The 256-token tile's shape: odd N, K not a whole number of k tiles. */
const T256: GemmShape = { n: 137, k: 200, dtype: 'bf16' };
const T256_MS = [200, 512];
const T256_SPLITS = [1, 2] as const;

interface Built { readonly unit: Sm90aUnit; readonly exe: string; readonly dir: string }
const plainRuns = new Map<string, Sm90aRun>();  // `${split}:${m}`
const swigluRuns = new Map<number, Sm90aRun>();
const t256Runs = new Map<string, Sm90aRun>();  // `${split}:${m}`
/** sm_90a's ptxas report of each unit of `kernels`, by unit. */
const ptxas: PtxasByArch[string][] = [];
let losses: string[] = [];  // ptxas's performance-loss lines, every unit
const kernels: { shape: GemmShape; unit: Sm90aUnit }[] = [];

async function build(name: string, shape: GemmShape, ms: readonly number[], splitK: number, roles: readonly string[], objects: readonly string[]): Promise<Built> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const unit = writeSm90aUnit(dir, shape, ms, splitK, roles);
  kernels.push({ shape, unit });
  const exe = join(dir, 'gemm');
  await buildSm90aHarness(cxx.found ? cxx.tool.path : 'g++', shape, unit, objects, exe);
  return { unit, exe, dir };
}

const plain = randomGemmProblem(PLAIN, Math.max(...MS), 5);
const t256 = randomGemmProblem(T256, Math.max(...T256_MS), 7);
const swigluNatural = randomGemmProblem(SWIGLU, Math.max(...MS), 6);
// The upload interleaves the weight rows and the bias alike; the reference reads both in natural order.
const swigluInterleaved: GemmProblem = { ...swigluNatural, w: interleaveGateUp(swigluNatural.w, SWIGLU.k, GEMM_SWIGLU_INTERLEAVE), bias: interleaveGateUp(swigluNatural.bias, 1, GEMM_SWIGLU_INTERLEAVE) };

beforeAll(async () => {
  if (!cxx.found) return;
  // The emulator runtime's objects, linked unchanged: built once for every file (test/helpers/emulated-driver.ts).
  const objects = await sharedEmulatorRuntime();
  await runPool([...SPLITS], 2, async (s) => {
    const shape = SHAPE_OF[s];
    const b = await build(`split${s}`, shape, MS, s, s === 1 ? ['gate_up'] : ['test'], objects);
    const kernelOf = (m: number) => b.unit.kernels.find((k) => k.tileT === sm90aTokenTile(m))!;
    for (const m of MS) plainRuns.set(`${s}:${m}`, await runSm90a(b.exe, b.dir, shape, b.unit, kernelOf(m), s === 1 ? swigluNatural : plain, { rows: m, bias: true, accumulate: true, ...(s > 1 ? { launches: 2 } : {}) }));
    if (s === 1) for (const m of SWIGLU_MS) swigluRuns.set(m, await runSm90a(b.exe, b.dir, SWIGLU, b.unit, kernelOf(m), swigluInterleaved, { rows: m, bias: true, epilogue: 1 }));
  });
  await runPool([...T256_SPLITS], 2, async (s) => {
    const b = await build(`t256-split${s}`, T256, T256_MS, s, ['test'], objects);
    const kernel = b.unit.kernels.find((k) => k.tileT === 256)!;
    for (const m of T256_MS) t256Runs.set(`${s}:${m}`, await runSm90a(b.exe, b.dir, T256, b.unit, kernel, t256, { rows: m, bias: true, accumulate: true, ...(s > 1 ? { launches: 2 } : {}) }));
  });
  if (sm90a && nvcc.found) {
    for (const [i, { unit }] of kernels.entries()) {
      const { stderr } = await exec(nvcc.tool.path, ['-std=c++17', '-O3', '-cubin', '-Xptxas', '-v', ARCHES.sm_90a.gencode, `-I${unit.cudaDir}`, '-o', join(root, `u${i}.cubin`), unit.source], { maxBuffer: 64 << 20 });
      ptxas[i] = parsePtxasReport(stderr)['sm_90a'] ?? {};
      losses = [...losses, ...ptxasPerformanceLosses(stderr)];
    }
  }
}, 600_000);

function expectClean(run: Sm90aRun): void {
  expect(run.messages, run.messages.join('\n')).toEqual([]);
  expect(run.completed).toBe(true);
}

describe.skipIf(!cxx.found)('sm_90a GEMM on the emulator', () => {
  test.for(SPLITS.flatMap((s) => MS.map((m) => [`split-K ${s} (${SHAPE_OF[s].dtype} ${SHAPE_OF[s].n}x${SHAPE_OF[s].k}), M = ${m}`, s, m] as const)))('%s: bias + residual vs float64, no findings', ([, s, m]) => {
    const run = plainRuns.get(`${s}:${m}`)!;
    expectClean(run);
    const { ref, bound } = referenceGemm(SHAPE_OF[s], s === 1 ? swigluNatural : plain, m, s, { bias: true, accumulate: true });
    expect(worstRatio(run.out, ref, bound)).toBeLessThanOrEqual(1);
  });

  test.for(SPLITS.map((s) => [s] as const))('split-K %i: every row bitwise the same at M = 1, 20, 72 and 272', ([s]) => {
    const n = SHAPE_OF[s].n;
    for (const [i, small] of MS.entries()) {
      const a = plainRuns.get(`${s}:${small}`)!.out;
      for (const big of MS.slice(i + 1)) {
        const b = plainRuns.get(`${s}:${big}`)!.out;
        const rowsA = new Uint32Array(a.buffer, a.byteOffset, small * n), rowsB = new Uint32Array(b.buffer, b.byteOffset, small * n);
        expect(rowsB, `M = ${small} vs M = ${big}`).toEqual(rowsA);
      }
    }
  });

  test.for(SWIGLU_MS.map((m) => [m] as const))('SwiGLU over interleaved gate | up, M = %i: silu(gate) * up vs float64, no findings', ([m]) => {
    const run = swigluRuns.get(m)!;
    expectClean(run);
    const { ref, bound } = referenceSwiglu(swigluNatural, m, SWIGLU.dtype);
    const out = SWIGLU_16BIT ? decode(SWIGLU.dtype, new Uint16Array(run.out.buffer, run.out.byteOffset, m * I)) : run.out;
    expect(worstRatio(Float32Array.from(out), ref, bound)).toBeLessThanOrEqual(1);
  });

  test('SwiGLU: row 0 bitwise the same at M = 1 and 72', () => {
    const a = swigluRuns.get(1)!.out, b = swigluRuns.get(72)!.out;
    expect(new Uint8Array(b.buffer, b.byteOffset, I * 4).slice(0, SWIGLU_16BIT ? 2 * I : 4 * I)).toEqual(new Uint8Array(a.buffer, a.byteOffset, I * 4).slice(0, SWIGLU_16BIT ? 2 * I : 4 * I));
  });

  test('M = 200 and 512 take the 256-token tile', () => {
    expect(T256_MS.map(sm90aTokenTile)).toEqual([256, 256]);
  });

  test.for(T256_SPLITS.flatMap((s) => T256_MS.map((m) => [`split-K ${s} (bf16 ${T256.n}x${T256.k}), M = ${m}`, s, m] as const)))('256-token tile, %s: bias + residual vs float64, no findings', ([, s, m]) => {
    const run = t256Runs.get(`${s}:${m}`)!;
    expectClean(run);
    const { ref, bound } = referenceGemm(T256, t256, m, s, { bias: true, accumulate: true });
    expect(worstRatio(run.out, ref, bound)).toBeLessThanOrEqual(1);
  });

  test.for(T256_SPLITS.map((s) => [s] as const))('256-token tile, split-K %i: every row bitwise the same at M = 200 and 512', ([s]) => {
    const a = t256Runs.get(`${s}:200`)!.out, b = t256Runs.get(`${s}:512`)!.out;
    expect(new Uint32Array(b.buffer, b.byteOffset, 200 * T256.n)).toEqual(new Uint32Array(a.buffer, a.byteOffset, 200 * T256.n));
  });

  test.skipIf(!sm90a)('nvcc -arch=sm_90a: every kernel without spills, stack or serialized wgmmas', () => {
    expect(losses).toEqual([]);  // e.g. C7520: a wgmma on a divergent path serializes them all
    const symbols = kernels.flatMap(({ unit }) => unit.kernels.map((k) => k.symbol));
    for (const [i, { unit }] of kernels.entries()) {
      for (const k of unit.kernels) {
        const r = ptxas[i]?.[k.symbol];
        expect(r, k.symbol).toBeDefined();
        expect(r!.spillStoreBytes + r!.spillLoadBytes + r!.stackBytes, k.symbol).toBe(0);
        console.log(`${k.symbol} (split-K ${unit.reduction.splitK}): ${r!.registers} registers, ${k.sharedBytes} bytes of dynamic shared memory, ${k.stages} stages, ${k.threads} threads`);
      }
    }
    expect(new Set(symbols).size).toBeGreaterThanOrEqual(5);
    // The 256-token tile at both split-K counts (the split one at the 168-register cap).
    expect(kernels.flatMap(({ unit }) => unit.kernels.filter((k) => k.tileT === 256).map(() => unit.reduction.splitK)).sort()).toEqual([1, 2]);
  });
});

/** float64 silu(gate) * up of the natural-layout reference with bias, and its bound (float32 roundings, then the store's rounding). */
function referenceSwiglu(p: GemmProblem, rows: number, dtype: DType): { ref: Float64Array; bound: Float64Array } {
  const { ref, bound } = referenceGemm(SWIGLU, p, rows, 1, { bias: true });
  const out = new Float64Array(rows * I), b = new Float64Array(rows * I);
  const store = SWIGLU_16BIT ? (dtype === 'bf16' ? 2 ** -8 : 2 ** -11) : 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < I; c++) {
      const g = ref[r * SWIGLU.n + c]!, u = ref[r * SWIGLU.n + I + c]!;
      const bg = bound[r * SWIGLU.n + c]!, bu = bound[r * SWIGLU.n + I + c]!;
      const silu = g / (1 + Math.exp(-g));
      out[r * I + c] = silu * u;
      const f32 = 1.1 * bg * (Math.abs(u) + bu) + (Math.abs(silu) + 1.1 * bg) * bu + 8 * 2 ** -24 * Math.abs(silu * u);
      b[r * I + c] = f32 + store * (Math.abs(silu * u) + f32) + (dtype === 'fp16' && SWIGLU_16BIT ? 2 ** -25 : 0) + 1e-30;
    }
  }
  return { ref: out, bound: b };
}
