/**
 * A greedy TiDAR step reads lm_head's weights once (src/runtime/cuda/gpu-decode-step.ts): one
 * pass over the verify rows and every n's candidate next-draft rows, then tidarc_op_next_drafts
 * picks the accepted n's. On the emulated driver (fixtures/one-head-pass-child.ts), the same
 * random model decoded by a one-pass runner and by a two-pass one (oneHeadPass: false, the
 * next drafts' own pass after acceptance): every step emits the same tokens and next drafts,
 * with bit-identical lse for the verify and next-draft rows (a row's statistics do not depend on
 * the other rows of its launch), and launches 3 kernels fewer (the second lm_head GEMM and its
 * row statistics' merge; draft_rows and verify become next_drafts). Every other step's draft is
 * greedy AR's token (a random model's drafts are rarely right), so both accepted counts occur
 * and both of k = 2's candidate blocks are picked from; the tokens are still greedy AR's.
 * Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { packageRoot } from '../../../src/util/paths.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-one-head-pass-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The cuda backend tests' model (emulated-backend.test.ts): its kernels are already in the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
const TOKENS = 10;

interface Step { n: number; tokens: number[]; nextDrafts: number[]; lseRows: number[]; lseNext: number[]; kernelLaunches: number }
interface Run { tokens: number[]; steps: Step[] }

describe.skipIf(!cxx.found)('greedy TiDAR with one lm_head pass a step (emulated driver)', () => {
  test('the same tokens, next drafts and lse bits as two passes, 3 launches fewer a step', { timeout: 900_000 }, async () => {
    const dir = await writeRandomModel(root, SMALL, 11);
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'one-head-pass-child.ts'), dir, await sharedKernelCache(), String(TOKENS)], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 64 << 20, timeout: 840_000,
    });
    const { ar, once, twice } = JSON.parse(stdout.trim().split('\n').pop()!) as { ar: number[]; once: Run; twice: Run };
    expect(once.tokens).toHaveLength(TOKENS);
    expect(once.tokens).toEqual(ar);
    expect(twice.tokens).toEqual(ar);
    expect(once.steps.map(({ kernelLaunches: _, ...s }) => s)).toEqual(twice.steps.map(({ kernelLaunches: _, ...s }) => s));
    expect(new Set(once.steps.map((s) => s.n))).toEqual(new Set([1, 2]));
    for (const [i, s] of once.steps.entries()) expect(s.kernelLaunches, `step ${i}`).toBe(twice.steps[i]!.kernelLaunches - 3);
  });
});
