/**
 * Kernel plan: how one variant is tiled. Rows are the n in-step tokens times the G query
 * heads of one KV head, packed token-major; the in-step key tiles of every row tile are
 * classified from the mask IR at compile time (empty ones are dropped from the schedule).
 * The row tile's shape is chosen per variant: for a GPU plan, the candidate the cost model predicts
 * fastest (plannedRowTile); unless tuned.
 */
import { TidarcError } from '../errors.js';
import { classifyStepRect, type TileClass } from '../ir/mask.js';
import type { ArchName, ArchSpec, TileConfig } from './arch.js';
import { attention32Compiles, attention32Registers } from './attention-registers.js';
import { occupancy } from './occupancy.js';
import { fastestRowTile, scoreRowTile } from './row-tile-choice.js';
import { type AttentionVariant, groupSize } from './variant.js';

/**
 * How a CTA's warps share one row tile. 'rows': each warp owns warpRows rows (16, or 32 as two
 * m16 tiles sharing every K/V fragment), the tile is warpRows x warps rows. 'keys': one 16-row
 * m-tile; each warp takes tileN / warps keys of every key tile and the warps merge their
 * softmax state (max, sum, O) through shared memory at the end, in warp order.
 */
export type WarpLayout = 'rows' | 'keys';

/** Rows one warp owns: one m16 tile, or two that share each ldmatrix'd K and V fragment. */
export type WarpRows = 16 | 32;

export interface RowTile {
  readonly layout: WarpLayout;
  readonly warps: number;
  /** Warps stacked over rows (warpRows rows each): warps for 'rows', 1 for 'keys'. */
  readonly rowWarps: number;
  /** Warps sharing each key tile's columns: 1 for 'rows', warps for 'keys'. */
  readonly keyWarps: number;
  /** Rows of one row warp: 16, or 32 ('rows' only). */
  readonly warpRows: WarpRows;
  /** Rows of one tile: warpRows x rowWarps. */
  readonly tileM: number;
}

/** The most rows one CTA holds (8 warps of 16, 4 of 32): a KV head with more rows is cut into several tiles. */
export const MAX_TILE_ROWS = 128;
/** Warps that split the keys of a <= 16-row tile by default: 16 keys each at tileN 64. */
const KEY_WARPS = 4;
/** The fewest rows of a tile when a KV head's rows need several (fewer would multiply the prefix's L2 reads). */
const MIN_WIDE_ROWS = 64;

/**
 * The row tile of `rows` packed rows per KV head for a tile with `warps` (and `warpRows`): the
 * layout follows from the rows. Without `warps`, the structural rule a plan with no GPU device
 * (the CPU kernel's) keeps and tidarc tune lists; a GPU plan's default is the cost model's choice
 * among rowTileCandidates (planAttention):
 *   rows <= 16 (AR, k = 1 at G <= 8): one 16-row m-tile and warps split the keys: no padding
 *     rows are computed (16 x warps rows did 60 padding rows of work for AR's 4); a GPU plan
 *     keeps this too (the cost model cannot tell 1, 2 and 4 key warps apart);
 *   rows <= 128 (k = 4 at G = 4: 80): one tile of ceil(rows / 16) warps, so every row of the
 *     KV head is in one CTA and the prefix is read once;
 *   more (k = 8: 288 at G = 4, k = 16: 1088, prefill): warps of 32 rows where their O and S
 *     fragments fit in registers at 3 stages (fitsInRegisters: head dim 64 up to tileN 64),
 *     else warps of 16; in tiles of 64 to 128 rows (2 to 4 warps of 32, 4 to 8 of 16) with the
 *     fewest padding rows, then the fewest tiles (each re-reads the prefix from L2).
 */
export function rowTileOf(rows: number, tileN: number, headDim: number, warps?: number, warpRows?: WarpRows): RowTile {
  if (rows <= 16) {
    const w = warps ?? Math.max(1, Math.min(KEY_WARPS, tileN / 16));
    return { layout: 'keys', warps: w, rowWarps: 1, keyWarps: w, warpRows: 16, tileM: 16 };
  }
  // The default takes 32 rows where they fit at either stage count (the stages are chosen after the tile).
  const wr: WarpRows = warpRows ?? (rows > MAX_TILE_ROWS && fitsInRegisters(32, tileN, headDim, 3) ? 32 : 16);
  const w = warps ?? (rows <= MAX_TILE_ROWS ? Math.ceil(rows / wr) : leastPaddedWarps(rows, wr));
  return { layout: 'rows', warps: w, rowWarps: w, keyWarps: 1, warpRows: wr, tileM: wr * w };
}

