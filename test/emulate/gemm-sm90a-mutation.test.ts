/**
 * The emulator's Hopper checks catch the classic bugs in the sm_90a GEMM itself: each mutant is
 * the generated unit (bf16 128 x 384: 6 k tiles through the 4-stage ring, M = 20: one consumer warpgroup;
 * split-K 3 for the split-K sum's mutants, M = 136 (two warpgroups) for the split mbarrier's count) built against a copy of tidarc_gemm_sm90a.cuh (or of the split-K
 * sum's tidarc_gemm.cuh) with one bug, and must be caught by a finding of its kind and, where the
 * bug corrupts data, by a mismatch against float64. The ring's mutants again at 6 stages (the depth
 * gemm-sm90a.ts sm90aStages gives Qwen3-8B's o and down kernels), on bf16 128 x 640: 10 k tiles, so
 * the deeper ring wraps too. Tagged: g++.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import type { GemmShape } from '../../src/codegen/gemm-plan.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { randomGemmProblem, referenceGemm, worstRatio } from '../helpers/gemm.js';
import { type Sm90aRun, buildSm90aHarness, runSm90a, writeSm90aUnit } from './gemm-sm90a-emu.js';

interface Mutant {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly finding: 'tma' | 'wgmma' | 'descriptor' | 'mbarrier' | 'fence';
  readonly mismatch: boolean;
  /** Split-K of the unit (default 1): the split-K sum's mutants run at 3 (2 k tiles a part). */
  readonly splitK?: 3;
  /** The header mutated (default tidarc_gemm_sm90a.cuh). */
  readonly file?: 'tidarc_gemm.cuh';
  /** Rows of the launch (default M = 20: token tile 32, one consumer warpgroup); 136: two (gemm-sm90a.ts sm90aBlockW). */
  readonly rows?: 136;
  /** The ring's depth (default 4, on SHAPE); 6: on DEEP_SHAPE. */
  readonly stages?: 6;
}

/** The mutants of the ring itself: run at 4 stages and again at 6. */
const RING_MUTANTS: readonly Mutant[] = [
  { name: 'a consumer reads a stage without waiting on its full mbarrier', from: '    mbarrier_wait(&full[s], (kt / C::kStages) & 1);\n', to: '', finding: 'tma', mismatch: true },
  { name: 'a consumer releases the stage its in-flight wgmmas still read', from: 'mbarrier_arrive(&empty[(kt - 1) % C::kStages]);', to: 'mbarrier_arrive(&empty[kt % C::kStages]);', finding: 'tma', mismatch: false },
  // One consumer warpgroup (M = 20) under an empty mbarrier that waits for two: the producer never refills stage 0 (6 k tiles, 4 stages; 10 k tiles, 6 stages).
  { name: 'the empty mbarrier counts two consumers whatever the config\'s kConsumers', from: 'mbarrier_init(&empty[s], S::kConsumers)', to: 'mbarrier_init(&empty[s], 2)', finding: 'mbarrier', mismatch: true },
];

