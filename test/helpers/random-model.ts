/** Random-weight checkpoints for runtime tests, written once per test file into a temp dir. */
import { join } from 'node:path';
import { initModel } from '../../src/model/init-model.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { modelForShape } from './models.js';

/**
 * A small Qwen3-style model (byte vocabulary, QK-norm, GQA 2) with large-ish random weights
 * (std 0.3), so greedy outputs wander instead of repeating one token.
 */
export function smallSpec(name: string, draftLengths: readonly number[], overrides: Partial<ModelSpec> = {}): ModelSpec {
  return {
    ...modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 2 }, draftLengths, name),
    layers: 2,
    hiddenSize: 128,
    intermediateSize: 256,
    maxPositionEmbeddings: 4096,
    ...overrides,
  };
}

/**
 * Writes a random checkpoint for SPEC into DIR/<spec.name>. Norm weights are 1 + N(0, normStd^2)
 * (0.2 by default), not initModel's default ones: every norm tensor and element then differs, so a
 * backend that drops a norm weight, swaps q_norm and k_norm or reads another layer's norm changes
 * its logits and a backend comparison sees it.
 */
export async function writeRandomModel(dir: string, spec: ModelSpec, seed: number, std = 0.3, normStd = 0.2): Promise<string> {
  const outDir = join(dir, spec.name);
  await initModel({ spec, outDir, seed, std, normStd });
  return outDir;
}

/** The draft lengths of sharedSmallSpec. */
export const SHARED_DRAFTS: readonly number[] = [1, 2, 4, 8];

/**
 * One small model spec (smallSpec, k in {1, 2, 4, 8}) for the CPU runtime tests that need no
 * other shape: loaded with the tests' shared kernel cache (emulated-driver.ts sharedKernelCache),
 * its kernels compile once per run for every such file (about 12 s of g++ on 2 cores), whatever
 * weights each file writes. A file that needs another shape keeps its own spec and cache.
 */
export function sharedSmallSpec(): ModelSpec {
  return smallSpec('small-k1248', SHARED_DRAFTS);
}