/**
 * Whether a warp keeps its O and S fragments in registers with room for the rest: fp32 O
 * (warpRows x headDim) and S (warpRows x the keys of a tile it scores) over 32 lanes, at most
 * 160 registers with 2 cp.async stages, 128 with 3 (a third stage's addresses take the rest).
 * ptxas (nvcc 13, sm_80 and sm_90, loops unrolled): 32-row warps at head dim 64 and 64 keys
 * (128): 241-254 registers, no spill at 2 and 3 stages; at head dim 128 and 32 keys (160): 255,
 * no spill at 2 stages, 136 bytes of spills at 3 on sm_90; at 64 keys (192): 300+ bytes of
 * spills. 16-row warps at head dim 128 and 128 keys (128): 254 at 3 stages, no spill.
 */
export function fitsInRegisters(warpRows: WarpRows, keysPerWarp: number, headDim: number, stages: Stages): boolean {
  return (warpRows * (headDim + keysPerWarp)) / 32 <= (stages === 2 ? 160 : 128);
}

/**
 * The row tiles a GPU plan of `variant` chooses from (plannedRowTile), for the arch's `tile`:
 * 16-row warps, 1 to 8 a tile (1 to 8 tiles of k = 4's 80 rows: split over CTAs, or in one); and
 * 32-row warps, 2 to 4 a tile, at the tile's keys where their fragments fit (fitsInRegisters at
 * its stages, 2 unless pinned), else at half the keys (head dim 128: 32 of 64) where those fit,
 * each only where ptxas compiled that tile of the variant's mask kind without spilling at sm_80
 * and sm_90 (attention-registers.ts, measured: at head dim 128 and 32 keys a 32-row warp sits at
 * 246-255 registers, where the block-diffusion and causal masks spill 4-12 bytes at 2 to 4 warps,
 * e.g. Qwen2.5-1.5B's block_k16 on 3 warps, and TiDAR decode steps hold with none). A tile of a
 * kind or shape not measured is not offered.
 */
export function rowTileCandidates(variant: AttentionVariant, tile: TileConfig): TileConfig[] {
  const { headDim } = variant.shape;
  const stages = tile.stages ?? 2;
  const sixteen = Array.from({ length: MAX_TILE_ROWS / 16 }, (_, i): TileConfig => ({ ...tile, warps: i + 1, warpRows: 16 }));
  const half = tile.tileN / 2;
  const keys32 = fitsInRegisters(32, tile.tileN, headDim, stages) ? tile.tileN
    : half % 16 === 0 && fitsInRegisters(32, half, headDim, stages) ? half : undefined;
  const thirtyTwo = keys32 === undefined ? [] : [2, 3, 4].filter((warps) => attention32Compiles(variant.mask.kind, headDim, keys32, stages, warps))
    .map((warps): TileConfig => ({ ...tile, tileN: keys32, warps, warpRows: 32 }));
  return [...sixteen, ...thirtyTwo];
}

function leastPaddedWarps(rows: number, warpRows: number): number {
  const executed = (w: number): number => Math.ceil(rows / (warpRows * w)) * warpRows * w;
  let best = MIN_WIDE_ROWS / warpRows;
  for (let w = best + 1; w <= MAX_TILE_ROWS / warpRows; w++) if (executed(w) <= executed(best)) best = w;
  return best;
}

export interface AttentionPlan extends StepTileSchedule {
  readonly variant: AttentionVariant;
  /** The tile with the planner's (or the tuned) warps and stages. */
  readonly tile: TileConfig & { readonly warps: number; readonly stages: Stages };
  readonly rowTile: RowTile;
  readonly tileM: number;
  readonly threads: number;
  /** In-step tokens n. */
  readonly steps: number;
  readonly group: number;
  /** n * G query rows per (sequence, KV head). */
  readonly rows: number;
  /** Elements per shared-memory row: head dim + 8 (16 bytes) against ldmatrix bank conflicts. */
  readonly smemStride: number;
  readonly sharedBytes: number;
  /** log2(e) / sqrt(head dim): scores go to the exp2 domain in one multiply. */
  readonly scaleLog2: number;
}

const ELEMENT_BYTES = 2;

export type Stages = 2 | 3;

/**
 * Dynamic shared memory of the CUDA kernel: K and V of each stage, rows of headDim + 8 16-bit
 * elements (against ldmatrix bank conflicts), and, for 32-row warps, the Q tile in a region of
 * its own (16-row warps keep Q in registers; its shared copy aliases the stages).
 */
