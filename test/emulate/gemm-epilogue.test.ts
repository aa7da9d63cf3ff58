/**
 * The fused epilogues of the generated GEMMs (tidarc_gemm_abi.h), compiled UNCHANGED onto the
 * SIMT emulator, against float64:
 *   - SwiGLU: gate | up (I = 104: N = 208, a full and a partial N tile; K = 1032 so split-K 3
 *     has parts of 6, 6 and 5 k tiles), rows interleaved as uploadWeights does; out [M, I] =
 *     silu(gate) * up, stored as bf16, within the float32 bound plus half a bf16 ulp (below) at M = 1, 20, 72, with a bias too, split-K
 *     1 and 3; bitwise the same row at every M.
 *   - Row statistics (lm_head, greedy): N = 300 (three tiles, the last partial), K = 264, at
 *     M = 1, 20, 72 and 272, split-K 1 and 3, with a tie across tiles and inside one (equal
 *     weight rows give bitwise equal logits), a NaN row, and a row of +-inf and NaN logits:
 *     argmax and max equal the rule of tidarc_op_row_stats applied to the plain kernel's own
 *     logits, and argmax, max, lse agree with float64; the statistics are bitwise the same
 *     row at every M.
 *   - Mutants (gate and up swapped, the split-K sum reading a neighbour column, a short butterfly, a
 *     merge that drops a lane) are caught.
 * No emulator findings allowed. Tagged: g++.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import { GEMM_SWIGLU_INTERLEAVE, interleaveGateUp } from '../../src/codegen/gemm-epilogue.js';
import type { GemmPlan, GemmShape } from '../../src/codegen/gemm-plan.js';
import { buildGemmEmulator, type GemmRunResult, runGemmEmulator } from '../../src/emulate/gemm-emulator.js';
import { encode } from '../../src/util/dtype.js';
import { type GemmProblem, gemmInputs, randomGemmProblem, referenceGemm, worstRatio, writeGemmUnit } from '../helpers/gemm.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-gemm-epi-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const I = 104;
const SWIGLU: GemmShape = { n: 2 * I, k: 1032, dtype: 'bf16' };
const SWIGLU_MS = [1, 20, 72];
const STATS: GemmShape = { n: 300, k: 264, dtype: 'bf16' };
const STATS_MS = [1, 20, 72, 272];
const SPLITS = [1, 3] as const;

// ---- SwiGLU -------------------------------------------------------------------------------

/** float64 silu(gate) * up of the natural-layout reference, and its bound from the gate and up bounds. */
function referenceSwiglu(p: GemmProblem, rows: number, splitK: number, bias: boolean): { ref: Float64Array; bound: Float64Array } {
  const { ref, bound } = referenceGemm(SWIGLU, p, rows, splitK, { bias });
  const out = new Float64Array(rows * I), b = new Float64Array(rows * I);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < I; c++) {
      const g = ref[r * SWIGLU.n + c]!, u = ref[r * SWIGLU.n + I + c]!;
      const bg = bound[r * SWIGLU.n + c]!, bu = bound[r * SWIGLU.n + I + c]!;
      const silu = g / (1 + Math.exp(-g));
      out[r * I + c] = silu * u;
      // |silu'| < 1.1; then expf, 1 + e, the division and the product: a few float32 roundings;
      // then the store to bf16 (round to nearest: half an ulp, 2^-8 relative, of the result).
      const f32 = 1.1 * bg * (Math.abs(u) + bu) + (Math.abs(silu) + 1.1 * bg) * bu + 8 * 2 ** -24 * Math.abs(silu * u);
      b[r * I + c] = f32 + 2 ** -8 * (Math.abs(silu * u) + f32) + 1e-30;
    }
  }
  return { ref: out, bound: b };
}

interface SwigluRow { splitK: number; m: number; bias: boolean; run: GemmRunResult; worst: number }
const swigluRows: SwigluRow[] = [];

// ---- row statistics -----------------------------------------------------------------------

const TIE_ROW = 3, NAN_ROW = 5, INF_ROW = 8;
/** Weight rows equal to row 7: a tie inside tile 0 (7, 40) and across tiles (7, 130, 298). */
const TIE_COLS = [7, 40, 130, 298];

