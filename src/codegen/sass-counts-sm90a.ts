/**
 * SASS instruction counts of one iteration of the sm_90a attention kernel's key-tile loop
 * (templates/cuda/tidarc_attention_sm90a.cuh attention_sm90a_kernel: consume_tile(i, true), one
 * 64-key tile of a consumer warpgroup: S = Q K^T and the previous tile's P V by HGMMA, the online
 * softmax on the CUDA cores), per warp, by class (sass-mix.ts: HGMMA in the tensor class 'hmma';
 * the loop's unmasked path), as cuobjdump printed them for each plan the sm_90a planner
 * (attention-sm90a.ts planAttentionSm90a) can make of the compute-bound variants: TiDAR k = 16
 * (tidar-decode) and the prefill chunk (causal), head dim 64 and 128, one consumer, two in
 * ping-pong (the planner's choice from 128 rows) and two without it (the bench's no-pp column).
 * What attention-sm90a-cost-model.ts's softmax term reads. Measured at G = 4 (Qwen3-8B's 32 query
 * / 8 KV heads, bf16) by `npm run bench:sass-counts-sm90a` (bench/sass-counts-sm90a.ts; --check
 * re-measures and compares); a plan of another mask kind has no row (the model says so and keeps
 * its assumed softmax). Pure.
 *
 * What they hold (nvcc 13.0): a thread has 64 x 64 / 128 = 32 scores a tile: 32 MUFU.EX2 and 2 for
 * the rows' rescale (34), scale, exponent, sum and O rescale in fp32 (130 at D = 64, 162 at 128:
 * D / 2 more FMUL), 16 F2FP packs of P, 4 SHFL for the two rows' max; HGMMA D / 16 for S and 4 for
 * P V. Every row is limited by its issue slots (436 to 517 an iteration), not by the MUFU pipe
 * (272 cycles): 0.57 (D = 64) to 0.67 (D = 128) of the old assumption's 768 cycles an SM a tile.
 *
 * The key-tile loop is the innermost loop holding HGMMA (sm90aKeyLoop): the kernel's outer loops
 * (the split work, the mbarrier spin placed out of line) hold the peeled first tile's and the last
 * P V's HGMMA too, so sass-mix.ts hotLoop's "most HMMA" rule would take an outer one.
 */
import type { MaskKind } from '../ir/mask.js';
import type { AttentionSm90aPlan } from './attention-sm90a.js';
import { type ClassCounts, findLoops, hotPath, INSTRUCTION_CLASSES, type SassInstruction, type SassKernel, type SassLoop } from './sass-mix.js';

/** The tools that measured MEASURED_SM90A_SASS (findNvcc's and findCuobjdump's version lines). */
export const MEASURED_SM90A_SASS_NVCC = 'Cuda compilation tools, release 13.0, V13.0.88';
export const MEASURED_SM90A_SASS_CUOBJDUMP = 'Cuda compilation tools, release 13.1, V13.1.80';

/**
 * [mask kind, head dim, consumers, ping-pong, keys a tile, sm_90a counts of one warp-iteration in
 * INSTRUCTION_CLASSES order (hmma = HGMMA, fp32, imad, alu, conv, mufu, shfl, issue)].
 */
export type MeasuredSm90aSass = readonly [MaskKind, number, 1 | 2, boolean, number, readonly number[]];

// bench:sass-counts-sm90a (nvcc 13.0 V13.0.88, cuobjdump 13.1 V13.1.80, sm_90a, G = 4), 2026-12-05.
export const MEASURED_SM90A_SASS: readonly MeasuredSm90aSass[] = [
  ['tidar-decode', 64, 1, false, 64, [8, 130, 36, 103, 16, 34, 4, 106]],
  ['tidar-decode', 64, 2, true, 64, [8, 130, 36, 105, 16, 34, 4, 110]],
  ['tidar-decode', 64, 2, false, 64, [8, 130, 36, 103, 16, 34, 4, 106]],
  ['causal', 64, 1, false, 64, [8, 130, 36, 102, 16, 34, 4, 106]],
  ['causal', 64, 2, true, 64, [8, 130, 36, 103, 16, 34, 4, 110]],
  ['causal', 64, 2, false, 64, [8, 130, 36, 102, 16, 34, 4, 106]],
  ['tidar-decode', 128, 1, false, 64, [12, 162, 48, 107, 16, 34, 4, 122]],
  ['tidar-decode', 128, 2, true, 64, [12, 162, 48, 109, 16, 34, 4, 126]],
  ['tidar-decode', 128, 2, false, 64, [12, 162, 48, 99, 16, 34, 4, 138]],
  ['causal', 128, 1, false, 64, [12, 162, 48, 106, 16, 34, 4, 122]],
  ['causal', 128, 2, true, 64, [12, 162, 48, 99, 16, 34, 4, 142]],
  ['causal', 128, 2, false, 64, [12, 162, 47, 98, 16, 34, 4, 139]],
];

/** The sm_90a key-tile loop of a kernel: the innermost loop holding HGMMA with a path from its head to its back edge, and that path. */
export function sm90aKeyLoop(kernel: SassKernel): { readonly loop: SassLoop; readonly path: readonly SassInstruction[] } | undefined {
  const loops = findLoops(kernel).filter((l) => l.hmma > 0).sort((a, b) => a.instructions - b.instructions);
  for (const loop of loops) {
    const path = hotPath(kernel, loop);
    if (path.length > 0) return { loop, path };
  }
  return undefined;
}

const toCounts = (xs: readonly number[]): ClassCounts => Object.fromEntries(INSTRUCTION_CLASSES.map((c, i) => [c, xs[i]!])) as ClassCounts;

/** The measured row of an sm_90a plan (by mask kind, head dim, consumers, ping-pong, keys a tile), or undefined: not measured. */
export function sm90aLoopCounts(plan: Pick<AttentionSm90aPlan, 'variant' | 'consumers' | 'pingPong' | 'tileN'>): ClassCounts | undefined {
  const row = MEASURED_SM90A_SASS.find(([k, d, c, pp, n]) =>
    k === plan.variant.mask.kind && d === plan.variant.shape.headDim && c === plan.consumers && pp === plan.pingPong && n === plan.tileN);
  return row ? toCounts(row[5]) : undefined;
}
