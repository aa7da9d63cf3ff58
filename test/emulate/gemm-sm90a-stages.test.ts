/**
 * The sm_90a GEMM's ring depth is a per-kernel choice (src/codegen/gemm-sm90a.ts sm90aStages;
 * Qwen3-8B's o and down kernels take 6): the unit rendered at 4 stages and at 6, compiled UNCHANGED
 * onto the SIMT emulator, bf16 200 x 600 (10 k tiles, the last partial: the 6-stage ring wraps),
 * bias and residual add, M = 20 (token tile 32, one consumer warpgroup) and M = 136 (two):
 *   - each depth against float64, with no emulator findings;
 *   - every output bitwise the same at both depths: the depth only says how many k tiles are
 *     in flight, never the order of a sum;
 *   - the 6-stage kernel launched with the 4-stage ring's shared memory is an out-of-bounds
 *     finding: a launch must take the kernel's own sharedBytes (the manifest's, as the runtime does);
 *   - nvcc -arch=sm_90a: the 6-stage kernels without spills or stack.
 * The mbarrier mutants at 6 stages: gemm-sm90a-mutation.test.ts. Tagged: g++, nvcc.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import { parsePtxasReport } from '../../src/build/ptxas.js';
import type { PtxasReport } from '../../src/codegen/manifest.js';
import { ARCHES } from '../../src/codegen/arch.js';
import type { GemmShape } from '../../src/codegen/gemm-plan.js';
import { SM90A_STAGES, sm90aSharedBytes, sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { randomGemmProblem, referenceGemm, worstRatio } from '../helpers/gemm.js';
import { type Sm90aRun, buildSm90aHarness, runSm90a, writeSm90aUnit } from './gemm-sm90a-emu.js';

const cxx = await findCxx();
const nvcc = await findNvcc();
const exec = promisify(execFile);
let ptxas: { symbol: string; report: PtxasReport | undefined }[] = [];
const SHAPE: GemmShape = { n: 200, k: 600, dtype: 'bf16' };
const MS = [20, 136];
const DEPTHS = [SM90A_STAGES, 6] as const;
const root = mkdtempSync(join(tmpdir(), 'tidarc-sm90a-stages-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const runs = new Map<string, Sm90aRun>();  // `${stages}:${m}`
const shared = new Map<string, number>();
let short: Sm90aRun | undefined;  // the 6-stage M = 20 kernel given the 4-stage ring's bytes
const p = randomGemmProblem(SHAPE, Math.max(...MS), 23);

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  await runPool([...DEPTHS], 2, async (stages) => {
    const dir = join(root, `s${stages}`);
    mkdirSync(dir);
    const unit = writeSm90aUnit(dir, SHAPE, MS, 1, ['test'], stages);
    const exe = join(dir, 'gemm');
    await buildSm90aHarness(cxx.tool.path, SHAPE, unit, objects, exe);
    for (const m of MS) {
      const kernel = unit.kernels.find((k) => k.tileT === sm90aTokenTile(m))!;
      shared.set(`${stages}:${m}`, kernel.sharedBytes);
      runs.set(`${stages}:${m}`, await runSm90a(exe, dir, SHAPE, unit, kernel, p, { rows: m, bias: true, accumulate: true }));
    }
    if (stages === 6 && nvcc.found) {
      const { stderr } = await exec(nvcc.tool.path, ['-std=c++17', '-O3', '-cubin', '-Xptxas', '-v', ARCHES.sm_90a.gencode, `-I${unit.cudaDir}`, '-o', join(dir, 'u.cubin'), unit.source], { maxBuffer: 64 << 20 });
      const r = parsePtxasReport(stderr)['sm_90a'] ?? {};
      ptxas = unit.kernels.map((k) => ({ symbol: k.symbol, report: r[k.symbol] }));
    }
    if (stages === 6) {
      const kernel = unit.kernels.find((k) => k.tileT === sm90aTokenTile(20))!;
      short = await runSm90a(exe, dir, SHAPE, unit, { ...kernel, sharedBytes: sm90aSharedBytes(kernel.tileT, SM90A_STAGES, kernel.blockW) }, p, { rows: 20, launches: 1 });
    }
  });
}, 600_000);

describe.skipIf(!cxx.found)('the sm_90a GEMM at 4 and 6 stages', () => {
  test.for(DEPTHS.flatMap((s) => MS.map((m) => [`${s} stages, M = ${m}`, s, m] as const)))('%s: bias + residual vs float64, no findings, launched with its ring\'s shared memory', ([, s, m]) => {
    const run = runs.get(`${s}:${m}`)!;
    expect(run.messages, run.messages.join('\n')).toEqual([]);
    expect(run.completed).toBe(true);
    const { ref, bound } = referenceGemm(SHAPE, p, m, 1, { bias: true, accumulate: true });
    expect(worstRatio(run.out, ref, bound)).toBeLessThanOrEqual(1);
    const tileT = sm90aTokenTile(m);
    expect(shared.get(`${s}:${m}`)).toBe(sm90aSharedBytes(tileT, s, tileT <= 128 ? 64 : 128));
  });

  test.skipIf(!nvcc.found)('nvcc -arch=sm_90a: the 6-stage kernels without spills or stack', () => {
    expect(ptxas).toHaveLength(MS.length);
    for (const { symbol, report } of ptxas) {
      expect(report, symbol).toBeDefined();
      expect(report!.spillStoreBytes + report!.spillLoadBytes + report!.stackBytes, symbol).toBe(0);
    }
  });

  test('the 6-stage kernel launched with the 4-stage ring\'s shared memory is caught', () => {
    expect(Object.keys(short!.counts), short!.messages.join('\n')).toContain('out-of-bounds');
  });

  test.for(MS.map((m) => [m] as const))('M = %i: every output bitwise the same at 4 and 6 stages', ([m]) => {
    const a = runs.get(`${SM90A_STAGES}:${m}`)!.out, b = runs.get(`6:${m}`)!.out;
    expect(new Uint32Array(b.buffer, b.byteOffset, b.length)).toEqual(new Uint32Array(a.buffer, a.byteOffset, a.length));
  });
});