/** A problem whose row TIE_ROW peaks at the equal weight rows, NAN_ROW is all NaN and INF_ROW is +-inf with NaN where w[:, 0] = 0. */
function statsProblem(rows: number): GemmProblem {
  const p = randomGemmProblem(STATS, rows, 21);
  const { n, k } = STATS;
  const w = new Float32Array(n * k);
  for (let c = 0; c < n; c++) for (let i = 0; i < k; i++) w[c * k + i] = 0.05 * Math.sin(1.3 * c + 0.7 * i + c * i * 0.01);
  for (const c of TIE_COLS) for (let i = 0; i < k; i++) w[c * k + i] = 0.2 * Math.cos(0.37 * i);
  // Column 0 of w: -0.5, 0, 0.5, ... so x = +inf there gives -inf, NaN (inf * 0), +inf logits.
  for (let c = 0; c < n; c++) w[c * k] = ((c % 3) - 1) * 0.5;
  const x = p.x.slice();
  for (let i = 0; i < k; i++) x[TIE_ROW * k + i] = (i === 0 ? 0 : 4 * Math.cos(0.37 * i));
  x[NAN_ROW * k + 17] = Number.NaN;
  x[INF_ROW * k] = Number.POSITIVE_INFINITY;
  return { ...p, x, w: encode(STATS.dtype, w) };
}

/** tidarc_op_row_stats's rule on float32 logits: first maximum, NaN the maximum; lse in float64. */
function rowRule(logits: ArrayLike<number>, from: number, n: number): { argmax: number; max: number; lse: number } {
  let best = -Infinity, at = 0;
  for (let c = 0; c < n; c++) {
    const v = logits[from + c]!;
    if (Number.isNaN(best)) break;
    if (Number.isNaN(v) || v > best) best = v, at = c;
  }
  if (!Number.isFinite(best)) return { argmax: at, max: best, lse: best };
  let s = 0;
  for (let c = 0; c < n; c++) s += Math.exp(logits[from + c]! - best);
  return { argmax: at, max: best, lse: best + Math.log(s) };
}

interface StatsRow { splitK: number; m: number; stats: GemmRunResult; plain: GemmRunResult; ref: Float64Array; bound: Float64Array }
const statsRows: StatsRow[] = [];

// ---- mutants ------------------------------------------------------------------------------

interface Mutant { readonly name: string; readonly from: string; readonly to: string; readonly unit: 'swiglu' | 'stats'; readonly splitK: number }
const MUTANTS: readonly Mutant[] = [
  { name: 'gate and up swapped in the epilogue', from: 'gemm_store_swiglu<C>(a, r, n, v, acc[i][j ^ 1][2 * h + e])', to: 'gemm_store_swiglu<C>(a, r, n, acc[i][j ^ 1][2 * h + e], v)', unit: 'swiglu', splitK: 1 },
  { name: "the split-K sum reads the other parts' partials of the neighbour column", from: 'ld_global_cg_f32(a.workspace + s * part + static_cast<size_t>(r) * C::kN + n)', to: 'ld_global_cg_f32(a.workspace + s * part + static_cast<size_t>(r) * C::kN + (n ^ 1))', unit: 'swiglu', splitK: 3 },
  { name: "a tile's butterfly skips the other half-warp", from: 'for (int s = 16; s > 0; s /= 2) {\n    const float ov = shfl_xor(best, s);', to: 'for (int s = 8; s > 0; s /= 2) {\n    const float ov = shfl_xor(best, s);', unit: 'stats', splitK: 1 },
  { name: "the merge drops lane 0's tiles", from: 'for (int l = 0; l < 32; ++l) total', to: 'for (int l = 1; l < 32; ++l) total', unit: 'stats', splitK: 3 },
];
const mutantCaught = new Map<string, boolean>();

async function buildUnit(dir: string, shape: GemmShape, ms: readonly number[], splitK: number, roles: readonly string[], objects: readonly string[], mutant?: Mutant): Promise<{ exe: string; plans: GemmPlan[] }> {
  const { source, cudaDir, plans } = writeGemmUnit(dir, shape, ms, splitK, roles);
  if (mutant) {
    const header = join(cudaDir, 'tidarc_gemm.cuh');
    const text = readFileSync(header, 'utf8');
    if (!text.includes(mutant.from)) throw new Error(`mutant "${mutant.name}": pattern not found`);
    writeFileSync(header, text.replace(mutant.from, mutant.to));
  }
  const exe = join(dir, 'emu');
  await buildGemmEmulator(cxx.found ? cxx.tool.path : 'g++', source, cudaDir, plans, objects, exe, roles.includes('lm_head'));
  return { exe, plans };
}

