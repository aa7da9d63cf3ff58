/**
 * Registers and spills of the mma.sync attention kernel (templates/cuda/tidarc_attention.cuh) with
 * warps of 32 rows, as ptxas reported them: what the planner reads for a 32-row tile (plan.ts
 * plannedRowTile refuses a tile that spills, the row-tile choice prices its occupancy) before
 * anything is compiled. 16-row warps keep plan.ts estimatedRegisters' fit.
 *
 * Measured by `npm run bench:attention-registers` (bench/attention-registers.ts): every 32-row tile
 * plan.ts fitsInRegisters admits (head dim 64: 16, 32 and 64 keys at 2 and 3 stages; head dim 128:
 * 16 and 32 keys at 2 stages) with 2, 3 and 4 warps, for one variant of each mask kind (G = 4,
 * bf16: TiDAR decode k = 8, block diffusion 16, causal 64 (the prefill chunk), TiDAR prefill 32 + 4,
 * TiDAR training 64 in blocks of 16, a 7-node tree), nvcc 13.0 (V13.0.88) for sm_80 and sm_90,
 * `__launch_bounds__(threads, 1)` (kernel-source.ts). test/codegen/attention-registers.test.ts
 * re-measures a sample against ptxas, so a kernel change that moves them fails there: rerun the
 * bench and paste its table.
 *
 * What moves the figures: the keys a tile (head dim 64: 131-148 registers at 16 keys, 163-184 at
 * 32, 223-255 at 64; head dim 128: 205-225 at 16, 246-255 at 32), the mask's kind (its predicate:
 * at head dim 128 and 32 keys TiDAR decode and training masks hold 246-255 with no spill, where
 * block diffusion and causal masks spill 4-12 bytes at 2 to 4 warps, Qwen2.5-1.5B's block_k16 on
 * 3 warps 8 at sm_90, and the TiDAR prefill and tree masks at 3 warps), then stages, warps and the
 * arch by a few registers. Not the query heads per KV head, the draft length or the dtype (TiDAR
 * decode k = 2 to 16 at G = 1 to 8, bf16 and fp16; block diffusion and causal at G = 4, 6, 8: the
 * same figures within a kind, 2026-12-05). sm_86 and sm_89 were within 1 register of sm_80 with
 * the same spills (a sample of 9: decode, block diffusion and causal at head dim 128, 32 keys), so
 * they read sm_80's column; sm_90a's mma.sync kernel is sm_90's. Where the estimate's 255 and the
 * figure land in different occupancy buckets (occupancy.ts: up to 128 registers 4 warps a
 * sub-partition, 168 3, else 2), i.e. at 16 and 32 keys, the row-tile choice now prices the CTAs
 * an SM ptxas gives.
 */
import type { ArchName } from './arch.js';
import { MASK_KINDS, type MaskKind, type MaskSpec } from '../ir/mask.js';
import { blockDiffusion, causal, tidarDecode, tidarPrefill, tidarTrain, tree } from '../ir/mask-builders.js';
import { type AttentionVariant, variantForMask } from './variant.js';

/** The mask kinds measured (every kind), each by one variant (measuredVariant). */
export const ATTENTION_32_ROW_KINDS: readonly MaskKind[] = MASK_KINDS;

const MEASURED_MASKS: Readonly<Record<MaskKind, () => MaskSpec>> = {
  'tidar-decode': () => tidarDecode(8),
  'block-diffusion': () => blockDiffusion(16),
  causal: () => causal(64),
  'tidar-prefill': () => tidarPrefill(32, 4),
  'tidar-train': () => tidarTrain(64, 16),
  tree: () => tree([-1, 0, 0, 1, 1, 2, -1]),
};

