/**
 * What `tidarc tune` searches for the attention kernels, as data, and what the compiler uses
 * when nothing is tuned. Pure: no I/O.
 *
 * A configuration:
 *   - warps: the CTA's warps. How they share a row tile follows from the variant's GQA-packed rows
 *     (token-major: the rows of a KV head's query heads side by side; the packing is fixed, it is
 *     what makes one KV tile load serve every query head), plan.ts rowTileOf: above 16 rows each
 *     warp owns 16 rows (a tile of 16 * warps rows); at most 16 rows are one m-tile whose keys the
 *     warps split (tileN / warps each, merged at the end). Besides WARPS, the planner's own
 *     count for the shape (e.g. 5 for k = 4's 80 rows) is searched;
 *   - tileN: keys per KV tile (a multiple of 16: m16n8k16 fragments; the CPU kernel's 16 lanes);
 *   - splits: split-KV parts of the prefix (a launch parameter, combined by log-sum-exp);
 *   - threads (CPU only): worker threads of the call.
 * The cp.async pipeline has 2 stages: the kernel template implements exactly that.
 *
 * Static pruning drops what cannot run before anything is compiled:
 *   - tileN % 16 != 0, or the Q tile (16 * warps rows) larger than the K/V stages it aliases,
 *     or split-key warps whose slices are not whole k16 steps (checkPlan's rules);
 *   - CUDA: dynamic shared memory 2 (K, V) * 2 stages * tileN * (headDim + 8) * 2 bytes above the
 *     arch's opt-in limit; tileN above 64: the kernel keeps a warp's tileN / 8 S fragments in
 *     registers, and past 8 of them ptxas puts the array on the stack (measured with nvcc 13 for
 *     sm_90, tidar_k4: 256 to 512 bytes of stack at tileN 128 and 256, plus spills at head dim
 *     128; up to tileN 64 no stack and no spill, 96 to 215 registers); with split keys the
 *     limit is on each warp's slice, tileN / warps;
 *   - splits larger than the prefix's KV tiles (an empty split does no work).
 */
import { type ArchName, ARCHES, type TileConfig } from '../codegen/arch.js';
import { splitsFor } from '../codegen/call-params.js';
import { splitKernel } from '../codegen/splits.js';
import { rowTileOf } from '../codegen/plan.js';
import type { Backend } from '../codegen/target.js';

export type TuneBackend = Backend;

export interface AttentionConfig {
  readonly warps: number;
  readonly tileN: number;
  readonly splits: number;
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
}

export const WARPS: readonly number[] = [1, 2, 4, 8];
export const TILE_N: readonly number[] = [16, 32, 64, 128, 256];
export const SPLITS: readonly number[] = [1, 2, 4, 8, 16, 32];
/** The largest tileN whose S fragments the CUDA kernel keeps in registers (see the file comment). */
export const MAX_REGISTER_TILE_N = 64;
const STAGES = 2;

/** Dynamic shared memory of the CUDA kernel: K and V, 2 stages, rows of headDim + 8 16-bit elements (plan.ts). */
export function sharedBytes(c: Pick<AttentionConfig, 'tileN'>, headDim: number): number {
  return 2 * STAGES * c.tileN * (headDim + 8) * 2;
}

export interface Pruned {
  readonly config: AttentionConfig;
  readonly why: string;
}

/** Why a configuration cannot run for this shape (null when it can). */
export function infeasible(c: AttentionConfig, shape: TuneShape, backend: TuneBackend, arch: ArchName = 'sm_90'): string | null {
  if (c.tileN % 16 !== 0) return `tileN ${c.tileN} is not a multiple of 16`;
  const rt = rowTileOf(shape.rows, c.tileN, c.warps);
  if (rt.tileM > STAGES * 2 * c.tileN) return `the Q tile (${rt.tileM} rows) does not fit in the K/V stages it aliases (${STAGES * 2 * c.tileN} rows)`;
  if (c.tileN % (16 * rt.keyWarps) !== 0) return `${rt.keyWarps} warps split ${c.tileN} keys into slices that are not whole k16 steps`;
  if (rt.keyWarps > 1 && rt.warps * 16 * (shape.headDim + 2) * 4 > sharedBytes(c, shape.headDim)) return `the ${rt.keyWarps} warps' merge does not fit in the K/V stages`;
  const prefixTiles = Math.ceil(shape.prefix / c.tileN);
  if (c.splits > Math.max(1, prefixTiles)) return `${c.splits} splits of ${prefixTiles} prefix tiles leave some empty`;
  if (backend === 'cuda') {
    const smem = sharedBytes(c, shape.headDim);
    const limit = ARCHES[arch].maxSharedPerBlock;
    if (smem > limit) return `${smem} bytes of shared memory; ${arch} allows ${limit}`;
    if (c.tileN / rt.keyWarps > MAX_REGISTER_TILE_N) return `${c.tileN / rt.keyWarps} keys a warp put the S fragments on the stack (at most ${MAX_REGISTER_TILE_N} stay in registers)`;
  }
  return null;
}

/** Every configuration of the space for a shape, split into what may run and what may not. */
export function searchSpace(shape: TuneShape, backend: TuneBackend, o: { arch?: ArchName; threads?: readonly number[] } = {}): { candidates: AttentionConfig[]; pruned: Pruned[] } {
  const candidates: AttentionConfig[] = [];
  const pruned: Pruned[] = [];
  const threadChoices = backend === 'cpu' ? (o.threads ?? [0]) : [undefined];
  for (const tileN of TILE_N) {
    const planned = rowTileOf(shape.rows, tileN).warps;
    for (const warps of [...new Set([...WARPS, planned])].sort((a, b) => a - b)) {
      for (const splits of SPLITS) {
        for (const threads of threadChoices) {
          const config: AttentionConfig = { warps, tileN, splits, ...(threads === undefined ? {} : { threads }) };
          const why = infeasible(config, shape, backend, o.arch);
          if (why) pruned.push({ config, why });
          else candidates.push(config);
        }
      }
    }
  }
  return { candidates, pruned };
}

/**
 * What the compiler and the GPU runner use when nothing is tuned: the arch's tile (64 keys) with
 * the planner's row tile for the shape (rowTileOf; the tile's warps when it has them) and split-KV
 * by the runtime's rule (splitsFor: the count of least estimated time over `slots`, the GPU's SMs,
 * with `ctasPerSm`, the CTAs an SM holds when ptxas said). A CPU call's threads and splits:
 * heuristicCpuCall (src/codegen/call-params.ts).
 */
export function heuristicConfig(shape: TuneShape, slots: number, tile: TileConfig = ARCHES.sm_90.tile, ctasPerSm = 1): AttentionConfig {
  const rt = rowTileOf(shape.rows, tile.tileN, tile.warps);
  const rowTiles = Math.ceil(shape.rows / rt.tileM);
  const kernel = splitKernel({ tileM: rt.tileM, tileN: tile.tileN, rowTiles, rows: shape.rows, headDim: shape.headDim });
  const splits = splitsFor({ tuned: undefined, workItems: shape.batch * shape.kvHeads * rowTiles, sms: slots, ctasPerSm, prefixTiles: Math.ceil(shape.prefix / tile.tileN), kernel });
  return { warps: rt.warps, tileN: tile.tileN, splits };
}

export function configKey(c: AttentionConfig): string {
  return `w${c.warps}-n${c.tileN}-s${c.splits}${c.threads === undefined ? '' : `-t${c.threads}`}`;
}
