/**
 * Lossless sampling. Unit: the draft verification rule gives exactly the target
 * distribution p whatever the draft (chi-square goodness of fit, and the same test rejects a
 * subtly wrong rule). End to end: with temperature > 0, TiDAR's tokens follow the AR
 * distribution (two-sample homogeneity test against AR sampling of the same model).
 * Every test uses fixed seeds; each rejects at p < 1e-7, and the file has 7 such tests, so
 * the probability that a correct implementation fails here is below 1e-6.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { distribution, sample, verifyDraft } from '../../../src/runtime/model/sampling.js';
import { type Model, loadModel } from '../../../src/load/load-model.js';
import { seededRandom } from '../../../src/util/random.js';
import { goodnessOfFit, homogeneity } from '../../helpers/chi-square.js';
import { sharedKernelCache } from '../../helpers/emulated-driver.js';
import { sharedSmallSpec, writeRandomModel } from '../../helpers/random-model.js';

const ALPHA = 1e-7;
const P = [0.5, 0.2, 0.15, 0.1, 0.05];

describe('verifyDraft: accept with p(draft), else sample p without the draft', () => {
  test.for([0, 1, 4])('emitted tokens follow p exactly (draft %i)', (draft) => {
    const rng = seededRandom(1000 + draft);
    const p = Float64Array.from(P);
    const counts = [0, 0, 0, 0, 0];
    for (let i = 0; i < 100_000; i++) counts[verifyDraft(p, draft, rng).correction]!++;
    expect(goodnessOfFit(counts, P).pValue).toBeGreaterThan(ALPHA);
  });

  test('the test has power: resampling without excluding the draft is rejected', () => {
    const rng = seededRandom(7);
    const p = Float64Array.from(P);
    const counts = [0, 0, 0, 0, 0];
    for (let i = 0; i < 100_000; i++) {
      const t = rng.next() < p[0]! ? 0 : sample(p, rng);  // wrong: may emit the rejected draft again
      counts[t]!++;
    }
    expect(goodnessOfFit(counts, P).pValue).toBeLessThan(ALPHA);
  });

  test('temperature and top-p shape p as documented', () => {
    const logits = Float32Array.from([2, 1, 0, -1]);
    const p = distribution(logits, { temperature: 1, topP: 1 });
    expect(p[0]! / p[1]!).toBeCloseTo(Math.E, 10);
    const hot = distribution(logits, { temperature: 2, topP: 1 });
    expect(hot[0]! / hot[1]!).toBeCloseTo(Math.sqrt(Math.E), 10);
    const nucleus = distribution(logits, { temperature: 1, topP: 0.7 });
    expect([...nucleus].filter((x) => x > 0)).toHaveLength(2);  // 0.64 + 0.24 reaches 0.7
    expect(nucleus.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  test('top-k keeps the k most likely tokens (ties to the lower id) before top-p', () => {
    const logits = Float32Array.from([1, 2, 2, 2, 0]);
    const k2 = distribution(logits, { temperature: 1, topP: 1, topK: 2 });
    expect([...k2].map((x) => x > 0)).toEqual([false, true, true, false, false]);
    expect(k2[1]).toBeCloseTo(0.5, 12);
    // top-p over what top-k kept: 0.5 of the two tied tokens reaches 0.4, so one of them stays.
    expect([...distribution(logits, { temperature: 1, topP: 0.4, topK: 2 })]).toEqual([0, 1, 0, 0, 0]);
    expect(distribution(logits, { temperature: 1, topP: 1, topK: 5 })).toEqual(distribution(logits, { temperature: 1, topP: 1 }));
  });
});

const root = mkdtempSync(join(tmpdir(), 'tidarc-sampling-'));
let model: Model;

beforeAll(async () => {
  // Drafts 2 and 4 are among sharedSmallSpec's: its kernels compile once for the files that load it.
  const dir = await writeRandomModel(root, sharedSmallSpec(), 5);
  model = await loadModel(dir, { backend: 'cpu', cacheDir: await sharedKernelCache(), threads: 1 });
}, 300_000);

afterAll(() => {
  model?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('TiDAR sampling follows the AR distribution', () => {
  const RUNS = 2000;
  const positions = [1, 2];  // tokens 2 and 3: each went through draft verification
  const samples = new Map<string, Map<number, number>[]>();

  beforeAll(async () => {
    for (const [mode, draft] of [['ar', 0], ['tidar', 2], ['tidar', 4]] as const) {
      const hist = positions.map(() => new Map<number, number>());
      for (let seed = 0; seed < RUNS; seed++) {
        const r = await model.generate({ prompt: 'def f(', maxTokens: 3, mode, ...(draft ? { draft } : {}), temperature: 2, seed: seed + (draft + 1) * 100_000, stopAtEos: false });
        positions.forEach((pos, i) => hist[i]!.set(r.tokens[pos]!, (hist[i]!.get(r.tokens[pos]!) ?? 0) + 1));
      }
      samples.set(`${mode}${draft}`, hist);
    }
  }, 600_000);

  test.for([2, 4].flatMap((k) => positions.map((pos, i) => [k, pos + 1, i] as const)))('k=%i, token %i', ([k, , i]) => {
    const { pValue, df } = homogeneity(samples.get(`tidar${k}`)![i]!, samples.get('ar0')![i]!);
    expect(df).toBeGreaterThan(2);
    expect(pValue).toBeGreaterThan(ALPHA);
  });
});