/** The variant of `kind` the table measures at `headDim`: G = 4 (8 query heads, 2 KV heads), bf16. */
export function measuredVariant(kind: MaskKind, headDim: number): AttentionVariant {
  const shape = { dtype: 'bf16', headDim, qHeads: 8, kvHeads: 2 } as const;
  return variantForMask(kind.replace(/-/g, '_'), MEASURED_MASKS[kind](), shape, `${kind} (attention-registers.ts)`);
}

/**
 * The 32-row tiles measured: those plan.ts fitsInRegisters admits (warpRows x (headDim + keys) / 32
 * at most 160 registers at 2 stages, 128 at 3), 2 to 4 warps (plan.ts rowTileCandidates): head dim
 * 64 at 16, 32 and 64 keys, 2 and 3 stages; head dim 128 at 16 and 32 keys, 2 stages.
 */
export function attention32RowSpace(): { readonly headDim: number; readonly tileN: number; readonly stages: 2 | 3; readonly warps: number }[] {
  const tiles: [number, number, 2 | 3][] = [[64, 16, 2], [64, 16, 3], [64, 32, 2], [64, 32, 3], [64, 64, 2], [64, 64, 3], [128, 16, 2], [128, 32, 2]];
  return tiles.flatMap(([headDim, tileN, stages]) => [2, 3, 4].map((warps) => ({ headDim, tileN, stages, warps })));
}

/** [mask kind, head dim, keys a tile, stages, warps, sm_80 registers, sm_80 spill bytes, sm_90 registers, sm_90 spill bytes]. */
export type MeasuredAttention32 = readonly [MaskKind, number, number, number, number, number, number, number, number];

/** The nvcc that measured MEASURED_32_ROW (findNvcc's version line). */
export const MEASURED_32_ROW_NVCC = 'Cuda compilation tools, release 13.0, V13.0.88';

