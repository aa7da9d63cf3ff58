/**
 * Sampling on the device (tidarc_op_sample, tidarc_op_accept in templates/cuda/tidarc_ops.cu)
 * on the emulated driver, against the host's float64 target distribution
 * (src/runtime/model/sampling.ts's distribution and mixLogits): temperature, top-k, top-p (ties
 * at the cut to the lower id), the never-emitted token, the verifier mix, and the lossless
 * acceptance test with residual resampling, whose emitted token must follow the target whatever
 * the draft. Each case draws a few thousand tokens in one launch (a row each) with a fixed seed.
 * And a decode step's tail on hand-made rows: greedy verification (tidarc_op_verify: argmax
 * without the never-emitted token, ties to the first index, the beta mix, draft == argmax), the
 * next drafts' rows (tidarc_op_draft_rows), the next drafts picked from a pass over every
 * candidate row (tidarc_op_next_drafts) and the commit at a count and slot read on the device
 * (tidarc_op_kv_commit_layers over one layer; kv-commit-layers.test.ts covers several).
 *
 * The statistics: Pearson's chi-square goodness of fit (test/helpers/chi-square.ts) over the
 * tokens the target gives probability > 0 (all with expected counts >= 5), rejecting at
 * p < 1e-4: a correct kernel fails a case for a given seed with probability 1e-4, about 1e-3 for
 * the whole file. Tokens the target excludes must never appear.
 * Acceptance rates: |accepted - N p(d)| within 3.9 binomial standard deviations (1e-4 two-sided).
 * The temperature case is also checked against the untempered softmax, which it must fail: the
 * test has the power to see a wrong distribution. Tagged: a C++ compiler; and [gpu] the same
 * on the real driver where a GPU and nvcc are (the same seeds: Philox gives the same numbers).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { distribution, mixLogits } from '../../../src/runtime/model/sampling.js';
import { packageRoot } from '../../../src/util/paths.js';
import { goodnessOfFit } from '../../helpers/chi-square.js';
import { gpuAvailable, opsModule } from '../../helpers/ops-module.js';
import type { SampleCase } from './fixtures/sampling-child.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const gpu = await gpuAvailable();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-sampling-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Draws a case: fewer where a cut (top-k, top-p) costs the emulator 8 radix passes a row. */
const N = 2000, N_CUT = 1000;
const L = [1, 0.5, 0, -0.5, 2, 0.1, -1, 0.3];
const CASES: SampleCase[] = [
  { name: 'temperature', logits: L, draws: N, temperature: 0.7, seed: 11 },
  { name: 'top-k', logits: L, draws: N_CUT, temperature: 1, topK: 3, seed: 12 },
  { name: 'top-p', logits: L, draws: N_CUT, temperature: 1.3, topP: 0.8, seed: 13 },
  { name: 'top-k ties', logits: [1, 2, 2, 2, 0, -1, 1, 0.5], draws: N_CUT, temperature: 1, topK: 2, seed: 14 },
  { name: 'top-p ties', logits: [0, 3, 3, 3, 1, -1, 0.5, 2], draws: N_CUT, temperature: 1, topP: 0.5, seed: 15 },
  { name: 'top-k then top-p', logits: L, draws: N_CUT, temperature: 0.9, topK: 5, topP: 0.7, seed: 16 },
  { name: 'never emit', logits: L, draws: N, temperature: 1, neverEmit: 4, seed: 17 },
  { name: 'verifier mix', logits: L, mix: [...L].reverse(), beta: 0.25, draws: N, temperature: 1, seed: 18 },
  { name: 'accept a likely draft', logits: L, draws: N, temperature: 1, draft: 0, seed: 19 },
  { name: 'accept an unlikely draft', logits: L, draws: N_CUT, temperature: 0.8, draft: 2, topK: 6, seed: 20 },
  { name: 'reject a draft outside top-p', logits: L, draws: N_CUT, temperature: 1, draft: 6, topP: 0.8, seed: 21 },
  { name: 'accept with mix and never emit', logits: L, mix: [...L].reverse(), beta: 0.5, draws: N, temperature: 1, draft: 7, neverEmit: 0, seed: 22 },
];

/** The host's target distribution of a case (float64). */
function target(c: SampleCase): Float64Array {
  let logits: Float32Array = Float32Array.from(c.logits);
  if (c.mix) logits = mixLogits(logits, Float32Array.from(c.mix), c.beta ?? 1);
  if (c.neverEmit !== undefined) logits[c.neverEmit] = -Infinity;
  return distribution(logits, { temperature: c.temperature, topP: c.topP ?? 1, topK: c.topK ?? 0 });
}

const ALPHA = 1e-4;

function fit(tokens: readonly number[], p: Float64Array): { pValue: number; df: number; outside: number } {
  const counts = new Array<number>(p.length).fill(0);
  for (const t of tokens) counts[t]!++;
  p.forEach((q, i) => q > 0 && expect(tokens.length * q, `expected count of token ${i}`).toBeGreaterThanOrEqual(5));
  const outside = counts.reduce((a, c, i) => a + (p[i] === 0 ? c : 0), 0);
  const { pValue, df } = goodnessOfFit(counts, [...p]);
  return { pValue, df, outside };
}

