/**
 * The runtime's forward pass and decoding loop with the generated CUDA kernels running on
 * the emulator (every attention launch of prefill chunks, the prefill mask block and the
 * decode steps): greedy TiDAR equals greedy AR, and both equal the CPU backend's output.
 * This proves the runtime/kernel seam of the CUDA kernels before any GPU runs them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import { openEmulatedKernelLibrary } from '../../src/emulate/emulated-library.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import type { KernelLibrary } from '../../src/runtime/kernel-library.js';
import { Decoder } from '../../src/runtime/model/decoder.js';
import { ModelRunner } from '../../src/runtime/model/forward.js';
import { KvCache } from '../../src/runtime/model/kv-cache.js';
import { loadModel } from '../../src/load/load-model.js';
import { modelWeights, type ModelWeights } from '../../src/runtime/model/weights.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';

const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-runtime-'));
const TOKENS = 12;
const PROMPT = [...Buffer.from('def main(')];
let spec: ModelSpec, weights: ModelWeights, kernels: KernelLibrary, dir: string;

function generate(mode: 'tidar' | 'ar', draft: number): number[] {
  const cache = new KvCache({ layers: spec.layers, kvHeads: spec.kvHeads, headDim: spec.headDim, capacity: PROMPT.length + TOKENS + draft + 1 });
  const runner = new ModelRunner(spec, weights, kernels, cache, 1);
  const decoder = new Decoder(runner, { mode, draft, temperature: 0, topP: 1, trustAr: 1, seed: 0 }, spec.maskTokenId);
  const out = [...decoder.prefill(PROMPT).tokens];
  while (out.length < TOKENS) out.push(...decoder.step().tokens);
  return out.slice(0, TOKENS);
}

beforeAll(async () => {
  if (!cxx.found) return;
  dir = await writeRandomModel(root, smallSpec('emurt', [2]), 21);
  const ckpt = await loadCheckpoint(dir);
  spec = ckpt.spec;
  weights = modelWeights(ckpt);
  await compileModel({ spec, arches: ['sm_80'], outDir: join(root, 'kernels'), build: 'none', log: () => undefined });
  // Its own kernel cache: the emulator runtime is compiled into it, not into the user's ~/.cache/tidarc.
  kernels = await openEmulatedKernelLibrary(join(root, 'kernels'), { cacheDir: join(root, 'cache') });
}, 600_000);

afterAll(() => {
  kernels?.close();
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(!cxx.found)('decoding through the emulated CUDA kernels', () => {
  test('greedy TiDAR (k = 2) == greedy AR == the CPU backend', { timeout: 600_000 }, async () => {
    const ar = generate('ar', 0);
    const tidar = generate('tidar', 2);
    expect(tidar).toEqual(ar);
    const cpu = await loadModel(dir, { backend: 'cpu', cacheDir: join(root, 'cache'), threads: 1 });
    try {
      expect((await cpu.generate({ prompt: PROMPT, maxTokens: TOKENS, mode: 'ar', stopAtEos: false })).tokens).toEqual(ar);
    } finally {
      cpu.close();
    }
  });
});
