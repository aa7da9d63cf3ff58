/**
 * One emulated run checked against the float64 reference: random inputs (seeded), the
 * variant's mask rebuilt from the manifest, outputs poisoned by the harness, NaN in the
 * unused cache tail. Passing means: the launch completed, no finding, error within tolerance.
 */
import type { ManifestVariant } from '../codegen/manifest.js';
import { stepVisibility } from '../ir/mask.js';
import { maskFromParams } from '../ir/mask-builders.js';
import { decode } from '../util/dtype.js';
import { randomAttentionInputs, referenceAttention } from '../runtime/reference.js';
import { type EmulatorFinding, runEmulator } from './emulator-run.js';

/**
 * Output tolerance against the float64 reference. The kernel rounds P to the input dtype
 * before P V (as FlashAttention does) and rounds O once: bf16 (8-bit mantissa) dominates.
 */
export const EMU_TOLERANCE = { bf16: 2e-2, fp16: 3e-3 } as const;
export const LSE_TOLERANCE = 2e-3;

export interface EmulationCase {
  readonly batch: number;
  readonly prefixLen: readonly number[];
  readonly splits: number;
  readonly seed: number;
  /** The emulator's block order (1: reversed, so another CTA of a split-KV row group finishes last). */
  readonly blockOrder?: 0 | 1;
  /** A programmatic dependent launch (PDL): a global access before a thread's grid_dependency_wait is a "pdl" finding. */
  readonly programmatic?: boolean;
}

export interface EmulationReport {
  readonly variant: string;
  readonly maxError: number;
  readonly meanError: number;
  readonly lseMaxError: number;
  readonly tolerance: number;
  readonly findings: readonly EmulatorFinding[];
  readonly findingCounts: Readonly<Record<string, number>>;
  readonly completed: boolean;
  readonly ok: boolean;
  /** Runs on a GPU: the device and the kernels' time (CUDA events). */
  readonly timing?: { readonly device: string; readonly ms: number };
}

export async function emulateVariant(exe: string, v: ManifestVariant, c: EmulationCase, workDir: string): Promise<EmulationReport> {
  const mask = maskFromParams(v.mask.kind, v.mask.params);
  const n = mask.tokens.length;
  const cacheCapacity = Math.max(0, ...c.prefixLen) + 5;
  const inputs = randomAttentionInputs({ ...v.shape, batch: c.batch, n, cacheCapacity, prefixLen: c.prefixLen, seed: c.seed });
  const tag = `${v.name}-${c.seed}-${c.splits}-${c.blockOrder ?? 0}${c.programmatic ? '-pdl' : ''}`;
  const got = await runEmulator(exe, v, {
    batch: c.batch, cacheCapacity, prefixLen: c.prefixLen, splits: c.splits, ...(c.blockOrder === undefined ? {} : { blockOrder: c.blockOrder }),
    ...(c.programmatic === undefined ? {} : { programmatic: c.programmatic }), ...inputs.bits,
  }, workDir, tag);
  const table = stepVisibility(mask);
  const want = referenceAttention({ ...inputs.shape, prefixLen: c.prefixLen, ...inputs.values, prefixVisible: mask.prefix === 'all', visible: (tq, tk) => table[tq * n + tk] === 1 });
  const o = decode(v.shape.dtype, got.o);
  let maxError = 0, sum = 0, lseMaxError = 0;
  for (let i = 0; i < o.length; i++) {
    const e = Number.isNaN(o[i]!) ? Infinity : Math.abs(o[i]! - want.o[i]!);
    maxError = Math.max(maxError, e);
    sum += e;
  }
  for (let i = 0; i < want.lse.length; i++) {
    const a = got.lse[i]!, b = want.lse[i]!;
    lseMaxError = Math.max(lseMaxError, a === b ? 0 : Number.isNaN(a) ? Infinity : Math.abs(a - b));
  }
  const tolerance = EMU_TOLERANCE[v.shape.dtype];
  const ok = got.completed && got.findings.length === 0 && maxError <= tolerance && lseMaxError <= LSE_TOLERANCE;
  return { variant: v.name, maxError, meanError: sum / o.length, lseMaxError, tolerance, findings: got.findings, findingCounts: got.counts, completed: got.completed, ok, ...(got.timing ? { timing: got.timing } : {}) };
}
