/**
 * The sm_90a GEMM of a weight shape (templates/cuda/tidarc_gemm_sm90a.cuh): out^T = W x^T
 * with the weight rows as wgmma's M and the tokens as its N, so one kernel family serves
 * every M. It takes the weight shape's reduction from planReduction unchanged (k tiles of 64,
 * the same split-K rule and parts as the sm_80 path), so the k-order of an output element is
 * fixed per shape and never sees M; M only picks the token tile (wgmma N). Pure.
 */
import { TidarcError } from '../errors.js';
import { ARCHES } from './arch.js';
import { gemmEpilogues } from './gemm-epilogue.js';
import { gemmUnitFields } from './gemm-source.js';
import { type GemmReduction, type GemmShape, checkGemmShape, gemmUnitName } from './gemm-plan.js';
import { banner } from './kernel-source.js';
import { renderTemplate } from './templates.js';
import { fillRate, pipelineBytesInFlight } from './in-flight-rate.js';
import { H200, type Machine } from './machine.js';
import { occupancy } from './occupancy.js';
import { sm90aPrefetch } from './gemm-prefetch.js';

/**
 * wgmma N values tidarc_hopper.cuh instantiates (PTX allows every multiple of 8 up to 256). 136:
 * M = 272 (k = 16) in two CTAs along the tokens without padding, so each weight tile crosses L2
 * twice instead of five times (64-token tiles): bench:gemm-sm90a predicts 55-83% of the bf16
 * matmul rate at the Qwen3-8B shapes, against 42-48% with 64.
 */
export const SM90A_TOKEN_TILES = [8, 16, 32, 64, 128, 136, 256] as const;
/**
 * The TMA ring's least depth: 4 stages fit every token tile in sm_90's shared memory (4 x 48 KiB
 * at 256 tokens). A kernel gets more where its launches would under-fill HBM (sm90aStages).
 */
export const SM90A_STAGES = 4;
/**
 * The HBM latency the ring is sized for, over the machine's assumed one (Machine.hbmLatencyS, 700
 * ns on the H200, not yet measured under load): at 4 stages Qwen3-8B's o and down (128 CTAs of
 * one consumer at M = 72) pulled the copy rate only up to 731 ns; sized for 1.5 x 700 = 1050 ns
 * they keep it to there.
 */
export const SM90A_LATENCY_MARGIN = 1.5;
/** Weight rows per CTA of the wide tile: two consumer warpgroups of 64 rows (wgmma's M) each. */
export const SM90A_BLOCK_W = 128;
/** The narrow tile: one consumer warpgroup, twice the output tiles (the split-K rule of gemm-plan.ts counts them). */
export const SM90A_NARROW_BLOCK_W = 64;
/** Threads of a CTA of `blockW` weight rows: a warpgroup of 128 per 64 rows, then the producer warp. */
export function sm90aThreads(blockW: number): number {
  return 2 * blockW + 32;
}
const ELEMENT_BYTES = 2;

export interface Sm90aKernel {
  readonly tileT: number;
  /** Weight rows per CTA (sm90aBlockW): 64 consumer warpgroup rows times kConsumers. */
  readonly blockW: number;
  /** The ring's depth (sm90aStages): the k order of a sum never depends on it. */
  readonly stages: number;
  readonly threads: number;
  readonly sharedBytes: number;
  readonly symbol: string;
  /** The most rows of the planned row counts it serves: its launch's CTAs for the L2 prefetch before the PDL wait (gemm-prefetch.ts sm90aPrefetch). */
  readonly maxRows: number;
}

/**
 * The token tile for m rows: the smallest tile that holds them up to 256 (one CTA along the
 * tokens: each weight byte read once), else the tile of 64 tokens or more that pads the fewest
 * (ties: the larger, fewer re-reads of W; below 64 a wgmma is too narrow to pay for its W tile).
 */
