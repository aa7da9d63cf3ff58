/**
 * The GEMM search space (src/tune/gemm-space.ts): the heuristic default (the compile's plan) is a
 * point of it for every Qwen3-8B weight shape at M = 1, 20, 72, 272 on sm_90 and sm_80 + sm_90;
 * static pruning by shared memory (per arch), registers and padding; split-K only per weight
 * shape (one count for every M, by the planner's rule over the step row counts: least summed
 * relative regret, the one function gemm-tile-choice.ts leastRegretSplit; fed the cost model's
 * times, the tuner picks what the compile plans). Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { type GemmRole, gemmShapeOf } from '../../src/codegen/gemm-model.js';
import { gemmSplitCandidates, gemmTarget, gemmTileProblem, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { DEFAULT_STEP_ROWS } from '../../src/codegen/step-rows.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { TidarcError } from '../../src/errors.js';
import { GEMM_SEARCH_SPACE, chooseGemmKernel, gemmHeuristic, gemmSpaceProblem, gemmReductionSpace, gemmTileInfeasible, gemmTileSpace } from '../../src/tune/gemm-space.js';
import { gemmRegisters } from '../../src/codegen/gemm-registers.js';

const QWEN3_8B = {
  name: 'qwen3-8b', family: 'qwen3', layers: 36, hiddenSize: 4096, queryHeads: 32, kvHeads: 8, headDim: 128, intermediateSize: 12288,
  vocabSize: 151936, ropeTheta: 1e6, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: false, dtype: 'bf16', maskTokenId: 151662, draftLengths: [4, 8, 16],
} as ModelSpec;
const ROLES: readonly GemmRole[] = ['qkv', 'o', 'gate_up', 'down', 'lm_head'];
const ROWS = [1, 20, 72, 272];

describe('GEMM search space', () => {
  test.for([['sm_90', ['sm_90']], ['sm_80 + sm_90', ['sm_80', 'sm_90']], ['sm_86', ['sm_86']]] as const)('the heuristic default is in the space for every Qwen3-8B shape and M (%s)', ([, arches]) => {
    const target = gemmTarget(arches);
    for (const role of ROLES) {
      const shape = gemmShapeOf(QWEN3_8B, role);
      expect(gemmReductionSpace(shape, target).configs).toContainEqual(planReduction(shape, target));
      for (const m of ROWS) {
        const { reduction, tile } = gemmHeuristic(shape, m, target);
        expect(gemmTileSpace(m, target).configs, `${role} M=${m}`).toContainEqual(tile);
        // A tuned tile plans exactly what the default plans when it is the default, except that
        // across several arches the default sizes each arch's ring from its own shared memory
        // while a tuned tile pins its stage count on every arch.
        const { stagesByArch: tunedStages, sharedBytesByArch: _t, ...tuned } = planGemm(shape, m, target, reduction, tile);
        const { stagesByArch: defaultStages, sharedBytesByArch: _d, ...byDefault } = planGemm(shape, m, target, reduction);
        expect(tuned).toEqual(byDefault);
        for (const arch of arches) {
          expect(tunedStages[arch]).toBe(tile.stages);
          if (arches.length === 1) expect(defaultStages[arch]).toBe(tile.stages);
          else expect(defaultStages[arch]).toBeGreaterThanOrEqual(tile.stages);
        }
      }
    }
  });
  test('shared memory prunes per arch: 128 rows x 6 stages (196,608 bytes) fits sm_90, not sm_86', () => {
    const t = { blockM: 128, warpsM: 2, stages: 6 };
    expect(gemmTileInfeasible(t, 128, gemmTarget(['sm_90']))).toBeNull();
    expect(gemmTileInfeasible(t, 128, gemmTarget(['sm_86']))).toMatch(/196608 bytes of shared memory; sm_86 allow 101376/);
    expect(gemmTileInfeasible(t, 128, gemmTarget(['sm_80', 'sm_86']))).toMatch(/shared memory/);
    expect(() => planGemm({ n: 4096, k: 4096, dtype: 'bf16' }, 128, gemmTarget(['sm_86']), planReduction({ n: 4096, k: 4096, dtype: 'bf16' }, gemmTarget(['sm_86'])), t)).toThrow(TidarcError);
  });
  test('registers: ptxas\'s figure per width, rows, warp rows and split-K; a 64-column tile has its own; a tile ptxas spilled is pruned at that split-K', () => {
    const narrow = { blockM: 128, warpsM: 2, blockN: 64 }, wide = { ...narrow, blockN: 128 };
    expect([1, 2].map((s) => gemmRegisters(narrow, s))).toEqual([{ registers: 72, spills: false, measured: true }, { registers: 90, spills: false, measured: true }]);
    expect([1, 2].map((s) => gemmRegisters(wide, s).registers)).toEqual([127, 147]);
    expect([1, 3].map((s) => gemmRegisters({ blockM: 32, warpsM: 2, blockN: 64 }, s).registers)).toEqual([48, 48]);
    const spilled = { blockM: 128, warpsM: 4, stages: 3 };
    expect(gemmTileInfeasible(spilled, 128, gemmTarget(['sm_90']), 1)).toBeNull();
    expect(gemmTileInfeasible(spilled, 128, gemmTarget(['sm_90']), 2)).toBe('128 registers a thread at split-K > 1: ptxas spilled it');
    expect(gemmTileInfeasible(spilled, 128, gemmTarget(['sm_90']))).toBe('128 registers a thread at split-K > 1: ptxas spilled it');
    expect(gemmTileSpace(128, gemmTarget(['sm_90']), {}, 4).pruned.map((p) => p.config)).toContainEqual(spilled);
    expect(gemmTileSpace(128, gemmTarget(['sm_90']), {}, 1).configs).toContainEqual(spilled);
    // An unmeasured tile is estimated past the widest measured one: 512 rows would spill, and the kernel's limit refuses it first.
    expect(gemmRegisters({ blockM: 512, warpsM: 2, blockN: 128 }, 1)).toMatchObject({ spills: true, measured: false });
    expect(gemmTileInfeasible({ blockM: 512, warpsM: 2, stages: 3 }, 4096, gemmTarget(['sm_90']))).toMatch(/blockM 512 is not a multiple of 16 from 16 to 128/);
  });
  test('what the kernel cannot run is gemmTileProblem\'s answer, word for word (one source for the search and tuned records)', () => {
    const targets = [gemmTarget(['sm_90']), gemmTarget(['sm_80', 'sm_86'])];
    let refused = 0;
    for (const target of targets) for (const blockM of [8, 16, 24, 64, 128, 144]) for (const warpsM of [1, 2, 3, 4, 8]) for (const stages of [2, 3, 6, 7]) {
      const t = { blockM, warpsM, stages };
      const problem = gemmTileProblem(t, target);
      if (problem) refused++;
      for (const m of [1, 128, 272]) {
        const why = gemmTileInfeasible(t, m, target);
        if (problem) expect(why, JSON.stringify({ t, m })).toBe(problem);
      }
    }
    expect(refused).toBeGreaterThan(100);
  });
  test('padding and warp layout: M = 1 keeps only 16-row tiles (32 rows in 2 warp rows at 64 columns in 8 warps); 4 warp rows need 64-row multiples', () => {
    const target = gemmTarget(['sm_90']);
    const { configs, pruned } = gemmTileSpace(1, target);
    const wide = configs.filter((c) => c.blockN === undefined), narrow = configs.filter((c) => c.blockN === 64);
    expect(wide.length + narrow.length).toBe(configs.length);
    expect(new Set(wide.map((c) => c.blockM))).toEqual(new Set([16]));
    expect(wide.every((c) => c.warpsM === 1)).toBe(true);
    // 64 columns: 2 warp rows in 8 warps (a warp's columns are 2 n8 fragments), 1 in 4 (gemm-plan.ts GEMM_WARPS).
    expect(narrow.map((c) => [c.blockM, c.warpsM, c.warps ?? 8])).toEqual(narrow.map((c) => (c.warps === 4 ? [16, 1, 4] : [32, 2, 8])));
    expect(new Set(configs.map((c) => c.warps ?? 8))).toEqual(new Set([8, 4]));
    expect(gemmTileSpace(1, target, { rowStats: true }).configs).toEqual(wide);
    expect(pruned.find((p) => p.config.blockM === 32 && p.config.warpsM === 1)!.why).toMatch(/only padding past 16/);
    expect(pruned.find((p) => p.config.blockM === 32 && p.config.warpsM === 2 && p.config.blockN === undefined)!.why).toMatch(/2 warp rows of 16 for M = 1: the last computes only padding/);
    expect(gemmTileInfeasible({ blockM: 32, warpsM: 4, stages: 3 }, 32, target)).toMatch(/not whole m16/);
    // M = 272: 3 CTAs of 96 rows (16 of padding) run; 3 of 128 (112 of padding) do not.
    expect(gemmTileInfeasible({ blockM: 96, warpsM: 2, stages: 4 }, 272, target)).toBeNull();
    expect(gemmTileInfeasible({ blockM: 128, warpsM: 2, stages: 4 }, 272, target)).toMatch(/pad M = 272/);
  });
  test('split-K: the counts that leave no part empty, per weight shape', () => {
    const target = gemmTarget(['sm_90']);
    expect(gemmReductionSpace({ n: 6144, k: 4096, dtype: 'bf16' }, target).configs.map((r) => r.splitK)).toEqual([1, 2, 3, 4]);
    const small = gemmReductionSpace({ n: 300, k: 264, dtype: 'bf16' }, target);  // 5 k tiles: 4 parts of 2 leave one empty
    expect(small.configs.map((r) => r.splitK)).toEqual([1, 2, 3]);
    expect(small.pruned.map((p) => p.config)).toEqual([4]);
  });
  test('one split-K count for every M: the least summed relative regret over the step row counts, even where one M prefers another', () => {
    // The split-K of one family: chooseGemmKernel over a map of mma.sync alone (what a search that does not race picks).
    const splitK = (us: ReadonlyMap<number, ReadonlyMap<number, number>>): number | undefined => chooseGemmKernel(new Map([['sm_90' as const, us]]))?.splitK;
    const us = new Map([
      [1, new Map([[1, 20], [20, 21], [72, 30], [272, 90]])],
      [4, new Map([[1, 12], [20, 13], [72, 28], [272, 110]])],
      [2, new Map([[1, 15], [20, 16], [72, 27], [272, 95]])],
    ]);
    // Regrets (time / the least at that M, summed): 1 5.39, 2 4.54, 4 4.26. Summed time would take 2 (totals 161, 163, 153):
    // M = 272's 20 us would outvote the decode steps' 40% (the planner's rule weighs every row count alike).
    expect(splitK(us)).toBe(4);
    expect(splitK(new Map([[3, new Map([[1, 5]])], [1, new Map([[1, 5]])]]))).toBe(1);  // a tie: fewer parts
    // A count that missed an M (2 parts' M = 20, cut by the budget) is set aside where another reached every M: 1 part, though 2 is faster at M = 1.
    expect(splitK(new Map([[1, new Map([[1, 10], [20, 10]])], [2, new Map([[1, 9]])]]))).toBe(1);
    // None reached every M: the row counts every count reached (M = 1) decide.
    expect(splitK(new Map([[1, new Map([[1, 10], [20, 10]])], [2, new Map([[1, 9], [272, 1]])]]))).toBe(2);
    expect(splitK(new Map())).toBeUndefined();
    // Records of the summed-time rule (search space 3) are stale: their count may not be this rule's.
    expect(GEMM_SEARCH_SPACE).toBeGreaterThanOrEqual(4);
    expect(gemmSpaceProblem({ space: 3 })).toBe(`made by GEMM search space 3, this tidarc's is ${GEMM_SEARCH_SPACE}`);
  });
  test.for([['sm_90', ['sm_90']], ['sm_80 + sm_90', ['sm_80', 'sm_90']], ['sm_89', ['sm_89']]] as const)('one rule with the planner: fed the cost model\'s times, the tuner picks every Qwen3-8B split-K the compile plans (%s)', ([, arches]) => {
    const target = gemmTarget(arches);
    for (const role of ['qkv', 'o', 'gate_up', 'down'] as const) {
      const shape = gemmShapeOf(QWEN3_8B, role);
      const candidates = gemmSplitCandidates(shape, target, DEFAULT_STEP_ROWS);
      const us = new Map(candidates.map((c) => [c.reduction.splitK, new Map(DEFAULT_STEP_ROWS.map((m, i) => [m, c.times[i]!]))]));
      expect(chooseGemmKernel(new Map([['sm_90' as const, us]]))?.splitK, `${role} on ${arches.join(',')}`).toBe(planReduction(shape, target).splitK);
    }
  });
});
