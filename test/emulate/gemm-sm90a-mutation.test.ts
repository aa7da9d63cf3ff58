/**
 * The emulator's Hopper checks catch the classic bugs in the sm_90a GEMM itself: each mutant is
 * the generated unit (bf16 128 x 384: 6 k tiles through the 4-stage ring, M = 20) built against
 * a copy of tidarc_gemm_sm90a.cuh with one bug, and must be caught by a finding of its kind
 * and, where the bug corrupts data, by a mismatch against float64. Tagged: g++.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { buildEmulatorRuntime } from '../../src/emulate/emulator-build.js';
import { findCxx } from '../../src/build/toolchain.js';
import type { GemmShape } from '../../src/codegen/gemm-plan.js';
import { randomGemmProblem, referenceGemm, worstRatio } from '../helpers/gemm.js';
import { type Sm90aRun, buildSm90aHarness, runSm90a, writeSm90aUnit } from './gemm-sm90a-emu.js';

interface Mutant {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly finding: 'tma' | 'wgmma' | 'descriptor';
  readonly mismatch: boolean;
}

const MUTANTS: readonly Mutant[] = [
  { name: 'a consumer reads a stage without waiting on its full mbarrier', from: '    mbarrier_wait(&full[s], (kt / C::kStages) & 1);\n', to: '', finding: 'tma', mismatch: true },
  { name: 'a wrong swizzle in the token tile descriptor (64B for a 128B-swizzled copy)', from: 'smem_desc(stage + S::kWBytes, Swizzle::b128, 16, 1024)', to: 'smem_desc(stage + S::kWBytes, Swizzle::b64, 16, 1024)', finding: 'descriptor', mismatch: true },
  { name: 'no wgmma.wait_group before the accumulators are read', from: '  wgmma_wait<0>();  // nobody refills the last stage: no release\n', to: '', finding: 'wgmma', mismatch: true },
  { name: 'a consumer releases the stage its in-flight wgmmas still read', from: 'mbarrier_arrive(&empty[(kt - 1) % C::kStages]);', to: 'mbarrier_arrive(&empty[kt % C::kStages]);', finding: 'tma', mismatch: false },
];

const cxx = await findCxx();
const SHAPE: GemmShape = { n: 128, k: 384, dtype: 'bf16' };
const M = 20;
const root = mkdtempSync(join(tmpdir(), 'tidarc-sm90a-mut-'));
const results = new Map<string, { run: Sm90aRun; worst: number }>();
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await buildEmulatorRuntime(cxx.tool.path, join(root, 'runtime'));
  const p = randomGemmProblem(SHAPE, M, 17);
  const { ref, bound } = referenceGemm(SHAPE, p, M, 1);
  await runPool(MUTANTS, 2, async (m, i) => {
    const dir = join(root, `mutant${i}`);
    mkdirSync(dir);
    const unit = writeSm90aUnit(dir, SHAPE, [M], 1);
    const header = join(unit.cudaDir, 'tidarc_gemm_sm90a.cuh');
    const source = readFileSync(header, 'utf8');
    if (!source.includes(m.from)) throw new Error(`mutant "${m.name}": pattern not found in tidarc_gemm_sm90a.cuh`);
    writeFileSync(header, source.replace(m.from, m.to));
    const exe = join(dir, 'gemm');
    await buildSm90aHarness(cxx.tool.path, SHAPE, unit, objects, exe);
    const run = await runSm90a(exe, dir, SHAPE, unit, unit.kernels[0]!, p, { rows: M });
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