export function sm90aTokenTile(m: number): number {
  if (!Number.isInteger(m) || m < 1) throw new TidarcError('unsupported', 'GEMM rows must be a positive integer', { field: 'm', value: m, allowed: 'an integer >= 1' });
  if (m <= 256) return SM90A_TOKEN_TILES.find((t) => t >= m)!;
  return SM90A_TOKEN_TILES.filter((t) => t >= 64).reverse().reduce((best, t) => (Math.ceil(m / t) * t < Math.ceil(m / best) * best ? t : best));
}

/**
 * Weight rows per CTA at a token tile: one consumer warpgroup (64 rows) up to 128 tokens, where
 * the step is memory-bound and the split-K choice prices 64-row tiles (gemm-plan.ts
 * GEMM_NARROW_BLOCK_N: Qwen3-8B o and down in 2 parts, not 4); two (128 rows) past it, where the
 * L2 traffic of the activations (once per weight tile) bounds the step. bench:gemm-sm90a at the
 * 2-part split: o at M = 72 86% of copy bandwidth with 64 rows (61% with 128), at M = 272 19.0 us
 * with 128 rows (23.6 with 64). The width never changes an element's sum (each consumer's wgmma is
 * the same; k order and split-K come from the reduction).
 */
export function sm90aBlockW(tileT: number): number {
  return tileT <= 128 ? SM90A_NARROW_BLOCK_W : SM90A_BLOCK_W;
}

/** Shared memory of a kernel: the 1024-byte alignment slack, the ring, the full and empty mbarriers and the split-K sum's. */
export function sm90aSharedBytes(tileT: number, stages = SM90A_STAGES, blockW = SM90A_BLOCK_W): number {
  return 1024 + stages * (blockW + tileT) * 64 * ELEMENT_BYTES + (2 * stages + 1) * 8;
}

export function sm90aUnitName(shape: GemmShape): string {
  return `${gemmUnitName(shape)}_sm90a`;
}
export function sm90aSymbol(shape: GemmShape, tileT: number): string {
  return `tidarc_${sm90aUnitName(shape)}_t${tileT}`;
}
export function sm90aSource(shape: GemmShape): string {
  return `cuda/${sm90aUnitName(shape)}.cu`;
}

/** Why the sm_90a kernel cannot serve this shape and role (null when it can). */
export function sm90aRefusal(shape: GemmShape, roles: readonly string[], reduction: GemmReduction): string | null {
  if (reduction.blockK !== 64) return `its k tile is ${reduction.blockK}; the sm_90a kernel's 128B swizzle needs 64`;
  if (gemmEpilogues(shape, roles).rowStats) return 'lm_head row statistics are not in the sm_90a epilogue (the mma.sync kernels have them)';
  return null;
}

/**
 * Registers a thread of an sm_90a GEMM kernel by token tile, as ptxas (nvcc 13.0, sm_90a,
 * 2026-12-05) reported them on the Qwen3-8B units, the most over qkv, o, gate_up and down at
 * split-K 1 and at 2 to 4 (npm run bench:gemm-sm90a-registers prints this table; the depth of the
 * ring changes none of them). Rerun with the PDL prologue (the weight prefetch before the grid
 * dependency wait, 2026-12-05): only 136 tokens at split-K > 1 moved, 142 to 144; with that
 * prefetch made of per-thread line prefetches (prefetch.global.L2, no R2UR loop) it is 142 again. The split-K sum costs registers (the partials' addresses, a chunk of
 * loads in flight); 256 tokens at split-K > 1 sit at the 168 ptxas allows 288 threads, without
 * spills since the last CTA stores each chunk of sums as it holds them (tidarc_gemm_sm90a.cuh;
 * summed whole first it spilled 152-184 bytes there, and 128 tokens took 137). What the stage
 * rule's occupancy, the family choice and the step cost model price a kernel at.
 * Fold-norms (2026-12-06): the Qwen3-8B units now carry Reduction::kNormOut (o, down) or
 * kRowScale (qkv, gate_up); the bench over them gave single { 8: 30, 16: 34, 32: 42, 64: 60,
 * 128: 96, 136: 100, 256: 160 }, split { 8: 32, 16: 44, 32: 52, 64: 82, 128: 137, 136: 137,
 * 256: 168 } (the producers' split-K 128-token kernels 106 -> 137: the staged chunk sums), no
 * spills. The table keeps the most of those and of the figures above (units without the code
 * compile as before, e.g. fp16 ones): an upper bound for either. With the warpgroup barrier
 * before the fold's staging (same day): 136 tokens 98 single, 138 split, the rest as above.
 */
