/**
 * The generated GEMMs (templates/cuda/tidarc_gemm.cuh), compiled UNCHANGED onto the SIMT
 * emulator, against the float64 reference of the 16-bit-rounded inputs: an odd N (197: a
 * partial N tile, an odd row stride), K = 1032 (16 whole k tiles of 64 and a tail of 8; split-K
 * 3 parts of 6, 6 and 5 tiles, so the pipeline refills its stages), M = 1, 2, 20 and 72 (one CTA
 * covers all rows), split-K 1 and 3, bf16 and fp16; a small shape (N = 40, K = 776) also at
 * M = 272 (three CTAs along M). The heuristic's tiles are the cost model's choice per M
 * (gemm-tile-choice.ts): 4-warp CTAs at M = 1 and 20 (64 columns, 1 x 4 warps), 8- or 4-warp
 * ones at 72 and 272; M = 2 of the odd shape runs a 128-column tile (1 x 8 warps), so the
 * invariance check below also compares both widths and both warp counts. Outputs and split-K partials start as NaN; runs with bias, with
 * accumulate (a residual), with row ids, and into three outputs (a fused q | k | v, each buffer
 * exactly its width) as well; the bias + accumulate runs launch twice in a row on the same
 * split-K counters (the sum runs in the launch, on counters each launch must leave 0). No
 * emulator findings allowed. Then batch invariance: a row's output is bitwise the same from the
 * kernels planned for M = 1, 20, 72 (and 272), while a different split-K (another reduction
 * order) does change it, so the comparison can fail. Tagged: g++.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import { type GemmShape, type GemmTile, gemmTarget, gemmTileName, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { buildGemmEmulator, type GemmRunResult, runGemmEmulator } from '../../src/emulate/gemm-emulator.js';
import { gemmInputs, randomGemmProblem, referenceGemm, worstRatio, writeGemmUnit } from '../helpers/gemm.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

const cxx = await findCxx();

interface Unit {
  readonly label: string;
  readonly shape: GemmShape;
  readonly ms: readonly number[];
  readonly splitK: number;
  /** Tiles other than the heuristic's, by M (the heuristic plans 64-column tiles here: no row statistics). */
  readonly tiles?: Readonly<Record<number, GemmTile>>;
}
/** M = 2 on a 128-column tile (the lm_head's width): its rows must be bitwise those of the 64-column kernels. */
const WIDE_AT_2: Readonly<Record<number, GemmTile>> = { 2: { blockM: 16, warpsM: 1, stages: 3 } };
const ODD: Omit<GemmShape, 'dtype'> = { n: 197, k: 1032 };
const SMALL: GemmShape = { n: 40, k: 776, dtype: 'bf16' };
const UNITS: readonly Unit[] = [
  ...(['bf16', 'fp16'] as const).flatMap((dtype) => [1, 3].map((splitK) => ({ label: `${dtype} ${ODD.n}x${ODD.k} split ${splitK}`, shape: { ...ODD, dtype }, ms: [1, 2, 20, 72], splitK, tiles: WIDE_AT_2 }))),
  ...[1, 3].map((splitK) => ({ label: `bf16 ${SMALL.n}x${SMALL.k} split ${splitK}`, shape: SMALL, ms: [1, 20, 72, 272], splitK })),
];
/** Runs of each kernel: plain (NaN-poisoned out), with bias + accumulate, with row ids, into three outputs (with both). */
const MODES = ['plain', 'bias+accumulate', 'row ids', 'three outputs'] as const;
type Mode = (typeof MODES)[number];

interface Row {
  readonly unit: Unit;
  readonly m: number;
  readonly mode: Mode;
  readonly run: GemmRunResult;
  readonly worst: number;
}
const rows: Row[] = [];
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-gemm-'));
let seconds = 0;

function optsFor(mode: Mode, m: number, n: number) {
  // Twice in a row on the same split-K counters (the old out restored): the first launch must leave them 0.
  if (mode === 'bias+accumulate') return { bias: true, accumulate: true, launches: 2 };
  // Row ids: the rows backwards, so each CTA reads activations the plain run reads elsewhere.
  if (mode === 'row ids') return { rowIds: Int32Array.from({ length: m }, (_, i) => m - 1 - i) };
  // Boundaries inside an N tile and off the fragment grid.
  if (mode === 'three outputs') return { bias: true, accumulate: true, segments: [Math.floor(n / 3), Math.floor(n / 3) + 13] as const };
  return {};
}

