/**
 * The README's `tidarc tune` example, in its shape (the bundled model, a prefix list, a batch
 * list, --db), on a space cut to two tiles so it stays seconds: it exited 1 with `plan for ar is
 * invalid: 4 warps cannot split 32 keys into slices of whole k16 steps`, because every tile was
 * compiled for every variant while w4-n32 is a candidate of tidar_k4 and tidar_k8 only (their
 * rows are row warps; ar's 2 rows are one m16 tile whose keys 4 warps split). A tile other than
 * the default is now built for the variants whose search has it.
 * Needs: g++ (the per-tile CPU libraries).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { kernelCacheEntry } from '../../src/build/kernel-cache.js';
import { findCxx } from '../../src/build/toolchain.js';
import type { Manifest } from '../../src/codegen/manifest.js';
import { readModelInput } from '../../src/model/model-input.js';
import { readTuneDb, type TuneEntry } from '../../src/tune/db.js';
import { runTidarc } from '../helpers/cli.js';
import { fileScratchWithOwnKernelCache } from '../helpers/scratch.js';

const cxx = await findCxx();
const dir = fileScratchWithOwnKernelCache('tidarc-tune-readme-');

describe.skipIf(!cxx.found)('the README tune example', () => {
  test('tidarc tune models/tidar-tiny-code --prefix 256 --batch 1,4 --db FILE tunes every shape, with a tile only some variants can use', { timeout: 600_000 }, async () => {
    const db = join(dir, 'tune.json');
    const r = await runTidarc('tune', 'models/tidar-tiny-code', '--prefix', '256', '--batch', '1,4', '--db', db, '--warps', '4', '--tile-n', '32,64', '--splits', '1', '--threads', '1');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`6 shapes tuned, 0 already in ${db}`);
    const entries = Object.values(readTuneDb(db).entries) as TuneEntry[];
    expect(entries.map((e) => `${e.variant.split(' ')[0]} | ${e.bucket}`).sort()).toEqual(
      ['ar | b1 L256', 'ar | b4 L256', 'tidar_k4 | b1 L256', 'tidar_k4 | b4 L256', 'tidar_k8 | b1 L256', 'tidar_k8 | b4 L256']);
    for (const e of entries) {
      // The draft variants timed both tiles; ar only the default (w4-n32 is pruned for its 2 rows).
      expect(Object.keys(e.byTile!).sort(), e.variant).toEqual(e.variant.startsWith('ar ') ? ['w4-n64'] : ['w4-n32', 'w4-n64']);
    }
    // The w4-n32 library was built for the two draft variants only; the default tile's for all three.
    const { spec } = await readModelInput('models/tidar-tiny-code');
    const manifestOf = (variants: string[], tileN: number): Manifest => JSON.parse(readFileSync(join(kernelCacheEntry({
      spec, drafts: spec.draftLengths, target: 'cpu', cacheDir: join(dir, 'cache'), variants, tiles: Object.fromEntries(variants.map((n) => [n, { warps: 4, tileN }])),
    }), 'manifest.json'), 'utf8')) as Manifest;
    expect(manifestOf(['tidar_k4', 'tidar_k8'], 32).variants.map((v) => v.name)).toEqual(['tidar_k4', 'tidar_k8']);
    expect(manifestOf(['tidar_k4', 'tidar_k8', 'ar'], 64).variants.map((v) => v.name)).toEqual(['tidar_k4', 'tidar_k8', 'ar']);
  });
});
