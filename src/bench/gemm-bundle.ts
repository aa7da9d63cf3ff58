/**
 * The GEMM part of the device check's bundle (issue 14): the generated GEMM sources of the
 * Qwen3-8B linear layers (qkv 6144x4096, o 4096x4096, gate_up 24576x4096, down 4096x12288,
 * lm_head 151936x4096) with a kernel per M in {1, 20, 72, 272}, planned for sm_90, and
 * gemm.json: per unit its kernels, launch geometry and the cost model's prediction on the H200
 * (src/bench/gemm-cost-model.ts), which the check prints beside what it measures against torch.matmul.
 * `emulated: true` also builds each unit's .emu.so for the dry run on the emulated driver.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { H200 } from '../codegen/machine.js';
import { predictGemm } from './gemm-cost-model.js';
import { byMachine } from './predicted-machines.js';
import { gemmRegisters } from '../codegen/gemm-registers.js';
import { type GemmRole, gemmShapeOf } from '../codegen/gemm-model.js';
import { DEFAULT_STEP_ROWS, stepRows } from '../codegen/step-rows.js';
import { planUnitReduction } from '../codegen/gemm-unit-split.js';
import { sm90aGemmHeuristic } from '../codegen/gemm-kernel-choice.js';
import { sm90aRefusal } from '../codegen/gemm-sm90a.js';
import type { GemmFamily } from '../tune/db.js';
import { gemmEpilogues } from '../codegen/gemm-epilogue.js';
import {
  type GemmShape, type GemmTarget, type GemmTile, gemmPlanTile, gemmRowStatsSymbol, gemmSymbol, gemmTarget, gemmTileName, gemmUnitName, planGemm, planReduction,
} from '../codegen/gemm-plan.js';
import { gemmCandidateSymbol, gemmSource, renderGemmUnit } from '../codegen/gemm-source.js';
import { scoreGemmTiles } from '../codegen/gemm-tile-choice.js';
import { GEMM_SEARCH_SPACE, gemmHeuristic, gemmReductionSpace, gemmTileSpace } from '../tune/gemm-space.js';
import { readTemplateFile } from '../codegen/templates.js';
import { type BundleSm90aSearch, prepareSm90aSearch } from './sm90a-gemm-search.js';
import { buildEmulatedModule, emulatedModulePath } from '../emulate/emulated-driver.js';
import type { ModelSpec } from '../ir/model.js';
import type { ArchName } from '../codegen/arch.js';
import { OPS, opKernelName } from '../runtime/cuda/op-abi.js';
import { TIDARC_VERSION } from '../version.js';

export interface GemmGridShape {
  readonly role: string;
  readonly shape: GemmShape;
  /** Split-K forced (the dry run exercises the in-launch split sum); default: the plan's rule. */
  readonly splitK?: number;
}

/** The GPU-side GEMM search (scripts/device-check/gemm_tune.py) over src/tune/gemm-space.ts. */
export interface GemmTuneGrid {
  /** Roles of the grid's shapes to search. */
  readonly roles: readonly string[];
  /** Tiles per (split-K, M) at most: the heuristic's first, then those of gemmTileSpace in its order. */
  readonly maxTiles: number;
  /** Split-K counts to try (of those gemmReductionSpace allows); default all. */
  readonly splits?: readonly number[];
  /** Step row counts to search; default the grid's. */
  readonly rows?: readonly number[];
  /** Race the sm_90a GEMM (TMA + wgmma) against the mma.sync candidates, as a 9.0 device runs it (sm90a-gemm-search.ts). */
  readonly sm90a?: boolean;
}

export interface GemmGrid {
  readonly shapes: readonly GemmGridShape[];
  readonly rows: readonly number[];
  readonly tune?: GemmTuneGrid;
}

const QWEN3_8B: ModelSpec = {
  name: 'qwen3-8b', family: 'qwen3', layers: 36, hiddenSize: 4096, queryHeads: 32, kvHeads: 8, headDim: 128, intermediateSize: 12288,
  vocabSize: 151936, ropeTheta: 1e6, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: false, dtype: 'bf16', maskTokenId: 151662, draftLengths: [4, 8, 16],
};
const ROLES: readonly GemmRole[] = ['qkv', 'o', 'gate_up', 'down', 'lm_head'];