// bench:attention-registers (nvcc 13.0 V13.0.88, sm_80 and sm_90), 2026-12-05.
export const MEASURED_32_ROW: readonly MeasuredAttention32[] = [
  ['tidar-decode', 64, 16, 2, 2, 144, 0, 147, 0],
  ['tidar-decode', 64, 16, 2, 3, 144, 0, 147, 0],
  ['tidar-decode', 64, 16, 2, 4, 144, 0, 147, 0],
  ['tidar-decode', 64, 16, 3, 2, 145, 0, 148, 0],
  ['tidar-decode', 64, 16, 3, 3, 145, 0, 148, 0],
  ['tidar-decode', 64, 16, 3, 4, 145, 0, 148, 0],
  ['tidar-decode', 64, 32, 2, 2, 179, 0, 184, 0],
  ['tidar-decode', 64, 32, 2, 3, 179, 0, 184, 0],
  ['tidar-decode', 64, 32, 2, 4, 179, 0, 184, 0],
  ['tidar-decode', 64, 32, 3, 2, 181, 0, 184, 0],
  ['tidar-decode', 64, 32, 3, 3, 181, 0, 184, 0],
  ['tidar-decode', 64, 32, 3, 4, 181, 0, 184, 0],
  ['tidar-decode', 64, 64, 2, 2, 247, 0, 251, 0],
  ['tidar-decode', 64, 64, 2, 3, 250, 0, 251, 0],
  ['tidar-decode', 64, 64, 2, 4, 245, 0, 243, 0],
  ['tidar-decode', 64, 64, 3, 2, 250, 0, 246, 0],
  ['tidar-decode', 64, 64, 3, 3, 251, 0, 246, 0],
  ['tidar-decode', 64, 64, 3, 4, 246, 0, 252, 0],
  ['tidar-decode', 128, 16, 2, 2, 218, 0, 225, 0],
  ['tidar-decode', 128, 16, 2, 3, 218, 0, 225, 0],
  ['tidar-decode', 128, 16, 2, 4, 216, 0, 223, 0],
  ['tidar-decode', 128, 32, 2, 2, 251, 0, 253, 0],
  ['tidar-decode', 128, 32, 2, 3, 246, 0, 252, 0],
  ['tidar-decode', 128, 32, 2, 4, 255, 0, 251, 0],
  ['tidar-prefill', 64, 16, 2, 2, 140, 0, 143, 0],
  ['tidar-prefill', 64, 16, 2, 3, 140, 0, 143, 0],
  ['tidar-prefill', 64, 16, 2, 4, 140, 0, 143, 0],
  ['tidar-prefill', 64, 16, 3, 2, 141, 0, 144, 0],
  ['tidar-prefill', 64, 16, 3, 3, 141, 0, 144, 0],
  ['tidar-prefill', 64, 16, 3, 4, 141, 0, 144, 0],
  ['tidar-prefill', 64, 32, 2, 2, 172, 0, 178, 0],
  ['tidar-prefill', 64, 32, 2, 3, 172, 0, 178, 0],
  ['tidar-prefill', 64, 32, 2, 4, 172, 0, 178, 0],
  ['tidar-prefill', 64, 32, 3, 2, 176, 0, 181, 0],
  ['tidar-prefill', 64, 32, 3, 3, 176, 0, 181, 0],
  ['tidar-prefill', 64, 32, 3, 4, 176, 0, 181, 0],
  ['tidar-prefill', 64, 64, 2, 2, 244, 0, 247, 0],
  ['tidar-prefill', 64, 64, 2, 3, 244, 0, 247, 0],
  ['tidar-prefill', 64, 64, 2, 4, 244, 0, 246, 0],
  ['tidar-prefill', 64, 64, 3, 2, 246, 0, 242, 0],
  ['tidar-prefill', 64, 64, 3, 3, 247, 0, 242, 0],
  ['tidar-prefill', 64, 64, 3, 4, 245, 0, 246, 0],
  ['tidar-prefill', 128, 16, 2, 2, 214, 0, 223, 0],
  ['tidar-prefill', 128, 16, 2, 3, 214, 0, 223, 0],
  ['tidar-prefill', 128, 16, 2, 4, 212, 0, 221, 0],
  ['tidar-prefill', 128, 32, 2, 2, 255, 0, 249, 0],
  ['tidar-prefill', 128, 32, 2, 3, 255, 0, 255, 36],  // spills
  ['tidar-prefill', 128, 32, 2, 4, 255, 0, 255, 0],
  ['tidar-train', 64, 16, 2, 2, 144, 0, 147, 0],
  ['tidar-train', 64, 16, 2, 3, 144, 0, 147, 0],
  ['tidar-train', 64, 16, 2, 4, 144, 0, 147, 0],
  ['tidar-train', 64, 16, 3, 2, 145, 0, 148, 0],
  ['tidar-train', 64, 16, 3, 3, 145, 0, 148, 0],
  ['tidar-train', 64, 16, 3, 4, 145, 0, 148, 0],
  ['tidar-train', 64, 32, 2, 2, 179, 0, 184, 0],
  ['tidar-train', 64, 32, 2, 3, 179, 0, 184, 0],
  ['tidar-train', 64, 32, 2, 4, 179, 0, 184, 0],
  ['tidar-train', 64, 32, 3, 2, 181, 0, 184, 0],
  ['tidar-train', 64, 32, 3, 3, 181, 0, 184, 0],
  ['tidar-train', 64, 32, 3, 4, 181, 0, 184, 0],
  ['tidar-train', 64, 64, 2, 2, 251, 0, 249, 0],
  ['tidar-train', 64, 64, 2, 3, 247, 0, 251, 0],
  ['tidar-train', 64, 64, 2, 4, 249, 0, 248, 0],
  ['tidar-train', 64, 64, 3, 2, 247, 0, 255, 0],
  ['tidar-train', 64, 64, 3, 3, 249, 0, 255, 0],
  ['tidar-train', 64, 64, 3, 4, 251, 0, 247, 0],
  ['tidar-train', 128, 16, 2, 2, 218, 0, 225, 0],
  ['tidar-train', 128, 16, 2, 3, 218, 0, 225, 0],
  ['tidar-train', 128, 16, 2, 4, 216, 0, 223, 0],
  ['tidar-train', 128, 32, 2, 2, 251, 0, 253, 0],
  ['tidar-train', 128, 32, 2, 3, 246, 0, 252, 0],
  ['tidar-train', 128, 32, 2, 4, 255, 0, 251, 0],
  ['causal', 64, 16, 2, 2, 136, 0, 137, 0],
  ['causal', 64, 16, 2, 3, 136, 0, 137, 0],
  ['causal', 64, 16, 2, 4, 136, 0, 137, 0],
  ['causal', 64, 16, 3, 2, 138, 0, 140, 0],
  ['causal', 64, 16, 3, 3, 138, 0, 140, 0],
  ['causal', 64, 16, 3, 4, 138, 0, 140, 0],
  ['causal', 64, 32, 2, 2, 167, 0, 169, 0],
  ['causal', 64, 32, 2, 3, 167, 0, 169, 0],
  ['causal', 64, 32, 2, 4, 167, 0, 169, 0],
  ['causal', 64, 32, 3, 2, 169, 0, 175, 0],
  ['causal', 64, 32, 3, 3, 169, 0, 175, 0],
  ['causal', 64, 32, 3, 4, 169, 0, 175, 0],
  ['causal', 64, 64, 2, 2, 228, 0, 234, 0],
  ['causal', 64, 64, 2, 3, 232, 0, 234, 0],
  ['causal', 64, 64, 2, 4, 226, 0, 235, 0],
  ['causal', 64, 64, 3, 2, 232, 0, 240, 0],
  ['causal', 64, 64, 3, 3, 233, 0, 237, 0],
  ['causal', 64, 64, 3, 4, 228, 0, 233, 0],
  ['causal', 128, 16, 2, 2, 211, 0, 215, 0],
  ['causal', 128, 16, 2, 3, 211, 0, 215, 0],
  ['causal', 128, 16, 2, 4, 208, 0, 213, 0],
  ['causal', 128, 32, 2, 2, 255, 8, 255, 12],  // spills
  ['causal', 128, 32, 2, 3, 255, 0, 255, 12],  // spills
  ['causal', 128, 32, 2, 4, 255, 4, 255, 12],  // spills
  ['block-diffusion', 64, 16, 2, 2, 131, 0, 132, 0],
  ['block-diffusion', 64, 16, 2, 3, 131, 0, 132, 0],
  ['block-diffusion', 64, 16, 2, 4, 131, 0, 132, 0],
  ['block-diffusion', 64, 16, 3, 2, 133, 0, 134, 0],
  ['block-diffusion', 64, 16, 3, 3, 133, 0, 134, 0],
  ['block-diffusion', 64, 16, 3, 4, 133, 0, 134, 0],
  ['block-diffusion', 64, 32, 2, 2, 163, 0, 164, 0],
  ['block-diffusion', 64, 32, 2, 3, 163, 0, 164, 0],
  ['block-diffusion', 64, 32, 2, 4, 163, 0, 164, 0],
  ['block-diffusion', 64, 32, 3, 2, 165, 0, 167, 0],
  ['block-diffusion', 64, 32, 3, 3, 165, 0, 167, 0],
  ['block-diffusion', 64, 32, 3, 4, 165, 0, 167, 0],
  ['block-diffusion', 64, 64, 2, 2, 226, 0, 232, 0],
  ['block-diffusion', 64, 64, 2, 3, 226, 0, 229, 0],
  ['block-diffusion', 64, 64, 2, 4, 223, 0, 227, 0],
  ['block-diffusion', 64, 64, 3, 2, 227, 0, 234, 0],
  ['block-diffusion', 64, 64, 3, 3, 229, 0, 233, 0],
  ['block-diffusion', 64, 64, 3, 4, 227, 0, 234, 0],
  ['block-diffusion', 128, 16, 2, 2, 206, 0, 210, 0],
  ['block-diffusion', 128, 16, 2, 3, 206, 0, 210, 0],
  ['block-diffusion', 128, 16, 2, 4, 205, 0, 208, 0],
  ['block-diffusion', 128, 32, 2, 2, 255, 8, 255, 8],  // spills
  ['block-diffusion', 128, 32, 2, 3, 255, 0, 255, 8],  // spills
  ['block-diffusion', 128, 32, 2, 4, 254, 0, 255, 4],  // spills
  ['tree', 64, 16, 2, 2, 140, 0, 142, 0],
  ['tree', 64, 16, 2, 3, 140, 0, 142, 0],
  ['tree', 64, 16, 2, 4, 140, 0, 142, 0],
  ['tree', 64, 16, 3, 2, 141, 0, 143, 0],
  ['tree', 64, 16, 3, 3, 141, 0, 143, 0],
  ['tree', 64, 16, 3, 4, 141, 0, 143, 0],
  ['tree', 64, 32, 2, 2, 172, 0, 178, 0],
  ['tree', 64, 32, 2, 3, 172, 0, 178, 0],
  ['tree', 64, 32, 2, 4, 172, 0, 178, 0],
  ['tree', 64, 32, 3, 2, 176, 0, 180, 0],
  ['tree', 64, 32, 3, 3, 176, 0, 180, 0],
  ['tree', 64, 32, 3, 4, 176, 0, 180, 0],
  ['tree', 64, 64, 2, 2, 244, 0, 247, 0],
  ['tree', 64, 64, 2, 3, 244, 0, 246, 0],
  ['tree', 64, 64, 2, 4, 244, 0, 244, 0],
  ['tree', 64, 64, 3, 2, 246, 0, 240, 0],
  ['tree', 64, 64, 3, 3, 247, 0, 242, 0],
  ['tree', 64, 64, 3, 4, 245, 0, 246, 0],
  ['tree', 128, 16, 2, 2, 214, 0, 222, 0],
  ['tree', 128, 16, 2, 3, 214, 0, 222, 0],
  ['tree', 128, 16, 2, 4, 212, 0, 218, 0],
  ['tree', 128, 32, 2, 2, 255, 0, 246, 0],
  ['tree', 128, 32, 2, 3, 255, 12, 249, 0],  // spills
  ['tree', 128, 32, 2, 4, 255, 0, 255, 0],
];