const SM90A_REGISTERS_BY_TILE: Readonly<Record<'single' | 'split', Readonly<Record<number, number>>>> = {
  single: { 8: 30, 16: 34, 32: 42, 64: 60, 128: 96, 136: 100, 256: 160 },
  split: { 8: 32, 16: 48, 32: 53, 64: 83, 128: 137, 136: 142, 256: 168 },
};
export function sm90aRegisters(tileT: number, splitK: number): number {
  const r = SM90A_REGISTERS_BY_TILE[splitK > 1 ? 'split' : 'single'][tileT];
  if (r === undefined) throw new Error(`sm_90a GEMM token tile ${tileT} has no ptxas register figure (SM90A_TOKEN_TILES: ${SM90A_TOKEN_TILES.join(', ')})`);
  return r;
}

/**
 * The ring depth of the kernel of token tile `tileT` (issue 18): the fewest stages from
 * SM90A_STAGES up whose bytes in flight (in-flight-rate.ts: stages - 1 weight tiles a CTA) pull
 * the copy rate at SM90A_LATENCY_MARGIN x the machine's HBM latency for every row count of `ms`
 * that launches it (the fewest rows, the fewest CTAs, ask the most), capped where the ring would
 * pass the block's shared memory, or hold fewer CTAs an SM than the unit needs: those it holds
 * at SM90A_STAGES (registers by sm90aRegisters), or fewer where its largest launch has fewer
 * CTAs than that for each SM (o at M = 1: 128 CTAs need 1 an SM, so the 8-token kernel may trade
 * its fifth resident CTA for a deeper ring). Deeper rings only start more copies ahead; each k
 * tile is still summed in the same order (tidarc_gemm_sm90a.cuh), so outputs are bitwise those
 * at any other depth.
 */
export function sm90aStages(shape: GemmShape, reduction: GemmReduction, tileT: number, ms: readonly number[], machine: Machine = H200): number {
  const blockW = sm90aBlockW(tileT), threads = sm90aThreads(blockW), registers = sm90aRegisters(tileT, reduction.splitK);
  const perSm = (stages: number): number => occupancy(machine.arch, { registers, sharedBytes: sm90aSharedBytes(tileT, stages, blockW), threads }).ctasPerSm;
  const launches = ms.filter((m) => sm90aTokenTile(m) === tileT).map((m) => Math.ceil(m / tileT) * Math.ceil(shape.n / blockW) * reduction.splitK);
  const needed = Math.min(perSm(SM90A_STAGES), Math.ceil(Math.max(1, ...launches) / machine.sms));
  const slow = { ...machine, hbmLatencyS: machine.hbmLatencyS * SM90A_LATENCY_MARGIN };
  const fills = (stages: number): boolean => launches.every((ctas) => !fillRate(slow, { bytesPerCta: pipelineBytesInFlight(stages, blockW * reduction.blockK * ELEMENT_BYTES), ctas, ctasPerSm: perSm(stages) }).underFilled);
  let stages = SM90A_STAGES;
  while (!fills(stages) && stages < reduction.kTilesPerSplit) {
    const deeper = stages + 1;
    if (sm90aSharedBytes(tileT, deeper, blockW) > ARCHES.sm_90a.maxSharedPerBlock || perSm(deeper) < needed) break;
    stages = deeper;
  }
  return stages;
}

/**
 * One kernel per distinct token tile of `ms`, sorted by tile; with the unit's `reduction`, each
 * at the ring depth sm90aStages picks for the row counts of `ms` it serves (else SM90A_STAGES,
 * or `stages` where a test forces one).
 */
