/**
 * SASS instruction counts of one iteration of the mma.sync attention kernel's main loop
 * (templates/cuda/tidarc_attention.cuh attention_tile_kernel: one key tile a warp), by class
 * (sass-mix.ts: its unmasked path), as cuobjdump printed them for each tile the planner can pick:
 * what attention-cost-model.ts's issue term reads before anything is compiled.
 *
 * Measured by `npm run bench:sass-counts` (bench/sass-counts.ts) for the mask kinds of the bundled
 * examples and bench:attention (TiDAR decode, block diffusion, causal; each by one variant at G = 4,
 * bf16: attention-registers.ts measuredVariant), head dim 64 and 128, every row tile
 * plan.ts rowTileCandidates offers at the sm_90 default of 64 keys (16-row warps, 1 to 8; 32-row
 * warps, 2 to 4, at their keys) at the stages planAttention gives them for an sm_90 compile and for
 * the portable arches, and the split-key layout of <= 16 rows (4 warps of 16 keys: the AR step),
 * for sm_80 and sm_90 in one nvcc run a tile. A tile not in the table (another kind, a tuned
 * tile) has no issue term: the cost model says so (loopCounts undefined), and of the planner's
 * candidates for one variant either all or none are measured, so the term never favours an
 * unmeasured one. test/codegen/sass-counts.test.ts re-measures two tiles when cuobjdump is found.
 *
 * What moves them (nvcc 13.0, sm_90): the warp's rows and keys set the softmax (per key tile a
 * thread scales, maxes, exponentiates and sums rows x keys / 32 scores, and rescales rows x D / 32
 * O accumulators: FMUL, FMNMX, MUFU.EX2, FADD) and the HMMA (rows x keys x D / 1024, twice); the
 * warps set the cp.async copies and their addresses (a CTA's threads share a tile's 16-byte
 * chunks: fewer warps, more LDGSTS and IMAD each); the mask kind only the compiler's scheduling
 * of the same path (within ~3%); sm_80 and sm_90 differ by a few IMAD, ALU and uniform ops.
 */
import type { ArchName } from './arch.js';
import type { MaskKind } from '../ir/mask.js';
import type { AttentionPlan } from './plan.js';
import { type ClassCounts, INSTRUCTION_CLASSES } from './sass-mix.js';

/** How a CTA's warps share the tile: rows of 16 or 32 a warp, or one 16-row tile whose warps split the keys. */
export type SassLayout = 'r16' | 'r32' | 'keys';

/**
 * [mask kind, head dim, layout, warps, keys a tile, stages, keys a warp scores an iteration,
 * sm_80 counts, sm_90 counts]; counts in INSTRUCTION_CLASSES order (hmma, fp32, imad, alu, conv,
 * mufu, shfl, issue).
 */
export type MeasuredSass = readonly [MaskKind, number, SassLayout, number, number, number, number, readonly number[], readonly number[]];

/** The tools that measured MEASURED_SASS (findNvcc's and findCuobjdump's version lines). */
export const MEASURED_SASS_NVCC = 'Cuda compilation tools, release 13.0, V13.0.88';
export const MEASURED_SASS_CUOBJDUMP = 'Cuda compilation tools, release 13.1, V13.1.80';

