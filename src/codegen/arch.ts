/**
 * GPU architectures as data. Adding sm_XX means one record here and one entry in ARCHES.
 * Limits are the CUDA programming guide's per-compute-capability figures.
 */
import { TidarcError } from '../errors.js';

export interface TileConfig {
  /**
   * Warps per CTA (tidarc tune's choice). Absent: the planner's row-tile rule picks them per
   * variant from its packed rows (plan.ts rowTileOf): how the warps share a tile follows from the rows.
   */
  readonly warps?: number;
  /** Rows a row warp owns (tuned): 16, or 32 (two m16 tiles share each K/V fragment). Absent: rowTileOf's rule. */
  readonly warpRows?: 16 | 32;
  /** Keys per KV tile. */
  readonly tileN: number;
  /**
   * cp.async pipeline stages: 2 or 3 (tuned). Absent: the planner's rule (plan.ts
   * defaultStages: 3 where every device of the compile keeps its CTAs per SM).
   */
  readonly stages?: 2 | 3;
}

export interface ArchSpec {
  readonly name: ArchName;
  readonly computeCapability: readonly [number, number];
  /** Largest dynamic shared memory one CTA may opt into, bytes. */
  readonly maxSharedPerBlock: number;
  readonly maxRegistersPerThread: number;
  readonly tensorCoreOp: 'mma.sync.m16n8k16';
  /** nvcc flags that select this target (real code, no PTX JIT surprises). */
  readonly gencode: string;
  readonly tile: TileConfig;
  /**
   * An architecture-specific target (sm_90a: wgmma, setmaxnreg): its code runs only on a
   * device of exactly this compute capability, the record of which it extends (`base`, same
   * limits). Every unit of a compile for it is built for it too; the kernels that need it are
   * units of their own, compiled for it alone.
   */
  readonly specific?: { readonly base: ArchName };
}

export type ArchName = 'sm_80' | 'sm_86' | 'sm_89' | 'sm_90' | 'sm_90a';

const DEFAULT_TILE: TileConfig = { tileN: 64 };

export const ARCHES: Readonly<Record<ArchName, ArchSpec>> = {
  sm_80: { name: 'sm_80', computeCapability: [8, 0], maxSharedPerBlock: 166_912, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_80,code=sm_80', tile: DEFAULT_TILE },
  sm_86: { name: 'sm_86', computeCapability: [8, 6], maxSharedPerBlock: 101_376, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_86,code=sm_86', tile: DEFAULT_TILE },
  sm_89: { name: 'sm_89', computeCapability: [8, 9], maxSharedPerBlock: 101_376, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_89,code=sm_89', tile: DEFAULT_TILE },
  sm_90: { name: 'sm_90', computeCapability: [9, 0], maxSharedPerBlock: 232_448, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_90,code=sm_90', tile: DEFAULT_TILE },
  sm_90a: { name: 'sm_90a', computeCapability: [9, 0], maxSharedPerBlock: 232_448, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_90a,code=sm_90a', tile: DEFAULT_TILE, specific: { base: 'sm_90' } },
};

export const ARCH_NAMES = Object.keys(ARCHES) as ArchName[];
/** What `tidarc compile` builds when --arch is not given: every arch that is not specific to one device (sm_90a is asked for). */
export const PORTABLE_ARCH_NAMES: readonly ArchName[] = ARCH_NAMES.filter((a) => ARCHES[a].specific === undefined);

/**
 * The selection rule, once: the arch whose kernels a device of compute capability `cc` runs
 * from a compile for `compiled`. An arch-specific record (sm_90a) where the device has exactly
 * its capability and the compile built it, else the plain record of that capability, else
 * undefined (the compile has no code for the device).
 */
export function selectArch(compiled: readonly ArchName[], cc: readonly [number, number]): ArchName | undefined {
  const matching = compiled.filter((a) => ARCHES[a].computeCapability[0] === cc[0] && ARCHES[a].computeCapability[1] === cc[1]);
  return matching.find((a) => ARCHES[a].specific !== undefined) ?? matching.find((a) => ARCHES[a].specific === undefined);
}

export function parseArch(name: string): ArchSpec {
  const arch = (ARCHES as Record<string, ArchSpec | undefined>)[name];
  if (!arch) {
    throw new TidarcError('invalid-argument', 'unknown GPU architecture', { field: '--arch', value: name, allowed: ARCH_NAMES.join(', ') });
  }
  return arch;
}

/** Tile shape the CPU backend uses: the same plan as the GPU default. */
export const CPU_TILE: TileConfig = DEFAULT_TILE;

/**
 * A tile's name, its one spelling everywhere: `w<warps>[r<rows a warp>]-n<keys>[p<stages>]`
 * (`w4-n64`, `w2r32-n32p3`); a field the planner's rule decides is left out (warps: `wrule`).
 * The tuning database's per-tile times, the device check's tiles (scripts/device-check/tune.py
 * tile_key, held to this by a test) and space.ts configKey are keyed by it; parseTileKey reads it back.
 */
export function tileKey(t: TileConfig): string {
  return `w${t.warps ?? 'rule'}${t.warpRows === undefined ? '' : `r${t.warpRows}`}-n${t.tileN}${t.stages === undefined ? '' : `p${t.stages}`}`;
}

/** The tile a tileKey names (warps given), or undefined when `key` is not one. */
export function parseTileKey(key: string): (TileConfig & { readonly warps: number }) | undefined {
  const m = /^w(\d+)(?:r(16|32))?-n(\d+)(?:p([23]))?$/.exec(key);
  if (!m) return undefined;
  return { warps: Number(m[1]), tileN: Number(m[3]), ...(m[2] ? { warpRows: Number(m[2]) as 16 | 32 } : {}), ...(m[4] ? { stages: Number(m[4]) as 2 | 3 } : {}) };
}
