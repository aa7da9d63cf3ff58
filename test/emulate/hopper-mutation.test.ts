/**
 * The Hopper checks can fail: each mutant is a copy of the sm_90a GEMM tile
 * (fixtures/hopper_gemm_tile.cu) with one classic TMA / mbarrier / wgmma bug, run on the emulator
 * (bf16, 128 x 128 x 256: 4 k-tiles through the 2-stage ring), and each must be caught by a
 * finding of its kind and, where the bug corrupts data, by a mismatch against float64.
 * Tagged: g++.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import { buildEmulatorRuntime } from '../../src/emulate/emulator-build.js';
import { worstRatio } from '../helpers/gemm.js';
import { GEMM_KERNEL, type GemmCase, type HopperRun, buildHopperHarness, gemmArgs, gemmProblem, runHopper } from './hopper-emu.js';

interface Mutant {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly finding: 'tma' | 'mbarrier' | 'wgmma' | 'descriptor';
  readonly mismatch: boolean;
}

const MUTANTS: readonly Mutant[] = [
  { name: 'the consumer reads a stage without waiting on its full mbarrier', from: '    mbarrier_wait(&full[s], (kt / kStages) & 1);\n', to: '', finding: 'tma', mismatch: true },
  { name: 'the consumer waits for the wrong phase parity', from: 'mbarrier_wait(&full[s], (kt / kStages) & 1);', to: 'mbarrier_wait(&full[s], (kt / kStages + 1) & 1);', finding: 'tma', mismatch: true },
  { name: "the producer refills a stage without waiting for the consumer's release", from: '        if (kt >= kStages) mbarrier_wait(&empty[s], (kt / kStages - 1) & 1);  // the consumer released it\n', to: '', finding: 'tma', mismatch: false },
  { name: 'a wrong swizzle in the B descriptor (64B for a 128B-swizzled copy)', from: 'smem_desc(ring + s * kStageBytes<N> + kTileABytes, Swizzle::b128, 16, 1024)', to: 'smem_desc(ring + s * kStageBytes<N> + kTileABytes, Swizzle::b64, 16, 1024)', finding: 'descriptor', mismatch: true },
  { name: 'no wgmma.wait_group before the accumulators are read', from: '    wgmma_wait<0>();\n', to: '', finding: 'wgmma', mismatch: true },
  { name: 'no wgmma.fence before the first wgmma', from: '    wgmma_fence();\n', to: '', finding: 'wgmma', mismatch: false },
  { name: 'expect_tx announces only the A tile', from: 'mbarrier_arrive_expect_tx(&full[s], kStageBytes<N>);', to: 'mbarrier_arrive_expect_tx(&full[s], kTileABytes);', finding: 'mbarrier', mismatch: false },
];

const cxx = await findCxx();
const GEMM: GemmCase = { kernel: 'bf16_n64', dtype: 'bf16', m: 128, n: 128, k: 256 };
const root = mkdtempSync(join(tmpdir(), 'tidarc-hopper-mut-'));
const results = new Map<string, { run: HopperRun; worst: number }>();

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await buildEmulatorRuntime(cxx.tool.path, join(root, 'runtime'));
  const { input, ref, bound } = gemmProblem(GEMM, root, 11);
  const source = readFileSync(GEMM_KERNEL, 'utf8');
  await runPool(MUTANTS, 2, async (m, i) => {
    if (!source.includes(m.from)) throw new Error(`mutant "${m.name}": pattern not found in hopper_gemm_tile.cu`);
    const dir = join(root, `mutant${i}`);
    mkdirSync(dir);
    const kernel = join(dir, 'hopper_gemm_tile.cu');
    writeFileSync(kernel, source.replace(m.from, m.to));
    const exe = join(dir, 'hopper');
    await buildHopperHarness(cxx.tool.path, kernel, objects, exe, true);
    const run = await runHopper(exe, gemmArgs(GEMM, input), join(dir, 'out.bin'));
    results.set(m.name, { run, worst: worstRatio(new Float32Array(run.out.buffer, run.out.byteOffset, GEMM.m * GEMM.n), ref, bound) });
  });
}, 600_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('mutants of the sm_90a GEMM tile are caught', () => {
  test.for(MUTANTS.map((m) => [m.name, m] as const))('%s', ([, m]) => {
    const { run, worst } = results.get(m.name)!;
    expect(Object.keys(run.counts), run.messages.join('\n')).toContain(m.finding);
    if (m.mismatch) expect(worst).toBeGreaterThan(1);
  });
});