export function attentionSharedBytes(rowTile: Pick<RowTile, 'warpRows' | 'tileM'>, tileN: number, headDim: number, stages: Stages): number {
  const rowBytes = (headDim + 8) * ELEMENT_BYTES;
  return 2 * stages * tileN * rowBytes + (rowTile.warpRows === 32 ? rowTile.tileM * rowBytes : 0);
}

/**
 * Registers a thread of the kernel needs, estimated from the fragments it keeps (32-bit
 * registers): O (warpRows x headDim fp32 over 32 lanes), S (warpRows x its keys of a tile), Q's
 * A fragments (16-row warps), plus 40 for addresses, the softmax state and the loop, plus
 * 40 / keyWarps: with `__launch_bounds__(threads, 1)` (kernel-source.ts) ptxas may take up to 255
 * and takes more the fewer key warps share a tile. 32-row warps: 255, the cap (a plan's measured
 * figure is plannedRegisters': attention-registers.ts, 131-255 by head dim and keys). Fitted to ptxas (nvcc 13,
 * sm_90; sm_80 within 16), what the planner needs being the CTAs an SM this implies (a
 * sub-partition holds 4 warps up to 128 registers, 3 up to 168, 2 up to 255):
 *   head dim  layout           warps  estimate  ptxas
 *   64        rows (16-row)    1-8    160       151-168
 *   64        keys             1/2/4  160/124/106  162-168/123-127/103-107
 *   128       rows (16-row)    1-8    208       201-227, 254 at 1 warp
 *   128       keys             1/2/4  208/172/154  254/216-218/167-168
 *   64, 128   rows (32-row)    1-4    255       242-255
 * (the figures of Qwen3-8B's, Qwen2.5-1.5B's and tiny's variants at every warp count,
 * 2026-12-05). test/codegen/nvcc.test.ts checks that ptxas's own registers give the stages this gives.
 */
export function estimatedRegisters(rowTile: RowTile, tileN: number, headDim: number): number {
  if (rowTile.warpRows === 32) return 255;
  const o = (16 * headDim) / 32;
  const s = (16 * (tileN / rowTile.keyWarps)) / 32;
  return Math.min(255, o + s + headDim / 4 + REGISTER_OVERHEAD + REGISTER_OVERHEAD / rowTile.keyWarps);
}
const REGISTER_OVERHEAD = 40;

/**
 * Registers a thread of the plan's kernel takes on `arch` as the planner prices them: a 32-row
 * tile's ptxas figure where attention-registers.ts measured its mask kind and shape, else the
 * estimate (estimatedRegisters: 255 for an unmeasured 32-row tile).
 */
export function plannedRegisters(plan: Pick<AttentionPlan, 'variant' | 'rowTile' | 'tile'>, arch: ArchName): number {
  const { rowTile, tile, variant } = plan;
  const measured = rowTile.warpRows === 32 ? attention32Registers(variant.mask.kind, variant.shape.headDim, tile.tileN, tile.stages, rowTile.warps, arch) : undefined;
  return measured?.registers ?? estimatedRegisters(rowTile, tile.tileN, variant.shape.headDim);
}

/**
 * The default cp.async stages: 3 (a second tile in flight while one is consumed: more bytes
 * in flight a CTA) where the warps' fragments leave the registers a third stage needs
 * (fitsInRegisters) and, on every device of the compile, the third stage's shared memory fits
 * and leaves an SM as many CTAs as the 2-stage kernel had (its registers, estimated, and its
 * shared memory): a stage that costs a CTA a SM trades the latency hiding it adds for the
 * same amount lost. Else 2; and 2 with no device to size it for (a CPU-only plan). `registersOn`:
 * ptxas's figure per arch where known (a test), else the estimate.
 */
export function defaultStages(rowTile: RowTile, tileN: number, headDim: number, arches: readonly ArchSpec[],
  registersOn: (arch: ArchSpec) => number = () => estimatedRegisters(rowTile, tileN, headDim)): Stages {
  if (arches.length === 0 || !fitsInRegisters(rowTile.warpRows, tileN / rowTile.keyWarps, headDim, 3)) return 2;
  const threads = rowTile.warps * 32;
  const keeps = (arch: ArchSpec): boolean => {
    const three = attentionSharedBytes(rowTile, tileN, headDim, 3);
    if (three > arch.maxSharedPerBlock) return false;
    const registers = registersOn(arch);
    const ctas = (stages: Stages): number => occupancy(arch.name, { registers, threads, sharedBytes: attentionSharedBytes(rowTile, tileN, headDim, stages) }).ctasPerSm;
    return ctas(3) >= ctas(2);
  };
  return arches.every(keeps) ? 3 : 2;
}

