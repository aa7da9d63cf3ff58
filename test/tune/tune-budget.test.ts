/**
 * Issue 17 item 3: `tidarc tune --budget` bounds the run. `--budget 20` spent 3.5 minutes
 * compiling 19 tiles, tuned nothing, printed an ETA of 8199 s and left an empty database.
 * - The budget covers compile time: tiles compile in the order the search needs them, only as
 *   many as the budget can time; the first shape is always tuned (with the default tile at least).
 * - The ETA printed when a shape starts is within 2x of the time the run then still takes
 *   (from the second shape on, when one shape was measured, where a second or more is left;
 *   under a budget, from the first).
 * Needs: g++ (the per-tile CPU libraries).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { readTuneDb, type TuneEntry } from '../../src/tune/db.js';
import { tuneCpu } from '../../src/tune/tune-cpu.js';

const cxx = await findCxx();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-tune-budget-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec: ModelSpec = {
  name: 'budget', family: 'qwen3', layers: 1, hiddenSize: 128, queryHeads: 2, kvHeads: 1, headDim: 64, intermediateSize: 128, vocabSize: 260,
  ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259, draftLengths: [2],
};
const cache = join(dir, 'cache');

/** Log lines with the time each was printed. */
function recorder(): { lines: { at: number; text: string }[]; log: (l: string) => void } {
  const lines: { at: number; text: string }[] = [];
  return { lines, log: (text) => void lines.push({ at: performance.now(), text }) };
}

/** Each shape-start line's ETA (seconds) against the time the run took after it. */
function etas(lines: readonly { at: number; text: string }[], end: number): { shape: number; eta: number; actual: number }[] {
  return lines.flatMap((l) => {
    const m = /^\[(\d+)\/\d+\] .*configurations to check .*; eta about ([\d.]+) s for the run$/.exec(l.text);
    return m ? [{ shape: Number(m[1]), eta: Number(m[2]), actual: (end - l.at) / 1000 }] : [];
  });
}

describe.skipIf(!cxx.found)('tidarc tune --budget', () => {
  test('a budget shorter than one tile compile still tunes the first shape, on the default tile only, and stops', { timeout: 600_000 }, async () => {
    const rec = recorder();
    const db = join(dir, 'budget.json');
    const r = await tuneCpu({
      spec, drafts: [2], prefixes: [256, 512], batches: [1], dbPath: db, cacheDir: cache, budgetSeconds: 1,
      space: { warps: [2, 4], tileN: [32, 64], splits: [1, 2], threads: [1] }, log: rec.log,
    });
    const end = performance.now();
    expect(r.tuned).toBe(1);
    expect(r.skipped).toHaveLength(3);
    const entries = Object.values(readTuneDb(db).entries) as TuneEntry[];
    expect(entries).toHaveLength(1);
    expect(Object.keys(entries[0]!.byTile!)).toEqual(['w4-n64']);  // the default tile: the heuristic's
    // Only the default tile's library was compiled (the old run compiled every tile first).
    expect(readdirSync(join(cache, 'kernels')).filter((f) => !f.endsWith('.lock'))).toHaveLength(1);
    // 6: tidar_k2 at G = 2 is 12 rows, split-key warps, and 4 of them cannot split 32 keys (w4-n32 pruned).
    expect(rec.lines.map((l) => l.text)).toContainEqual(expect.stringMatching(/within the budget, 2 of 6 configurations \(the other tiles are not compiled\)$/));
    const [first] = etas(rec.lines, end);
    expect(first!.eta).toBeLessThanOrEqual(2 * first!.actual + 0.2);
    expect(first!.eta).toBeGreaterThanOrEqual(first!.actual / 2 - 0.2);
  });

  test('the ETA at each shape start is within 2x of the rest of the run', { timeout: 600_000 }, async () => {
    const rec = recorder();
    // The default tile only (compiled above): every second of this run is timing, which the ETA predicts.
    await tuneCpu({
      spec, drafts: [2], prefixes: [512, 1024], batches: [1], dbPath: join(dir, 'eta.json'), cacheDir: cache,
      space: { warps: [4], tileN: [64], splits: [1, 2, 4], threads: [1, 0] }, log: rec.log,
    });
    const found = etas(rec.lines, performance.now());
    expect(found.map((e) => e.shape)).toEqual([1, 2, 3, 4]);
    // Where at least a second is left: below that, a 2x bound is timer noise.
    for (const e of found.slice(1).filter((x) => x.actual >= 1)) {
      expect(e.eta, `shape ${e.shape}: eta ${e.eta} s, took ${e.actual.toFixed(2)} s`).toBeLessThanOrEqual(2 * e.actual + 0.1);
      expect(e.eta, `shape ${e.shape}: eta ${e.eta} s, took ${e.actual.toFixed(2)} s`).toBeGreaterThanOrEqual(e.actual / 2 - 0.1);
    }
  });
});
