/**
 * A tuned GEMM (`compile --tuned`: the record's split-K for the weight shape, its own tile per
 * M) on the SIMT emulator: tiles that differ in every dimension the search varies (rows per CTA,
 * warp rows, pipeline stages; at M = 20 and 72 the tile is smaller than M, so several CTAs run
 * along M) give rows bitwise equal across M = 1, 20, 72, and equal to the heuristic tiles' rows
 * under the same split-K: the tile never changes the order of a sum, so tuning it per M keeps
 * batch invariance. Each run within the float64 reference's bound, no emulator findings.
 * Tagged: g++.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import type { GemmShape, GemmTile } from '../../src/codegen/gemm-plan.js';
import { buildGemmEmulator, type GemmRunResult, runGemmEmulator } from '../../src/emulate/gemm-emulator.js';
import { gemmInputs, randomGemmProblem, referenceGemm, worstRatio, writeGemmUnit } from '../helpers/gemm.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-gemm-tuned-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** An odd N (a partial N tile), K = 520: 9 k tiles, split-K 3 (three parts of 3: the reduce runs). */
const SHAPE: GemmShape = { n: 197, k: 520, dtype: 'bf16' };
const SPLIT_K = 3;
const MS = [1, 20, 72];
const TUNED: Readonly<Record<number, GemmTile>> = {
  1: { blockM: 16, warpsM: 1, stages: 6 },
  20: { blockM: 16, warpsM: 1, stages: 3 },   // 2 CTAs along M
  72: { blockM: 32, warpsM: 2, stages: 4 },   // 3 CTAs, 2 x 4 warps
};

const runs: Record<'tuned' | 'heuristic', Map<number, GemmRunResult>> = { tuned: new Map(), heuristic: new Map() };
/** Per M: the plan's tile as rows x columns, warps (along M x along N) and stages. */
const tiles: Record<'tuned' | 'heuristic', string[]> = { tuned: [], heuristic: [] };
const problem = randomGemmProblem(SHAPE, Math.max(...MS), 71);

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  for (const kind of ['tuned', 'heuristic'] as const) {
    const dir = join(root, kind);
    const { source, cudaDir, plans } = writeGemmUnit(dir, SHAPE, MS, SPLIT_K, ['test'], kind === 'tuned' ? TUNED : {});
    const exe = join(dir, 'emu');
    await buildGemmEmulator(cxx.tool.path, source, cudaDir, plans, objects, exe);
    for (const plan of plans) {
      tiles[kind].push(`${plan.blockM}x${plan.blockN} w${plan.warpsM}x${plan.warpsN} s${plan.stages}`);
      runs[kind].set(plan.m, await runGemmEmulator(exe, plan, gemmInputs(problem, plan.m, { bias: true }), dir, `m${plan.m}`));
    }
  }
}, 600_000);

const bits = (a: Float32Array, rows: number): Buffer => Buffer.from(a.buffer, a.byteOffset, rows * SHAPE.n * 4);

describe.skipIf(!cxx.found)('a tuned GEMM on the emulator', () => {
  test('the tuned tiles are not the heuristic ones (else the comparison proves nothing)', () => {
    expect(tiles.tuned.map((t) => t.split(' ')[0])).toEqual(['16x128', '16x128', '32x128']);
    // The heuristic's are the cost model's choice per M (gemm-tile-choice.ts): whatever it picks, never the tuned tile.
    for (const [i, t] of tiles.heuristic.entries()) expect(t, `M = ${MS[i]}`).not.toBe(tiles.tuned[i]);
  });
  test('every run within the float64 bound, no findings', () => {
    for (const kind of ['tuned', 'heuristic'] as const) {
      for (const m of MS) {
        const run = runs[kind].get(m)!;
        expect(run.findings, `${kind} M=${m}`).toEqual([]);
        expect(run.completed).toBe(true);
        const { ref, bound } = referenceGemm(SHAPE, problem, m, SPLIT_K, { bias: true });
        expect(worstRatio(run.out, ref, bound), `${kind} M=${m}`).toBeLessThanOrEqual(1);
      }
    }
  });
  test('rows bitwise equal across M = 1, 20, 72 and to the heuristic tiles under the same split-K', () => {
    const all = (['tuned', 'heuristic'] as const).flatMap((kind) => MS.map((m) => [`${kind} M=${m}`, m, runs[kind].get(m)!.out] as const));
    for (const [a, ma, outA] of all) {
      for (const [b, mb, outB] of all) {
        const rows = Math.min(ma, mb);
        expect(Buffer.compare(bits(outA, rows), bits(outB, rows)), `${a} vs ${b}`).toBe(0);
      }
    }
  });
});
