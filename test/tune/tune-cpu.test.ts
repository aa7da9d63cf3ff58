/**
 * tidarc tune on the CPU backend, for real on a small shape: winners and the heuristic are
 * recorded, a rerun resumes (skips what the database holds), a configuration that computes
 * wrong results is rejected, `--report` renders, and `compile --tuned` builds with the recorded
 * tiles (visible in the manifest).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import type { Manifest, ManifestVariant } from '../../src/codegen/manifest.js';
import { prepareCall } from '../../src/runtime/kernel-library.js';
import { cpuThreadCount } from '../../src/runtime/ops.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { readTuneDb, type TuneEntry } from '../../src/tune/db.js';
import { tunedTiles } from '../../src/tune/report.js';
import { tuneCpu } from '../../src/tune/tune-cpu.js';
import { kernelCacheEntry } from '../../src/build/kernel-cache.js';
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
    const tile = { warps: 4, tileN: 64 };
    const entry = kernelCacheEntry({ spec, drafts: [2], target: 'cpu', cacheDir: join(dir, 'cache'), variants: ['tidar_k2', 'ar'], tiles: { tidar_k2: tile, ar: tile } });
    const compiled = JSON.parse(readFileSync(join(entry, 'manifest.json'), 'utf8')) as Manifest;
    // Each tile's library holds the variants timed, not the prefill's (never timed: half the C++).
    expect(compiled.variants.map((v) => v.name)).toEqual(['tidar_k2', 'ar']);
    expect(compiled.omittedVariants).toEqual(['block_k2', 'prefill_c64']);
    for (const e of entries) {
      // 2 warps x 2 tileN x 2 splits (+ the heuristic), less w4-n32: AR's 2 rows and tidar_k2's 12 (G = 2) are one 16-row
      // tile whose keys the warps split, and 4 warps cannot split 32 keys into k16 slices (plan.ts rowTileOf).
      expect(e.timed).toBeGreaterThanOrEqual(6);
      expect(e.bestTiming.medianUs).toBeLessThanOrEqual(e.heuristicTiming.medianUs);
      expect(e.bestTiming.p20Us).toBeLessThanOrEqual(e.bestTiming.p80Us);
      expect(e.meta.backend).toBe('cpu');
      expect(Object.keys(e.byTile!).sort()).toEqual(['w2-n32', 'w2-n64', 'w4-n64']);
      // The heuristic recorded is what the runtime picks for the call when nothing is tuned.
      const v = compiled.variants.find((x) => e.variant.startsWith(`${x.name} `))!;
      const sizes = { q: v.steps * 2 * 64, cache: 128 * 64, step: v.steps * 64 };
      const args = prepareCall({ ...v, tuned: undefined } as ManifestVariant, { batch: 1, cacheCapacity: 128, prefixLen: [100], q: new Uint16Array(sizes.q), kCache: new Uint16Array(sizes.cache), vCache: new Uint16Array(sizes.cache), kStep: new Uint16Array(sizes.step), vStep: new Uint16Array(sizes.step) }, cpuThreadCount());
      expect(e.heuristic).toEqual({ warps: 4, tileN: 64, splits: args.numSplits, threads: args.numThreads });
    }
    // The default tile (w4-n64) is compiled first: it describes the variants; then the other two (w4-n32 is pruned).
    expect(lines.some((l) => /compiling the CPU kernels of 2 tiles/.test(l))).toBe(true);
    expect(lines.some((l) => /\[\d\/2\] w2-n32/.test(l))).toBe(true);
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
    expect(rep.stdout).toMatch(/heuristic within 10% of the tuned best on \d of 2 cpu shapes/);
    expectWellFormedXml(readFileSync(join(dir, 'tune.svg'), 'utf8'));

    const { tiles } = tunedTiles(readTuneDb(db), spec, ['tidar_k2', 'ar'], ['sm_90']);
    const specFile = join(dir, 'tunetest.json');
    writeFileSync(specFile, JSON.stringify(spec));
    const out = join(dir, 'compiled');
    const r = await runTidarc('compile', specFile, '--tuned', db, '--no-build', '--out', out, '--arch', 'sm_90');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/tuned tidar_k2: w\d-n\d+ \(tune's best over 1 shape\); cpu call parameters for 1 shape bucket\n/);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
    const entries = readTuneDb(db).entries;
    for (const [name, t] of Object.entries(tiles)) {
      const v = manifest.variants.find((x) => x.name === name)!;
      expect({ warps: v.plan.warps, tileN: v.plan.tileN }).toEqual({ warps: t.warps, tileN: t.tileN });
      // At this one shape, the tile and the call parameters are the best that tune recorded and reported (the winner of the
      // re-timing, which the first pass's per-tile times need not rank first), for the cpu backend.
      const e = entries[`${name} bf16 d64 q2/kv1 | b1 L128`]!;
      expect({ warps: t.warps, tileN: t.tileN }).toEqual({ warps: e.best.warps, tileN: e.best.tileN });
      expect(v.tuned).toEqual({ backend: 'cpu', device: e.meta.device, calls: { 'b1 L128': { splits: e.best.splits, threads: e.best.threads } } });
    }
    const missing = await runTidarc('compile', specFile, '--tuned', join(dir, 'nope.json'), '--no-build', '--out', out);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no such tuning database \(--tuned = .*nope\.json\)/);
  });
});

describe.skipIf(!cxx.found)('tidarc tune interrupted (Ctrl-C)', () => {
  // The built CLI in a child process, as a user runs it; `onOutput` sees stdout as it grows. Its
  // kernel cache is the one the tests above filled: the same spec and tiles, so the CLI finds the
  // four tile libraries compiled (the interrupt comes after the compiles: they are not under test).
  const tidarc = (args: readonly string[], onOutput: (stdout: string, child: ChildProcess) => void = () => undefined) => new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    const child = spawn(process.execPath, [resolve('bin/tidarc.js'), ...args], { env: { ...process.env, TIDARC_CACHE: join(dir, 'cache') } });
    let stdout = '', stderr = '';
    child.stderr.on('data', (d: Buffer) => void (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onOutput(stdout, child);
    });
    child.on('exit', (code) => done({ code, stdout, stderr }));
  });

  test('SIGINT ends the run with exit code 130, keeps every finished shape, and a rerun resumes from them', { timeout: 600_000 }, async () => {
    const specFile = join(dir, 'interrupt.json');
    writeFileSync(specFile, JSON.stringify(spec));
    const db = join(dir, 'interrupt-db.json');
    const args = ['tune', specFile, '--prefix', '4k,8k', '--batch', '1', '--warps', '2,4', '--tile-n', '32,64', '--splits', '1,2', '--threads', '1', '--db', db];
    // Four shapes (tidar_k2 and ar at 4k and 8k): the first is recorded, the interrupt lands while
    // the second (tidar_k2 at 8k, seconds of timing) is being timed.
    const first = await tidarc(args, (out, child) => {
      if (/\[1\/4\] .*: best /.test(out) && !child.killed) child.kill('SIGINT');
    });
    expect(first.code, first.stderr).toBe(130);
    expect(first.stderr).toMatch(/interrupted; finishing the configuration being timed, keeping what was measured/);
    expect(first.stdout).toMatch(/not reached \(interrupted\): rerun to resume/);
    const kept = Object.keys(readTuneDb(db).entries);
    expect(kept.length).toBeGreaterThanOrEqual(1);
    expect(kept.length).toBeLessThan(4);
    expect(kept).toContain('tidar_k2 bf16 d64 q2/kv1 | b1 L4096');
    const rerun = await tidarc(args);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stdout).toContain(`${4 - kept.length} shapes tuned, ${kept.length} already in ${db}`);
    expect(Object.keys(readTuneDb(db).entries)).toHaveLength(4);
  });
});

describe('tidarc tune arguments', () => {
  test('the CUDA search is refused here, with the reason', async () => {
    const r = await runTidarc('tune', 'examples/tiny.json', '--backend', 'cuda', '--db', join(dir, 'x.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the CUDA search runs in the device check \(npm run device-check:prepare, .*tune-cuda\.json for compile\/run --tuned\) \(--backend = cuda\)/);
  });
  test('prefix lists take a k suffix; a bad one is one clear error', async () => {
    const r = await runTidarc('tune', 'examples/tiny.json', '--prefix', '1k,abc', '--db', join(dir, 'x.json'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/invalid prefix length \(--prefix = abc\)/);
  });
});