beforeAll(async () => {
  if (!cxx.found) return;
  const t0 = performance.now();
  const objects = await sharedEmulatorRuntime();
  await runPool(UNITS, 2, async (unit, i) => {
    const dir = join(root, `unit${i}`);
    const { source, cudaDir, plans } = writeGemmUnit(dir, unit.shape, unit.ms, unit.splitK, ['test'], unit.tiles);
    const exe = join(dir, 'emu');
    await buildGemmEmulator(cxx.tool.path, source, cudaDir, plans, objects, exe);
    const xRows = Math.max(...unit.ms);
    const problem = randomGemmProblem(unit.shape, xRows, 10 + Math.floor(i / 2));  // the split 1 and 3 units of a shape share inputs
    for (const plan of plans) {
      for (const mode of MODES) {
        const opts = optsFor(mode, plan.m, unit.shape.n);
        const run = await runGemmEmulator(exe, plan, gemmInputs(problem, plan.m, opts), dir, `m${plan.m}-${mode.replace(/\W/g, '')}`);
        const { ref, bound } = referenceGemm(unit.shape, problem, plan.m, unit.splitK, opts);
        rows.push({ unit, m: plan.m, mode, run, worst: worstRatio(run.out, ref, bound) });
      }
    }
  });
  seconds = (performance.now() - t0) / 1000;
  console.log(`emulator: ${rows.length} GEMM runs of ${UNITS.length} sources in ${seconds.toFixed(1)} s`);
}, 600_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

const plainRun = (unit: Unit, m: number): Float32Array => rows.find((r) => r.unit === unit && r.m === m && r.mode === 'plain')!.run.out;

describe.skipIf(!cxx.found)('generated GEMMs on the emulator vs the float64 reference', () => {
  test('every kernel ran in every mode', () => {
    // The time is printed above (beforeAll), not asserted: CI time is watched from the suite's report.
    expect(rows.length).toBe(UNITS.reduce((n, u) => n + u.ms.length * MODES.length, 0));
  });
  test.for(UNITS.flatMap((u) => u.ms.flatMap((m) => MODES.map((mode) => [`${u.label} M=${m} ${mode}`, u, m, mode] as const))))('%s', ([, unit, m, mode]) => {
    const row = rows.find((r) => r.unit === unit && r.m === m && r.mode === mode)!;
    expect(row.run.findings, JSON.stringify(row.run.findings.slice(0, 3))).toEqual([]);
    expect(row.run.completed).toBe(true);
    // <= 1: within the rigorous float32 error bound of the reference (NaN counts as Infinity).
    expect(row.worst).toBeLessThanOrEqual(1);
  });
});

describe.skipIf(!cxx.found)('batch invariance: a row does not depend on M', () => {
  test('the kernels compared include 4- and 8-warp CTAs and both widths (the planner chooses them per M)', () => {
    const t = gemmTarget(['sm_80']);  // writeGemmUnit's target
    const names = UNITS.flatMap((u) => u.ms.map((m) => gemmTileName(planGemm(u.shape, m, t, planReduction(u.shape, t, u.splitK), u.tiles?.[m]))));
    expect(names.some((n) => n.endsWith('t128')), names.join(' ')).toBe(true);
    expect(names.some((n) => !n.endsWith('t128')), names.join(' ')).toBe(true);
    expect(names.some((n) => n.includes('n64')) && names.some((n) => !n.includes('n64')), names.join(' ')).toBe(true);
  });
  test.for(UNITS.map((u) => [u.label, u] as const))('%s: kernels planned for M = 1 .. 272 agree bit for bit on shared rows', ([, unit]) => {
    const n = unit.shape.n;
    const ms = [...unit.ms].sort((a, b) => a - b);
    for (let i = 0; i < ms.length; i++) {
      for (let j = i + 1; j < ms.length; j++) {
        const small = plainRun(unit, ms[i]!), large = plainRun(unit, ms[j]!);
        // Every row the smaller launch computed, compared by bits (NaN payloads included).
        const a = new Uint32Array(small.buffer, 0, ms[i]! * n), b = new Uint32Array(large.buffer, 0, ms[i]! * n);
        expect(Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)), `M=${ms[i]} vs M=${ms[j]}`).toBe(0);
      }
    }
  });
  test('the comparison can fail: split-K 1 and 3 (two reduction orders) differ in some bits', () => {
    for (const shape of [{ ...ODD, dtype: 'bf16' as const }, SMALL]) {
      const [one, three] = [1, 3].map((s) => UNITS.find((u) => u.shape.n === shape.n && u.shape.dtype === shape.dtype && u.splitK === s)!);
      const a = plainRun(one!, 72), b = plainRun(three!, 72);
      let differ = 0;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differ++;
      expect(differ, `${shape.n}x${shape.k}`).toBeGreaterThan(0);
    }
  });
});
