/**
 * What `tidarc tune` searches for the attention kernels, as data, and what the compiler uses
 * when nothing is tuned. Pure: no I/O.
 *
 * A configuration:
 *   - warps: the CTA's warps. How they share a row tile follows from the variant's GQA-packed rows
 *     (token-major: the rows of a KV head's query heads side by side; the packing is fixed, it is
 *     what makes one KV tile load serve every query head), plan.ts rowTileOf: above 16 rows each
 *     warp owns warpRows rows (a tile of warpRows * warps rows); at most 16 rows are one m-tile
 *     whose keys the warps split (tileN / warps each, merged at the end). Besides WARPS, the
 *     planner's own tile for the variant is searched and labelled (`planned`): on a GPU the cost
 *     model's choice (plan.ts plannedRowTile, e.g. one CTA of 5 warps for Qwen3-8B's k = 4), on
 *     the CPU rowTileOf's rule (e.g. 5 warps for k = 4's 80 rows), each at its keys and stages;
 *   - warpRows (CUDA, above 16 rows): 16, or 32 (two m16 tiles share each K/V fragment);
 *   - stages (CUDA): 2 or 3 cp.async stages;
 *   - tileN: keys per KV tile (a multiple of 16: m16n8k16 fragments; the CPU kernel's 16 lanes);
 *   - splits: split-KV parts of the prefix (a launch parameter, combined by log-sum-exp);
 *   - threads (CPU only): worker threads of the call.
 *
 * Static pruning drops what cannot run before anything is compiled:
 *   - tileN % 16 != 0, or a 16-row warps' Q tile larger than the K/V stages it aliases, or
 *     split-key warps whose slices are not whole k16 steps (checkPlan's rules), or a tile of
 *     more than 128 rows;
 *   - 32-row warps on a variant of at most 16 rows (one m16 tile: rowTileOf gives it 16-row warps);
 *   - CUDA: dynamic shared memory (plan.ts attentionSharedBytes: K and V of each stage, and the
 *     Q tile of 32-row warps) above the arch's opt-in limit; a warp whose O and S fragments
 *     exceed 160 registers at 2 stages, 128 at 3 (plan.ts fitsInRegisters: warpRows x
 *     (headDim + its keys) / 32, calibrated on ptxas; with split keys its keys are tileN / warps);
 *   - CUDA, where the shape names its variant's mask kind (TuneShape.maskKind): a 32-row tile that
 *     ptxas spilled on the arch (its measured column: sm_86 and sm_89 read sm_80's, sm_90a sm_90's)
 *     for that kind in attention-registers.ts's table (e.g. causal and block-diffusion masks at head
 *     dim 128 and 32 keys); a tile the table lacks (1 warp of 32 rows) keeps fitsInRegisters' verdict;
 *   - splits larger than the prefix's KV tiles (an empty split does no work).
 */
import { type ArchName, ARCHES, type TileConfig, tileKey } from '../codegen/arch.js';
import { attention32Registers, measuredArch } from '../codegen/attention-registers.js';
import { splitsFor } from '../codegen/call-params.js';
import { splitKernel } from '../codegen/splits.js';
import { attentionSharedBytes, fitsInRegisters, MAX_TILE_ROWS, planAttention, rowTileOf, type Stages, type WarpRows } from '../codegen/plan.js';
import type { Backend } from '../codegen/target.js';
import type { AttentionVariant } from '../codegen/variant.js';
import type { MaskKind } from '../ir/mask.js';

export type TuneBackend = Backend;

export interface AttentionConfig {
  readonly warps: number;
  readonly tileN: number;
  readonly splits: number;
  /** CUDA: rows a row warp owns (16 or 32); absent: the planner's rule (plan.ts rowTileOf). */
  readonly warpRows?: WarpRows;
  /** CUDA: cp.async stages (2 or 3); absent: 2 (the planner's rule sizes them per compile: plan.ts defaultStages). */
  readonly stages?: Stages;
  /** CPU only: threads of the call (0 = all). */
  readonly threads?: number;
}

/** The shape a configuration is chosen for. */
export interface TuneShape {
  readonly headDim: number;
  /** GQA-packed rows of the variant: in-step tokens * query heads per KV head. */
  readonly rows: number;
  readonly kvHeads: number;
  readonly batch: number;
  /** Committed prefix length L. */
  readonly prefix: number;
  /**
   * The variant's mask kind where the shape is one variant's (the device check's search,
   * `compile --tuned`): its 32-row tiles are then pruned by ptxas's measured spills
   * (attention-registers.ts) as well as by plan.ts fitsInRegisters.
   */
  readonly maskKind?: MaskKind;
}

