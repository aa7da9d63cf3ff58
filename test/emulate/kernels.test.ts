/**
 * Every generated attention variant of a grid (TiDAR steps and prefill mask blocks for draft
 * lengths 1, 2, 3, 4, 8, 16, the AR step, the causal prefill chunk; bf16 and fp16; head dim 64 and 128; GQA 1, 4, 6 and 8), compiled from the UNCHANGED
 * generated CUDA source onto the SIMT emulator, against the float64 reference: batch 3 with
 * prefix lengths 17, 0 and 130 (odd, empty, several tiles with a tail), split-KV off and on
 * (3 splits: the L = 0 sequence makes every split but the last an empty partial with
 * lse = -inf; and the split-KV rule's own choice at 132 SMs where it is neither: k = 8 at G = 6,
 * 5 splits of its 5 prefix tiles of 32 keys; the rule takes 1 or 3 for every other variant). Outputs are poisoned with NaN; the unused cache tail holds NaN.
 * Every row-tile shape the planner makes (plan.ts plannedRowTile: the cost model's fastest
 * candidate) runs, compiled for sm_80 (its cp.async stages: plan.ts defaultStages): split keys
 * (<= 16 rows: AR, k = 1 to 3 and the block steps at G = 1, k = 1 at G = 4; head dim 64 and 128),
 * up to 128 rows in one CTA (k = 4 at G = 1: 1 x 2 warps; k = 8 at G = 1: 1 x 5; block_k16 at
 * G = 4: 1 x 4; the prefill chunk at G = 1: 1 x 4) or over several (k = 4 at G = 4: 3 x 2, pinned;
 * k = 2 at G = 6: 3 x 1, pinned, with padding; k = 3 at G = 8: 2 x 2 of 32 rows), larger ones in tiles of
 * 16-row warps (the prefill chunk at G = 6: 4 x 6) and of 32-row warps: at head dim 128 and 32 keys, 2 stages (k = 16
 * at G = 4: 9 x 4; k = 8 at G = 6: 4 x 4, padding rows), at head dim 64 with 3 stages (k = 16 at
 * G = 1: 3 x 3; at G = 8: 17 x 4).
 * test/emulate/row-warps.test.ts adds 32-row warps with 2 stages and split keys with 3.
 * Tagged: g++. Prints the emulator's share of the suite's time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import { type EmulateRow, emulateDirectory } from '../../src/emulate/emulate-dir.js';
import { PREFILL_CHUNK } from '../../src/codegen/variant.js';
import { chooseAttentionSplits, splitKernel } from '../../src/codegen/splits.js';
import { readManifest } from '../../src/runtime/kernel-library.js';
import type { TileOverrides } from '../../src/codegen/input-key.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { modelForShape, type TestShape } from '../helpers/models.js';

const cxx = await findCxx();
/**
 * Shapes, which of each shape's compiled variants run (every kind and every k somewhere), and
 * the row tiles pinned where the planner's own choice (its cost model's, which moves whenever the
 * model does) would leave a layout of the kernel unexercised: several 2-warp tiles of <= 128
 * rows (G = 4, k = 4) and 1-warp CTAs (G = 6, k = 2). The other variants run the planner's tiles.
 */
const GRID: readonly (readonly [TestShape, readonly number[], readonly string[], TileOverrides?])[] = [
  [{ dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 2 }, [1, 2, 3, 4, 8, 16], ['tidar_k1', 'tidar_k2', 'tidar_k3', 'tidar_k4', 'tidar_k8', 'tidar_k16', 'block_k4', 'ar', `prefill_c${PREFILL_CHUNK}`]], // G = 1
  [{ dtype: 'fp16', headDim: 128, qHeads: 8, kvHeads: 2 }, [1, 4, 16], ['tidar_k1', 'tidar_k4', 'tidar_k16', 'block_k16', 'ar'], { tidar_k4: { warps: 2, tileN: 64, warpRows: 16, stages: 2 } }], // G = 4
  [{ dtype: 'bf16', headDim: 128, qHeads: 6, kvHeads: 1 }, [2, 8], ['tidar_k2', 'tidar_k8', `prefill_c${PREFILL_CHUNK}`], { tidar_k2: { warps: 1, tileN: 64, warpRows: 16, stages: 2 } }], // G = 6: row tiles straddle tokens
  [{ dtype: 'fp16', headDim: 64, qHeads: 8, kvHeads: 1 }, [3, 16], ['tidar_k3', 'tidar_k16', 'ar']], // G = 8
];
const BATCH = 3;
const PREFIX = [17, 0, 130];
const SMS = 132;
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-grid-'));
const rows: EmulateRow[] = [];
/** Per shape, the variants whose split-KV rule's choice (the runtime's, chooseAttentionSplits at 132 SMs) is neither 1 nor 3, also run with it. */
const ruleRuns: string[][] = [];
/** Each run variant's plan from its manifest, by label. */
const plans = new Map<string, { readonly rowTiles: number; readonly warps: number; readonly warpRows?: number; readonly tileN: number; readonly stages?: number }>();
let seconds = 0;

