/**
 * A kernel cache entry's kernel-family choice (gemmsSm90a[].heuristic, variants' sm90a.heuristic:
 * the cost models' pick, which the runtime follows without a tune record) is generator output, so
 * an entry written by other generator code, with other choice data (an older tidarc's: none, the
 * arch rule), is regenerated, not reused: compileModel (what cachedKernels runs on the entry)
 * compares the stamp of the generator's code (input-key.ts generatorDigest) as well as the input
 * key. Needs: nothing (no build: the entry's generated manifest).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { STAMP_FILE, compileModel } from '../../src/build/compile-model.js';
import { cacheCompile } from '../../src/build/kernel-cache.js';
import type { Manifest } from '../../src/codegen/manifest.js';
import { smallSpec } from '../helpers/random-model.js';
import { scratchDir } from '../helpers/scratch.js';

test('an entry written with other choice data by other generator code is regenerated with the current choice', async () => {
  const outDir = join(await scratchDir('tidarc-cache-choice-'), 'entry');
  // A 9.0 device's entry (sm_90 and sm_90a), generated only.
  const req = { spec: smallSpec('choice', [2]), targets: cacheCompile('sm_90').targets, outDir, build: 'none' as const, log: () => undefined };
  const first = await compileModel(req);
  const chosen = first.manifest.gemmsSm90a!.map((u) => u.heuristic);
  expect(chosen.length).toBeGreaterThan(0);
  expect(chosen.every((h) => h !== undefined)).toBe(true);
  expect((await compileModel(req)).unchanged).toBe(true);

  // As an older generator left it: no choice recorded (the runtime falls back to the arch rule), its own code's stamp.
  const path = join(outDir, 'manifest.json');
  const old = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  writeFileSync(path, `${JSON.stringify({ ...old, gemmsSm90a: old.gemmsSm90a!.map(({ heuristic: _, ...u }) => u) }, null, 2)}\n`);
  // Its stamp: the same input key, and what else the stamp holds (the generator code's digest) another code's.
  const stamp = JSON.parse(readFileSync(join(outDir, STAMP_FILE), 'utf8')) as Record<string, string>;
  writeFileSync(join(outDir, STAMP_FILE), `${JSON.stringify(Object.fromEntries(Object.entries(stamp).map(([k, v]) => [k, k === 'inputKey' ? v : `older ${v}`])))}\n`);
  const again = await compileModel(req);
  expect(again.unchanged).toBe(false);
  expect(again.manifest.gemmsSm90a!.map((u) => u.heuristic)).toEqual(chosen);
  expect((JSON.parse(readFileSync(path, 'utf8')) as Manifest).gemmsSm90a!.map((u) => u.heuristic)).toEqual(chosen);
});
