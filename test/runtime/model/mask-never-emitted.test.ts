/**
 * Issue 17 item 8: the mask token is never emitted (sampling printed a literal `<|mask|>`).
 * A model rigged so that the mask token has by far the largest logit everywhere: every
 * embedding row is e0 (the mask token's 100 e0), the blocks add nothing (o_proj and down_proj
 * are zero), and the head is tied, so the logit of token t is h0 * E[t][0] with h0 > 0. Greedy
 * and sampled decoding, AR and TiDAR, must still emit only other tokens; greedy TiDAR equals
 * greedy AR. Before, greedy decoding emitted the mask token every time.
 * Needs: g++ and the native addon.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Model, loadModel } from '../../../src/load/load-model.js';
import { readSafetensors, serializeSafetensors, type Tensor } from '../../../src/model/safetensors.js';
import { sharedKernelCache } from '../../helpers/emulated-driver.js';
import { sharedSmallSpec, writeRandomModel } from '../../helpers/random-model.js';

const MASK = 259;
const BF16_ONE = 0x3f80, BF16_HUNDRED = 0x42c8;
const root = mkdtempSync(join(tmpdir(), 'tidarc-mask-out-'));
let model: Model;

beforeAll(async () => {
  // sharedSmallSpec (k = 2 among its drafts): its kernels compile once for the files that load it; the weights are this file's.
  const spec = sharedSmallSpec();
  const dir = await writeRandomModel(root, spec, 9);
  const file = await readSafetensors(join(dir, 'model.safetensors'));
  const tensors: Record<string, Tensor> = {};
  for (const name of file.names()) {
    const t = file.tensor(name);
    let data = t.data as Uint16Array;
    if (name === 'model.embed_tokens.weight') {
      data = new Uint16Array(data.length);
      for (let row = 0; row < spec.vocabSize; row++) data[row * spec.hiddenSize] = row === MASK ? BF16_HUNDRED : BF16_ONE;
    } else if (/\.(o_proj|down_proj)\.weight$/.test(name)) {
      data = new Uint16Array(data.length);
    }
    tensors[name] = { ...t, data };
  }
  writeFileSync(join(dir, 'model.safetensors'), serializeSafetensors(tensors, file.metadata));
  model = await loadModel(dir, { backend: 'cpu', cacheDir: await sharedKernelCache(), threads: 1 });
}, 300_000);

afterAll(() => {
  model?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('the mask token is never emitted', () => {
  test.for([
    ['greedy AR', { mode: 'ar' }],
    ['greedy TiDAR', { mode: 'tidar', draft: 2 }],
    ['sampled AR', { mode: 'ar', temperature: 1, seed: 3 }],
    ['sampled TiDAR', { mode: 'tidar', draft: 2, temperature: 1, seed: 3 }],
    ['sampled TiDAR, beta 0.5', { mode: 'tidar', draft: 2, temperature: 1, seed: 4, trustAr: 0.5 }],
  ] as const)('%s', async ([, options]) => {
    const r = await model.generate({ prompt: 'ab', maxTokens: 24, stopAtEos: false, ...options });
    expect(r.tokens).toHaveLength(24);
    expect(r.tokens).not.toContain(MASK);
    expect(r.text).not.toContain('<|mask|>');
  });

  test('greedy TiDAR still gives the greedy AR tokens', async () => {
    const ar = await model.generate({ prompt: 'ab', maxTokens: 16, mode: 'ar', stopAtEos: false });
    const tidar = await model.generate({ prompt: 'ab', maxTokens: 16, mode: 'tidar', draft: 2, stopAtEos: false });
    expect(tidar.tokens).toEqual(ar.tokens);
  });
});