const swigluProblem = (): GemmProblem => {
  const p = randomGemmProblem(SWIGLU, Math.max(...SWIGLU_MS), 31);
  return { ...p, w: interleaveGateUp(p.w, SWIGLU.k, GEMM_SWIGLU_INTERLEAVE) };
};

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  const natural = randomGemmProblem(SWIGLU, Math.max(...SWIGLU_MS), 31);
  const interleaved = swigluProblem();
  const stats = statsProblem(Math.max(...STATS_MS));
  const jobs = [
    ...SPLITS.map((s) => ({ kind: 'swiglu' as const, splitK: s })),
    ...SPLITS.map((s) => ({ kind: 'stats' as const, splitK: s })),
    ...MUTANTS.map((m) => ({ kind: 'mutant' as const, splitK: m.splitK, mutant: m })),
  ];
  await runPool(jobs, 2, async (job, i) => {
    const dir = join(root, `job${i}`);
    if (job.kind === 'swiglu') {
      const { exe, plans } = await buildUnit(dir, SWIGLU, SWIGLU_MS, job.splitK, ['gate_up'], objects);
      for (const plan of plans) for (const bias of [false, true]) {
        const run = await runGemmEmulator(exe, plan, { ...gemmInputs(interleaved, plan.m, { bias }), epilogue: 'swiglu' }, dir, `m${plan.m}-${bias}`);
        // The bias is per fused (interleaved) column; the reference reads it in natural order.
        const naturalBias = { ...natural, bias: deinterleaveBias(interleaved.bias) };
        const { ref, bound } = referenceSwiglu(naturalBias, plan.m, job.splitK, bias);
        swigluRows.push({ splitK: job.splitK, m: plan.m, bias, run, worst: worstRatio(run.out, ref, bound) });
      }
    } else if (job.kind === 'stats') {
      const { exe, plans } = await buildUnit(dir, STATS, STATS_MS, job.splitK, ['lm_head'], objects);
      for (const plan of plans) {
        const statsRun = await runGemmEmulator(exe, plan, { ...gemmInputs(stats, plan.m), epilogue: 'rowStats' }, dir, `m${plan.m}-stats`);
        const plain = await runGemmEmulator(exe, plan, gemmInputs(stats, plan.m), dir, `m${plan.m}-plain`);
        const { ref, bound } = referenceGemm(STATS, stats, plan.m, job.splitK);
        statsRows.push({ splitK: job.splitK, m: plan.m, stats: statsRun, plain, ref, bound });
      }
    } else {
      const m = job.mutant;
      if (m.unit === 'swiglu') {
        // The main kernel's epilogue runs at split-K 1, the reduce's at split-K 3.
        const { exe, plans } = await buildUnit(dir, SWIGLU, [20], m.splitK, ['gate_up'], objects, m);
        const run = await runGemmEmulator(exe, plans[0]!, { ...gemmInputs(interleaved, 20), epilogue: 'swiglu' }, dir, 'run');
        const { ref, bound } = referenceSwiglu(natural, 20, m.splitK, false);
        mutantCaught.set(m.name, run.findings.length > 0 || worstRatio(run.out, ref, bound) > 1);
      } else {
        const { exe, plans } = await buildUnit(dir, STATS, [20], m.splitK, ['lm_head'], objects, m);
        const run = await runGemmEmulator(exe, plans[0]!, { ...gemmInputs(stats, 20), epilogue: 'rowStats' }, dir, 'run');
        const { ref, bound } = referenceGemm(STATS, stats, 20, m.splitK);
        mutantCaught.set(m.name, run.findings.length > 0 || !statsAgree(run, ref, bound, 20));
      }
    }
  });
}, 900_000);

/** Interleaved bias -> natural gate | up order (the inverse of interleaveGateUp on a column vector). */
function deinterleaveBias(b: Float32Array): Float32Array {
  const out = new Float32Array(b.length), blk = GEMM_SWIGLU_INTERLEAVE;
  for (let c = 0; c < b.length; c++) {
    const pair = Math.floor(c / (2 * blk)), isUp = Math.floor(c / blk) % 2 === 1, o = c % blk;
    out[(isUp ? I : 0) + pair * blk + o] = b[c]!;
  }
  return out;
}

/** The statistics against float64: argmax a column within the bound of the maximum, max and lse within the bound. */
function statsAgree(run: GemmRunResult, ref: Float64Array, bound: Float64Array, rows: number): boolean {
  const s = run.stats;
  if (!s || !run.completed) return false;
  const n = STATS.n;
  for (let r = 0; r < rows; r++) {
    const want = rowRule(ref, r * n, n);
    let worstBound = 0;
    for (let c = 0; c < n; c++) worstBound = Math.max(worstBound, bound[r * n + c]!);
    if (!Number.isFinite(want.max)) {
      if (!Object.is(s.max[r], Math.fround(want.max)) && !(Number.isNaN(s.max[r]) && Number.isNaN(want.max))) return false;
      if (s.argmax[r] !== want.argmax) return false;
      if (!(Number.isNaN(want.lse) ? Number.isNaN(s.lse[r]) : s.lse[r] === want.lse)) return false;
      continue;
    }
    const a = s.argmax[r]!;
    if (!(a >= 0 && a < n && ref[r * n + a]! >= want.max - 2 * worstBound)) return false;
    if (Math.abs(s.max[r]! - want.max) > worstBound) return false;
    if (Math.abs(s.lse[r]! - want.lse) > worstBound + 1e-6 * Math.max(1, Math.abs(want.lse))) return false;
  }
  return true;
}

