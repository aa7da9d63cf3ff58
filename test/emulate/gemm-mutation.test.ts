/**
 * The GEMM checks can fail: each mutant is a copy of tidarc_gemm.cuh with one classic bug,
 * run on a split-K 3 kernel (N = 197, K = 1032, M = 20, bias on) under the emulator (twice in
 * a row on the same split-K counters where a mutant's harm shows only in the next launch), and
 * each must be caught by a mismatch against the float64 reference or by a finding of its kind
 * (the handoff's reading-side mutants by a finding alone: their results are right on the emulator).
 * Tagged: g++.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import type { GemmShape } from '../../src/codegen/gemm-plan.js';
import { buildGemmEmulator, type GemmRunResult, runGemmEmulator } from '../../src/emulate/gemm-emulator.js';
import { gemmInputs, randomGemmProblem, referenceGemm, worstRatio, writeGemmUnit } from '../helpers/gemm.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

interface Mutant {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly caughtBy: 'mismatch' | 'race' | 'cp-async' | 'out-of-bounds' | 'fence' | 'stale-l1';
  /** Launches in a row (default 1); the last one's output is checked. */
  readonly launches?: number;
  /** What a finding of `caughtBy` must say (the handoff's: the buffer, the writer CTA and what is missing). */
  readonly message?: RegExp;
}

const MUTANTS: readonly Mutant[] = [
  { name: 'drop the barrier after cp.async.wait (a stage is refilled while read)', from: "    __syncthreads();                  // everyone's have; and everyone is done with tile t-1's stage\n", to: '', caughtBy: 'race' },
  { name: 'swap the two 8-row halves of the A fragment', from: 'sx + gemm_swizzle(wm0 + i * 16 + (mi % 2) * 8 + lane % 8', to: 'sx + gemm_swizzle(wm0 + i * 16 + (1 - mi % 2) * 8 + lane % 8', caughtBy: 'mismatch' },
  { name: 'swap the k halves of the B fragment', from: 'b[j][0] = r[0], b[j][1] = r[1]', to: 'b[j][0] = r[1], b[j][1] = r[0]', caughtBy: 'mismatch' },
  { name: 'wait for one cp.async group too few', from: 'cp_async_wait<C::kStages - 2>();', to: 'cp_async_wait<C::kStages - 1>();', caughtBy: 'cp-async' },
  { name: 'split-K sum forgets the last part', from: 'for (int s = 0; s < C::kSplitK; ++s)', to: 'for (int s = 0; s < C::kSplitK - 1; ++s)', caughtBy: 'mismatch' },
  { name: 'activations copied into the stage being read', from: 'gemm_load_x<C>(a, x_row, stage_x(next_stage), kt0 + next);', to: 'gemm_load_x<C>(a, x_row, stage_x(stage), kt0 + next);', caughtBy: 'cp-async' },
  { name: 'a part takes its ticket without fencing its partials first', from: '  __threadfence();  // this thread\'s partials are visible device-wide before its CTA\'s ticket\n', to: '', caughtBy: 'fence' },
  // The reading side of the handoff (emu_global.cpp): right results on the emulator, where every load sees the latest store.
  { name: 'the last CTA reads the parts without fencing after its ticket (no acquire)', from: '      __threadfence();  // the count is seen before the other parts\' partials are read\n', to: '', caughtBy: 'fence',
    message: /^ld\.global\.cg reads byte \d+ of 'workspace' .* that block \(\d+,\d+,[01]\) thread \(\d+,0,0\) published, with no __threadfence after this CTA's atomicAdd \(the acquire\)/ },
  { name: 'the last CTA reads the parts with plain loads (L1-cacheable), not ld.global.cg', from: 'ld_global_cg_f32(a.workspace + s * part + static_cast<size_t>(r) * C::kN + n)', to: 'a.workspace[s * part + static_cast<size_t>(r) * C::kN + n]', caughtBy: 'stale-l1',
    message: /^a plain \(L1-cacheable\) load reads byte \d+ of 'workspace' .* that block \(\d+,\d+,[01]\) thread \(\d+,0,0\) of this launch stored/ },
  { name: 'the last CTA leaves its counter at split-K (the next launch sums nothing)', from: '      *counter = 0;     // the next launch (a graph replay) starts from 0\n', to: '', caughtBy: 'mismatch', launches: 2 },
  { name: 'padding rows written past the end of out', from: '      if (r >= a.rows) continue;\n', to: '', caughtBy: 'out-of-bounds' },
];

const cxx = await findCxx();
const SHAPE: GemmShape = { n: 197, k: 1032, dtype: 'bf16' };
const M = 20;
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-gemm-mut-'));
const results = new Map<string, { run: GemmRunResult; worst: number }>();

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  const problem = randomGemmProblem(SHAPE, M, 5);
  const { ref, bound } = referenceGemm(SHAPE, problem, M, 3, { bias: true });
  await runPool(MUTANTS, 2, async (mutant, i) => {
    const dir = join(root, `mutant${i}`);
    const { source, cudaDir, plans } = writeGemmUnit(dir, SHAPE, [M], 3);
    const header = join(cudaDir, 'tidarc_gemm.cuh');
    const text = readFileSync(header, 'utf8');
    if (!text.includes(mutant.from)) throw new Error(`mutant "${mutant.name}": pattern not found in tidarc_gemm.cuh`);
    writeFileSync(header, text.replace(mutant.from, mutant.to));
    const exe = join(dir, 'emu');
    await buildGemmEmulator(cxx.tool.path, source, cudaDir, plans, objects, exe);
    const run = await runGemmEmulator(exe, plans[0]!, { ...gemmInputs(problem, M, { bias: true }), ...(mutant.launches ? { launches: mutant.launches } : {}) }, dir, 'run');
    results.set(mutant.name, { run, worst: worstRatio(run.out, ref, bound) });
  });
}, 600_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('mutants of the GEMM kernel are caught', () => {
  test.for(MUTANTS.map((m) => [m.name, m] as const))('%s', ([, m]) => {
    const { run, worst } = results.get(m.name)!;
    if (m.caughtBy === 'mismatch') expect(worst).toBeGreaterThan(1);
    else expect(Object.keys(run.counts)).toContain(m.caughtBy);
    if (m.message) expect(run.findings.filter((f) => f.kind === m.caughtBy).map((f) => f.message)).toContainEqual(expect.stringMatching(m.message));
  });
});
