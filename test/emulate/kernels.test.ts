/**
 * Every generated attention variant of a grid (TiDAR steps and prefill mask blocks for draft
 * lengths 1, 2, 3, 4, 8, 16, the AR step, the causal prefill chunk; bf16 and fp16; head dim 64 and 128; GQA 1, 4, 6 and 8), compiled from the UNCHANGED
 * generated CUDA source onto the SIMT emulator, against the float64 reference: batch 3 with
 * prefix lengths 17, 0 and 130 (odd, empty, several tiles with a tail), split-KV off and on
 * (3 splits: the L = 0 sequence makes every split but the last an empty partial with
 * lse = -inf). Outputs are poisoned with NaN; the unused cache tail holds NaN.
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
import { modelForShape, type TestShape } from '../helpers/models.js';

const cxx = await findCxx();
/** Shapes, and which of each shape's compiled variants run: every kind and every k somewhere. */
const GRID: readonly (readonly [TestShape, readonly number[], readonly string[]])[] = [
  [{ dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 2 }, [1, 2, 3, 4, 8, 16], ['tidar_k1', 'tidar_k2', 'tidar_k3', 'tidar_k4', 'tidar_k8', 'tidar_k16', 'block_k4', 'ar', `prefill_c${PREFILL_CHUNK}`]], // G = 1
  [{ dtype: 'fp16', headDim: 128, qHeads: 8, kvHeads: 2 }, [1, 4, 16], ['tidar_k1', 'tidar_k4', 'tidar_k16', 'block_k16']], // G = 4
  [{ dtype: 'bf16', headDim: 128, qHeads: 6, kvHeads: 1 }, [2, 8], ['tidar_k2', 'tidar_k8', `prefill_c${PREFILL_CHUNK}`]], // G = 6: row tiles straddle tokens
  [{ dtype: 'fp16', headDim: 64, qHeads: 8, kvHeads: 1 }, [3, 16], ['tidar_k3', 'tidar_k16', 'ar']], // G = 8
];
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-grid-'));
const rows: EmulateRow[] = [];
let seconds = 0;

beforeAll(async () => {
  if (!cxx.found) return;
  const t0 = performance.now();
  for (const [i, [shape, drafts, variants]] of GRID.entries()) {
    const outDir = join(root, `shape${i}`);
    await compileModel({ spec: modelForShape(shape, drafts), arches: ['sm_80'], outDir, build: 'none', log: () => undefined });
    const shapeRows = await emulateDirectory(outDir, { variants, batch: 3, prefix: [17, 0, 130], splits: [1, 3], seed: 100 + i, log: () => undefined });
    rows.push(...shapeRows.map((r) => ({ ...r, variant: `${shape.dtype} d${shape.headDim} G${shape.qHeads / shape.kvHeads} ${r.variant}` })));
  }
  seconds = (performance.now() - t0) / 1000;
  console.log(`emulator: ${rows.length} kernel runs of ${GRID.reduce((n, [, , v]) => n + v.length, 0)} variants in ${seconds.toFixed(1)} s`);
}, 900_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('generated CUDA on the emulator vs the float64 reference', () => {
  test('every variant of the grid ran', () => {
    expect(rows.length).toBe(GRID.reduce((n, [, , v]) => n + v.length * 2, 0));
  });
  test.for(GRID.flatMap(([s, , variants]) => variants.flatMap((v) => [1, 3].map((splits) => `${s.dtype} d${s.headDim} G${s.qHeads / s.kvHeads} ${v} splits=${splits}`))))('%s', (label) => {
    const row = rows.find((r) => `${r.variant} splits=${r.splits}` === label);
    expect(row, label).toBeDefined();
    expect(row!.findings, JSON.stringify(row!.findings.slice(0, 3))).toEqual([]);
    expect(row!.completed).toBe(true);
    expect(row!.maxError).toBeLessThanOrEqual(row!.tolerance);
    expect(row!.lseMaxError).toBeLessThan(2e-3);
  });
});