const MUTANTS: readonly Mutant[] = [
  RING_MUTANTS[0]!,
  { name: 'a wrong swizzle in the token tile descriptor (64B for a 128B-swizzled copy)', from: 'smem_desc(stage + S::kWBytes, Swizzle::b128, 16, 1024)', to: 'smem_desc(stage + S::kWBytes, Swizzle::b64, 16, 1024)', finding: 'descriptor', mismatch: true },
  { name: 'no wgmma.wait_group before the accumulators are read', from: '  wgmma_wait<0>();  // nobody refills the last stage: no release\n', to: '', finding: 'wgmma', mismatch: true },
  RING_MUTANTS[1]!,
  RING_MUTANTS[2]!,
  // The consumers' split mbarrier (the split-K sum's sync), at M = 136 (two warpgroups). Counting one warpgroup, a phase
  // completes without the other, whose threads then pass their first wait at once and put both
  // their arrivals into one phase: the phases stop pairing up and a wait never completes. With no
  // wait, thread 0 takes the ticket before the other threads stored and fenced their partials: the
  // last CTA reads unpublished words.
  { name: 'the split-K sum\'s mbarrier counts one consumer warpgroup (128 of 256)', from: 'mbarrier_init(split_sync, 128 * S::kConsumers)', to: 'mbarrier_init(split_sync, 128)', finding: 'mbarrier', mismatch: true, splitK: 3, rows: 136 },
  // The shared split-K sum (tidarc_gemm.cuh) without its acquire: right results on the emulator;
  // thread 0's fence would reach the other consumers through the split mbarrier's phase.
  ...RING_MUTANTS.map((m) => ({ ...m, name: `${m.name}, 6 stages`, stages: 6 as const })),
  { name: 'the last CTA reads the parts without fencing after its ticket (no acquire)', file: 'tidarc_gemm.cuh', from: '      __threadfence();  // the count is seen before the other parts\' partials are read\n', to: '', finding: 'fence', mismatch: false, splitK: 3 },
  { name: 'the split-K sum\'s sync arrives on its mbarrier and never waits', from: 'mbarrier_arrive(split_sync), mbarrier_wait(split_sync, phase), phase ^= 1;', to: 'mbarrier_arrive(split_sync), phase ^= 1;', finding: 'fence', mismatch: true, splitK: 3 },
];

const cxx = await findCxx();
const SHAPE: GemmShape = { n: 128, k: 384, dtype: 'bf16' };
const DEEP_SHAPE: GemmShape = { n: 128, k: 640, dtype: 'bf16' };
const shapeOf = (m: Mutant): GemmShape => (m.stages ? DEEP_SHAPE : SHAPE);
const M = 20;
const root = mkdtempSync(join(tmpdir(), 'tidarc-sm90a-mut-'));
const results = new Map<string, { run: Sm90aRun; worst: number }>();
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  const problems = new Map([SHAPE, DEEP_SHAPE].map((s) => [s, randomGemmProblem(s, 136, 17)]));
  const key = (m: Mutant) => `${m.stages ?? 4}:${m.splitK ?? 1}:${m.rows ?? M}`;
  const refs = new Map(MUTANTS.map((m) => [key(m), referenceGemm(shapeOf(m), problems.get(shapeOf(m))!, m.rows ?? M, m.splitK ?? 1)]));
  await runPool(MUTANTS, 2, async (m, i) => {
    const dir = join(root, `mutant${i}`);
    mkdirSync(dir);
    const rows = m.rows ?? M;
    const { ref, bound } = refs.get(key(m))!;
    const shape = shapeOf(m);
    const unit = writeSm90aUnit(dir, shape, [rows], m.splitK ?? 1, ['test'], m.stages);
    if (unit.kernels[0]!.stages !== (m.stages ?? 4)) throw new Error(`mutant "${m.name}": rendered at ${unit.kernels[0]!.stages} stages`);
    const header = join(unit.cudaDir, m.file ?? 'tidarc_gemm_sm90a.cuh');
    const source = readFileSync(header, 'utf8');
    if (!source.includes(m.from)) throw new Error(`mutant "${m.name}": pattern not found in ${m.file ?? 'tidarc_gemm_sm90a.cuh'}`);
    writeFileSync(header, source.replace(m.from, m.to));
    const exe = join(dir, 'gemm');
    await buildSm90aHarness(cxx.tool.path, shape, unit, objects, exe);
    const run = await runSm90a(exe, dir, shape, unit, unit.kernels[0]!, problems.get(shape)!, { rows });
    results.set(m.name, { run, worst: worstRatio(run.out, ref, bound) });
  });
}, 600_000);

describe.skipIf(!cxx.found)('mutants of the sm_90a GEMM are caught', () => {
  test.for(MUTANTS.map((m) => [m.name, m] as const))('%s', ([, m]) => {
    const { run, worst } = results.get(m.name)!;
    expect(Object.keys(run.counts), run.messages.join('\n')).toContain(m.finding);
    if (m.mismatch) expect(worst).toBeGreaterThan(1);
  });
});