export function planSm90aKernels(shape: GemmShape, ms: readonly number[], reduction?: GemmReduction, o: { readonly stages?: number } = {}): Sm90aKernel[] {
  checkGemmShape(shape);
  const tiles = [...new Set(ms.map(sm90aTokenTile))].sort((a, b) => a - b);
  return tiles.map((tileT) => {
    const blockW = sm90aBlockW(tileT);
    const stages = o.stages ?? (reduction ? sm90aStages(shape, reduction, tileT, ms) : SM90A_STAGES);
    const sharedBytes = sm90aSharedBytes(tileT, stages, blockW);
    if (sharedBytes > ARCHES.sm_90a.maxSharedPerBlock) throw new Error(`sm_90a GEMM token tile ${tileT} needs ${sharedBytes} bytes of shared memory`);
    const maxRows = Math.max(...ms.filter((m) => sm90aTokenTile(m) === tileT));
    return { tileT, blockW, stages, threads: sm90aThreads(blockW), sharedBytes, symbol: sm90aSymbol(shape, tileT), maxRows };
  });
}

/** Grid over `rows` tokens: token tiles fastest, so the CTAs sharing a W tile run together (L2). */
export function sm90aGrid(shape: GemmShape, reduction: GemmReduction, kernel: Pick<Sm90aKernel, 'tileT' | 'blockW'>, rows: number): [number, number, number] {
  return [Math.ceil(rows / kernel.tileT), Math.ceil(shape.n / kernel.blockW), reduction.splitK];
}

/** The fold-norms code compiled into an sm_90a unit (Reduction::kNormOut, kRowScale): gemmEpilogues(shape, roles)'s unless a test forces it. */
export interface Sm90aFold {
  readonly normOut: boolean;
  readonly rowScale: boolean;
}
export function sm90aFold(shape: GemmShape, roles: readonly string[]): Sm90aFold {
  const e = gemmEpilogues(shape, roles);
  return { normOut: e.normOut === true, rowScale: e.rowScale === true };
}

export function renderSm90aUnit(shape: GemmShape, reduction: GemmReduction, kernels: readonly Sm90aKernel[], roles: readonly string[], modelName: string, o: { readonly fold?: Sm90aFold } = {}): string {
  const fold = o.fold ?? sm90aFold(shape, roles);
  return renderTemplate('cuda/tidarc_gemm_sm90a.cu.hbs', {
    banner: banner(modelName),
    ...gemmUnitFields(shape, reduction, roles),
    normOut: fold.normOut,
    rowScale: fold.rowScale,
    kernels: kernels.map((k) => {
      const prefetch = sm90aPrefetch(shape, reduction, k, [k.maxRows]);
      return { ...k, consumers: k.blockW / 64, wTiles: Math.ceil(shape.n / k.blockW), splitK: reduction.splitK, blockK: reduction.blockK, prefetchTiles: prefetch.tiles, prefetchBytes: prefetch.bytesPerCta };
    }),
  });
}

/**
 * An sm_90a GEMM unit as the runtime takes it (the manifest's words for it): the unit is
 * compiled for sm_90a alone (`arch`), one kernel per token tile, all sharing the reduction.
 */
export interface ManifestGemmSm90a {
  readonly unit: string;
  readonly arch: 'sm_90a';
  readonly roles: readonly string[];
  readonly n: number;
  readonly k: number;
  readonly dtype: GemmShape['dtype'];
  readonly splitK: number;
  readonly source: string;
  /** blockW: weight rows per CTA, the grid's y (ceil(n / blockW)) and the W tensor map's box. */
  /** stages: the TMA ring's depth, which sharedBytes holds (sm90aStages). */
  readonly kernels: readonly { readonly symbol: string; readonly tileT: number; readonly blockW: number; readonly stages: number; readonly threads: number; readonly sharedBytes: number }[];
  /** splitK > 1: int32 arrival counters, one per output tile (ceil(rows / tileT) * ceil(n / blockW)), zeroed once (tidarc_gemm_abi.h). */
  readonly splitCounters?: boolean;
  readonly swigluInterleave?: number;
  /** Fold-norms producer (o, down; bf16): the kernels have Reduction::kNormOut, so a launch may set norm_weight / norm_out / norm_sumsq (tidarc_gemm_abi.h). */
  readonly normOut?: true;
  /** Fold-norms consumer (qkv, gate_up or their parts; bf16): the kernels have Reduction::kRowScale, so a launch may set row_sumsq. */
  readonly rowScale?: true;
  /**
   * A compile for sm_90a: the family the cost models predict faster over the unit's planned row
   * counts, which the runtime takes when no tune record says (gemm-kernel-choice.ts); ratio:
   * sm_90a's predicted sum over mma.sync's. Absent: the arch rule alone.
   */
  readonly heuristic?: { readonly kernel: 'sm_90' | 'sm_90a'; readonly ratio: number };
}

