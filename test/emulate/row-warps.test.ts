/**
 * The large row counts' tiles (issue 15 items 1(c) and 4) on the SIMT emulator against the
 * float64 reference, from the UNCHANGED generated CUDA: warps of 32 rows (two m16 tiles sharing
 * each K/V fragment, Q read from its own shared region: plan.ts rowTileOf, head dim 64) and the
 * 3-stage cp.async pipeline, where kernels.test.ts's grid does not reach them (its sm_80 compile
 * gives every 32-row variant 3 stages and every split-key one 2). Batch 3 with prefix lengths 17,
 * 0 and 130, split-KV 1 and 3:
 *   bf16 d64 G4: k = 8 (288 rows: 5 tiles of 2 warps of 32, pinned, the last half padding, 3 stages),
 *     the prefill chunk as 2 tiles of 4 warps of 32 with 2 stages;
 *   fp16 d64 G6: k = 8 (432 rows: 7 x 2, the last warp's second m-tile padding only), 2 stages;
 *   fp16 d128 G8: AR with 3 stages (one 16-row tile, 4 key warps merging).
 * Tagged: g++.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import type { TileOverrides } from '../../src/codegen/input-key.js';
import type { ManifestVariant } from '../../src/codegen/manifest.js';
import { type EmulateRow, emulateDirectory } from '../../src/emulate/emulate-dir.js';
import { PREFILL_CHUNK } from '../../src/codegen/variant.js';
import { readManifest } from '../../src/runtime/kernel-library.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { modelForShape, type TestShape } from '../helpers/models.js';

const cxx = await findCxx();
const prefill = `prefill_c${PREFILL_CHUNK}`;
interface Case {
  readonly shape: TestShape;
  readonly drafts: readonly number[];
  readonly variants: readonly string[];
  readonly tiles: TileOverrides;
  /** Per variant: [warps, warpRows, stages] the manifest must show. */
  readonly expected: Readonly<Record<string, readonly [number, number, number]>>;
}
const CASES: readonly Case[] = [
  {
    shape: { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1 }, drafts: [8], variants: ['tidar_k8', prefill],
    tiles: { tidar_k8: { warps: 2, tileN: 64, warpRows: 32, stages: 3 }, [prefill]: { warps: 4, tileN: 64, warpRows: 32, stages: 2 } },
    expected: { tidar_k8: [2, 32, 3], [prefill]: [4, 32, 2] },
  },
  {
    shape: { dtype: 'fp16', headDim: 64, qHeads: 6, kvHeads: 1 }, drafts: [8], variants: ['tidar_k8'],
    tiles: { tidar_k8: { warps: 2, tileN: 64, stages: 2 } },
    expected: { tidar_k8: [2, 32, 2] },
  },
  {
    shape: { dtype: 'fp16', headDim: 128, qHeads: 8, kvHeads: 1 }, drafts: [1], variants: ['ar'],
    tiles: { ar: { warps: 4, tileN: 64, stages: 3 } },
    expected: { ar: [4, 16, 3] },
  },
];
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-rowwarps-'));
const rows: EmulateRow[] = [];
const plans = new Map<string, ManifestVariant['plan']>();
const label = (s: TestShape, v: string): string => `${s.dtype} d${s.headDim} G${s.qHeads / s.kvHeads} ${v}`;

beforeAll(async () => {
  if (!cxx.found) return;
  const t0 = performance.now();
  const runtimeObjects = await sharedEmulatorRuntime();
  for (const [i, c] of CASES.entries()) {
    const outDir = join(root, `case${i}`);
    await compileModel({ spec: modelForShape(c.shape, c.drafts), arches: ['sm_80'], outDir, build: 'none', tiles: c.tiles, log: () => undefined });
    for (const v of readManifest(outDir).variants) plans.set(label(c.shape, v.name), v.plan);
    const got = await emulateDirectory(outDir, { variants: c.variants, batch: 3, prefix: [17, 0, 130], splits: [1, 3], seed: 300 + i, runtimeObjects, log: () => undefined });
    rows.push(...got.map((r) => ({ ...r, variant: label(c.shape, r.variant) })));
  }
  console.log(`row-warps emulator: ${rows.length} kernel runs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}, 600_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('32-row warps and 3 stages on the emulator vs the float64 reference', () => {
  test.for(CASES.flatMap((c) => c.variants.map((v) => [label(c.shape, v), c.expected[v]!] as const)))('%s', ([name, [warps, warpRows, stages]]) => {
    expect(plans.get(name)).toMatchObject({ warps, warpRows, stages });
    const mine = rows.filter((r) => r.variant === name);
    expect(mine.map((r) => r.splits).sort()).toEqual([1, 3]);
    for (const row of mine) {
      expect(row.findings, `${name} splits=${row.splits} ${JSON.stringify(row.findings.slice(0, 3))}`).toEqual([]);
      expect(row.completed).toBe(true);
      expect(row.maxError, `${name} splits=${row.splits}`).toBeLessThanOrEqual(row.tolerance);
      expect(row.lseMaxError).toBeLessThan(2e-3);
    }
  });
});
