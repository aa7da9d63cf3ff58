/**
 * Kernel plan: how one variant is tiled. Rows are the n in-step tokens times the G query
 * heads of one KV head, packed token-major; the in-step key tiles of every row tile are
 * classified from the mask IR at compile time (empty ones are dropped from the schedule).
 * The row tile's shape is chosen per variant from its rows (rowTileOf), unless tuned.
 */
import { TidarcError } from '../errors.js';
import { classifyStepRect, type TileClass } from '../ir/mask.js';
import type { ArchSpec, TileConfig } from './arch.js';
import { type AttentionVariant, groupSize } from './variant.js';

/**
 * How a CTA's warps share one row tile. 'rows': each warp owns 16 rows, the tile is 16 x warps
 * rows. 'keys': one 16-row m-tile; each warp takes tileN / warps keys of every key tile and the
 * warps merge their softmax state (max, sum, O) through shared memory at the end, in warp order.
 */
export type WarpLayout = 'rows' | 'keys';

export interface RowTile {
  readonly layout: WarpLayout;
  readonly warps: number;
  /** Warps stacked over rows (16 rows each): warps for 'rows', 1 for 'keys'. */
  readonly rowWarps: number;
  /** Warps sharing each key tile's columns: 1 for 'rows', warps for 'keys'. */
  readonly keyWarps: number;
  /** Rows of one tile: 16 x rowWarps. */
  readonly tileM: number;
}

/** The most rows one CTA holds (8 warps of 16): a KV head with more rows is cut into several tiles. */
export const MAX_TILE_ROWS = 128;
/** Warps that split the keys of a <= 16-row tile by default: 16 keys each at tileN 64. */
const KEY_WARPS = 4;
/** The fewest warps of a tile when a KV head's rows need several (fewer would multiply the prefix's L2 reads). */
const MIN_WIDE_WARPS = 4;

/**
 * The row tile of a variant with `rows` packed rows per KV head:
 *   rows <= 16 (AR, k = 1 at G <= 8): one 16-row m-tile and warps split the keys: no padding
 *     rows are computed (16 x warps rows did 60 padding rows of work for AR's 4);
 *   rows <= 128 (k = 4 at G = 4: 80): one tile of ceil(rows / 16) warps, so every row of the
 *     KV head is in one CTA and the prefix is read once;
 *   more: tiles of 4 to 8 warps with the fewest padding rows, then the fewest tiles (each
 *     re-reads the prefix from L2): k = 8's 288 rows -> 3 tiles of 6 warps (64-row tiles
 *     padded 32); k = 16's 1088 -> 17 of 4 (9 of 8 would pad 64 rows of mma work).
 * `warps` (a tuned tile) keeps the layout the rows imply and sets the warp count.
 */
export function rowTileOf(rows: number, tileN: number, warps?: number): RowTile {
  if (rows <= 16) {
    const w = warps ?? Math.max(1, Math.min(KEY_WARPS, tileN / 16));
    return { layout: 'keys', warps: w, rowWarps: 1, keyWarps: w, tileM: 16 };
  }
  const w = warps ?? (rows <= MAX_TILE_ROWS ? Math.ceil(rows / 16) : leastPaddedWarps(rows));
  return { layout: 'rows', warps: w, rowWarps: w, keyWarps: 1, tileM: 16 * w };
}

function leastPaddedWarps(rows: number): number {
  const executed = (w: number): number => Math.ceil(rows / (16 * w)) * 16 * w;
  let best = MIN_WIDE_WARPS;
  for (let w = MIN_WIDE_WARPS + 1; w <= MAX_TILE_ROWS / 16; w++) if (executed(w) <= executed(best)) best = w;
  return best;
}

