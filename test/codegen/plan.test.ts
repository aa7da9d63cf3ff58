/**
 * The kernel plan's in-step tile schedule against dense evaluation of the mask: a row
 * tile visits exactly the key tiles that hold a visible (row, key) pair, and marks full
 * exactly those where every pair of the tile is visible and inside n.
 */
import { describe, expect, test } from 'vitest';
import { ARCHES, parseArch } from '../../src/codegen/arch.js';
import { archProblems, attentionSharedBytes, defaultStages, planAttention } from '../../src/codegen/plan.js';
import { describeVariant } from '../../src/codegen/generate.js';
import { renderCudaVariant } from '../../src/codegen/kernel-source.js';
import { chooseSplits } from '../../src/codegen/splits.js';
import { arVariant, prefillChunkVariant, tidarDecodeVariant, variantForMask } from '../../src/codegen/variant.js';
import { stepVisibility } from '../../src/ir/mask.js';
import { blockDiffusion, causal, tree } from '../../src/ir/mask-builders.js';

const shapes = [
  { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 4 },
  { dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 },
  { dtype: 'fp16', headDim: 128, qHeads: 6, kvHeads: 1 },
  { dtype: 'fp16', headDim: 64, qHeads: 24, kvHeads: 3 },
] as const;

const variants = [
  ...[1, 2, 3, 4, 8, 16].flatMap((k) => shapes.map((s) => tidarDecodeVariant(k, s))),
  variantForMask('tree', tree([-1, 0, 0, 1, 1, 2, 3, -1, 7]), shapes[2], 'tree'),
  variantForMask('bd', blockDiffusion(70), shapes[3], 'block diffusion'),
  variantForMask('ar', causal(1), shapes[1], 'ar'),
];

describe('planAttention', () => {
  test.for(variants.map((v) => [`${v.name} G${v.shape.qHeads / v.shape.kvHeads}`, v] as const))('%s schedule matches dense evaluation', ([, v]) => {
    for (const tile of [ARCHES.sm_80.tile, { warps: 2, tileN: 32, stages: 2 as const }]) {
      const plan = planAttention(v, tile);
      const n = plan.steps;
      const vis = stepVisibility(v.mask);
      const G = plan.group;
      let visited = 0;
      for (let rt = 0; rt < plan.rowTiles; rt++) {
        const scheduled = new Map<number, boolean>();
        for (let s = plan.stepTileOffset[rt]!; s < plan.stepTileOffset[rt + 1]!; s++) scheduled.set(plan.stepTileKey[s]!, plan.stepTileFull[s]!);
        for (let kt = 0; kt < plan.stepKeyTiles; kt++) {
          let seen = 0, cells = 0;
          for (let r = rt * plan.tileM; r < Math.min(plan.rows, (rt + 1) * plan.tileM); r++) {
            for (let k = kt * tile.tileN; k < (kt + 1) * tile.tileN; k++) {
              cells++;
              if (k < n) seen += vis[Math.floor(r / G) * n + k]!;
            }
          }
          expect(scheduled.has(kt), `row tile ${rt}, key tile ${kt}`).toBe(seen > 0);
          if (seen > 0) expect(scheduled.get(kt), `full flag ${rt},${kt}`).toBe(seen === cells);
        }
        visited += scheduled.size;
      }
      expect(visited).toBe(plan.stepTileCounts.full + plan.stepTileCounts.partial);
      expect(plan.stepTileCounts.empty + visited).toBe(plan.rowTiles * plan.stepKeyTiles);
    }
  });

  test('TiDAR k = 16 on the Qwen3-8B shape skips most in-step tiles', () => {
    const plan = planAttention(tidarDecodeVariant(16, shapes[1]), ARCHES.sm_90.tile);
    expect(plan.rows).toBe(1088);
    expect(plan.rowTiles).toBe(17);
    expect(plan.stepTileCounts.empty).toBeGreaterThan(plan.stepTileCounts.partial + plan.stepTileCounts.full);
  });

  test('shared memory per arch: 2 stages of K and V, padded rows', () => {
    const plan = planAttention(tidarDecodeVariant(4, shapes[1]), ARCHES.sm_86.tile);
    expect(plan.sharedBytes).toBe(2 * 2 * 64 * 136 * 2);
    expect(archProblems(plan, ARCHES.sm_86)).toEqual([]);
    const big = planAttention(tidarDecodeVariant(4, shapes[1]), { warps: 4, tileN: 256, stages: 2 });
    expect(archProblems(big, ARCHES.sm_86)[0]).toMatch(/needs 278528 bytes of shared memory; sm_86 allows 101376/);
  });

  test('unknown arch is one clear error', () => {
    expect(() => parseArch('sm_70')).toThrow(/unknown GPU architecture \(--arch = sm_70\); allowed: sm_80, sm_86, sm_89, sm_90/);
  });
});