// bench:sass-counts (nvcc 13.0 V13.0.88, cuobjdump 13.1 V13.1.80, sm_80 and sm_90), 2026-12-05.
export const MEASURED_SASS: readonly MeasuredSass[] = [
  ['tidar-decode', 64, 'r16', 1, 64, 3, 64, [64, 130, 192, 212, 16, 34, 4, 147], [64, 130, 191, 212, 16, 34, 4, 152]],
  ['tidar-decode', 64, 'r16', 2, 64, 3, 64, [64, 130, 111, 160, 16, 34, 4, 130], [64, 130, 110, 160, 16, 34, 4, 136]],
  ['tidar-decode', 64, 'r16', 3, 64, 3, 64, [64, 130, 78, 152, 16, 34, 4, 159], [64, 130, 77, 152, 16, 34, 4, 165]],
  ['tidar-decode', 64, 'r16', 4, 64, 3, 64, [64, 130, 62, 132, 16, 34, 4, 122], [64, 130, 61, 132, 16, 34, 4, 128]],
  ['tidar-decode', 64, 'r16', 5, 64, 3, 64, [64, 130, 63, 136, 16, 34, 4, 143], [64, 130, 62, 136, 16, 34, 4, 149]],
  ['tidar-decode', 64, 'r16', 6, 64, 3, 64, [64, 130, 63, 129, 16, 34, 4, 137], [64, 130, 56, 135, 16, 34, 4, 144]],
  ['tidar-decode', 64, 'r16', 7, 64, 3, 64, [64, 130, 63, 129, 16, 34, 4, 137], [64, 130, 56, 135, 16, 34, 4, 144]],
  ['tidar-decode', 64, 'r16', 8, 64, 3, 64, [64, 130, 51, 119, 16, 34, 4, 119], [64, 130, 46, 123, 16, 34, 4, 126]],
  ['tidar-decode', 64, 'r32', 2, 64, 3, 64, [128, 260, 117, 242, 32, 68, 8, 203], [128, 260, 115, 243, 32, 68, 8, 212]],
  ['tidar-decode', 64, 'r32', 3, 64, 3, 64, [128, 260, 91, 234, 32, 68, 8, 231], [128, 260, 89, 235, 32, 68, 8, 240]],
  ['tidar-decode', 64, 'r32', 4, 64, 3, 64, [128, 260, 81, 213, 32, 68, 8, 195], [128, 260, 74, 214, 32, 68, 8, 202]],
  ['tidar-decode', 64, 'r16', 1, 64, 2, 64, [64, 130, 187, 230, 16, 34, 4, 147], [64, 130, 189, 233, 16, 34, 4, 153]],
  ['tidar-decode', 64, 'r16', 2, 64, 2, 64, [64, 130, 120, 163, 16, 34, 4, 131], [64, 130, 115, 166, 16, 34, 4, 137]],
  ['tidar-decode', 64, 'r16', 3, 64, 2, 64, [64, 130, 101, 152, 16, 34, 4, 159], [64, 130, 88, 161, 16, 34, 4, 165]],
  ['tidar-decode', 64, 'r16', 4, 64, 2, 64, [64, 130, 70, 135, 16, 34, 4, 123], [64, 130, 66, 138, 16, 34, 4, 129]],
  ['tidar-decode', 64, 'r32', 2, 64, 2, 64, [128, 260, 127, 242, 32, 68, 8, 203], [128, 260, 120, 243, 32, 68, 8, 209]],
  ['tidar-decode', 64, 'keys', 4, 64, 2, 16, [16, 58, 61, 90, 4, 10, 4, 55], [16, 58, 56, 91, 4, 10, 4, 65]],
  ['tidar-decode', 128, 'r16', 1, 64, 3, 64, [128, 162, 355, 324, 16, 34, 4, 211], [128, 162, 341, 324, 16, 34, 4, 216]],
  ['tidar-decode', 128, 'r16', 2, 64, 3, 64, [128, 162, 186, 212, 16, 34, 4, 179], [128, 162, 164, 212, 16, 34, 4, 184]],
  ['tidar-decode', 128, 'r16', 3, 64, 3, 64, [128, 162, 139, 182, 16, 34, 4, 231], [128, 162, 138, 182, 16, 34, 4, 237]],
  ['tidar-decode', 128, 'r16', 4, 64, 3, 64, [128, 162, 113, 160, 16, 34, 4, 162], [128, 162, 111, 160, 16, 34, 4, 169]],
  ['tidar-decode', 128, 'r16', 5, 64, 3, 64, [128, 162, 117, 157, 16, 34, 4, 199], [128, 162, 108, 167, 16, 34, 4, 206]],
  ['tidar-decode', 128, 'r16', 6, 64, 3, 64, [128, 162, 104, 149, 16, 34, 4, 191], [128, 162, 96, 158, 16, 34, 4, 198]],
  ['tidar-decode', 128, 'r16', 7, 64, 3, 64, [128, 162, 91, 141, 16, 34, 4, 183], [128, 162, 84, 149, 16, 34, 4, 190]],
  ['tidar-decode', 128, 'r16', 8, 64, 3, 64, [128, 162, 76, 134, 16, 34, 4, 155], [128, 162, 71, 137, 16, 34, 4, 162]],
  ['tidar-decode', 128, 'r32', 2, 32, 2, 32, [128, 228, 125, 174, 16, 36, 8, 147], [128, 228, 117, 175, 16, 36, 8, 154]],
  ['tidar-decode', 128, 'r32', 3, 32, 2, 32, [128, 228, 102, 166, 16, 36, 8, 175], [128, 228, 95, 176, 16, 36, 8, 182]],
  ['tidar-decode', 128, 'r32', 4, 32, 2, 32, [128, 228, 81, 144, 16, 36, 8, 139], [128, 228, 72, 145, 16, 36, 8, 146]],
  ['tidar-decode', 128, 'r16', 1, 64, 2, 64, [128, 162, 353, 358, 16, 34, 4, 211], [128, 162, 338, 361, 16, 34, 4, 218]],
  ['tidar-decode', 128, 'r16', 2, 64, 2, 64, [128, 162, 166, 230, 16, 34, 4, 179], [128, 162, 184, 233, 16, 34, 4, 186]],
  ['tidar-decode', 128, 'r16', 3, 64, 2, 64, [128, 162, 160, 190, 16, 34, 4, 231], [128, 162, 154, 204, 16, 34, 4, 238]],
  ['tidar-decode', 128, 'r16', 4, 64, 2, 64, [128, 162, 120, 163, 16, 34, 4, 163], [128, 162, 117, 166, 16, 34, 4, 170]],
  ['tidar-decode', 128, 'r16', 5, 64, 2, 64, [128, 162, 115, 158, 16, 34, 4, 199], [128, 162, 104, 168, 16, 34, 4, 206]],
  ['tidar-decode', 128, 'r16', 6, 64, 2, 64, [128, 162, 102, 150, 16, 34, 4, 191], [128, 162, 92, 159, 16, 34, 4, 198]],
  ['tidar-decode', 128, 'r16', 7, 64, 2, 64, [128, 162, 89, 142, 16, 34, 4, 183], [128, 162, 80, 150, 16, 34, 4, 190]],
  ['tidar-decode', 128, 'r16', 8, 64, 2, 64, [128, 162, 74, 133, 16, 34, 4, 155], [128, 162, 69, 136, 16, 34, 4, 162]],
  ['tidar-decode', 128, 'keys', 4, 64, 2, 16, [32, 90, 103, 120, 4, 10, 4, 79], [32, 90, 90, 121, 4, 10, 4, 88]],
  ['block-diffusion', 64, 'r16', 1, 64, 3, 64, [64, 130, 190, 211, 16, 34, 4, 147], [64, 130, 174, 212, 16, 34, 4, 157]],
  ['block-diffusion', 64, 'r16', 2, 64, 3, 64, [64, 130, 111, 159, 16, 34, 4, 130], [64, 130, 105, 160, 16, 34, 4, 141]],
  ['block-diffusion', 64, 'r16', 3, 64, 3, 64, [64, 130, 82, 151, 16, 34, 4, 159], [64, 130, 77, 151, 16, 34, 4, 166]],
  ['block-diffusion', 64, 'r16', 4, 64, 3, 64, [64, 130, 62, 131, 16, 34, 4, 122], [64, 130, 61, 131, 16, 34, 4, 129]],
  ['block-diffusion', 64, 'r16', 5, 64, 3, 64, [64, 130, 63, 135, 16, 34, 4, 143], [64, 130, 62, 135, 16, 34, 4, 150]],
  ['block-diffusion', 64, 'r16', 6, 64, 3, 64, [64, 130, 65, 129, 16, 34, 4, 137], [64, 130, 53, 135, 16, 34, 4, 144]],
  ['block-diffusion', 64, 'r16', 7, 64, 3, 64, [64, 130, 65, 129, 16, 34, 4, 137], [64, 130, 53, 135, 16, 34, 4, 144]],
  ['block-diffusion', 64, 'r16', 8, 64, 3, 64, [64, 130, 50, 119, 16, 34, 4, 119], [64, 130, 45, 123, 16, 34, 4, 126]],
  ['block-diffusion', 64, 'r32', 2, 64, 3, 64, [128, 260, 117, 241, 32, 68, 8, 203], [128, 260, 115, 242, 32, 68, 8, 212]],
  ['block-diffusion', 64, 'r32', 3, 64, 3, 64, [128, 260, 91, 233, 32, 68, 8, 231], [128, 260, 89, 234, 32, 68, 8, 240]],
  ['block-diffusion', 64, 'r32', 4, 64, 3, 64, [128, 260, 66, 213, 32, 68, 8, 195], [128, 260, 64, 214, 32, 68, 8, 204]],
  ['block-diffusion', 64, 'r16', 1, 64, 2, 64, [64, 130, 182, 229, 16, 34, 4, 147], [64, 130, 185, 235, 16, 34, 4, 156]],
  ['block-diffusion', 64, 'r16', 2, 64, 2, 64, [64, 130, 121, 162, 16, 34, 4, 131], [64, 130, 115, 165, 16, 34, 4, 138]],
  ['block-diffusion', 64, 'r16', 3, 64, 2, 64, [64, 130, 102, 150, 16, 34, 4, 159], [64, 130, 90, 161, 16, 34, 4, 165]],
  ['block-diffusion', 64, 'r16', 4, 64, 2, 64, [64, 130, 70, 134, 16, 34, 4, 123], [64, 130, 66, 137, 16, 34, 4, 130]],
  ['block-diffusion', 64, 'r32', 2, 64, 2, 64, [128, 260, 127, 241, 32, 68, 8, 203], [128, 260, 120, 245, 32, 68, 8, 210]],
  ['block-diffusion', 64, 'keys', 4, 64, 2, 16, [16, 58, 59, 88, 4, 10, 4, 56], [16, 58, 52, 92, 4, 10, 4, 64]],
  ['block-diffusion', 128, 'r16', 1, 64, 3, 64, [128, 162, 335, 329, 16, 34, 4, 226], [128, 162, 306, 334, 16, 34, 4, 235]],
  ['block-diffusion', 128, 'r16', 2, 64, 3, 64, [128, 162, 178, 212, 16, 34, 4, 179], [128, 162, 153, 215, 16, 34, 4, 188]],
  ['block-diffusion', 128, 'r16', 3, 64, 3, 64, [128, 162, 139, 181, 16, 34, 4, 232], [128, 162, 134, 183, 16, 34, 4, 239]],
  ['block-diffusion', 128, 'r16', 4, 64, 3, 64, [128, 162, 111, 160, 16, 34, 4, 163], [128, 162, 105, 162, 16, 34, 4, 173]],
  ['block-diffusion', 128, 'r16', 5, 64, 3, 64, [128, 162, 118, 157, 16, 34, 4, 199], [128, 162, 105, 168, 16, 34, 4, 207]],
  ['block-diffusion', 128, 'r16', 6, 64, 3, 64, [128, 162, 105, 149, 16, 34, 4, 191], [128, 162, 95, 158, 16, 34, 4, 198]],
  ['block-diffusion', 128, 'r16', 7, 64, 3, 64, [128, 162, 92, 141, 16, 34, 4, 183], [128, 162, 83, 149, 16, 34, 4, 190]],
  ['block-diffusion', 128, 'r16', 8, 64, 3, 64, [128, 162, 75, 134, 16, 34, 4, 155], [128, 162, 70, 137, 16, 34, 4, 162]],
  ['block-diffusion', 128, 'r16', 1, 64, 2, 64, [128, 162, 330, 358, 16, 34, 4, 214], [128, 162, 314, 368, 16, 34, 4, 236]],
  ['block-diffusion', 128, 'r16', 2, 64, 2, 64, [128, 162, 168, 229, 16, 34, 4, 179], [128, 162, 172, 237, 16, 34, 4, 192]],
  ['block-diffusion', 128, 'r16', 3, 64, 2, 64, [128, 162, 159, 189, 16, 34, 4, 231], [128, 162, 144, 203, 16, 34, 4, 238]],
  ['block-diffusion', 128, 'r16', 4, 64, 2, 64, [128, 162, 122, 162, 16, 34, 4, 163], [128, 162, 114, 167, 16, 34, 4, 171]],
  ['block-diffusion', 128, 'r16', 5, 64, 2, 64, [128, 162, 122, 156, 16, 34, 4, 199], [128, 162, 103, 166, 16, 34, 4, 206]],
  ['block-diffusion', 128, 'r16', 6, 64, 2, 64, [128, 162, 108, 148, 16, 34, 4, 191], [128, 162, 91, 157, 16, 34, 4, 198]],
  ['block-diffusion', 128, 'r16', 7, 64, 2, 64, [128, 162, 94, 140, 16, 34, 4, 183], [128, 162, 85, 148, 16, 34, 4, 190]],
  ['block-diffusion', 128, 'r16', 8, 64, 2, 64, [128, 162, 73, 133, 16, 34, 4, 155], [128, 162, 68, 136, 16, 34, 4, 162]],
  ['block-diffusion', 128, 'keys', 4, 64, 2, 16, [32, 90, 96, 116, 4, 10, 4, 81], [32, 90, 95, 123, 4, 10, 4, 88]],
  ['causal', 64, 'r16', 1, 64, 3, 64, [64, 130, 191, 212, 16, 34, 4, 147], [64, 130, 184, 214, 16, 34, 4, 156]],
  ['causal', 64, 'r16', 2, 64, 3, 64, [64, 130, 111, 160, 16, 34, 4, 130], [64, 130, 106, 162, 16, 34, 4, 139]],
  ['causal', 64, 'r16', 3, 64, 3, 64, [64, 130, 78, 152, 16, 34, 4, 159], [64, 130, 77, 152, 16, 34, 4, 166]],
  ['causal', 64, 'r16', 4, 64, 3, 64, [64, 130, 62, 132, 16, 34, 4, 122], [64, 130, 61, 132, 16, 34, 4, 129]],
  ['causal', 64, 'r16', 5, 64, 3, 64, [64, 130, 63, 136, 16, 34, 4, 143], [64, 130, 62, 136, 16, 34, 4, 150]],
  ['causal', 64, 'r16', 6, 64, 3, 64, [64, 130, 62, 129, 16, 34, 4, 137], [64, 130, 56, 135, 16, 34, 4, 144]],
  ['causal', 64, 'r16', 7, 64, 3, 64, [64, 130, 62, 129, 16, 34, 4, 137], [64, 130, 56, 135, 16, 34, 4, 144]],
  ['causal', 64, 'r16', 8, 64, 3, 64, [64, 130, 50, 119, 16, 34, 4, 119], [64, 130, 46, 123, 16, 34, 4, 126]],
  ['causal', 64, 'r32', 2, 64, 3, 64, [128, 260, 117, 242, 32, 68, 8, 203], [128, 260, 115, 243, 32, 68, 8, 212]],
  ['causal', 64, 'r32', 3, 64, 3, 64, [128, 260, 91, 234, 32, 68, 8, 231], [128, 260, 89, 235, 32, 68, 8, 240]],
  ['causal', 64, 'r32', 4, 64, 3, 64, [128, 260, 81, 213, 32, 68, 8, 195], [128, 260, 75, 217, 32, 68, 8, 202]],
  ['causal', 64, 'r16', 1, 64, 2, 64, [64, 130, 183, 230, 16, 34, 4, 147], [64, 130, 185, 234, 16, 34, 4, 155]],
  ['causal', 64, 'r16', 2, 64, 2, 64, [64, 130, 122, 163, 16, 34, 4, 131], [64, 130, 116, 166, 16, 34, 4, 138]],
  ['causal', 64, 'r16', 3, 64, 2, 64, [64, 130, 99, 150, 16, 34, 4, 159], [64, 130, 90, 159, 16, 34, 4, 165]],
  ['causal', 64, 'r16', 4, 64, 2, 64, [64, 130, 71, 135, 16, 34, 4, 123], [64, 130, 66, 138, 16, 34, 4, 130]],
  ['causal', 64, 'r32', 2, 64, 2, 64, [128, 260, 127, 242, 32, 68, 8, 203], [128, 260, 121, 246, 32, 68, 8, 210]],
  ['causal', 64, 'keys', 4, 64, 2, 16, [16, 58, 61, 89, 4, 10, 4, 56], [16, 58, 56, 91, 4, 10, 4, 65]],
  ['causal', 128, 'r16', 1, 64, 3, 64, [128, 162, 336, 329, 16, 34, 4, 223], [128, 162, 312, 334, 16, 34, 4, 236]],
  ['causal', 128, 'r16', 2, 64, 3, 64, [128, 162, 182, 213, 16, 34, 4, 180], [128, 162, 155, 214, 16, 34, 4, 189]],
  ['causal', 128, 'r16', 3, 64, 3, 64, [128, 162, 139, 182, 16, 34, 4, 231], [128, 162, 133, 184, 16, 34, 4, 241]],
  ['causal', 128, 'r16', 4, 64, 3, 64, [128, 162, 113, 160, 16, 34, 4, 162], [128, 162, 107, 162, 16, 34, 4, 172]],
  ['causal', 128, 'r16', 5, 64, 3, 64, [128, 162, 119, 157, 16, 34, 4, 199], [128, 162, 94, 167, 16, 34, 4, 206]],
  ['causal', 128, 'r16', 6, 64, 3, 64, [128, 162, 106, 149, 16, 34, 4, 191], [128, 162, 84, 158, 16, 34, 4, 198]],
  ['causal', 128, 'r16', 7, 64, 3, 64, [128, 162, 93, 141, 16, 34, 4, 183], [128, 162, 74, 149, 16, 34, 4, 190]],
  ['causal', 128, 'r16', 8, 64, 3, 64, [128, 162, 76, 134, 16, 34, 4, 155], [128, 162, 71, 137, 16, 34, 4, 162]],
  ['causal', 128, 'r16', 1, 64, 2, 64, [128, 162, 323, 360, 16, 34, 4, 212], [128, 162, 323, 365, 16, 34, 4, 236]],
  ['causal', 128, 'r16', 2, 64, 2, 64, [128, 162, 171, 230, 16, 34, 4, 179], [128, 162, 174, 235, 16, 34, 4, 192]],
  ['causal', 128, 'r16', 3, 64, 2, 64, [128, 162, 162, 190, 16, 34, 4, 231], [128, 162, 155, 205, 16, 34, 4, 238]],
  ['causal', 128, 'r16', 4, 64, 2, 64, [128, 162, 121, 163, 16, 34, 4, 163], [128, 162, 114, 168, 16, 34, 4, 171]],
  ['causal', 128, 'r16', 5, 64, 2, 64, [128, 162, 115, 156, 16, 34, 4, 199], [128, 162, 104, 166, 16, 34, 4, 206]],
  ['causal', 128, 'r16', 6, 64, 2, 64, [128, 162, 102, 148, 16, 34, 4, 191], [128, 162, 92, 157, 16, 34, 4, 198]],
  ['causal', 128, 'r16', 7, 64, 2, 64, [128, 162, 95, 140, 16, 34, 4, 183], [128, 162, 80, 148, 16, 34, 4, 190]],
  ['causal', 128, 'r16', 8, 64, 2, 64, [128, 162, 74, 133, 16, 34, 4, 155], [128, 162, 69, 136, 16, 34, 4, 162]],
  ['causal', 128, 'keys', 4, 64, 2, 16, [32, 90, 102, 117, 4, 10, 4, 83], [32, 90, 88, 124, 4, 10, 4, 87]],
];