export interface AttentionPlan {
  readonly variant: AttentionVariant;
  /** The tile with the planner's (or the tuned) warps. */
  readonly tile: TileConfig & { readonly warps: number };
  readonly rowTile: RowTile;
  readonly tileM: number;
  readonly threads: number;
  /** In-step tokens n. */
  readonly steps: number;
  readonly group: number;
  /** n * G query rows per (sequence, KV head). */
  readonly rows: number;
  readonly rowTiles: number;
  readonly stepKeyTiles: number;
  /** CSR schedule: row tile r visits stepTileKey[stepTileOffset[r] .. stepTileOffset[r+1]). */
  readonly stepTileOffset: readonly number[];
  readonly stepTileKey: readonly number[];
  readonly stepTileFull: readonly boolean[];
  readonly stepTileCounts: Readonly<Record<TileClass, number>>;
  /** Elements per shared-memory row: head dim + 8 (16 bytes) against ldmatrix bank conflicts. */
  readonly smemStride: number;
  readonly sharedBytes: number;
  /** log2(e) / sqrt(head dim): scores go to the exp2 domain in one multiply. */
  readonly scaleLog2: number;
}

const ELEMENT_BYTES = 2;

export function planAttention(variant: AttentionVariant, tile: TileConfig): AttentionPlan {
  const { mask, shape } = variant;
  const steps = mask.tokens.length;
  const group = groupSize(shape);
  const rows = steps * group;
  const rowTile = rowTileOf(rows, tile.tileN, tile.warps);
  const { tileM } = rowTile;
  const rowTiles = Math.ceil(rows / tileM);
  const stepKeyTiles = Math.ceil(steps / tile.tileN);
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
      const k0 = kt * tile.tileN;
      const k1 = Math.min(steps, k0 + tile.tileN);
      let cls = classifyStepRect(mask, q0, q1, k0, k1);
      // A tile that runs past the last in-step key needs the bound check of a partial tile.
      if (cls === 'full' && k1 - k0 < tile.tileN) cls = 'partial';
      counts[cls]++;
      if (cls === 'empty') continue;
      keys.push(kt);
      full.push(cls === 'full');
    }
    offsets.push(keys.length);
  }
  const smemStride = shape.headDim + 8;
  const plan: AttentionPlan = {
    variant,
    tile: { ...tile, warps: rowTile.warps },
    rowTile,
    tileM,
    threads: rowTile.warps * 32,
    steps,
    group,
    rows,
    rowTiles,
    stepKeyTiles,
    stepTileOffset: offsets,
    stepTileKey: keys,
    stepTileFull: full,
    stepTileCounts: counts,
    smemStride,
    sharedBytes: 2 * tile.stages * tile.tileN * smemStride * ELEMENT_BYTES,
    scaleLog2: Math.LOG2E / Math.sqrt(shape.headDim),
  };
  return checkPlan(plan);
}

/** Invariants the kernel templates rely on. */
function checkPlan(plan: AttentionPlan): AttentionPlan {
  const fail = (what: string): never => {
    throw new TidarcError('unsupported', `plan for ${plan.variant.name} is invalid: ${what}`);
  };
  if (plan.tile.tileN % 16 !== 0) fail('tileN must be a multiple of 16');
  const { rowWarps, keyWarps, warps } = plan.rowTile;
  if (!Number.isInteger(warps) || warps < 1 || rowWarps * keyWarps !== warps || plan.tileM !== 16 * rowWarps) fail(`a row tile of ${warps} warps is not rowWarps x keyWarps with 16 rows a row warp`);
  if (plan.tile.tileN % (16 * keyWarps) !== 0) fail(`${keyWarps} warps cannot split ${plan.tile.tileN} keys into slices of whole k16 steps`);
  // 'keys': the warps' (max, sum, O) meet in the K/V stages once the last tile is consumed.
  if (keyWarps > 1 && warps * 16 * (plan.variant.shape.headDim + 2) * 4 > plan.sharedBytes) fail('the cross-warp merge must fit in the K/V stages');
  if (plan.tileM * plan.smemStride > 2 * plan.tile.stages * plan.tile.tileN * plan.smemStride) fail('the Q tile must fit in the K/V stages it aliases');
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