const bits = (a: Float32Array | Int32Array, from: number, count: number): Buffer => Buffer.from(a.buffer, a.byteOffset + from * 4, count * 4);

describe.skipIf(!cxx.found)('SwiGLU in the gate_up epilogue', () => {
  test.for(SPLITS.flatMap((s) => SWIGLU_MS.flatMap((m) => [false, true].map((b) => [`split-K ${s} M=${m}${b ? ' bias' : ''}`, s, m, b] as const))))('%s: silu(gate) * up vs float64', ([, s, m, b]) => {
    const row = swigluRows.find((r) => r.splitK === s && r.m === m && r.bias === b)!;
    expect(row.run.findings, JSON.stringify(row.run.findings.slice(0, 3))).toEqual([]);
    expect(row.run.completed).toBe(true);
    expect(row.run.out).toHaveLength(m * I);
    expect(row.worst).toBeLessThanOrEqual(1);
  });
  test.for(SPLITS.map((s) => [s] as const))('split-K %s: a row is bitwise the same at M = 1, 20, 72', ([s]) => {
    const outs = SWIGLU_MS.map((m) => swigluRows.find((r) => r.splitK === s && r.m === m && !r.bias)!.run.out);
    for (const o of outs.slice(1)) expect(bits(o, 0, I).equals(bits(outs[0]!, 0, I))).toBe(true);
    expect(bits(outs[2]!, 0, 20 * I).equals(bits(outs[1]!, 0, 20 * I))).toBe(true);
  });
});

describe.skipIf(!cxx.found)('lm_head row statistics (greedy decoding without logits)', () => {
  test.for(SPLITS.flatMap((s) => STATS_MS.map((m) => [`split-K ${s} M=${m}`, s, m] as const)))('%s: argmax, max, lse', ([, s, m]) => {
    const row = statsRows.find((r) => r.splitK === s && r.m === m)!;
    expect(row.stats.findings, JSON.stringify(row.stats.findings.slice(0, 3))).toEqual([]);
    expect(row.stats.completed).toBe(true);
    const st = row.stats.stats!;
    const n = STATS.n;
    for (let r = 0; r < m; r++) {
      // Exactly tidarc_op_row_stats's rule on the plain kernel's own float32 logits.
      const own = rowRule(row.plain.out, r * n, n);
      expect(st.argmax[r], `row ${r}`).toBe(own.argmax);
      expect(Object.is(st.max[r], own.max) || (Number.isNaN(st.max[r]) && Number.isNaN(own.max)), `row ${r} max`).toBe(true);
      if (Number.isFinite(own.max)) expect(Math.abs(st.lse[r]! - own.lse), `row ${r} lse`).toBeLessThan(4e-6 * Math.max(1, Math.abs(own.lse)));
      else expect(Number.isFinite(st.lse[r]), `row ${r} lse not finite`).toBe(false);
    }
    expect(statsAgree(row.stats, row.ref, row.bound, m)).toBe(true);
    if (m > INF_ROW) {
      expect(st.argmax[TIE_ROW]).toBe(TIE_COLS[0]);  // the first of four bitwise equal maxima
      expect(Number.isNaN(st.lse[NAN_ROW]) && st.argmax[NAN_ROW] === 0).toBe(true);
      expect(st.argmax[INF_ROW]).toBe(1);  // the first NaN (inf * 0) beats +inf
      expect(Number.isFinite(st.lse[INF_ROW])).toBe(false);
    }
  });
  test.for(SPLITS.map((s) => [s] as const))('split-K %s: statistics bitwise the same row at M = 1, 20, 72, 272', ([s]) => {
    const runs = STATS_MS.map((m) => statsRows.find((r) => r.splitK === s && r.m === m)!.stats.stats!);
    for (let i = 1; i < runs.length; i++) {
      const rows = STATS_MS[i - 1]!;
      for (const key of ['argmax', 'max', 'lse'] as const) expect(bits(runs[i]![key], 0, rows).equals(bits(runs[i - 1]![key], 0, rows)), `${key} M=${STATS_MS[i]} vs ${rows}`).toBe(true);
    }
  });
});

describe.skipIf(!cxx.found)('mutants of the epilogues are caught', () => {
  test.for(MUTANTS.map((m) => [m.name] as const))('%s', ([name]) => {
    expect(mutantCaught.get(name)).toBe(true);
  });
});
