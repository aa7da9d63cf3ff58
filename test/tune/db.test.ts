import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import {
  EMPTY_DB, type TuneEntry, type TuneMeta, entryKey, invalidate, lookup, mergeDb, parseTuneDb, readTuneDb, shapeBucket,
  staleness, variantKey, withEntry, writeTuneDb,
} from '../../src/tune/db.js';

const dir = mkdtempSync(join(tmpdir(), 'tidarc-tune-db-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const META: TuneMeta = { tidarc: '0.1.0', compiler: 'g++ 12.2.0', backend: 'cpu', device: 'AMD EPYC x 2' };
const t = (us: number) => ({ medianUs: us, p20Us: us * 0.95, p80Us: us * 1.05 });
function entry(variant: string, bucket: string, warps: number, date = '2026-11-29', meta: TuneMeta = META): TuneEntry {
  return { variant, bucket, best: { warps, tileN: 64, splits: 1, threads: 0 }, bestTiming: t(90), heuristic: { warps: 4, tileN: 64, splits: 1 }, heuristicTiming: t(100), timed: 12, rejected: [], meta, date };
}

describe('tuning database', () => {
  test('keys: what the kernel computes, and a power-of-two prefix bucket', () => {
    expect(variantKey({ variant: 'tidar_k8', dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 })).toBe('tidar_k8 bf16 d128 q32/kv8');
    expect([shapeBucket(1, 0), shapeBucket(1, 1), shapeBucket(8, 1000), shapeBucket(8, 1024), shapeBucket(8, 1025)]).toEqual(['b1 L0', 'b1 L1', 'b8 L1024', 'b8 L1024', 'b8 L2048']);
  });

  test('round-trips through its file, atomically written and human-readable', async () => {
    const db = withEntry(withEntry(EMPTY_DB, entry('v1', 'b1 L1024', 2)), entry('v0', 'b1 L1024', 8));
    const path = join(dir, 'tune.json');
    await writeTuneDb(path, db);
    expect(readTuneDb(path)).toEqual(db);
    expect(Object.keys(readTuneDb(path).entries)).toEqual(['v0 | b1 L1024', 'v1 | b1 L1024']);  // sorted
    expect(readFileSync(path, 'utf8')).toMatch(/\n {2}"v0 \| b1 L1024": \{/);
    expect(readTuneDb(join(dir, 'missing.json'))).toEqual(EMPTY_DB);
  });

  test('merges: a newer entry replaces an older one; other keys and other machines are kept', () => {
    const other: TuneMeta = { ...META, device: 'another CPU' };
    const a = withEntry(withEntry(EMPTY_DB, entry('v', 'b1 L1024', 2, '2026-11-01')), entry('w', 'b1 L1024', 2));
    const b = withEntry(EMPTY_DB, entry('v', 'b1 L1024', 8, '2026-11-29'));
    const m = mergeDb(a, b);
    expect(m.entries[entryKey('v', 'b1 L1024')]!.best.warps).toBe(8);
    expect(m.entries[entryKey('w', 'b1 L1024')]).toBeDefined();
    expect(mergeDb(b, a).entries[entryKey('v', 'b1 L1024')]!.best.warps).toBe(8);  // order does not matter: the newer wins
    const fromElsewhere = withEntry(EMPTY_DB, entry('v', 'b1 L1024', 1, '2026-11-30', other));
    expect(mergeDb(m, fromElsewhere).entries[entryKey('v', 'b1 L1024')]!.meta.device).toBe('another CPU');
  });

  test('invalidates entries of another compiler, device, driver or tidarc version', () => {
    const db = withEntry(withEntry(EMPTY_DB, entry('v', 'b1 L1024', 2)), entry('w', 'b1 L1024', 2, '2026-11-29', { ...META, compiler: 'g++ 13.1.0' }));
    expect(lookup(db, 'v', 'b1 L1024', META)?.best.warps).toBe(2);
    expect(lookup(db, 'w', 'b1 L1024', META)).toBeUndefined();
    expect(invalidate(db, META)).toEqual([{ key: 'w | b1 L1024', why: 'compiler was g++ 13.1.0, is g++ 12.2.0' }]);
    expect(staleness(META, { ...META, driver: '13000' })).toBe('driver was (none), is 13000');
    expect(staleness(META, { ...META, tidarc: '0.2.0' })).toMatch(/^tidarc was 0\.1\.0/);
  });

  test('refuses what is not a tuning database, naming the entry', () => {
    expect(() => parseTuneDb('{', 'x.json')).toThrow(/not JSON/);
    expect(() => parseTuneDb('{"format": 2, "entries": {}}', 'x.json')).toThrow(/not a tidarc tuning database/);
    const bad = { format: 1, entries: { 'v | b1 L1': { ...entry('v', 'b1 L2', 2) } } };
    writeFileSync(join(dir, 'bad.json'), JSON.stringify(bad));
    expect(() => readTuneDb(join(dir, 'bad.json'))).toThrow(/entries\["v \| b1 L1"\]/);
  });

  test('a GEMM row without a heuristic (none timed at that M) is read; a half heuristic (a tile without its timing, or a timing or split-K without a tile) is refused', () => {
    const tile = { blockM: 16, warpsM: 1, stages: 4 };
    const gemm = (row: object) => JSON.stringify({ format: 1, entries: {}, gemms: { 'g | sm_90': {
      unit: 'g', arch: 'sm_90', n: 64, k: 64, dtype: 'bf16', splitK: 1, heuristicSplitK: 1, splitTotalsUs: {}, rows: { 1: { best: tile, bestTiming: t(5) }, 20: row },
      timed: 2, rejected: [], meta: { ...META, backend: 'cuda' }, date: '2026-12-05' } } });
    expect(parseTuneDb(gemm({ best: tile, bestTiming: t(8) }), 'x.json').gemms!['g | sm_90']!.rows['1']!.heuristic).toBeUndefined();
    expect(parseTuneDb(gemm({ best: tile, bestTiming: t(8), heuristic: tile, heuristicTiming: t(9), heuristicSplitK: 2 }), 'x.json').gemms!['g | sm_90']!.rows['20']!.heuristicSplitK).toBe(2);
    for (const half of [{ heuristic: tile }, { heuristicTiming: t(9) }, { heuristicSplitK: 2 }, { heuristic: tile, heuristicTiming: t(9), heuristicSplitK: 1.5 }]) {
      expect(() => parseTuneDb(gemm({ best: tile, bestTiming: t(8), ...half }), 'x.json'), JSON.stringify(half)).toThrow(/GEMM entry is malformed.*gemms\["g \| sm_90"\]/);
    }
  });
});