export function layoutOf(plan: Pick<AttentionPlan, 'rowTile'>): SassLayout {
  return plan.rowTile.layout === 'keys' ? 'keys' : plan.rowTile.warpRows === 32 ? 'r32' : 'r16';
}

export interface LoopCounts {
  /** One warp-iteration's instructions by class. */
  readonly counts: ClassCounts;
  /** Keys a warp scores an iteration (tileN / key warps). */
  readonly keys: number;
}

const toCounts = (xs: readonly number[]): ClassCounts => Object.fromEntries(INSTRUCTION_CLASSES.map((c, i) => [c, xs[i]!])) as ClassCounts;

/** The measured row of `plan`'s tile on `arch` (sm_86 and sm_89 read sm_80's, sm_90a sm_90's), or undefined: not measured. */
export function loopCounts(plan: Pick<AttentionPlan, 'variant' | 'rowTile' | 'tile'>, arch: ArchName): LoopCounts | undefined {
  const layout = layoutOf(plan);
  const row = MEASURED_SASS.find(([k, d, l, w, n, p]) =>
    k === plan.variant.mask.kind && d === plan.variant.shape.headDim && l === layout && w === plan.rowTile.warps && n === plan.tile.tileN && p === plan.tile.stages);
  if (!row) return undefined;
  return { counts: toCounts(arch === 'sm_90' || arch === 'sm_90a' ? row[8] : row[7]), keys: row[6] };
}