/** Issue 14: the Qwen3-8B weight shapes at M = 1 (AR), 20, 72, 272 (TiDAR k = 4, 8, 16). */
export const FULL_GEMM: GemmGrid = {
  shapes: ROLES.map((role) => ({ role, shape: gemmShapeOf(QWEN3_8B, role) })), rows: [1, 20, 72, 272],
  // Every row count a Qwen3-8B compile plans (the prefill chunk too): 4 split counts x 5 row counts x at most 4 tiles,
  // about 80 kernels a shape for nvcc, each timed in well under a second.
  tune: { roles: ROLES, maxTiles: 4, rows: stepRows(QWEN3_8B.draftLengths), sm90a: true },
};

/** Small enough for the emulator: an odd N with split-K 3 (the in-launch split sum) and one without. */
export const DRY_RUN_GEMM: GemmGrid = {
  shapes: [
    { role: 'odd split-K 3', shape: { n: 197, k: 520, dtype: 'bf16' }, splitK: 3 },
    { role: 'fp16', shape: { n: 72, k: 264, dtype: 'fp16' }, splitK: 1 },
    // The fused epilogues, through the split-K sum's last CTA (I = 104: a full and a partial N tile; 3 stats tiles).
    { role: 'gate_up', shape: { n: 208, k: 520, dtype: 'bf16' }, splitK: 3 },
    { role: 'lm_head', shape: { n: 300, k: 264, dtype: 'bf16' }, splitK: 3 },
  ],
  rows: [1, 20],
  // The search on the emulator: the split-K 3 shape, splits 1 and 3, two tiles where M allows.
  tune: { roles: ['odd split-K 3'], maxTiles: 2, splits: [1, 3] },
};

export interface BundleGemmKernel {
  readonly m: number;
  readonly symbol: string;
  readonly blockM: number;
  readonly nTiles: number;
  readonly threads: number;
  readonly sharedBytes: number;
  /**
   * gemm-cost-model.ts on the H200 at the tile's registers in gemm-registers.ts's ptxas table, as
   * the planner's tile choice prices it (gemm.py's `registers` is ptxas's figure on the device),
   * for the launch gemm.py times: a plain [M, N] output, no residual read (o and down run with one
   * in a model step; bench:gemm's "pred us" includes it and the epilogues).
   */
  readonly predictedUs: number;
  readonly predictedBound: string;
  readonly predictedRegisters: number;
  readonly predictedCtasPerSm: number;
  /** The same on each machine of predicted-machines.ts, by key (the check takes its GPU's: scripts/device-check/machines.py). */
  readonly byMachine: Readonly<Record<string, { readonly predictedUs: number; readonly predictedBound: string }>>;
}

export interface BundleGemmUnit {
  readonly name: string;
  readonly role: string;
  readonly n: number;
  readonly k: number;
  readonly dtype: 'bf16' | 'fp16';
  readonly splitK: number;
  /** splitK > 1: the launch needs int32 counters, one per output tile (ceil(rows / blockM) * nTiles), all 0 (each launch leaves them 0). */
  readonly splitCounters?: boolean;
  /** The fused epilogues its role runs with (gemm.py checks them against the plain kernel's output). */
  readonly epilogue?: { readonly swigluInterleave?: number; readonly rowStats?: string };
  /** Relative to the bundle. */
  readonly cu: string;
  readonly fatbin: string;
  readonly kernels: readonly BundleGemmKernel[];
}

/** One kernel of the search: a tile for one M under one split-K. */
export interface BundleGemmCandidate {
  readonly m: number;
  readonly splitK: number;
  readonly tile: GemmTile;
  /** The plan's own choice for this M (the search always times it). */
  readonly heuristic: boolean;
  readonly symbol: string;
  readonly blockM: number;
  readonly nTiles: number;
  readonly threads: number;
  readonly sharedBytes: number;
}

/**
 * What the runtime launches for a weight shape with no tune record, under one compile: the kernel
 * family every M runs on a 9.0 device, the split-K, and per searched M the mma.sync tile (the
 * sm_90a kernel's token tile is the planner's, sm90aTokenTile, the only one the search times).
 */
export interface BundleGemmHeuristic {
  /** The compile's arches. */
  readonly arches: readonly ArchName[];
  readonly kernel: GemmFamily;
  readonly splitK: number;
  /** Step row count (decimal) -> the mma.sync tile that compile plans (kernel 'sm_90'). */
  readonly tiles?: Readonly<Record<string, GemmTile>>;
}