/**
 * defaultStages for a variant: 32-row warps at their measured 3-stage registers
 * (attention-registers.ts), and 2 stages where the 3-stage tile was not measured free of spills.
 */
function stagesOf(variant: AttentionVariant, rowTile: RowTile, tileN: number, arches: readonly ArchSpec[]): Stages {
  if (rowTile.warpRows !== 32) return defaultStages(rowTile, tileN, variant.shape.headDim, arches);
  const { kind } = variant.mask;
  const { headDim } = variant.shape;
  if (!attention32Compiles(kind, headDim, tileN, 3, rowTile.warps)) return 2;
  return defaultStages(rowTile, tileN, headDim, arches, (a) => attention32Registers(kind, headDim, tileN, 3, rowTile.warps, a.name)!.registers);
}

/** Which in-step key tiles each row tile visits, classified from the mask IR (empty ones dropped). */
export interface StepTileSchedule {
  readonly rowTiles: number;
  readonly stepKeyTiles: number;
  /** CSR schedule: row tile r visits stepTileKey[stepTileOffset[r] .. stepTileOffset[r+1]). */
  readonly stepTileOffset: readonly number[];
  readonly stepTileKey: readonly number[];
  readonly stepTileFull: readonly boolean[];
  readonly stepTileCounts: Readonly<Record<TileClass, number>>;
}

/** The step tile schedule of a variant cut into row tiles of `tileM` packed rows and key tiles of `tileN` (both kernels' planners). */
export function stepTileSchedule(variant: AttentionVariant, tileM: number, tileN: number): StepTileSchedule {
  const { mask } = variant;
  const steps = mask.tokens.length;
  const group = groupSize(variant.shape);
  const rows = steps * group;
  const rowTiles = Math.ceil(rows / tileM);
  const stepKeyTiles = Math.ceil(steps / tileN);
  const offsets: number[] = [0];
  const keys: number[] = [];
  const full: boolean[] = [];
  const counts: Record<TileClass, number> = { empty: 0, partial: 0, full: 0 };
  for (let rt = 0; rt < rowTiles; rt++) {
    const r0 = rt * tileM;
    const r1 = Math.min(rows, r0 + tileM);
    const q0 = Math.floor(r0 / group);
    const q1 = Math.floor((r1 - 1) / group) + 1;
    for (let kt = 0; kt < stepKeyTiles; kt++) {
      const k0 = kt * tileN;
      const k1 = Math.min(steps, k0 + tileN);
      let cls = classifyStepRect(mask, q0, q1, k0, k1);
      // A tile that runs past the last in-step key needs the bound check of a partial tile.
      if (cls === 'full' && k1 - k0 < tileN) cls = 'partial';
      counts[cls]++;
      if (cls === 'empty') continue;
      keys.push(kt);
      full.push(cls === 'full');
    }
    offsets.push(keys.length);
  }
  return { rowTiles, stepKeyTiles, stepTileOffset: offsets, stepTileKey: keys, stepTileFull: full, stepTileCounts: counts };
}

/**
 * The plan of a variant for a tile: the tile's warps, warpRows and stages where it has them
 * (tuned), else the planner's rules (rowTileOf; defaultStages over `arches`, the compile's devices).
 */
export function planAttention(variant: AttentionVariant, tile: TileConfig, arches: readonly ArchSpec[] = []): AttentionPlan {
  const { mask, shape } = variant;
  const steps = mask.tokens.length;
  const group = groupSize(shape);
  const rows = steps * group;
  if (arches.length > 0 && rows > 16 && tile.warps === undefined && tile.warpRows === undefined) return plannedRowTile(variant, tile, arches);
  const rowTile = rowTileOf(rows, tile.tileN, shape.headDim, tile.warps, tile.warpRows);
  const stages = tile.stages ?? stagesOf(variant, rowTile, tile.tileN, arches);
  const { tileM } = rowTile;
  const schedule = stepTileSchedule(variant, tileM, tile.tileN);
  const smemStride = shape.headDim + 8;
  const plan: AttentionPlan = {
    variant,
    tile: { ...tile, warps: rowTile.warps, stages },
    rowTile,
    tileM,
    threads: rowTile.warps * 32,
    steps,
    group,
    rows,
    ...schedule,
    smemStride,
    sharedBytes: attentionSharedBytes(rowTile, tile.tileN, shape.headDim, stages),
    scaleLog2: Math.LOG2E / Math.sqrt(shape.headDim),
  };
  return checkPlan(plan);
}