export const WARPS: readonly number[] = [1, 2, 4, 8];
export const TILE_N: readonly number[] = [16, 32, 64, 128, 256];
export const SPLITS: readonly number[] = [1, 2, 4, 8, 16, 32];
/** CUDA: rows a warp and cp.async stages searched (32 rows only where a variant has more than 16). */
export const WARP_ROWS: readonly WarpRows[] = [16, 32];
export const STAGES: readonly Stages[] = [2, 3];

/** Dynamic shared memory of the CUDA kernel for a configuration (plan.ts attentionSharedBytes; 2 stages unless it says). */
export function sharedBytes(c: Pick<AttentionConfig, 'tileN' | 'warps' | 'warpRows' | 'stages'>, shape: Pick<TuneShape, 'rows' | 'headDim'>): number {
  return attentionSharedBytes(rowTileOf(shape.rows, c.tileN, shape.headDim, c.warps, c.warpRows), c.tileN, shape.headDim, c.stages ?? 2);
}

export interface Pruned {
  readonly config: AttentionConfig;
  readonly why: string;
}

/** Why a configuration cannot run for this shape (null when it can). */
export function infeasible(c: AttentionConfig, shape: TuneShape, backend: TuneBackend, arch: ArchName = 'sm_90'): string | null {
  if (c.tileN % 16 !== 0) return `tileN ${c.tileN} is not a multiple of 16`;
  if (shape.rows <= 16 && c.warpRows === 32) return `${shape.rows} rows are one m16 tile whose keys the warps split: 32-row warps do not apply`;
  const rt = rowTileOf(shape.rows, c.tileN, shape.headDim, c.warps, c.warpRows);
  const stages = c.stages ?? 2;
  if (rt.warpRows === 16 && rt.tileM > stages * 2 * c.tileN) return `the Q tile (${rt.tileM} rows) does not fit in the K/V stages it aliases (${stages * 2 * c.tileN} rows)`;
  if (c.tileN % (16 * rt.keyWarps) !== 0) return `${rt.keyWarps} warps split ${c.tileN} keys into slices that are not whole k16 steps`;
  if (rt.keyWarps > 1 && rt.warps * 16 * (shape.headDim + 2) * 4 > 2 * 2 * c.tileN * (shape.headDim + 8) * 2) return `the ${rt.keyWarps} warps' merge does not fit in the K/V stages`;
  if (rt.tileM > MAX_TILE_ROWS) return `${rt.warps} warps of ${rt.warpRows} rows make a ${rt.tileM}-row tile (at most ${MAX_TILE_ROWS})`;
  const prefixTiles = Math.ceil(shape.prefix / c.tileN);
  if (c.splits > Math.max(1, prefixTiles)) return `${c.splits} splits of ${prefixTiles} prefix tiles leave some empty`;
  if (backend === 'cuda') {
    const smem = sharedBytes(c, shape);
    const limit = ARCHES[arch].maxSharedPerBlock;
    if (smem > limit) return `${smem} bytes of shared memory; ${arch} allows ${limit}`;
    const keys = c.tileN / rt.keyWarps;
    if (!fitsInRegisters(rt.warpRows, keys, shape.headDim, stages)) return `${rt.warpRows} rows x ${keys} keys a warp at head dim ${shape.headDim}, ${stages} stages: the O and S fragments spill (plan.ts fitsInRegisters)`;
    const measured = rt.warpRows === 32 && shape.maskKind ? attention32Registers(shape.maskKind, shape.headDim, c.tileN, stages, rt.warps, arch) : undefined;
    if (measured && measured.spillBytes > 0) {
      const on = measuredArch(arch) === arch ? arch : `${arch} (read from ${measuredArch(arch)}'s measurement)`;
      return `ptxas spilled ${measured.spillBytes} bytes on ${on}: ${rt.warps} warps of 32 rows x ${c.tileN} keys at head dim ${shape.headDim}, ${stages} stages, ${shape.maskKind} mask (${measured.registers} registers; attention-registers.ts, measured)`;
    }
  }
  return null;
}

/**
 * The tile the compiler plans for `variant` with nothing tuned: on a GPU arch the cost model's
 * row tile (planAttention over that arch: plan.ts plannedRowTile above 16 rows), its keys and
 * stages; on the CPU (no device) rowTileOf's rule at the arch's keys.
 */
export function plannedTileOf(variant: AttentionVariant, backend: TuneBackend, arch: ArchName = 'sm_90'): TileConfig & { readonly warps: number } {
  const plan = planAttention(variant, ARCHES[arch].tile, backend === 'cuda' ? [ARCHES[arch]] : []);
  return { warps: plan.rowTile.warps, tileN: plan.tile.tileN, ...(backend === 'cuda' ? { warpRows: plan.rowTile.warpRows, stages: plan.tile.stages } : {}) };
}

