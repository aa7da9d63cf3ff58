/**
 * The Hopper checks can fail: each mutant is a copy of the sm_90a GEMM tile
 * (fixtures/hopper_gemm_tile.cu) with one classic TMA / mbarrier / wgmma bug, run on the emulator
 * (128 x 128 x 256: 4 k-tiles through the 2-stage ring; one consumer warpgroup in bf16, or two
 * in fp16 for the bugs of a shared release), and each must be caught by a
 * finding of its kind and, where the bug corrupts data, by a mismatch against float64.
 * Tagged: g++.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import { worstRatio } from '../helpers/gemm.js';
import { GEMM_KERNEL, type GemmCase, type HopperRun, buildHopperHarness, gemmArgs, gemmProblem, runHopper } from './hopper-emu.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';

interface Mutant {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly finding: 'tma' | 'mbarrier' | 'wgmma' | 'descriptor';
  readonly mismatch: boolean;
  /** The tile with two consumer warpgroups instead of one. */
  readonly twoConsumers?: boolean;
}

const MUTANTS: readonly Mutant[] = [
  { name: 'the consumer reads a stage without waiting on its full mbarrier', from: '    mbarrier_wait(&full[s], (kt / kStages) & 1);\n', to: '', finding: 'tma', mismatch: true },
  { name: 'the consumer waits for the wrong phase parity', from: 'mbarrier_wait(&full[s], (kt / kStages) & 1);', to: 'mbarrier_wait(&full[s], (kt / kStages + 1) & 1);', finding: 'tma', mismatch: true },
  { name: "the producer refills a stage without waiting for the consumer's release", from: '        if (kt >= kStages) mbarrier_wait(&empty[s], (kt / kStages - 1) & 1);  // the consumers released it\n', to: '', finding: 'tma', mismatch: false },
  { name: 'the empty mbarrier counts one consumer warpgroup of two', from: 'mbarrier_init(&empty[s], Consumers)', to: 'mbarrier_init(&empty[s], 1)', finding: 'tma', mismatch: false, twoConsumers: true },
  { name: 'a consumer warpgroup releases the stage its in-flight wgmmas read', from: 'mbarrier_arrive(&empty[(kt - 1) % kStages]);', to: 'mbarrier_arrive(&empty[kt % kStages]);', finding: 'tma', mismatch: false, twoConsumers: true },
  { name: 'a consumer releases the stage before wgmma.wait_group', from: '      wgmma_wait<0>();\n      if (t == 0) mbarrier_arrive(&empty[s]);', to: '      if (t == 0) mbarrier_arrive(&empty[s]);\n      wgmma_wait<0>();', finding: 'tma', mismatch: false },
  { name: 'a wrong swizzle in the B descriptor (64B for a 128B-swizzled copy)', from: 'smem_desc(ring + s * C::kStageBytes + C::kTileABytes, Swizzle::b128, 16, 1024)', to: 'smem_desc(ring + s * C::kStageBytes + C::kTileABytes, Swizzle::b64, 16, 1024)', finding: 'descriptor', mismatch: true },
  { name: 'no wgmma.wait_group before the accumulators are read', from: '  wgmma_wait<0>();  // nobody refills the last stage: no release\n', to: '', finding: 'wgmma', mismatch: true, twoConsumers: true },
  { name: 'no wgmma.fence before the first wgmma', from: '    wgmma_fence();\n', to: '', finding: 'wgmma', mismatch: false },
  { name: 'expect_tx announces only the A tile', from: 'mbarrier_arrive_expect_tx(&full[s], C::kStageBytes);', to: 'mbarrier_arrive_expect_tx(&full[s], C::kTileABytes);', finding: 'mbarrier', mismatch: false },
];

const cxx = await findCxx();
const GEMM: GemmCase = { kernel: 'bf16_n64', dtype: 'bf16', m: 128, n: 128, k: 256 };
const GEMM2: GemmCase = { kernel: 'fp16_n128x2', dtype: 'fp16', m: 128, n: 128, k: 256 };
const root = mkdtempSync(join(tmpdir(), 'tidarc-hopper-mut-'));
const results = new Map<string, { run: HopperRun; worst: number }>();

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  const problems = new Map([GEMM, GEMM2].map((c) => [c.kernel, gemmProblem(c, root, 11)]));
  const source = readFileSync(GEMM_KERNEL, 'utf8');
  await runPool(MUTANTS, 2, async (m, i) => {
    if (!source.includes(m.from)) throw new Error(`mutant "${m.name}": pattern not found in hopper_gemm_tile.cu`);
    const dir = join(root, `mutant${i}`);
    mkdirSync(dir);
    const kernel = join(dir, 'hopper_gemm_tile.cu');
    writeFileSync(kernel, source.replace(m.from, m.to));
    const exe = join(dir, 'hopper');
    await buildHopperHarness(cxx.tool.path, kernel, objects, exe, true);
    const gemm = m.twoConsumers ? GEMM2 : GEMM;
    const { input, ref, bound } = problems.get(gemm.kernel)!;
    const run = await runHopper(exe, gemmArgs(gemm, input), join(dir, 'out.bin'));
    results.set(m.name, { run, worst: worstRatio(new Float32Array(run.out.buffer, run.out.byteOffset, gemm.m * gemm.n), ref, bound) });
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