describe('the row tile per variant (rowTileOf): no padding rows, the prefix read once', () => {
  const qwen3 = shapes[1];  // G = 4
  test.for([
    // [variant, rows, layout, warps, row tiles]: AR's 4 rows are one m-tile whose 64 keys 4 warps split;
    // k = 4's 80 rows are one CTA of 5 warps; k = 8 and 16 tiles of 4 to 8 warps with the least padding.
    [arVariant(qwen3), 4, 'keys', 4, 1],
    [tidarDecodeVariant(1, qwen3), 8, 'keys', 4, 1],
    [tidarDecodeVariant(2, qwen3), 24, 'rows', 2, 1],
    [tidarDecodeVariant(4, qwen3), 80, 'rows', 5, 1],
    [tidarDecodeVariant(8, qwen3), 288, 'rows', 6, 3],
    [tidarDecodeVariant(16, qwen3), 1088, 'rows', 4, 17],
    [prefillChunkVariant(qwen3), 256, 'rows', 8, 2],
  ] as const)('%s', ([v, rows, layout, warps, rowTiles]) => {
    const plan = planAttention(v, ARCHES.sm_90.tile);
    expect([plan.rows, plan.rowTile.layout, plan.rowTile.warps, plan.rowTiles, plan.threads]).toEqual([rows, layout, warps, rowTiles, 32 * warps]);
    expect(plan.tileM).toBe(layout === 'keys' ? 16 : 16 * warps);
    const m = describeVariant(plan, [ARCHES.sm_90]);
    expect(m.plan).toMatchObject({ layout, warps, rowWarps: layout === 'keys' ? 1 : warps, keyWarps: layout === 'keys' ? warps : 1, tileM: plan.tileM, rowTiles });
    const cu = renderCudaVariant(plan, 'm');
    expect(cu).toContain(`static constexpr int kRowWarps = ${m.plan.rowWarps};`);
    expect(cu).toContain(`static constexpr int kKeyWarps = ${m.plan.keyWarps};`);
  });

  test('a tuned warp count keeps the layout the rows imply; a split the keys cannot take is one clear error', () => {
    expect(planAttention(arVariant(shapes[1]), { warps: 2, tileN: 64, stages: 2 }).rowTile).toEqual({ layout: 'keys', warps: 2, rowWarps: 1, keyWarps: 2, warpRows: 16, tileM: 16 });
    expect(planAttention(tidarDecodeVariant(4, shapes[1]), { warps: 4, tileN: 64, stages: 2 }).rowTiles).toBe(2);
    expect(() => planAttention(arVariant(shapes[1]), { warps: 8, tileN: 64, stages: 2 })).toThrow(/plan for ar is invalid: 8 warps cannot split 64 keys into slices of whole k16 steps/);
  });
});