/** The search of one weight shape: a source per split-K count, every candidate of it. */
export interface BundleGemmTune {
  readonly unit: string;
  readonly role: string;
  readonly n: number;
  readonly k: number;
  readonly dtype: 'bf16' | 'fp16';
  readonly heuristicSplitK: number;
  /** The arches the heuristic (split-K and tiles) was planned for: the search's target, not every arch a compile may build. */
  readonly heuristicArches: readonly ArchName[];
  /**
   * The heuristic per compile, as the runtime launches it (gemmRuntimeHeuristics): `sm_90` a
   * compile for sm_90 alone (mma.sync at heuristicSplitK), `sm_90a` one that builds sm_90a too, as
   * the kernel cache does for a 9.0 device: the split-K priced on the family the unit runs
   * (gemm-unit-split.ts planUnitReduction) and that family (gemm-kernel-choice.ts
   * sm90aGemmHeuristic; mma.sync where the shape has no sm_90a kernel). A search on a 9.0 device
   * compares its winner with `sm_90a`: what a user's run gets without the record.
   */
  readonly heuristicByArch: { readonly sm_90: BundleGemmHeuristic; readonly sm_90a: BundleGemmHeuristic };
  /** The search space and kernel generation (gemm-space.ts GEMM_SEARCH_SPACE): the records the search writes carry it. */
  readonly space: number;
  readonly sources: readonly { readonly splitK: number; readonly cu: string; readonly fatbin: string }[];
  readonly candidates: readonly BundleGemmCandidate[];
  /** What static pruning removed, with why (gemm-space.ts). */
  readonly pruned: number;
  /** The sm_90a GEMM's candidates at the same split-K counts (grid `sm90a`), or why the shape has none. */
  readonly sm90a?: BundleSm90aSearch | { readonly refused: string };
}

export interface BundleGemm {
  readonly format: 1;
  readonly generator: string;
  readonly arch: 'sm_90';
  readonly machine: string;
  readonly units: readonly BundleGemmUnit[];
  /** templates/cuda/tidarc_ops.cu, relative to the bundle (its tidarc_op_silu_mul: the unfused MLP). */
  readonly ops: { readonly cu: string; readonly fatbin: string };
  /** tidarc's version as the tuning database's meta names it. */
  readonly tidarc: string;
  readonly tune?: readonly BundleGemmTune[];
}

