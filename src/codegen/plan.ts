/**
 * Kernel plan: how one variant is tiled. Rows are the n in-step tokens times the G query
 * heads of one KV head, packed token-major; the in-step key tiles of every row tile are
 * classified from the mask IR at compile time (empty ones are dropped from the schedule).
 */
import { TidarcError } from '../errors.js';
import { classifyStepRect, type TileClass } from '../ir/mask.js';
import type { ArchSpec, TileConfig } from './arch.js';
import { type AttentionVariant, groupSize } from './variant.js';

export interface AttentionPlan {
  readonly variant: AttentionVariant;
  readonly tile: TileConfig;
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
  const tileM = tile.warps * 16;
  const rows = steps * group;
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
    tile,
    tileM,
    threads: tile.warps * 32,
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
