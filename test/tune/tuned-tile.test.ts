/**
 * A CUDA tile's rows a warp and cp.async stages through the tuning pipeline (issue 15): one
 * spelling of a tile (arch.ts tileKey / parseTileKey) in the database, the device check's
 * scripts (tune.py tile_key, config_key) and configKey; an entry the search records with 32-row
 * warps and 3 stages is what `tidarc compile --tuned` builds; an older entry or grid without the
 * fields reads as what it timed then, 16-row warps and 2 stages. Needs: nothing (python3 with
 * numpy for the script's keys).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { parseTileKey, tileKey } from '../../src/codegen/arch.js';
import type { Manifest } from '../../src/codegen/manifest.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { type TuneDb, type TuneEntry, type TuneMeta, entryKey, parseTuneDb, variantKey } from '../../src/tune/db.js';
import { tunedTiles } from '../../src/tune/report.js';
import { type AttentionConfig, configKey } from '../../src/tune/space.js';
import { packageRoot } from '../../src/util/paths.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';

const exec = promisify(execFile);
const TINY = join(packageRoot(), 'examples', 'tiny.json');
const spec = await loadModelSpecFile(TINY);
const numpy = await exec('python3', ['-c', 'import numpy']).then(() => true, () => false);
const root = mkdtempSync(join(tmpdir(), 'tidarc-tuned-tile-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const H200: TuneMeta = { tidarc: 'x', compiler: 'nvcc 13', backend: 'cuda', device: 'NVIDIA H200 x 132 SMs', driver: '13.0' };
const timing = (us: number) => ({ medianUs: us, p20Us: us, p80Us: us });
/** tiny's tidar_k4: 10 tokens x 2 query heads a KV head = 20 rows, head dim 64 (32-row warps at 3 stages fit to tileN 64). */
const VARIANT = variantKey({ variant: 'tidar_k4', dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 2 });

/** A CUDA entry as the device check writes it: per tile (by key) its fastest splits and time; best is the fastest. */
function entry(bucket: string, byTile: Record<string, number>, heuristic: AttentionConfig): TuneEntry {
  const [bestKey, bestUs] = Object.entries(byTile).sort(([, a], [, b]) => a - b)[0]!;
  return {
    variant: VARIANT, bucket, best: { ...parseTileKey(bestKey)!, splits: 2 }, bestTiming: timing(bestUs), heuristic, heuristicTiming: timing(byTile[tileKey(heuristic)] ?? 50),
    timed: Object.keys(byTile).length, rejected: [], byTile: Object.fromEntries(Object.entries(byTile).map(([k, us]) => [k, { splits: 2, medianUs: us }])), meta: H200, date: '2026-12-05',
  };
}
const dbOf = (...es: TuneEntry[]): TuneDb => ({ format: 1, entries: Object.fromEntries(es.map((e) => [entryKey(e.variant, e.bucket), e])) });
const write = (name: string, db: unknown): string => {
  const path = join(root, name);
  writeFileSync(path, JSON.stringify(db));
  return path;
};

describe('a tile\'s key', () => {
  test('reads back what it names; fields the rule decides are left out; what is not a key is undefined', () => {
    for (const t of [{ warps: 4, tileN: 64 }, { warps: 1, tileN: 32, warpRows: 32 as const, stages: 3 as const }, { warps: 2, tileN: 16, stages: 2 as const }]) expect(parseTileKey(tileKey(t))).toEqual(t);
    expect(tileKey({ warps: 1, tileN: 32, warpRows: 32, stages: 3 })).toBe('w1r32-n32p3');
    expect(configKey({ warps: 1, tileN: 32, warpRows: 32, stages: 3, splits: 4 })).toBe('w1r32-n32p3-s4');
    for (const bad of ['w4-n64-s1', 'w4r24-n64', 'w4-n64p4', 'x']) expect(parseTileKey(bad), bad).toBeUndefined();
  });

  test.skipIf(!numpy)('the device check spells tiles and configurations as tidarc does; a grid\'s configuration without the fields is 16 rows, 2 stages', async () => {
    const configs: AttentionConfig[] = [{ warps: 2, tileN: 64, warpRows: 16, stages: 3, splits: 1 }, { warps: 1, tileN: 32, warpRows: 32, stages: 3, splits: 4 }];
    const script = `
import json, sys
sys.path.insert(0, sys.argv[1])
import tune
from attention_bench import tuned_launch
cs = json.loads(sys.argv[2])
old = {'warps': 4, 'tileN': 64, 'splits': 2}
# The benchmark's second row: the search's best of the point's bucket, launched from its tile's kernel (a 16-row tile of the same warps and keys beside it).
model = lambda rows: {'name': f'r{rows}', 'variants': [{'name': 'tidar_k2'}]}
grid = {'tune': {'tiles': [{'warps': 1, 'tileN': 32, 'warpRows': 16, 'stages': 3, 'model': model(16)}, {'warps': 1, 'tileN': 32, 'warpRows': 32, 'stages': 3, 'model': model(32)}]}}
section = {'buckets': [{'name': 'tidar_k2', 'batch': 1, 'prefix': 64, 'best': 'w1r32-n32p3-s4'}]}
m, v, splits, key = tuned_launch(grid, section, 'tidar_k2', 64, 1)
print(json.dumps([[tune.config_key(c) for c in cs], [tune.tile_key(c) for c in cs], tune.config_key(old), tune.plain_config(old), tune.tile_of_config_key('w1r32-n32p3-s4'), [m['name'], splits, key]]))
`;
    const { stdout } = await exec('python3', ['-c', script, resolve('scripts/device-check'), JSON.stringify(configs)]);
    expect(JSON.parse(stdout)).toEqual([configs.map(configKey), configs.map((c) => tileKey(c)), 'w4r16-n64p2-s2', { warps: 4, tileN: 64, warpRows: 16, stages: 2, splits: 2 }, ['w1r32-n32p3', 4], ['r32', 4, 'w1r32-n32p3-s4']]);
  });
});