export async function prepareGemmBundle(outDir: string, grid: GemmGrid, emulated = false): Promise<BundleGemm> {
  const dir = join(outDir, 'gemm');
  await mkdir(join(dir, 'cuda'), { recursive: true });
  for (const h of ['tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_device.cuh', 'tidarc_ops.cu', 'tidarc_ops_abi.h']) await writeFile(join(dir, 'cuda', h), readTemplateFile(`cuda/${h}`));
  // The GPU operators: gemm.py runs the unfused MLP (plain gate_up GEMM, then tidarc_op_silu_mul) against the SwiGLU epilogue.
  const ops = { cu: 'gemm/cuda/tidarc_ops.cu', fatbin: 'gemm/cuda/tidarc_ops.fatbin' };
  if (emulated) await buildEmulatedModule(join(outDir, ops.cu), emulatedModulePath(join(outDir, ops.fatbin)), [{ name: opKernelName('silu_mul'), argsType: OPS.silu_mul.cName }]);
  const target = gemmTarget(['sm_90']);
  const units: BundleGemmUnit[] = [];
  for (const { role, shape, splitK } of grid.shapes) {
    const opts = { rowStats: gemmEpilogues(shape, [role]).rowStats === true };
    const reduction = planReduction(shape, target, splitK, opts);
    const plans = grid.rows.map((m) => planGemm(shape, m, target, reduction, undefined, opts));
    const cu = `gemm/${gemmSource(shape)}`;
    await writeFile(join(outDir, cu), renderGemmUnit(shape, plans, [role], 'device-check'));
    const fatbin = cu.replace(/\.cu$/, '.fatbin');
    const epi = gemmEpilogues(shape, [role]);
    const epilogue = { ...(epi.swigluInterleave ? { swigluInterleave: epi.swigluInterleave } : {}), ...(epi.rowStats ? { rowStats: gemmRowStatsSymbol(shape) } : {}) };
    if (emulated) {
      const kernels = [...plans.map((p) => gemmSymbol(shape, p.m)), ...(epilogue.rowStats ? [epilogue.rowStats] : [])].map((name) => ({ name, argsType: 'TidarcGemmArgs' }));
      await buildEmulatedModule(join(outDir, cu), emulatedModulePath(join(outDir, fatbin)), kernels);
    }
    units.push({
      name: gemmUnitName(shape), role, n: shape.n, k: shape.k, dtype: shape.dtype, splitK: reduction.splitK, ...(reduction.splitK > 1 ? { splitCounters: true } : {}),
      ...(Object.keys(epilogue).length > 0 ? { epilogue } : {}), cu, fatbin,
      kernels: plans.map((p) => {
        const registers = gemmRegisters(p, p.reduction.splitK).registers;
        const predicted = predictGemm(p, p.m, H200, registers);  // as gemm.py's gemm_bench launches it beside F.linear: no epilogue, accumulate 0
        return {
          m: p.m, symbol: gemmSymbol(shape, p.m), blockM: p.blockM, nTiles: p.nTiles, threads: p.threads, sharedBytes: p.sharedBytes,
          predictedUs: predicted.predictedS * 1e6, predictedBound: predicted.bound, predictedRegisters: registers, predictedCtasPerSm: predicted.ctasPerSm,
          byMachine: byMachine((machine) => {
            const q = predictGemm(p, p.m, machine, registers);
            return { predictedUs: q.predictedS * 1e6, predictedBound: q.bound };
          }),
        };
      }),
    });
  }
  const tune = grid.tune ? await prepareGemmTune(outDir, grid, target, emulated) : undefined;
  const bundle: BundleGemm = { format: 1, generator: `tidarc ${TIDARC_VERSION}`, arch: 'sm_90', machine: H200.name, units, ops, tidarc: TIDARC_VERSION, ...(tune ? { tune } : {}) };
  await writeFile(join(outDir, 'gemm.json'), `${JSON.stringify(bundle, null, 1)}\n`);
  return bundle;
}

/**
 * The search's sources: per tuned shape and split-K count one .cu with a kernel per (M, tile)
 * (gemmCandidateSymbol). The tiles of an M: the heuristic's, then the other layouts gemmTileSpace
 * keeps (width, warps, rows, warp rows; each at the stage count the cost model likes best): first
 * the model's fastest of the other warp count (the cost model does not weigh latency hiding, so a
 * device times a 4-warp choice against the best 8-warp tile, and the reverse), then the model's
 * fastest (gemm-tile-choice.ts scoreGemmTiles), up to maxTiles; not stage variants of 16-row tiles
 * in the space's order.
 */