/**
 * Every configuration of the space for a shape, split into what may run and what may not.
 * `planned`: the planner's tile for the variant (plannedTileOf); its warps join WARPS at its keys
 * and pipeline, and `planned` in the result names it (arch.ts tileKey) when static pruning keeps
 * it. Without it the planned entry is rowTileOf's rule per keys and pipeline: what a plan with no
 * GPU device (the CPU's) builds, not a GPU compile's choice.
 */
export function searchSpace(shape: TuneShape, backend: TuneBackend, o: { arch?: ArchName; threads?: readonly number[]; planned?: TileConfig & { readonly warps: number } } = {}): { candidates: AttentionConfig[]; pruned: Pruned[]; planned?: string } {
  const candidates: AttentionConfig[] = [];
  const pruned: Pruned[] = [];
  const threadChoices = backend === 'cpu' ? (o.threads ?? [0]) : [undefined];
  // The CPU kernel has neither warps of 32 rows nor a cp.async pipeline; a <= 16-row tile is one m16 tile.
  const gpu = backend === 'cuda';
  const pipelines: readonly { readonly warpRows?: WarpRows; readonly stages?: Stages }[] = gpu ? (shape.rows > 16 ? WARP_ROWS : [16 as const]).flatMap((warpRows) => STAGES.map((stages) => ({ warpRows, stages }))) : [{}];
  // The planner's tile as the space spells it: a <= 16-row variant's warps split keys (16-row warps); the CPU has no pipeline.
  const planned = o.planned && { warps: o.planned.warps, tileN: o.planned.tileN, ...(gpu ? { warpRows: shape.rows > 16 ? (o.planned.warpRows ?? 16) : 16 as const, stages: o.planned.stages ?? 2 } : {}) };
  for (const tileN of TILE_N) {
    for (const pipe of pipelines) {
      const own = planned ? (tileKey({ tileN, ...pipe, warps: planned.warps }) === tileKey(planned) ? [planned.warps] : []) : [rowTileOf(shape.rows, tileN, shape.headDim, undefined, pipe.warpRows).warps];
      for (const warps of [...new Set([...WARPS, ...own])].sort((a, b) => a - b)) {
        for (const splits of SPLITS) {
          for (const threads of threadChoices) {
            const config: AttentionConfig = { warps, tileN, splits, ...pipe, ...(threads === undefined ? {} : { threads }) };
            const why = infeasible(config, shape, backend, o.arch);
            if (why) pruned.push({ config, why });
            else candidates.push(config);
          }
        }
      }
    }
  }
  const label = planned && candidates.some((c) => tileKey(c) === tileKey(planned)) ? tileKey(planned) : undefined;
  return { candidates, pruned, ...(label ? { planned: label } : {}) };
}

/**
 * The configuration of `tile` for a shape: its row tile (rowTileOf: the tile's warps when it has
 * them; pass the planned tile, plan.ts plannedRowTile, for what the compiler builds for a GPU with
 * nothing tuned, else rowTileOf's structural rule) and split-KV
 * by the runtime's rule (splitsFor: the count of least estimated time over `slots`, the GPU's SMs,
 * with `ctasPerSm`, the CTAs an SM holds when ptxas said). A CPU call's threads and splits:
 * heuristicCpuCall (src/codegen/call-params.ts).
 */
export function heuristicConfig(shape: TuneShape, slots: number, tile: TileConfig = ARCHES.sm_90.tile, ctasPerSm = 1): AttentionConfig {
  const rt = rowTileOf(shape.rows, tile.tileN, shape.headDim, tile.warps, tile.warpRows);
  const rowTiles = Math.ceil(shape.rows / rt.tileM);
  const kernel = splitKernel({ tileM: rt.tileM, tileN: tile.tileN, rowTiles, rows: shape.rows, headDim: shape.headDim });
  const splits = splitsFor({ tuned: undefined, workItems: shape.batch * shape.kvHeads * rowTiles, sms: slots, ctasPerSm, prefixTiles: Math.ceil(shape.prefix / tile.tileN), kernel });
  return { warps: rt.warps, tileN: tile.tileN, splits };
}

export function configKey(c: AttentionConfig): string {
  return `${tileKey(c)}-s${c.splits}${c.threads === undefined ? '' : `-t${c.threads}`}`;
}

/**
 * A CUDA tile or configuration as it was measured: one recorded before the search carried rows
 * a warp and stages (a database entry or a device-check grid without the fields) timed the
 * kernel of then, 16-row warps and 2 stages, so it reads as that, not as today's planner rule.
 */
export function asMeasuredOnCuda<T extends { readonly warpRows?: WarpRows; readonly stages?: Stages }>(t: T): T & { readonly warpRows: WarpRows; readonly stages: Stages } {
  return { ...t, warpRows: t.warpRows ?? 16, stages: t.stages ?? 2 };
}