describe('compile --tuned builds the tile the search recorded', () => {
  const heuristic: AttentionConfig = { warps: 2, tileN: 64, warpRows: 16, stages: 3, splits: 1 };
  test('32-row warps at 3 stages: the manifest\'s plan and the kernel\'s Config say so', async () => {
    const db = write('r32p3.json', dbOf(
      entry('b1 L1024', { 'w1r32-n32p3': 10, 'w1r16-n32p3': 14, 'w2r16-n64p3': 15 }, heuristic),
      entry('b1 L4096', { 'w1r32-n32p3': 30, 'w1r16-n32p3': 36, 'w2r16-n64p3': 40 }, heuristic),
    ));
    const out = join(root, 'r32p3');
    const r = await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', db, '--no-build', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/tuned tidar_k4: w1r32-n32p3 \(/);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
    const k4 = manifest.variants.find((v) => v.name === 'tidar_k4')!;
    expect(k4.plan).toMatchObject({ warps: 1, tileN: 32, warpRows: 32, stages: 3, tileM: 32 });
    expect(k4.tuned?.calls).toEqual({ 'b1 L1024': { splits: 2 }, 'b1 L4096': { splits: 2 } });
    const cu = readFileSync(join(out, 'cuda', 'tidar_k4.cu'), 'utf8');
    expect(cu).toMatch(/static constexpr int kWarpRows = 32;/);
    expect(cu).toMatch(/static constexpr int kStages = 3;/);
    // Untuned, the planner gives these rows 16-row warps: the test would prove nothing otherwise.
    expect(manifest.variants.find((v) => v.name === 'tidar_k2')!.plan.warpRows).toBe(16);
  });

  test('an older CUDA entry (no rows a warp or stages) reads as 16-row warps and 2 stages, also beside a newer one', () => {
    const old: TuneEntry = { ...entry('b1 L1024', { 'w2-n32': 10, 'w4-n64': 20 }, { warps: 4, tileN: 64, splits: 1 }) };
    const newer = entry('b1 L4096', { 'w2r16-n32p2': 30, 'w4r16-n64p2': 50, 'w1r32-n32p3': 35 }, heuristic);
    expect(old.best).toEqual({ warps: 2, tileN: 32, splits: 2 });
    const picked = tunedTiles(parseTuneDb(JSON.stringify(dbOf(old, newer)), 'db.json'), spec, ['tidar_k4'], ['sm_90']);
    // w2-n32 of the older entry is w2r16-n32p2: timed in both buckets, the fastest there; the 32-row tile only in one.
    expect(picked.tiles['tidar_k4']).toMatchObject({ warps: 2, tileN: 32, warpRows: 16, stages: 2 });
    expect(picked.used['tidar_k4']).toMatch(/^w2r16-n32p2 \(/);
    const olderOnly = tunedTiles(dbOf({ ...old, byTile: undefined }), spec, ['tidar_k4'], ['sm_90']);
    expect(olderOnly.tiles['tidar_k4']).toMatchObject({ warps: 2, tileN: 32, warpRows: 16, stages: 2 });
  });

  test('a database whose rows a warp, stages or tile keys the kernel does not have is refused with one line naming them', async () => {
    const good = entry('b1 L1024', { 'w1r32-n32p3': 10 }, heuristic);
    const rows = write('bad-rows.json', dbOf({ ...good, best: { ...good.best, warpRows: 24 as 32 } }));
    expectOneErrorLine(await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', rows, '--no-build', '--json', '--out', join(root, 'o1')),
      `entries["${VARIANT} | b1 L1024"].best.warpRows = 24`, 'allowed: 16, 32');
    const stages = write('bad-stages.json', dbOf({ ...good, heuristic: { ...heuristic, stages: 4 as 3 } }));
    expectOneErrorLine(await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', stages, '--no-build', '--json', '--out', join(root, 'o2')),
      'heuristic.stages = 4', 'allowed: 2, 3');
    const key = write('bad-key.json', dbOf({ ...good, byTile: { 'w1-r32-n32': { splits: 1, medianUs: 1 } } }));
    expectOneErrorLine(await runTidarc('compile', TINY, '--arch', 'sm_90', '--tuned', key, '--no-build', '--json', '--out', join(root, 'o3')),
      `entries["${VARIANT} | b1 L1024"].byTile = w1-r32-n32`);
  });
});