interface ChildOut {
  [name: string]: unknown;
  repeat: { a: number[]; b: number[]; otherStep: number[] };
  accept: number[][];
  graph: { replays: number[][]; direct: number[][] };
  tail: { tokens: number[]; accepted: number[]; mixed: number[]; rowIds: number[]; kCache: number[]; vCache: number[] };
}

describe.for([
  { on: 'emulated' as const, label: 'the emulated driver', skip: !cxx.found },
  { on: 'gpu' as const, label: '[gpu] the GPU', skip: !gpu },
])('sampling on the device: $label', ({ on, skip }) => {
  let out: ChildOut;
  beforeAll(async () => {
    if (skip) return;
    const { module, env } = await opsModule(root, on);
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'sampling-child.ts'), module, JSON.stringify(CASES)], {
      cwd: packageRoot(), env, maxBuffer: 64 << 20, timeout: 300_000,
    });
    out = JSON.parse(stdout.trim().split('\n').pop()!) as ChildOut;
  }, 600_000);

  test.skipIf(skip).for(CASES.map((c) => c.name))('%s: the tokens follow the target distribution', (name) => {
    const c = CASES.find((k) => k.name === name)!;
    const r = out[name] as { tokens: number[]; accepted: number[] };
    expect(r.tokens).toHaveLength(c.draws);
    const p = target(c);
    const { pValue, df, outside } = fit(r.tokens, p);
    expect(outside, 'tokens the target excludes').toBe(0);
    expect(pValue, `chi-square p-value, ${df} degrees of freedom`).toBeGreaterThan(ALPHA);
    if (c.draft === undefined) {
      expect(r.accepted.every((a) => a === 0)).toBe(true);
    } else {
      const pd = p[c.draft]!, accepted = r.accepted.filter((a) => a === 1).length;
      expect(Math.abs(accepted - c.draws * pd), `accepted ${accepted} of ${c.draws}, p(draft) ${pd}`).toBeLessThanOrEqual(3.9 * Math.sqrt(c.draws * pd * (1 - pd)) + 1e-9);
      r.accepted.forEach((a, i) => a === 1 && expect(r.tokens[i]).toBe(c.draft));
    }
  });

  test.skipIf(skip)('the chi-square sees a wrong distribution: the tempered draws fail against the untempered softmax', () => {
    const c = CASES[0]!;
    expect(fit((out[c.name] as { tokens: number[] }).tokens, target({ ...c, temperature: 1 })).pValue).toBeLessThan(ALPHA);
  });

  test.skipIf(skip)('the same seed and step give the same tokens; another step other tokens', () => {
    expect(out.repeat.a).toEqual(out.repeat.b);
    expect(out.repeat.otherStep).not.toEqual(out.repeat.a);
  });

  test.skipIf(skip)('accept: n = 1 + the leading accepted rows, then the rows\' tokens', () => {
    expect(out.accept).toEqual([[2, 5, 6, 0, 0], [4, 5, 6, 7, 8], [1, 5, 0, 0, 0], [1, 9]]);
  });

  test.skipIf(skip)("a decode step's tail: greedy verify, the next drafts' rows, the next drafts picked after acceptance, the commit at a device count and slot", () => {
    // argmax without the never-emitted token 0 (ties to the first index), and whether the draft is it.
    expect(out.tail).toMatchObject({ tokens: [1, 5, 1, 5], accepted: [1, 0, 1, 0], mixed: [3], rowIds: [13, 14, 15] });
    // n = 2 of 3 verify rows, 2 candidates each: rows 3 + (2 - 1) * 2 + s.
    expect(out.tail).toMatchObject({ nextDrafts: [15, 16], nextLse: [5.5, 6.5] });
    // Rows 0 and 1 of [3, 2 heads, 4] at slots 5 and 6 of each head's 8 slots; nothing else written.
    const expected = (base: number): number[] => {
      const cache = new Array<number>(64).fill(0);
      for (let j = 0; j < 2; j++) for (let h = 0; h < 2; h++) for (let d = 0; d < 4; d++) cache[(h * 8 + 5 + j) * 4 + d] = base + (j * 2 + h) * 4 + d;
      return cache;
    };
    expect(out.tail.kCache).toEqual(expected(100));
    expect(out.tail.vCache).toEqual(expected(200));
  });

  test.skipIf(skip)('one captured graph reads the whole setup (step, seed, temperature, top-k, top-p) at each replay', () => {
    // Replays, per setup at steps 7 and 8: base, another seed, temperature 0.5 with top-k 3, top-p 0.6.
    expect(out.graph.replays).toHaveLength(8);
    expect(out.graph.replays).toEqual(out.graph.direct);
    // Each change of step or setup changes the draws (else the replay would not prove it read them).
    for (const i of [1, 2, 4, 6]) expect(out.graph.replays[i]).not.toEqual(out.graph.replays[0]);
    // top-k 3 keeps only the 3 largest logits of the row.
    const top3 = [...CASES[0]!.logits.keys()].sort((a, b) => CASES[0]!.logits[b]! - CASES[0]!.logits[a]!).slice(0, 3);
    for (const t of [...out.graph.replays[4]!, ...out.graph.replays[5]!]) expect(top3).toContain(t);
  });
});
