/**
 * The model we trained and ship (models/tidar-tiny-code, see its MODEL.md): tidarc's forward
 * agrees with the training script's own JAX forward (reference.json), and on held-out code the
 * TiDAR loop both speeds decoding up (T/NFE > 1) and stays exactly the greedy AR output.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadModel, type Model } from '../../src/load/load-model.js';
import { openModelParts } from '../../src/load/model-parts.js';

const DIR = resolve(process.env['TIDARC_TEST_MODEL'] ?? 'models/tidar-tiny-code');
const cacheDir = mkdtempSync(join(tmpdir(), 'tidarc-shipped-'));
const prompts = JSON.parse(readFileSync(join(DIR, 'prompts.json'), 'utf8')) as { source: string; prompt: string }[];
const reference = JSON.parse(readFileSync(join(DIR, 'reference.json'), 'utf8')) as { ids: number[]; argmax: number[]; lse: number[] };
const TOKENS = 64;
let model: Model;

beforeAll(async () => {
  model = await loadModel(DIR, { backend: 'cpu', cacheDir });
}, 300_000);
afterAll(() => {
  model?.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('models/tidar-tiny-code', () => {
  test('tidarc\'s forward matches the training script\'s (argmax and log-sum-exp of every prompt position)', async () => {
    const parts = await openModelParts(DIR, { backend: 'cpu', cacheDir });
    try {
      const S = reference.ids.length;
      const runner = parts.newRunner(S);
      const pass = runner.pass(Int32Array.from(reference.ids), Int32Array.from({ length: S }, (_, i) => i), { kind: 'prefill', promptTokens: S });
      const rows = pass.logits(Array.from({ length: S }, (_, i) => i));
      let same = 0;
      let worst = 0;
      rows.forEach((row, i) => {
        let max = -Infinity, arg = 0;
        row.forEach((v, j) => { if (v > max) { max = v; arg = j; } });
        const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
        if (arg === reference.argmax[i]) same++;
        worst = Math.max(worst, Math.abs(lse - reference.lse[i]!));
      });
      // bf16 attention inputs here against float32 attention there: near-ties may flip.
      expect(same / S).toBeGreaterThanOrEqual(0.95);
      expect(worst).toBeLessThan(0.05);
    } finally {
      parts.close();
    }
  }, 120_000);

  test.for(prompts.slice(0, 4).map((p, i) => [i, p.source] as const))('held-out prompt %i (%s): greedy TiDAR k = 4 == greedy AR', { timeout: 120_000 }, async ([i]) => {
    const prompt = prompts[i]!.prompt;
    const ar = await model.generate({ prompt, maxTokens: TOKENS, mode: 'ar', stopAtEos: false });
    const tidar = await model.generate({ prompt, maxTokens: TOKENS, mode: 'tidar', draft: 4, stopAtEos: false });
    expect(tidar.tokens).toEqual(ar.tokens);
    expect(tidar.tokensPerNfe).toBeGreaterThanOrEqual(1);
  });

  test('T/NFE over the held-out prompts is clearly above 1 at k = 4', async () => {
    let tokens = 0, nfe = 0;
    for (const p of prompts.slice(0, 4)) {
      const r = await model.generate({ prompt: p.prompt, maxTokens: TOKENS, mode: 'tidar', draft: 4, stopAtEos: false });
      tokens += r.tokens.length;
      nfe += r.nfe;
    }
    expect(tokens / nfe).toBeGreaterThan(1.5);
  }, 120_000);
});