async function prepareGemmTune(outDir: string, grid: GemmGrid, target: GemmTarget, emulated: boolean): Promise<BundleGemmTune[]> {
  const t = grid.tune!;
  const out: BundleGemmTune[] = [];
  for (const { role, shape } of grid.shapes.filter((s) => t.roles.includes(s.role))) {
    const space = gemmReductionSpace(shape, target);
    const reductions = space.configs.filter((r) => !t.splits || t.splits.includes(r.splitK));
    const sources: BundleGemmTune['sources'][number][] = [];
    const candidates: BundleGemmCandidate[] = [];
    let pruned = space.pruned.length;
    for (const reduction of reductions) {
      const plans = (t.rows ?? grid.rows).flatMap((m) => {
        const heuristic = gemmHeuristic(shape, m, target, { rowStats: gemmEpilogues(shape, [role]).rowStats === true }).tile;
        const tiles = gemmTileSpace(m, target, { rowStats: gemmEpilogues(shape, [role]).rowStats === true }, reduction.splitK);
        pruned += tiles.pruned.length;
        const layout = (c: GemmTile): string => gemmTileName({ ...c, stages: 0 });
        const others = scoreGemmTiles(tiles.configs.filter((c) => layout(c) !== layout(heuristic)).map((c) => planGemm(shape, m, target, reduction, c)), m)
          .sort((a, b) => a.predictedS - b.predictedS).map((x) => x.plan)
          .filter((p, i, all) => all.findIndex((q) => layout(gemmPlanTile(q)) === layout(gemmPlanTile(p))) === i);
        const otherWarps = others.find((p) => p.threads !== 32 * (heuristic.warps ?? 8));
        return [planGemm(shape, m, target, reduction, heuristic), ...(otherWarps ? [otherWarps] : []), ...others.filter((p) => p !== otherWarps)].slice(0, t.maxTiles).map((plan, i) => ({ plan, heuristic: i === 0 }));
      });
      const cu = `gemm/tune/${gemmUnitName(shape)}_s${reduction.splitK}.cu`;
      const fatbin = cu.replace(/\.cu$/, '.fatbin');
      await mkdir(join(outDir, 'gemm', 'tune'), { recursive: true });
      await writeFile(join(outDir, cu), renderGemmUnit(shape, plans.map((p) => p.plan), [role], 'device-check search', { candidates: true }));
      if (emulated) {
        const kernels = plans.map((p) => gemmCandidateSymbol(p.plan)).map((name) => ({ name, argsType: 'TidarcGemmArgs' }));
        await buildEmulatedModule(join(outDir, cu), emulatedModulePath(join(outDir, fatbin)), kernels, { includeDirs: [join(outDir, 'gemm', 'cuda')] });
      }
      sources.push({ splitK: reduction.splitK, cu, fatbin });
      candidates.push(...plans.map(({ plan: p, heuristic }) => ({
        m: p.m, splitK: reduction.splitK, tile: gemmPlanTile(p), heuristic,
        symbol: gemmCandidateSymbol(p), blockM: p.blockM, nTiles: p.nTiles, threads: p.threads, sharedBytes: p.sharedBytes,
      })));
    }
    const sm90a = t.sm90a ? await prepareSm90aSearch(outDir, shape, role, t.rows ?? grid.rows, reductions.map((r) => r.splitK), target, emulated) : undefined;
    const heuristicByArch = gemmRuntimeHeuristics(shape, role, t.rows ?? grid.rows);
    out.push({ unit: gemmUnitName(shape), role, n: shape.n, k: shape.k, dtype: shape.dtype, heuristicSplitK: heuristicByArch.sm_90.splitK, heuristicArches: target.arches, heuristicByArch, space: GEMM_SEARCH_SPACE, sources, candidates, pruned, ...(sm90a ? { sm90a } : {}) });
  }
  return out;
}

/**
 * What a compile of the Qwen3-8B model (its step rows, DEFAULT_STEP_ROWS, as heuristicSplitK
 * always took) launches for `shape` in `role` with no tune record, at the searched row counts
 * `ms`: for sm_90 alone, mma.sync at planReduction's count; for sm_90 + sm_90a (the kernel cache's
 * compile for a 9.0 device), planUnitReduction's count (priced on the family the unit runs) and
 * sm90aGemmHeuristic's family over the compile's planned row counts, as generate.ts records it.
 */
export function gemmRuntimeHeuristics(shape: GemmShape, role: string, ms: readonly number[]): BundleGemmTune['heuristicByArch'] {
  const roles = [role as GemmRole];
  const opts = { rowStats: gemmEpilogues(shape, roles).rowStats === true };
  const tilesOf = (target: GemmTarget, reduction: ReturnType<typeof planReduction>): Record<string, GemmTile> =>
    Object.fromEntries(ms.map((m) => [String(m), gemmPlanTile(planGemm(shape, m, target, reduction, undefined, opts))]));
  const t90 = gemmTarget(['sm_90']);
  const r90 = planReduction(shape, t90, undefined, { ...opts, rows: DEFAULT_STEP_ROWS });
  const t90a = gemmTarget(['sm_90', 'sm_90a']);
  const r90a = planUnitReduction(shape, roles, t90a, DEFAULT_STEP_ROWS, opts);
  const kernel: GemmFamily = sm90aRefusal(shape, roles, r90a) !== null ? 'sm_90'
    : sm90aGemmHeuristic({ shape, roles, reduction: r90a, plans: DEFAULT_STEP_ROWS.map((m) => planGemm(shape, m, t90a, r90a, undefined, opts)) }).kernel;
  return {
    sm_90: { arches: t90.arches, kernel: 'sm_90', splitK: r90.splitK, tiles: tilesOf(t90, r90) },
    sm_90a: { arches: t90a.arches, kernel, splitK: r90a.splitK, ...(kernel === 'sm_90' ? { tiles: tilesOf(t90a, r90a) } : {}) },
  };
}