beforeAll(async () => {
  if (!cxx.found) return;
  const t0 = performance.now();
  // One build of the emulator runtime for every shape's emulateDirectory (test/helpers/emulated-driver.ts).
  const runtimeObjects = await sharedEmulatorRuntime();
  for (const [i, [shape, drafts, variants, tiles]] of GRID.entries()) {
    const outDir = join(root, `shape${i}`);
    await compileModel({ spec: modelForShape(shape, drafts), arches: ['sm_80'], outDir, build: 'none', ...(tiles ? { tiles } : {}), log: () => undefined });
    const shapeRows = await emulateDirectory(outDir, { variants, batch: BATCH, prefix: PREFIX, splits: [1, 3], seed: 100 + i, runtimeObjects, log: () => undefined });
    const ruled = new Map<number, string[]>();
    for (const v of readManifest(outDir).variants.filter((x) => variants.includes(x.name))) {
      plans.set(`${shape.dtype} d${shape.headDim} G${shape.qHeads / shape.kvHeads} ${v.name}`, v.plan);
      const kernel = splitKernel({ ...v.plan, rows: v.rows, headDim: shape.headDim });
      const s = chooseAttentionSplits({ workItems: BATCH * shape.kvHeads * v.launch.rowTiles, sms: SMS, prefixTiles: Math.ceil(Math.max(...PREFIX) / v.plan.tileN), kernel });
      if (s !== 1 && s !== 3) ruled.set(s, [...(ruled.get(s) ?? []), v.name]);
    }
    for (const [splits, names] of ruled) {
      shapeRows.push(...await emulateDirectory(outDir, { variants: names, batch: BATCH, prefix: PREFIX, splits: [splits], seed: 100 + i, runtimeObjects, log: () => undefined }));
    }
    ruleRuns.push([...ruled].flatMap(([s, names]) => names.map((n) => `${n}:${s}`)));
    rows.push(...shapeRows.map((r) => ({ ...r, variant: `${shape.dtype} d${shape.headDim} G${shape.qHeads / shape.kvHeads} ${r.variant}` })));
  }
  seconds = (performance.now() - t0) / 1000;
  console.log(`emulator: ${rows.length} kernel runs of ${GRID.reduce((n, [, , v]) => n + v.length, 0)} variants in ${seconds.toFixed(1)} s`);
}, 900_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('generated CUDA on the emulator vs the float64 reference', () => {
  test('every variant of the grid ran', () => {
    expect(rows.length).toBe(GRID.reduce((n, [, , v], i) => n + v.length * 2 + ruleRuns[i]!.length, 0));
    // The rule takes a split per prefix tile where the merge is cheap, else 1: 3 tiles of
    // prefix save less than merging 3 partials of a large row group costs (k = 16, prefill,
    // k = 4 at G = 4, k = 3 at G = 8). k = 8 at G = 6 (4 tiles of 128 rows, 5 prefix tiles of 32
    // keys) takes 5 since the rule prices the partial O as L2 bytes, not HBM (the merge discards
    // it): 4.1 us against 1 split's 4.5, where the HBM price made 5 splits 4.7. The wave rule
    // took 2 for k = 16 at G = 8.
    expect(ruleRuns).toEqual([[], [], ['tidar_k8:5'], []]);
  });
  test('the grid runs every row-tile layout: <= 128 rows over several CTAs and 1-warp CTAs (pinned), 32-row warps at 32 keys (head dim 128, the planner\'s)', () => {
    expect(plans.get('fp16 d128 G4 tidar_k4')).toMatchObject({ rowTiles: 3, warps: 2, warpRows: 16 });
    expect(plans.get('bf16 d128 G6 tidar_k2')).toMatchObject({ rowTiles: 3, warps: 1, warpRows: 16 });
    expect(plans.get('fp16 d128 G4 tidar_k16')).toMatchObject({ rowTiles: 9, warps: 4, warpRows: 32, tileN: 32, stages: 2 });
    expect(plans.get('bf16 d128 G6 tidar_k8')).toMatchObject({ rowTiles: 4, warps: 4, warpRows: 32, tileN: 32, stages: 2 });
  });
  test.for(GRID.flatMap(([s, , variants]) => variants.map((v) => `${s.dtype} d${s.headDim} G${s.qHeads / s.kvHeads} ${v}`)))('%s', (label) => {
    const mine = rows.filter((r) => r.variant === label);
    expect(mine.length, label).toBeGreaterThanOrEqual(2);
    for (const row of mine) {
      expect(row.findings, `${label} splits=${row.splits} ${JSON.stringify(row.findings.slice(0, 3))}`).toEqual([]);
      expect(row.completed).toBe(true);
      expect(row.maxError, `${label} splits=${row.splits}`).toBeLessThanOrEqual(row.tolerance);
      expect(row.lseMaxError).toBeLessThan(2e-3);
    }
  });
});