export function describeSm90aUnit(shape: GemmShape, roles: readonly string[], reduction: GemmReduction, kernels: readonly Sm90aKernel[]): ManifestGemmSm90a {
  const swiglu = gemmEpilogues(shape, roles).swigluInterleave;
  const fold = sm90aFold(shape, roles);
  return {
    unit: sm90aUnitName(shape), arch: 'sm_90a', roles: [...roles], n: shape.n, k: shape.k, dtype: shape.dtype, splitK: reduction.splitK, source: sm90aSource(shape),
    kernels: kernels.map((k) => ({ symbol: k.symbol, tileT: k.tileT, blockW: k.blockW, stages: k.stages, threads: k.threads, sharedBytes: k.sharedBytes })),
    ...(reduction.splitK > 1 ? { splitCounters: true } : {}),
    ...(swiglu !== undefined ? { swigluInterleave: swiglu } : {}),
    ...(fold.normOut ? { normOut: true as const } : {}),
    ...(fold.rowScale ? { rowScale: true as const } : {}),
  };
}

/** Headers an sm_90a unit includes beyond the GEMM's own (tidarc_gemm.cuh, tidarc_gemm_abi.h): output path -> template. */
export const SM90A_STATIC_FILES: readonly (readonly [string, string])[] = [
  ['cuda/tidarc_gemm_sm90a.cuh', 'cuda/tidarc_gemm_sm90a.cuh'],
  ['cuda/tidarc_gemm_sm90a_abi.h', 'cuda/tidarc_gemm_sm90a_abi.h'],
  ['cuda/tidarc_hopper.cuh', 'cuda/tidarc_hopper.cuh'],
];

/** What a compile with sm_90a adds for the linear layers: a unit per weight shape the sm_90a kernel takes. */
export interface Sm90aGemms {
  readonly sources: ReadonlyMap<string, string>;
  readonly gemms: readonly ManifestGemmSm90a[];
  /** Units left to the mma.sync GEMMs on sm_90a too, and why. */
  readonly refusals: readonly { readonly unit: string; readonly reason: string }[];
}

/**
 * The sm_90a units of a compile's GEMM units (pure): the same weight shapes, roles and
 * reduction (the mma.sync unit's k tiles and split-K, so both paths sum alike), a kernel per
 * token tile its step row counts need.
 */
export function planSm90aGemms(units: readonly { readonly shape: GemmShape; readonly roles: readonly string[]; readonly reduction: GemmReduction; readonly plans: readonly { readonly m: number }[] }[], modelName: string): Sm90aGemms {
  const sources = new Map<string, string>();
  const gemms: ManifestGemmSm90a[] = [];
  const refusals: { unit: string; reason: string }[] = [];
  for (const u of units) {
    const reason = sm90aRefusal(u.shape, u.roles, u.reduction);
    if (reason) {
      refusals.push({ unit: sm90aUnitName(u.shape), reason });
      continue;
    }
    const kernels = planSm90aKernels(u.shape, u.plans.map((p) => p.m), u.reduction);
    sources.set(sm90aSource(u.shape), renderSm90aUnit(u.shape, u.reduction, kernels, u.roles, modelName));
    gemms.push(describeSm90aUnit(u.shape, u.roles, u.reduction, kernels));
  }
  return { sources, gemms, refusals };
}
