/**
 * THE invariant of lossless TiDAR decoding: greedy TiDAR (beta = 1) gives token for token
 * the greedy AR output of the same model, for random-weight models, k in {1, 2, 4, 8},
 * several prompts, 200+ tokens. Plus the KV cache rule: after a generation the cache equals
 * the cache of an AR run over the same tokens, and no mask token's K/V was ever in it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type KvCache, compareCaches } from '../../../src/runtime/model/kv-cache.js';
import { type Model, loadModel } from '../../../src/load/load-model.js';
import { sharedKernelCache } from '../../helpers/emulated-driver.js';
import { SHARED_DRAFTS, sharedSmallSpec, smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const DRAFTS = SHARED_DRAFTS;
const PROMPTS = ['def main(', 'The quick brown fox', 'x = [1, 2, 3]\nfor i in x:\n    print(i)\n'];
const root = mkdtempSync(join(tmpdir(), 'tidarc-inv-'));
const models: Model[] = [];

beforeAll(async () => {
  // The qwen3 model is sharedSmallSpec: its kernels come from the tests' shared cache (sampling.test.ts and
  // mask-never-emitted.test.ts load the same); the qwen2 one is this file's alone.
  const specs = [sharedSmallSpec(), smallSpec('inv1', DRAFTS, { family: 'qwen2', qkNorm: false, tieEmbeddings: false })];
  const caches = [await sharedKernelCache(), join(root, 'cache')];
  for (const [i, spec] of specs.entries()) {
    const dir = await writeRandomModel(root, spec, 10 + i);
    models.push(await loadModel(dir, { backend: 'cpu', cacheDir: caches[i]!, threads: 2 }));
  }
}, 300_000);

afterAll(() => {
  for (const m of models) m.close();
  rmSync(root, { recursive: true, force: true });
});

describe('greedy TiDAR == greedy AR', () => {
  const cases = [0, 1].flatMap((m) => PROMPTS.flatMap((prompt, p) => DRAFTS.map((k) => [`${m === 0 ? 'qwen3' : 'qwen2'} k=${k} prompt ${p}`, m, prompt, k] as const)));
  test.for(cases)('%s', async ([, m, prompt, k]) => {
    const model = models[m]!;
    const ar = await model.generate({ prompt, maxTokens: 200, mode: 'ar', stopAtEos: false });
    const tidar = await model.generate({ prompt, maxTokens: 200, mode: 'tidar', draft: k, stopAtEos: false });
    expect(ar.tokens).toHaveLength(200);
    expect(tidar.tokens).toEqual(ar.tokens);
    expect(tidar.tokensPerNfe).toBeGreaterThanOrEqual(1);
    expect(ar.nfe).toBe(200);
    // Every decode step is in the histogram; accepted counts are 1..k.
    expect(tidar.acceptHistogram.reduce((a, b) => a + b, 0)).toBe(tidar.nfe - 1);
    expect(tidar.acceptHistogram[0]).toBe(0);
    expect(tidar.acceptHistogram).toHaveLength(k + 1);
  });
});

describe('the KV cache is exact', () => {
  test.for(DRAFTS.map((k) => [k] as const))('after greedy TiDAR k=%i it equals the AR cache over the same tokens', async ([k]) => {
    const model = models[0]!;
    const prompt = PROMPTS[2]!;
    let tidarCache: KvCache | undefined;
    const tidar = await model.generate({ prompt, maxTokens: 120, mode: 'tidar', draft: k, stopAtEos: false, inspectCache: (c) => { tidarCache = c; } });
    // AR over the same tokens: prompt + all generated tokens but the last (which was never fed back).
    const tokens = [...model.tokenizer.encode(prompt), ...tidar.tokens.slice(0, -1)];
    let arCache: KvCache | undefined;
    // The same token sequence through AR: one causal prefill over all of it.
    await model.generate({ prompt: tokens, maxTokens: 1, mode: 'ar', stopAtEos: false, inspectCache: (c) => { arCache = c; } });
    const t = tidarCache!, a = arCache!;
    expect(t.length).toBe(tokens.length);
    expect(a.length).toBe(tokens.length);
    // Layer 0 K/V depend only on the token and position: bitwise equal. Deeper layers see
    // attention outputs summed in another order (TiDAR tiles vs AR), within bf16 rounding.
    // Slots past the committed length were never written: no rejected draft, no mask token.
    const c = compareCaches(a, t, 'bf16');
    expect(c.comparedSlots).toBe(tokens.length);
    expect(c.layer0Differing).toBe(0);
    expect(c.maxRelDiff).toBeLessThan(2 ** -6);
    expect(c.writtenPastLength).toBe(0);
  });
});
