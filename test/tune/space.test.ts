/**
 * The tuning search space: static pruning agrees with ptxas on a sample (it never drops a
 * feasible configuration, never keeps an infeasible one), the heuristic default is the arch's
 * tile with FA3's split rule, and a tuned compile uses the recorded tiles (visible in the
 * manifest).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { parsePtxasReport } from '../../src/build/ptxas.js';
import { findNvcc } from '../../src/build/toolchain.js';
import { generateModel } from '../../src/codegen/generate.js';
import { chooseAttentionSplits, splitKernel } from '../../src/codegen/splits.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { SPLITS, STAGES, TILE_N, WARP_ROWS, WARPS, configKey, heuristicConfig, infeasible, plannedTileOf, searchSpace, type TuneShape } from '../../src/tune/space.js';
import { ARCHES, tileKey } from '../../src/codegen/arch.js';
import { attention32Registers } from '../../src/codegen/attention-registers.js';
import { planAttention, rowTileOf } from '../../src/codegen/plan.js';
import { groupSize, variantsForModel } from '../../src/codegen/variant.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-tune-space-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function spec(headDim: 64 | 128, qHeads: number, kvHeads: number): ModelSpec {
  return {
    name: `s${headDim}`, family: 'qwen3', layers: 1, hiddenSize: qHeads * headDim, queryHeads: qHeads, kvHeads, headDim, intermediateSize: 128,
    vocabSize: 260, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: 'bf16', maskTokenId: 259, draftLengths: [4],
  };
}
const QWEN3_K16: TuneShape = { headDim: 128, rows: 272 * 4, kvHeads: 8, batch: 1, prefix: 4096 };

describe('search space', () => {
  test('covers the whole product: every configuration is a candidate or pruned with a reason', () => {
    const { candidates, pruned } = searchSpace(QWEN3_K16, 'cuda');
    // CUDA above 16 rows: every warp count with 16 and 32 rows a warp, 2 and 3 stages.
    const product = WARPS.length * TILE_N.length * SPLITS.length * WARP_ROWS.length * STAGES.length;
    expect(candidates.length + pruned.length).toBe(product);
    expect(new Set([...candidates, ...pruned.map((p) => p.config)].map(configKey)).size).toBe(product);
    for (const p of pruned) expect(p.why.length).toBeGreaterThan(10);
    expect(candidates.map(configKey)).toEqual(expect.arrayContaining(['w4r16-n64p2-s1', 'w4r16-n64p3-s1']));
    // Head dim 128: 32 rows a warp fit in registers only at tileN 16 and 32 with 2 stages (plan.ts fitsInRegisters).
    expect([...new Set(candidates.filter((c) => c.warpRows === 32).map((c) => `n${c.tileN}p${c.stages}`))].sort()).toEqual(['n16p2', 'n32p2']);
    const d64 = searchSpace({ ...QWEN3_K16, headDim: 64 }, 'cuda').candidates;
    expect(d64.filter((c) => c.warpRows === 32).map((c) => c.tileN)).toEqual(expect.arrayContaining([16, 32, 64]));
    expect(d64.filter((c) => c.warpRows === 32 && c.tileN > 64)).toEqual([]);
  });

  test('prunes by the arch\'s shared memory, the register tile, the Q-tile alias and empty splits', () => {
    expect(infeasible({ warps: 4, tileN: 256, splits: 1 }, QWEN3_K16, 'cuda', 'sm_90')).toMatch(/278528 bytes of shared memory; sm_90 allows 232448/);
    expect(infeasible({ warps: 4, tileN: 128, splits: 1 }, QWEN3_K16, 'cuda', 'sm_86')).toMatch(/139264 bytes of shared memory; sm_86 allows 101376/);
    expect(infeasible({ warps: 4, tileN: 64, splits: 1, warpRows: 32 }, QWEN3_K16, 'cuda', 'sm_90')).toMatch(/32 rows x 64 keys a warp at head dim 128, 2 stages: the O and S fragments spill/);
    expect(infeasible({ warps: 4, tileN: 32, splits: 1, warpRows: 32, stages: 3 }, QWEN3_K16, 'cuda', 'sm_90')).toMatch(/32 rows x 32 keys a warp at head dim 128, 3 stages: the O and S fragments spill/);
    expect(infeasible({ warps: 4, tileN: 32, splits: 1, warpRows: 32, stages: 2 }, QWEN3_K16, 'cuda', 'sm_90')).toBeNull();
    expect(infeasible({ warps: 4, tileN: 128, splits: 1 }, QWEN3_K16, 'cuda', 'sm_90')).toBeNull();
    // 3 stages at head dim 128 and tileN 64: 104448 bytes, over sm_86's 101376.
    expect(infeasible({ warps: 4, tileN: 64, splits: 1, stages: 3 }, QWEN3_K16, 'cuda', 'sm_86')).toMatch(/104448 bytes of shared memory; sm_86 allows 101376/);
    expect(infeasible({ warps: 8, tileN: 64, splits: 1, warpRows: 32 }, { ...QWEN3_K16, headDim: 64 }, 'cuda')).toMatch(/8 warps of 32 rows make a 256-row tile/);
    expect(infeasible({ warps: 8, tileN: 16, splits: 1 }, QWEN3_K16, 'cuda')).toMatch(/Q tile \(128 rows\) does not fit/);
    expect(infeasible({ warps: 4, tileN: 64, splits: 128 }, QWEN3_K16, 'cuda')).toMatch(/128 splits of 64 prefix tiles/);
    // The CPU kernel has no shared memory and no register tile: only the layout rules apply.
    expect(infeasible({ warps: 4, tileN: 256, splits: 1, threads: 0 }, QWEN3_K16, 'cpu')).toBeNull();
    expect(searchSpace(QWEN3_K16, 'cpu', { threads: [1, 2] }).candidates.length).toBeGreaterThan(searchSpace(QWEN3_K16, 'cuda').candidates.length);
  });

  test('a shape that knows its mask kind prunes the 32-row tiles ptxas spilled on the arch (attention-registers.ts), naming the bytes and the arch; others keep fitsInRegisters\' verdict', () => {
    // Head dim 128, 32 keys, 2 stages, 3 warps of 32 rows: causal spills 12 bytes on sm_90 and none on sm_80; TiDAR decode none.
    const w3 = { warps: 3, tileN: 32, splits: 1, warpRows: 32 as const, stages: 2 as const };
    const causal: TuneShape = { ...QWEN3_K16, maskKind: 'causal' };
    expect(attention32Registers('causal', 128, 32, 2, 3, 'sm_90')).toEqual({ registers: 255, spillBytes: 12 });
    expect(infeasible(w3, causal, 'cuda', 'sm_90')).toMatch(/^ptxas spilled 12 bytes on sm_90: 3 warps of 32 rows x 32 keys at head dim 128, 2 stages, causal mask/);
    expect(infeasible(w3, causal, 'cuda', 'sm_90a')).toMatch(/^ptxas spilled 12 bytes on sm_90a \(read from sm_90's measurement\)/);
    expect(infeasible(w3, causal, 'cuda', 'sm_80')).toBeNull();
    // Block diffusion on 2 warps: 8 bytes on sm_80, which sm_86 reads.
    expect(infeasible({ ...w3, warps: 2 }, { ...QWEN3_K16, maskKind: 'block-diffusion' }, 'cuda', 'sm_86')).toMatch(/^ptxas spilled 8 bytes on sm_86 \(read from sm_80's measurement\): 2 warps/);
    expect(infeasible(w3, { ...QWEN3_K16, maskKind: 'tidar-decode' }, 'cuda', 'sm_90')).toBeNull();
    // Without a kind (a shape of no one variant), or on the CPU, the estimate alone decides.
    expect(infeasible(w3, QWEN3_K16, 'cuda', 'sm_90')).toBeNull();
    expect(infeasible({ ...w3, threads: 0 }, causal, 'cpu')).toBeNull();
    // A tile the table did not measure (1 warp of 32 rows) is kept where fitsInRegisters keeps it.
    expect(attention32Registers('causal', 128, 32, 2, 1, 'sm_90')).toBeUndefined();
    expect(infeasible({ ...w3, warps: 1 }, causal, 'cuda', 'sm_90')).toBeNull();
    // The space (WARPS: 1, 2, 4, 8): causal at head dim 128 keeps no 32-row tile of 32 keys on 2 or 4 warps on sm_90 (12 bytes each), TiDAR decode does.
    const thirtyTwo = (kind: TuneShape['maskKind']) => [...new Set(searchSpace({ ...QWEN3_K16, maskKind: kind }, 'cuda', { arch: 'sm_90' }).candidates.filter((c) => c.warpRows === 32).map((c) => tileKey(c)))].sort();
    expect(thirtyTwo('causal')).toEqual(['w1r32-n16p2', 'w1r32-n32p2', 'w2r32-n16p2', 'w4r32-n16p2']);
    expect(thirtyTwo('tidar-decode')).toEqual(['w1r32-n16p2', 'w1r32-n32p2', 'w2r32-n16p2', 'w2r32-n32p2', 'w4r32-n16p2', 'w4r32-n32p2']);
  });

  test('the heuristic default is the arch tile with the planner\'s row tile and the runtime\'s split rule (splitsFor)', () => {
    // 1088 rows: 17 tiles of 4 warps (64 rows), no padding.
    const kernel = splitKernel({ tileM: 64, rows: 1088, rowTiles: 17, tileN: 64, headDim: 128 });
    expect(heuristicConfig(QWEN3_K16, 132)).toEqual({ warps: 4, tileN: 64, splits: chooseAttentionSplits({ workItems: 1 * 8 * 17, sms: 132, prefixTiles: 64, kernel }) });
    const ar: TuneShape = { headDim: 128, rows: 4, kvHeads: 8, batch: 1, prefix: 65536 };
    const h = heuristicConfig(ar, 132);
    expect(h.splits).toBeGreaterThan(1);  // 8 work items on 132 SMs: split the prefix
    expect(infeasible(h, ar, 'cuda')).toBeNull();
    expect(h.warps).toBe(4);  // one 16-row tile, 4 warps of 16 keys each
  });

  test('rows decide how warps share a tile: split-key rules for <= 16 rows, the planner\'s warps searched', () => {
    const ar: TuneShape = { headDim: 128, rows: 4, kvHeads: 8, batch: 1, prefix: 4096 };
    // 8 warps cannot split 64 keys into k16 slices; 128 keys over 8 warps are 16 a warp, in registers.
    expect(infeasible({ warps: 8, tileN: 64, splits: 1 }, ar, 'cuda')).toMatch(/8 warps split 64 keys into slices that are not whole k16 steps/);
    expect(infeasible({ warps: 8, tileN: 128, splits: 1 }, ar, 'cuda')).toBeNull();
    // One warp scoring 256 keys at head dim 64: 16 x (64 + 256) / 32 = 160 fragment registers, over 3 stages' 128.
    expect(infeasible({ warps: 1, tileN: 256, splits: 1, stages: 3 }, { ...ar, headDim: 64 }, 'cuda')).toMatch(/16 rows x 256 keys a warp at head dim 64, 3 stages: the O and S fragments spill/);
    const k4: TuneShape = { ...ar, rows: 80 };
    expect(heuristicConfig(k4, 132).warps).toBe(5);
    expect(searchSpace(k4, 'cuda').candidates.some((c) => c.warps === 5 && c.tileN === 64)).toBe(true);
    expect(searchSpace(ar, 'cuda').candidates.filter((c) => c.warps === 5)).toEqual([]);
  });
});

describe('the planner\'s tile in the space', () => {
  const QWEN3_8B = { ...spec(128, 32, 8), name: 'qwen3-8b', draftLengths: [4, 8, 16] };
  const variants = variantsForModel(QWEN3_8B).filter((v) => v.name !== 'ar');
  const shapeOf = (v: (typeof variants)[number]): TuneShape => ({ headDim: 128, rows: v.mask.tokens.length * groupSize(v.shape), kvHeads: 8, batch: 1, prefix: 4096 });

  test.for(variants.map((v) => [v.name, v] as const))('%s: the CUDA space holds and labels plannedRowTile\'s tile, not the structural rule\'s', ([, v]) => {
    const plan = planAttention(v, ARCHES.sm_90.tile, [ARCHES.sm_90]);
    const planned = plannedTileOf(v, 'cuda', 'sm_90');
    expect(planned).toEqual({ warps: plan.rowTile.warps, tileN: plan.tile.tileN, warpRows: plan.rowTile.warpRows, stages: plan.tile.stages });
    const space = searchSpace(shapeOf(v), 'cuda', { planned });
    expect(space.planned).toBe(tileKey(planned));
    expect(space.candidates.filter((c) => tileKey(c) === space.planned).length).toBeGreaterThan(0);
    // The structural rule's warps (k = 4: 5 of 16 rows) are searched only where WARPS has them or the planner chose them.
    const structural = rowTileOf(shapeOf(v).rows, 64, 128, undefined, 16).warps;
    if (!WARPS.includes(structural) && structural !== planned.warps) expect(space.candidates.filter((c) => c.warps === structural)).toEqual([]);
  });

  test('Qwen3-8B: k = 4 plans 5 warps of 16 (not in WARPS; one CTA per KV head since the merge discards its partials), k = 8 3 and k = 16 4 warps of 32 at 32 keys (k = 16 9 x 4, within the tolerance of 12 x 3 once shared memory is priced); the CPU keeps rowTileOf\'s rule', () => {
    const byName = Object.fromEntries(variants.map((v) => [v.name, v]));
    expect(tileKey(plannedTileOf(byName.tidar_k4!, 'cuda'))).toBe('w5r16-n64p3');
    expect(tileKey(plannedTileOf(byName.tidar_k8!, 'cuda'))).toBe('w3r32-n32p2');
    expect(tileKey(plannedTileOf(byName.tidar_k16!, 'cuda'))).toBe('w4r32-n32p2');
    expect(plannedTileOf(byName.tidar_k4!, 'cpu')).toEqual({ warps: 5, tileN: 64 });
    const k4 = searchSpace(shapeOf(byName.tidar_k4!), 'cuda', { planned: plannedTileOf(byName.tidar_k4!, 'cuda') });
    expect([...new Set(k4.candidates.filter((c) => c.warps === 5).map((c) => tileKey(c)))]).toEqual(['w5r16-n64p3']);
    expect(k4.candidates.some((c) => c.warps === 3)).toBe(false);
  });
});

describe('a tuned compile', () => {
  test('uses the recorded tiles, visible in the manifest, and changes the input key', () => {
    const plain = generateModel(spec(64, 8, 2), { arches: ['sm_90'], drafts: [4] });
    const tuned = generateModel(spec(64, 8, 2), { arches: ['sm_90'], drafts: [4], tiles: { tidar_k4: { warps: 2, tileN: 32 } } });
    const k4 = tuned.manifest.variants.find((v) => v.name === 'tidar_k4')!;
    expect([k4.plan.warps, k4.plan.tileN, k4.launch.block]).toEqual([2, 32, 64]);
    expect(tuned.manifest.variants.find((v) => v.name === 'ar')!.plan.tileN).toBe(64);
    expect(tuned.manifest.inputKey).not.toBe(plain.manifest.inputKey);
    expect(() => generateModel(spec(64, 8, 2), { arches: ['sm_90'], drafts: [4], tiles: { tidar_k9: { warps: 2, tileN: 32 } } })).toThrow(/tuned tiles name variants this compile does not make \(tiles = tidar_k9\)/);
  });
});

describe.skipIf(!nvcc.found)('pruning against ptxas (nvcc, sm_90)', () => {
  // Feasible = ptxas reports no stack frame and no spill for the main kernel.
  // [head dim, warps, tileN, rows a warp]: tidar_k4's 80 (G = 4) or 160 (G = 8) rows; 32-row warps at head dim 64 fit, at 128 spill.
  const sample: [64 | 128, number, number, 16 | 32][] = [[64, 2, 32, 16], [64, 4, 64, 16], [64, 4, 128, 16], [128, 8, 64, 16], [128, 8, 128, 16], [64, 2, 64, 32], [128, 2, 64, 32], [128, 2, 32, 32]];
  test.for(sample)('head dim %i, %i warps, tileN %i, %i rows a warp', { timeout: 300_000 }, async ([D, warps, tileN, warpRows]) => {
    const s = D === 64 ? spec(64, 8, 2) : spec(128, 32, 8);
    const g = generateModel(s, { arches: ['sm_90'], drafts: [4], tiles: { tidar_k4: { warps, tileN, warpRows } } });
    const out = join(dir, `d${D}-w${warps}-n${tileN}-r${warpRows}`);
    mkdirSync(join(out, 'cuda'), { recursive: true });
    for (const [p, text] of g.files) if (p.startsWith('cuda/')) writeFileSync(join(out, p), text);
    const { stderr } = await exec(nvcc.found ? nvcc.tool.path : 'nvcc', ['-cubin', '-O3', '-std=c++17', '-Xptxas', '-v', '-gencode=arch=compute_90,code=sm_90', '-o', '/dev/null', 'cuda/tidar_k4.cu'], { cwd: out });
    const symbol = g.manifest.variants.find((v) => v.name === 'tidar_k4')!.symbols.cuda;
    const report = parsePtxasReport(stderr)['sm_90']![symbol]!;
    const feasible = report.stackBytes === 0 && report.spillStoreBytes === 0 && report.registers <= 255;
    const rows = g.manifest.variants.find((v) => v.name === 'tidar_k4')!.rows;
    const stages = g.manifest.variants.find((v) => v.name === 'tidar_k4')!.plan.stages as 2 | 3;
    const predicted = infeasible({ warps, tileN, splits: 1, warpRows, stages }, { headDim: D, rows, kvHeads: s.kvHeads, batch: 1, prefix: 4096 }, 'cuda', 'sm_90');
    expect(predicted === null, `ptxas: ${JSON.stringify(report)}; pruning: ${predicted}`).toBe(feasible);
  });
});