describe('32 rows a warp and the cp.async stages (issue 15 items 1(c) and 4)', () => {
  const d64 = { dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1 } as const;
  test.for([
    // [variant, rows, warps, rows a warp, row tiles]: above 128 rows at head dim 64, warps of 32 in tiles of 64 to 128 rows, least padding first.
    [tidarDecodeVariant(8, d64), 288, 3, 32, 3],  // 96-row tiles, no padding (128 would pad 96)
    [tidarDecodeVariant(16, d64), 1088, 2, 32, 17],  // 64-row tiles, no padding (9 x 128 would pad 64)
    [prefillChunkVariant(d64), 256, 4, 32, 2],  // 2 x 128 and 4 x 64 pad nothing: the fewer tiles
    [tidarDecodeVariant(8, { ...d64, qHeads: 6 }), 432, 2, 32, 7],  // 448 rows run: 16 of padding, the least
    [tidarDecodeVariant(4, d64), 80, 5, 16, 1],  // <= 128 rows: one CTA of 16-row warps
    [tidarDecodeVariant(16, shapes[1]), 1088, 4, 16, 17],  // head dim 128: 32-row warps would spill (fitsInRegisters)
  ] as const)('%s', ([v, rows, warps, warpRows, rowTiles]) => {
    const plan = planAttention(v, ARCHES.sm_90.tile);
    expect([plan.rows, plan.rowTile.warps, plan.rowTile.warpRows, plan.rowTiles, plan.tileM]).toEqual([rows, warps, warpRows, rowTiles, warps * warpRows]);
    expect(describeVariant(plan, [ARCHES.sm_90]).plan).toMatchObject({ warps, warpRows, rowWarps: warps, keyWarps: 1 });
    const cu = renderCudaVariant(plan, 'm');
    expect(cu).toContain(`static constexpr int kWarpRows = ${warpRows};`);
    expect(cu).toContain(`static constexpr int kStages = ${plan.tile.stages};`);
  });

  test('shared memory: K and V of each stage, and the Q tile of 32-row warps in a region of its own', () => {
    const k16 = tidarDecodeVariant(16, d64);
    expect(planAttention(k16, { tileN: 64, stages: 2 }).sharedBytes).toBe(2 * 2 * 64 * 72 * 2 + 64 * 72 * 2);
    expect(planAttention(k16, { tileN: 64, stages: 3 }).sharedBytes).toBe(2 * 3 * 64 * 72 * 2 + 64 * 72 * 2);
    expect(planAttention(k16, { tileN: 64, stages: 3, warpRows: 16 }).sharedBytes).toBe(2 * 3 * 64 * 72 * 2);
    expect(attentionSharedBytes({ warpRows: 16, tileM: 80 }, 64, 128, 3)).toBe(104_448);
  });

  test('the default stages: 3 where every device of the compile keeps the CTAs per SM the 2-stage kernel had', () => {
    const q = shapes[1];  // Qwen3-8B: head dim 128, 69632 bytes at 2 stages, 104448 at 3
    // k = 4 as one CTA of 5 warps (the tile pins the warps, not the stages): registers hold one CTA an SM either way, and 104448 bytes fit sm_80 and sm_90.
    const five = { ...ARCHES.sm_90.tile, warps: 5 };
    expect(planAttention(tidarDecodeVariant(4, q), five, [ARCHES.sm_80, ARCHES.sm_90]).tile.stages).toBe(3);
    // sm_86 allows 101376 bytes a CTA: 3 stages do not fit, so a compile with it takes 2 everywhere.
    expect(planAttention(tidarDecodeVariant(4, q), five, [ARCHES.sm_86, ARCHES.sm_90]).tile.stages).toBe(2);
    // AR: 4 warps of ~144 registers, 3 CTAs an SM of sm_90 by shared memory at 2 stages, 2 at 3: keep 2.
    expect(planAttention(arVariant(q), ARCHES.sm_90.tile, [ARCHES.sm_90]).tile.stages).toBe(2);
    // No device (a CPU-only plan): 2; a tuned tile's stages are kept.
    expect(planAttention(tidarDecodeVariant(4, q), ARCHES.sm_90.tile).tile.stages).toBe(2);
    expect(planAttention(arVariant(q), { tileN: 64, stages: 3 }, [ARCHES.sm_90]).tile.stages).toBe(3);
    // The rule with given registers: 64 a thread leave shared memory the limit, so 3 stages would cost a CTA.
    const rt = planAttention(tidarDecodeVariant(4, q), ARCHES.sm_90.tile).rowTile;
    expect(defaultStages(rt, 64, 128, [ARCHES.sm_90], () => 64)).toBe(2);
    expect(defaultStages(rt, 64, 128, [ARCHES.sm_90], () => 200)).toBe(3);
  });

  test('a tile the kernel cannot run is one clear error', () => {
    expect(() => planAttention(arVariant(shapes[1]), { tileN: 64, warps: 4, warpRows: 32 })).not.toThrow();  // <= 16 rows: one m16 tile, warpRows is moot
    expect(planAttention(arVariant(shapes[1]), { tileN: 64, warps: 4, warpRows: 32 }).rowTile.warpRows).toBe(16);
    expect(() => planAttention(tidarDecodeVariant(4, shapes[1]), { tileN: 64, stages: 4 as 3 })).toThrow(/plan for tidar_k4 is invalid: the kernel has 2 or 3 cp.async stages, not 4/);
  });
});

describe('split-KV is one launch', () => {
  test('a variant has one kernel, which merges the splits after its tiles; the manifest names no second launch', () => {
    const plan = planAttention(tidarDecodeVariant(4, shapes[1]), ARCHES.sm_90.tile);
    const cu = renderCudaVariant(plan, 'm');
    expect(cu.match(/extern "C" __global__/g)).toHaveLength(1);
    expect(cu).toMatch(/split_work<Config>\(args\);\n.*attention_tile_kernel<Config>\(args, work\);.*\n {2}tidarc::merge_split_slice<Config>\(args, work\);\n}/);
    expect(cu).not.toContain('_combine');
    const v = describeVariant(plan, [ARCHES.sm_90]);
    expect(Object.keys(v.symbols).sort()).toEqual(['cpu', 'cuda']);
    expect(Object.keys(v.launch).sort()).toEqual(['block', 'dynamicSharedBytes', 'grid', 'rowTiles']);
  });
});

describe('chooseSplits (wave efficiency, FA3 rule)', () => {
  test('enough work: no split', () => expect(chooseSplits(17 * 8, 132, 64)).toBe(1));
  test('k = 4, batch 1, 8 KV heads on 132 SMs: splits until the waves fill', () => {
    const s = chooseSplits(8, 132, 64);
    expect(s).toBeGreaterThan(1);
    expect(8 * s).toBeLessThanOrEqual(132);
  });
  test('never more splits than prefix tiles', () => expect(chooseSplits(1, 132, 3)).toBeLessThanOrEqual(3));
  test('no prefix: one split', () => expect(chooseSplits(1, 132, 0)).toBe(1));
});
