/**
 * Issue 17 item 8, run's small slips: the summary line labels TiDAR's per-step histogram and
 * has none in AR mode (it printed "accepted drafts per step: 25 11 5 15", and an empty list for
 * AR); --top-p says "above 0" (it said "from 5e-324 to 1"); --draft has compile's limit (run
 * took 1..64, compile and import-hf 1..32). Needs nothing: no model is loaded.
 */
import { describe, expect, test } from 'vitest';
import { runSummary } from '../../src/cli/commands/run.js';
import type { GenerateResult } from '../../src/load/load-model.js';
import { MAX_DRAFT_COMPILE } from '../../src/ir/model.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';

const base: GenerateResult = {
  text: '', tokens: Array<number>(120).fill(1), nfe: 57, tokensPerNfe: 120 / 57, acceptHistogram: [0, 25, 11, 5, 15],
  prefillMs: 10, decodeMs: 122, tokensPerSecond: 907.3, backend: 'cpu', mode: 'tidar', draft: 4,
};

describe('the summary line of tidarc run', () => {
  test('TiDAR: tokens per step, labelled', () => {
    expect(runSummary(base, 'cpu')).toBe('[tidar k=4, cpu] 120 tokens in 57 forwards (2.11 tokens/forward), 907.3 tokens/s; tokens per step: 1 in 25 steps, 2 in 11, 3 in 5, 4 in 15');
  });

  test('AR: no histogram clause', () => {
    expect(runSummary({ ...base, mode: 'ar', draft: 0, acceptHistogram: [], nfe: 120, tokensPerNfe: 1 }, 'cpu')).toBe('[ar, cpu] 120 tokens in 120 forwards (1.00 tokens/forward), 907.3 tokens/s');
  });
});

describe('tidarc run option limits', () => {
  test('--top-p 0 names the open lower bound', async () => {
    const r = await runTidarc('run', 'no-such-dir', '--prompt', 'a', '--top-p', '0');
    expectOneErrorLine(r, '(--top-p = 0); allowed: a number above 0, at most 1');
    expect(r.stderr).not.toContain('e-324');
  });

  test(`--draft has compile's limit, 1 to ${MAX_DRAFT_COMPILE}`, async () => {
    const run = await runTidarc('run', 'no-such-dir', '--prompt', 'a', '--draft', String(MAX_DRAFT_COMPILE + 1));
    expectOneErrorLine(run, `(--draft = ${MAX_DRAFT_COMPILE + 1}); allowed: an integer from 1 to ${MAX_DRAFT_COMPILE}`);
  });
});
