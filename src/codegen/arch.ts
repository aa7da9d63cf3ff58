/**
 * GPU architectures as data. Adding sm_XX means one record here and one entry in ARCHES.
 * Limits are the CUDA programming guide's per-compute-capability figures.
 */
import { TidarcError } from '../errors.js';

export interface TileConfig {
  /** Warps per CTA; each owns 16 query rows (one m16 fragment row block). */
  readonly warps: number;
  /** Keys per KV tile. */
  readonly tileN: number;
  /** cp.async pipeline stages (the kernel template implements 2). */
  readonly stages: 2;
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
}

export type ArchName = 'sm_80' | 'sm_86' | 'sm_89' | 'sm_90';

const DEFAULT_TILE: TileConfig = { warps: 4, tileN: 64, stages: 2 };

export const ARCHES: Readonly<Record<ArchName, ArchSpec>> = {
  sm_80: { name: 'sm_80', computeCapability: [8, 0], maxSharedPerBlock: 166_912, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_80,code=sm_80', tile: DEFAULT_TILE },
  sm_86: { name: 'sm_86', computeCapability: [8, 6], maxSharedPerBlock: 101_376, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_86,code=sm_86', tile: DEFAULT_TILE },
  sm_89: { name: 'sm_89', computeCapability: [8, 9], maxSharedPerBlock: 101_376, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_89,code=sm_89', tile: DEFAULT_TILE },
  sm_90: { name: 'sm_90', computeCapability: [9, 0], maxSharedPerBlock: 232_448, maxRegistersPerThread: 255, tensorCoreOp: 'mma.sync.m16n8k16', gencode: '-gencode=arch=compute_90,code=sm_90', tile: DEFAULT_TILE },
};

export const ARCH_NAMES = Object.keys(ARCHES) as ArchName[];

export function parseArch(name: string): ArchSpec {
  const arch = (ARCHES as Record<string, ArchSpec | undefined>)[name];
  if (!arch) {
    throw new TidarcError('invalid-argument', 'unknown GPU architecture', { field: '--arch', value: name, allowed: ARCH_NAMES.join(', ') });
  }
  return arch;
}

/** Tile shape the CPU backend uses: the same plan as the GPU default. */
export const CPU_TILE: TileConfig = DEFAULT_TILE;

export function tileKey(t: TileConfig): string {
  return `m${t.warps * 16}n${t.tileN}s${t.stages}`;
}