/**
 * A GPU plan's default above 16 rows (issue 15 item 1): of rowTileCandidates that fit every
 * device of the compile, the one the cost model predicts fastest over the shapes at its
 * sm_90 registers (plannedRegisters: ptxas's for 32-row warps, the estimate for 16-row ones;
 * row-tile-choice.ts fastestRowTile: the geometric mean, ties to 16-row
 * warps, fewer tiles, fewer warps). Qwen3-8B (G = 4, head dim 128) on sm_90: k = 4 (80 rows)
 * one CTA of 5 warps (ahead of 2 tiles of 3 at every shape: each K/V tile read by 5 warps for
 * 80 rows, not 3 for 48); k = 8 3 x 3 and k = 16 9 x 4 warps of 32 rows at 32 keys (9 x 4 within
 * the tolerance of 12 x 3, fewer row tiles); the prefill chunk 2 x 8 of 16.
 */
export function plannedRowTile(variant: AttentionVariant, tile: TileConfig, arches: readonly ArchSpec[]): AttentionPlan {
  const plans = rowTileCandidates(variant, tile).map((t) => planAttention(variant, t, arches))
    .filter((p) => arches.every((a) => archProblems(p, a).length === 0));
  if (plans.length === 0) throw new TidarcError('unsupported', `no row tile of ${variant.name} fits the shared memory of every arch`, { field: '--arch', value: arches.map((a) => a.name).join(','), allowed: 'arches whose shared memory holds a 16-row tile' });
  return fastestRowTile(plans.map((p) => scoreRowTile(p, plannedRegisters(p, 'sm_90')))).plan;
}

/** Invariants the kernel templates rely on. */
function checkPlan(plan: AttentionPlan): AttentionPlan {
  const fail = (what: string): never => {
    throw new TidarcError('unsupported', `plan for ${plan.variant.name} is invalid: ${what}`);
  };
  if (plan.tile.tileN % 16 !== 0) fail('tileN must be a multiple of 16');
  const { rowWarps, keyWarps, warps, warpRows } = plan.rowTile;
  if (!Number.isInteger(warps) || warps < 1 || rowWarps * keyWarps !== warps || plan.tileM !== warpRows * rowWarps) fail(`a row tile of ${warps} warps is not rowWarps x keyWarps with ${warpRows} rows a row warp`);
  if (warpRows !== 16 && (warpRows !== 32 || keyWarps !== 1)) fail(`a warp owns 16 rows, or 32 when it owns whole key tiles (${warpRows} rows, ${keyWarps} key warps)`);
  if (plan.tile.stages !== 2 && plan.tile.stages !== 3) fail(`the kernel has 2 or 3 cp.async stages, not ${plan.tile.stages}`);
  if (plan.tile.tileN % (16 * keyWarps) !== 0) fail(`${keyWarps} warps cannot split ${plan.tile.tileN} keys into slices of whole k16 steps`);
  // 'keys': the warps' (max, sum, O) meet in the K/V stages once the last tile is consumed.
  if (keyWarps > 1 && warps * 16 * (plan.variant.shape.headDim + 2) * 4 > plan.sharedBytes) fail('the cross-warp merge must fit in the K/V stages');
  // 16-row warps: Q's shared copy aliases the stages (32-row warps give it a region of its own).
  if (warpRows === 16 && plan.tileM * plan.smemStride > 2 * plan.tile.stages * plan.tile.tileN * plan.smemStride) fail('the Q tile must fit in the K/V stages it aliases');
  if (plan.stepTileOffset.length !== plan.rowTiles + 1) fail('schedule has one offset per row tile plus one');
  for (let rt = 0; rt < plan.rowTiles; rt++) {
    // Every token sees itself, so every row tile has at least one non-empty in-step tile.
    if (plan.stepTileOffset[rt + 1]! <= plan.stepTileOffset[rt]!) fail(`row tile ${rt} has no in-step tile`);
  }
  return plan;
}

/** Problems that stop a plan from running on an arch (empty when it fits). */
export function archProblems(plan: AttentionPlan, arch: ArchSpec): string[] {
  const problems: string[] = [];
  if (plan.sharedBytes > arch.maxSharedPerBlock) {
    problems.push(`${plan.variant.name} needs ${plan.sharedBytes} bytes of shared memory; ${arch.name} allows ${arch.maxSharedPerBlock}`);
  }
  return problems;
}