export interface Attention32Registers {
  readonly registers: number;
  /** Bytes ptxas spilled (stores). */
  readonly spillBytes: number;
}

/** The arch whose measurement `arch` reads: sm_86 and sm_89 read sm_80's, sm_90a sm_90's. */
export function measuredArch(arch: ArchName): 'sm_80' | 'sm_90' {
  return arch === 'sm_90' || arch === 'sm_90a' ? 'sm_90' : 'sm_80';
}

/** ptxas's figures for a 32-row tile on `arch`, or undefined where the tile was not measured. */
export function attention32Registers(kind: MaskKind, headDim: number, tileN: number, stages: number, warps: number, arch: ArchName): Attention32Registers | undefined {
  const row = MEASURED_32_ROW.find(([k, d, n, p, w]) => k === kind && d === headDim && n === tileN && p === stages && w === warps);
  if (!row) return undefined;
  return measuredArch(arch) === 'sm_80' ? { registers: row[5], spillBytes: row[6] } : { registers: row[7], spillBytes: row[8] };
}

/** Whether a 32-row tile was measured and ptxas spilled it on neither sm_80 nor sm_90: the planner's condition for offering it. */
export function attention32Compiles(kind: MaskKind, headDim: number, tileN: number, stages: number, warps: number): boolean {
  return (['sm_80', 'sm_90'] as const).every((arch) => attention32Registers(kind, headDim, tileN, stages, warps, arch)?.spillBytes === 0);
}
