/** `tidarc tune --report` over a database holding CPU and GPU entries. */
import { describe, expect, test } from 'vitest';
import type { TuneDb, TuneEntry, TuneMeta } from '../../src/tune/db.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { tunedTiles, tuneReport } from '../../src/tune/report.js';

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
    return {
      ...entry(variant, CPU, 100), bucket, best: { warps: Number(w), tileN: Number(n), splits: 1, threads: 0 }, bestTiming: t(byTile[bestTile]!),
      byTile: Object.fromEntries(Object.entries(byTile).map(([k, us]) => [k, { splits: k === 'w2-n32' ? 2 : 1, threads: 0, medianUs: us }])),
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
});
