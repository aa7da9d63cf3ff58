/**
 * Every generated attention variant of a grid (draft lengths 1, 2, 3, 4, 8, 16 and the AR
 * step; bf16 and fp16; head dim 64 and 128; GQA 1, 4, 6 and 8), compiled from the UNCHANGED
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
import { modelForShape, type TestShape } from '../helpers/models.js';

const cxx = await findCxx();
const GRID: readonly (readonly [TestShape, readonly number[]])[] = [
  [{ dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 2 }, [1, 2, 3, 4, 8, 16]], // G = 1
  [{ dtype: 'fp16', headDim: 128, qHeads: 8, kvHeads: 2 }, [1, 4, 16]],        // G = 4
  [{ dtype: 'bf16', headDim: 128, qHeads: 6, kvHeads: 1 }, [2, 8]],            // G = 6: row tiles straddle tokens
  [{ dtype: 'fp16', headDim: 64, qHeads: 8, kvHeads: 1 }, [3, 16]],            // G = 8
];
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-grid-'));
const rows: EmulateRow[] = [];
let seconds = 0;

beforeAll(async () => {
  if (!cxx.found) return;
  const t0 = performance.now();
  for (const [i, [shape, drafts]] of GRID.entries()) {
    const outDir = join(root, `shape${i}`);
    await compileModel({ spec: modelForShape(shape, drafts), arches: ['sm_80'], outDir, build: 'none', log: () => undefined });
    const shapeRows = await emulateDirectory(outDir, { batch: 3, prefix: [17, 0, 130], splits: [1, 3], seed: 100 + i, log: () => undefined });
    rows.push(...shapeRows.map((r) => ({ ...r, variant: `${shape.dtype} d${shape.headDim} G${shape.qHeads / shape.kvHeads} ${r.variant}` })));
  }
  seconds = (performance.now() - t0) / 1000;
  console.log(`emulator: ${rows.length} kernel runs of ${GRID.reduce((n, [, d]) => n + d.length + 1, 0)} variants in ${seconds.toFixed(1)} s`);
}, 900_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('generated CUDA on the emulator vs the float64 reference', () => {
  test('every variant of the grid ran', () => {
    expect(rows.length).toBe(GRID.reduce((n, [, d]) => n + (d.length + 1) * 2, 0));
  });
  test('the emulator part stays well under 5 minutes', () => {
    expect(seconds).toBeLessThan(300);
  });
  test.for(GRID.flatMap(([s, drafts]) => [...drafts.map((k) => `tidar_k${k}`), 'ar'].flatMap((v) => [1, 3].map((splits) => `${s.dtype} d${s.headDim} G${s.qHeads / s.kvHeads} ${v} splits=${splits}`))))('%s', (label) => {
    const row = rows.find((r) => `${r.variant} splits=${r.splits}` === label);
    expect(row, label).toBeDefined();
    expect(row!.findings, JSON.stringify(row!.findings.slice(0, 3))).toEqual([]);
    expect(row!.completed).toBe(true);
    expect(row!.maxError).toBeLessThanOrEqual(row!.tolerance);
    expect(row!.lseMaxError).toBeLessThan(2e-3);
  });
});
