/** `tidarc tune --report` over a database holding CPU and GPU entries; the tile `compile --tuned` takes from one. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { Manifest } from '../../src/codegen/manifest.js';
import type { TuneDb, TuneEntry, TuneMeta } from '../../src/tune/db.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { tunedTiles, tuneReport } from '../../src/tune/report.js';
import { runTidarc } from '../helpers/cli.js';

const CPU: TuneMeta = { tidarc: '0.1.0', compiler: 'g++ 12.2.0', backend: 'cpu', device: 'AMD EPYC x 2' };
const H200: TuneMeta = { tidarc: '0.1.0', compiler: 'nvcc 13.0', backend: 'cuda', device: 'NVIDIA H200 x 132 SMs', driver: '580.1' };
const t = (us: number) => ({ medianUs: us, p20Us: us, p80Us: us });
const entry = (variant: string, meta: TuneMeta, heuristicUs: number): TuneEntry => ({
  variant, bucket: 'b1 L4096', best: { warps: 2, tileN: 32, splits: 4 }, bestTiming: t(100), heuristic: { warps: 4, tileN: 64, splits: 2 }, heuristicTiming: t(heuristicUs),
  timed: 30, rejected: [], meta, date: '2026-11-29',
});
const db: TuneDb = { format: 1, entries: {
  'ar bf16 d128 q32/kv8 | b1 L4096': entry('ar bf16 d128 q32/kv8', H200, 105),
  'tidar_k4 bf16 d128 q32/kv8 | b1 L4096': entry('tidar_k4 bf16 d128 q32/kv8', H200, 150),
  'tidar_k4 bf16 d64 q4/kv2 | b1 L4096': entry('tidar_k4 bf16 d64 q4/kv2', { ...CPU, device: 'another CPU x 64' }, 100),
} };

describe('tune --report', () => {
  test('GPU entries read on a machine without that GPU are shown as recorded; the CPU ones are checked against this CPU', () => {
    const text = tuneReport(db, { cpu: CPU });
    expect(text).toContain('heuristic within 10% of the tuned best on 1 of 2 cuda shapes (50%; goal 90%)');
    expect(text).toContain('heuristic within 10% of the tuned best on 0 of 0 cpu shapes');
    expect(text).toMatch(/\| tidar_k4 bf16 d64 q4\/kv2 \| b1 L4096 .* \(stale: device was another CPU x 64, is AMD EPYC x 2\) \|/);
    expect(text).toMatch(/\| tidar_k4 bf16 d128 q32\/kv8 \| b1 L4096 \| w4-n64-s2 \| 150\.0 \| w2-n32-s4 \| 100\.0 \| 1\.50x \|/);
  });
});

describe('compile --tuned: the tile of each variant', () => {
  const spec: ModelSpec = {
    name: 'pick', family: 'qwen3', layers: 1, hiddenSize: 512, queryHeads: 4, kvHeads: 2, headDim: 128, intermediateSize: 128, vocabSize: 260,
    ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259, draftLengths: [4],
  };
  const variant = 'tidar_k4 bf16 d128 q4/kv2';
  const withTiles = (bucket: string, byTile: Record<string, number>): TuneEntry => {
    const [bestTile] = Object.entries(byTile).sort(([, a], [, b]) => a - b)[0]!;
    const [, w, n] = /^w(\d+)-n(\d+)$/.exec(bestTile)!;
    const splits = (k: string): number => (k === 'w2-n32' ? 2 : 1);
    // No re-timing here: the best is the first pass's fastest configuration.
    return {
      ...entry(variant, CPU, 100), bucket, best: { warps: Number(w), tileN: Number(n), splits: splits(bestTile), threads: 0 }, bestTiming: t(byTile[bestTile]!),
      byTile: Object.fromEntries(Object.entries(byTile).map(([k, us]) => [k, { splits: splits(k), threads: 0, medianUs: us }])),
    };
  };
  const db = (...es: TuneEntry[]): TuneDb => ({ format: 1, entries: Object.fromEntries(es.map((e) => [`${e.variant} | ${e.bucket}`, e])) });

  test('the least geometric-mean slowdown over the shapes, not the most wins; its own calls per bucket', () => {
    // w4-n32 wins two shapes narrowly and loses the third badly; w2-n32 is never first but always close.
    const d = db(
      withTiles('b1 L256', { 'w4-n32': 100, 'w2-n32': 102, 'w4-n64': 130 }),
      withTiles('b1 L1024', { 'w4-n32': 100, 'w2-n32': 103, 'w4-n64': 120 }),
      withTiles('b1 L4096', { 'w4-n32': 200, 'w2-n32': 100, 'w4-n64': 110 }),
    );
    const r = tunedTiles(d, spec, ['tidar_k4'], ['sm_90']);
    expect(r.tiles['tidar_k4']).toMatchObject({ warps: 2, tileN: 32, measuredOn: { backend: 'cpu', device: CPU.device } });
    expect(r.tiles['tidar_k4']!.calls).toEqual({ 'b1 L256': { splits: 2, threads: 0 }, 'b1 L1024': { splits: 2, threads: 0 }, 'b1 L4096': { splits: 2, threads: 0 } });
  });

  test('a tile the compile\'s CUDA arches refuse is never picked, even when fastest everywhere', () => {
    const d = db(withTiles('b1 L4096', { 'w4-n256': 50, 'w4-n64': 100 }), withTiles('b1 L1024', { 'w4-n256': 50, 'w4-n64': 100 }));
    expect(tunedTiles(d, spec, ['tidar_k4'], ['sm_90']).tiles['tidar_k4']).toMatchObject({ warps: 4, tileN: 64 });
  });

  test('a 32-row tile ptxas spilled for the variant\'s mask kind on a compile\'s arch is not picked (attention-registers.ts); one it compiled is', () => {
    // Head dim 128, 32 keys, 3 warps of 32 rows: the causal prefill chunk spills 12 bytes on sm_90, none on sm_80; TiDAR decode none.
    const cuda = (name: string, bucket: string, byTile: Record<string, number>): TuneEntry => {
      const [bestTile] = Object.entries(byTile).sort(([, a], [, b]) => a - b)[0]!;
      const [, w, r, n, p] = /^w(\d+)r(16|32)-n(\d+)p([23])$/.exec(bestTile)!;
      return {
        ...entry(`${name} bf16 d128 q4/kv2`, H200, 100), bucket, best: { warps: Number(w), warpRows: Number(r) as 16 | 32, tileN: Number(n), stages: Number(p) as 2 | 3, splits: 1 },
        bestTiming: t(byTile[bestTile]!), byTile: Object.fromEntries(Object.entries(byTile).map(([k, us]) => [k, { splits: 1, medianUs: us }])),
      };
    };
    const times = { 'w3r32-n32p2': 50, 'w4r16-n64p2': 100 };
    const d = db(...['prefill_c64', 'tidar_k4'].flatMap((v) => [cuda(v, 'b1 L1024', times), cuda(v, 'b1 L4096', times)]));
    const onH200 = tunedTiles(d, spec, ['prefill_c64', 'tidar_k4'], ['sm_90']);
    expect(onH200.tiles['prefill_c64']).toMatchObject({ warps: 4, tileN: 64, warpRows: 16, stages: 2 });
    expect(onH200.tiles['tidar_k4']).toMatchObject({ warps: 3, tileN: 32, warpRows: 32, stages: 2 });
    expect(tunedTiles(d, spec, ['prefill_c64'], ['sm_80']).tiles['prefill_c64']).toMatchObject({ warps: 3, tileN: 32, warpRows: 32 });
    const only = db(cuda('prefill_c64', 'b1 L1024', { 'w3r32-n32p2': 50 }));
    expect(tunedTiles(only, spec, ['prefill_c64'], ['sm_80', 'sm_90']).skipped).toEqual([
      expect.stringMatching(/^prefill_c64: no tile timed for every shape can run on the CUDA arches of this compile \(w3r32-n32p2: ptxas spilled 12 bytes on sm_90: 3 warps of 32 rows x 32 keys at head dim 128, 2 stages, causal mask/),
    ]);
  });

  test('entries without per-tile times (older databases): the tile that wins the most shapes', () => {
    const old = (bucket: string, warps: number): TuneEntry => ({ ...entry(variant, CPU, 100), bucket, best: { warps, tileN: 64, splits: 1 } });
    const r = tunedTiles(db(old('b1 L256', 2), old('b1 L1024', 8), old('b1 L4096', 8)), spec, ['tidar_k4'], ['sm_90']);
    expect(r.tiles['tidar_k4']).toMatchObject({ warps: 8, tileN: 64 });
    expect(r.used['tidar_k4']).toMatch(/best in 2 of 3 shapes/);
  });

  // tidarc tune on the CPU times every configuration once (byTile: per tile its fastest first-pass call), then re-times the
  // fastest few and the heuristic and records the winner of that as `best`, which `tune` and `tune --report` print. The two
  // passes can disagree: compile --tuned must build the tile tune reported (it built byTile's fastest, w2-n128, for w4-n64).
  const retimed = (bucket: string, byTile: Record<string, { splits: number; threads: number; medianUs: number }>, best: { warps: number; tileN: number; splits: number; threads: number; us: number }): TuneEntry => ({
    ...entry(variant, CPU, 100), bucket, best: { warps: best.warps, tileN: best.tileN, splits: best.splits, threads: best.threads }, bestTiming: t(best.us), byTile,
  });

  test('the tile tune reports as best (the re-timed winner), not the first pass\'s fastest; with the best\'s own call parameters', () => {
    // First pass: w2-n32 40 us, w4-n64 41 us (at 1 split, 1 thread); the re-timing: w4-n64 at 2 splits and 2 threads won.
    const one = retimed('b1 L256', { 'w2-n32': { splits: 1, threads: 1, medianUs: 40 }, 'w4-n64': { splits: 1, threads: 1, medianUs: 41 } }, { warps: 4, tileN: 64, splits: 2, threads: 2, us: 39 });
    const r = tunedTiles(db(one), spec, ['tidar_k4'], ['sm_90']);
    expect(r.tiles['tidar_k4']).toMatchObject({ warps: 4, tileN: 64, calls: { 'b1 L256': { splits: 2, threads: 2 } } });
    expect(r.used['tidar_k4']).toBe('w4-n64 (tune\'s best over 1 shape); cpu call parameters for 1 shape bucket');
    // Two shapes whose re-timed bests agree while the first pass ranks the other tile first on both: that tile.
    const two = retimed('b1 L1024', { 'w2-n32': { splits: 2, threads: 0, medianUs: 70 }, 'w4-n64': { splits: 1, threads: 0, medianUs: 80 } }, { warps: 4, tileN: 64, splits: 4, threads: 0, us: 69 });
    const both = tunedTiles(db(one, two), spec, ['tidar_k4'], ['sm_90']);
    expect(both.tiles['tidar_k4']).toMatchObject({ warps: 4, tileN: 64, calls: { 'b1 L256': { splits: 2, threads: 2 }, 'b1 L1024': { splits: 4, threads: 0 } } });
    expect(both.used['tidar_k4']).toMatch(/^w4-n64 \(tune's best over 2 shapes\); cpu call parameters for 2 shape buckets$/);
    // Shapes that disagree: still the least slowdown, a tile measured against the shape's best tile in the first pass.
    const other = retimed('b1 L4096', { 'w2-n32': { splits: 2, threads: 0, medianUs: 100 }, 'w4-n64': { splits: 2, threads: 0, medianUs: 300 } }, { warps: 2, tileN: 32, splits: 2, threads: 0, us: 100 });
    expect(tunedTiles(db(one, other), spec, ['tidar_k4'], ['sm_90']).tiles['tidar_k4']).toMatchObject({ warps: 2, tileN: 32, calls: { 'b1 L256': { splits: 1, threads: 1 }, 'b1 L4096': { splits: 2, threads: 0 } } });
    expect(tunedTiles(db(one, other), spec, ['tidar_k4'], ['sm_90']).used['tidar_k4']).toMatch(/^w2-n32 \(0% slower than each shape's tuned best on geometric mean of first-pass times, over 2 shapes; tune's best in 1\)/);
    // A tile that lost the re-timing on every shape but led both first passes reads 0% slower: the message says it won none.
    const a = retimed('b1 L256', { 'w2-n32': { splits: 1, threads: 1, medianUs: 40 }, 'w4-n64': { splits: 1, threads: 1, medianUs: 41 }, 'w8-n64': { splits: 1, threads: 1, medianUs: 60 } }, { warps: 4, tileN: 64, splits: 1, threads: 1, us: 39 });
    const b = retimed('b1 L1024', { 'w2-n32': { splits: 1, threads: 1, medianUs: 48 }, 'w4-n64': { splits: 1, threads: 1, medianUs: 80 }, 'w8-n64': { splits: 1, threads: 1, medianUs: 49 } }, { warps: 8, tileN: 64, splits: 1, threads: 1, us: 47 });
    const lost = tunedTiles(db(a, b), spec, ['tidar_k4'], ['sm_90']);
    expect(lost.tiles['tidar_k4']).toMatchObject({ warps: 2, tileN: 32 });
    expect(lost.used['tidar_k4']).toMatch(/^w2-n32 \(0% slower than each shape's tuned best on geometric mean of first-pass times, over 2 shapes; tune's best in 0\)/);
  });
});

describe('compile --tuned on a handmade database: the tile `tidarc tune` reported', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidarc-tune-report-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('tidar_k2 of tiny: tune reported w4-n64 (re-timed) where the first pass timed w2-n128 fastest; the manifest has w4-n64', async () => {
    const file = join(dir, 'tune.json');
    const e: TuneEntry = {
      variant: 'tidar_k2 bf16 d64 q4/kv2', bucket: 'b1 L256', best: { warps: 4, tileN: 64, splits: 2, threads: 1 }, bestTiming: t(20), heuristic: { warps: 4, tileN: 64, splits: 1, threads: 1 }, heuristicTiming: t(25),
      timed: 4, rejected: [], byTile: { 'w2-n128': { splits: 1, threads: 1, medianUs: 19 }, 'w4-n64': { splits: 1, threads: 1, medianUs: 21 } }, meta: CPU, date: '2026-12-05',
    };
    writeFileSync(file, JSON.stringify({ format: 1, entries: { [`${e.variant} | ${e.bucket}`]: e } }));
    const report = await runTidarc('tune', '--report', '--db', file);
    expect(report.stdout).toMatch(/\| tidar_k2 bf16 d64 q4\/kv2 \| b1 L256 \| w4-n64-s1-t1 \| 25\.0 \| w4-n64-s2-t1 \| 20\.0 \|/);
    const out = join(dir, 'out');
    const r = await runTidarc('compile', 'examples/tiny.json', '--arch', 'sm_90', '--tuned', file, '--no-build', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/tuned tidar_k2: w4-n64 \(tune's best over 1 shape\); cpu call parameters for 1 shape bucket\n/);
    const k2 = (JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest).variants.find((v) => v.name === 'tidar_k2')!;
    expect({ warps: k2.plan.warps, tileN: k2.plan.tileN }).toEqual({ warps: 4, tileN: 64 });
    expect(k2.tuned?.calls).toEqual({ 'b1 L256': { splits: 2, threads: 1 } });
  });
});
