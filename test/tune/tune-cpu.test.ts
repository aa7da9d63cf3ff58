/**
 * tidarc tune on the CPU backend, for real on a small shape: winners and the heuristic are
 * recorded, a rerun resumes (skips what the database holds), a configuration that computes
 * wrong results is rejected, `--report` renders, and `compile --tuned` builds with the recorded
 * tiles (visible in the manifest).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { readTuneDb, type TuneEntry } from '../../src/tune/db.js';
import { tunedTiles } from '../../src/tune/report.js';
import { tuneCpu } from '../../src/tune/tune-cpu.js';
import { runTidarc } from '../helpers/cli.js';
import { expectWellFormedXml } from '../helpers/well-formed-xml.js';

const cxx = await findCxx();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-tune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec: ModelSpec = {
  name: 'tunetest', family: 'qwen3', layers: 1, hiddenSize: 128, queryHeads: 2, kvHeads: 1, headDim: 64, intermediateSize: 128, vocabSize: 260,
  ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259, draftLengths: [2],
};
const SPACE = { warps: [2, 4], tileN: [32, 64], splits: [1, 2], threads: [1] };

describe.skipIf(!cxx.found)('tidarc tune (cpu)', () => {
  const db = join(dir, 'tune.json');

  test('records the best and the heuristic per shape; a rerun skips what it holds', { timeout: 600_000 }, async () => {
    const lines: string[] = [];
    const r = await tuneCpu({ spec, drafts: [2], prefixes: [100], batches: [1], dbPath: db, cacheDir: join(dir, 'cache'), space: SPACE, log: (l) => lines.push(l) });
    expect(r.tuned).toBe(2);  // tidar_k2 and ar
    const entries = Object.values(readTuneDb(db).entries) as TuneEntry[];
    expect(entries.map((e) => `${e.variant} | ${e.bucket}`).sort()).toEqual(['ar bf16 d64 q2/kv1 | b1 L128', 'tidar_k2 bf16 d64 q2/kv1 | b1 L128']);
    for (const e of entries) {
      expect(e.timed).toBeGreaterThanOrEqual(8);  // 2 warps x 2 tileN x 2 splits (+ the heuristic)
      expect(e.bestTiming.medianUs).toBeLessThanOrEqual(e.heuristicTiming.medianUs);
      expect(e.bestTiming.p20Us).toBeLessThanOrEqual(e.bestTiming.p80Us);
      expect(e.heuristic).toMatchObject({ warps: 4, tileN: 64 });
      expect(e.meta.backend).toBe('cpu');
    }
    expect(lines.some((l) => /compiled the CPU kernels for 2 warps x tileN 32/.test(l))).toBe(true);
    const again = await tuneCpu({ spec, drafts: [2], prefixes: [100, 128], batches: [1], dbPath: db, cacheDir: join(dir, 'cache'), space: SPACE, log: () => undefined });
    expect([again.tuned, again.cached]).toEqual([0, 4]);  // 100 and 128 share the bucket L128
  });

  test('a configuration whose output is wrong is rejected, never chosen', { timeout: 600_000 }, async () => {
    const bad = join(dir, 'bad.json');
    await tuneCpu({
      spec, drafts: [2], prefixes: [100], batches: [1], dbPath: bad, cacheDir: join(dir, 'cache'), space: SPACE, log: () => undefined,
      // The 2-warp libraries compute garbage: every output element is flipped in sign.
      wrapLibrary: (lib, tile) => (tile.warps !== 2 ? lib : {
        ...lib,
        run: (variant, inputs) => {
          const out = lib.run(variant, inputs);
          for (let i = 0; i < out.o.length; i++) out.o[i] = out.o[i]! ^ 0x8000;
          return out;
        },
      }),
    });
    for (const e of Object.values(readTuneDb(bad).entries) as TuneEntry[]) {
      expect(e.rejected.length).toBeGreaterThanOrEqual(4);
      expect(e.rejected.every((k) => k.startsWith('w2-'))).toBe(true);
      expect(e.best.warps).toBe(4);
    }
  });

  test('--report prints heuristic against tuned best and writes an SVG; compile --tuned uses the recorded tiles', { timeout: 600_000 }, async () => {
    const rep = await runTidarc('tune', '--report', '--db', db);
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stdout).toMatch(/\| tidar_k2 bf16 d64 q2\/kv1 \| b1 L128 \| w4-n64-s\d+-t\d+ \| [\d.]+ \| w\d-n\d+-s\d+-t\d+ \| [\d.]+ \| [\d.]+x \|/);
    expect(rep.stdout).toMatch(/heuristic within 10% of the tuned best on \d of 2 shapes/);
    expectWellFormedXml(readFileSync(join(dir, 'tune.svg'), 'utf8'));

    const { tiles } = tunedTiles(readTuneDb(db), spec, ['tidar_k2', 'ar'], ['sm_90']);
    const specFile = join(dir, 'tunetest.json');
    (await import('node:fs')).writeFileSync(specFile, JSON.stringify(spec));
    const out = join(dir, 'compiled');
    const r = await runTidarc('compile', specFile, '--tuned', db, '--no-build', '--out', out, '--arch', 'sm_90');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/tuned tidar_k2: w\d-n\d+ \(best in 1 of 1 shapes\)/);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { variants: { name: string; plan: { warps: number; tileN: number } }[] };
    for (const [name, t] of Object.entries(tiles)) {
      const v = manifest.variants.find((x) => x.name === name)!;
      expect({ warps: v.plan.warps, tileN: v.plan.tileN }).toEqual(t);
    }
    const missing = await runTidarc('compile', specFile, '--tuned', join(dir, 'nope.json'), '--no-build', '--out', out);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no such tuning database \(--tuned = .*nope\.json\)/);
  });
});

describe('tidarc tune arguments', () => {
  test('the CUDA search is refused here, with the reason', async () => {
    const r = await runTidarc('tune', 'examples/tiny.json', '--backend', 'cuda', '--db', join(dir, 'x.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the CUDA search runs in the device check \(--backend = cuda\)/);
  });
  test('prefix lists take a k suffix; a bad one is one clear error', async () => {
    const r = await runTidarc('tune', 'examples/tiny.json', '--prefix', '1k,abc', '--db', join(dir, 'x.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/invalid prefix length \(--prefix = abc\)/);
  });
});
