/**
 * Programmatic dependent launch on the cuda backend, end to end on the emulated driver (compute
 * capability 9.0, cuLaunchKernelEx; fixtures/pdl-child.ts): a small model decodes greedy TiDAR
 * with PDL on (loadModel's default where allowed) and off (pdl: false, the CLI's --no-pdl), each
 * with CUDA graphs and launch by launch:
 *   - the four runs give the same tokens;
 *   - with PDL on, every kernel launch right after another kernel launch is programmatic (outside
 *     graphs and inside the captured ones; one after a copy is plain: CudaDevice.launch), and the
 *     emulator, which checks that no kernel of a programmatic launch touches
 *     global memory before its griddepcontrol.wait, reports no finding (a finding fails the
 *     launch, and is printed on stderr);
 *   - with PDL off none is;
 *   - kernels whose manifest has no programmaticLaunch (an older compile) run without PDL even
 *     when asked for (pdl: true is not an error), and the reason says so.
 * Tagged: a C++ compiler (the emulated driver and modules).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import type { DeviceStats } from '../../../src/runtime/cuda/device.js';
import { packageRoot } from '../../../src/util/paths.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-pdl-model-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The cuda backend tests' model (emulated-backend.test.ts): its kernels compile once into the shared kernel cache. */
const SMALL = smallSpec('cudasmall', [2]);
const TOKENS = 4;

interface Run { tokens: number[]; decision: { on: boolean; why: string }; modelPdl?: { on: boolean; why: string }; stats: DeviceStats; hasField: boolean }
interface Out { onGraphs: Run; onLaunches: Run; offGraphs: Run; offLaunches: Run; older: Run; olderEntry: boolean }

describe.skipIf(!cxx.found)('PDL on the emulated driver', () => {
  let out: Out;
  let stderr: string;
  beforeAll(async () => {
    const dir = await writeRandomModel(join(root, 'model'), SMALL, 5);
    const r = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'pdl-child.ts'), dir, await sharedKernelCache(), root, String(TOKENS)], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: await sharedEmulatedDriver() }, maxBuffer: 64 << 20, timeout: 840_000,
    });
    stderr = r.stderr;
    out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Out;
  }, 900_000);

  test('PDL is on by default on the 9.0 emulated device, and off when asked', () => {
    expect(out.onGraphs.hasField).toBe(true);
    for (const r of [out.onGraphs, out.onLaunches]) expect(r.decision.on, r.decision.why).toBe(true);
    expect(out.onGraphs.modelPdl).toEqual(out.onGraphs.decision);
    for (const r of [out.offGraphs, out.offLaunches]) expect(r.decision).toEqual({ on: false, why: expect.stringMatching(/--no-pdl/) });
  });

  test('greedy tokens are the same with PDL on and off, graphs on and off', () => {
    expect(out.onGraphs.tokens).toHaveLength(TOKENS);
    for (const r of [out.onLaunches, out.offGraphs, out.offLaunches, out.older]) expect(r.tokens).toEqual(out.onGraphs.tokens);
  });

  test('with PDL on every kernel launch that follows a kernel is programmatic, in graphs and launch by launch; off, none is', () => {
    // Plain with PDL on: the ops module's ABI probe (one per runner: a probe with nothing to overlap), and every
    // launch whose predecessor on the stream (or in the capture) is a copy, not a kernel (CudaDevice.launch): the
    // prefill's embed (after the ids / positions / prefix uploads), its two lm_head GEMMs (each after its row ids'
    // upload), each decode step's embed (after the step inputs' uploadAsync: in a graph, its first node) and the
    // first step's lm_head GEMM (after the never-emit bias's one upload). Graphs: 45 of 51 launches outside graphs
    // (probe, prefill 3, the first, uncaptured step 2) and 46 of 48 graph kernels (each of 2 replays' embed);
    // launch by launch: 91 of 99 (probe, prefill 3, 3 steps' embeds, the first step's lm_head). Before launches
    // after copies were made plain these were 50/51, 48/48 and 98/99. On top, with PDL on, the load's PDL probe
    // (pdl-probe.ts): its ABI read and its first empty kernel plain, the second programmatic, and one graph of a
    // plain and a programmatic node: 46 of 54 and 47 of 50 with graphs, 92 of 102 and 1 of 2 graph kernels without.
    // Fold-norms (on by default for this bf16 model) removes 2L = 4 rmsnorm launches from each pass (all programmatic:
    // none follows a copy): the prefill and the uncaptured first step 8 (46 -> 38 of 54 -> 46), each of 2 replays 4
    // (47 -> 39 of 50 -> 42), launch by launch the prefill and 3 steps 16 (92 -> 76 of 102 -> 86).
    const plain = (r: Run): number[] => [r.stats.kernelLaunches - r.stats.programmaticLaunches, r.stats.graphKernels - r.stats.graphProgrammaticKernels];
    expect(plain(out.onGraphs)).toEqual([8, out.onGraphs.stats.graphLaunches]);
    expect(plain(out.onLaunches)).toEqual([10, 1]);
    for (const r of [out.onGraphs, out.onLaunches]) {
      expect(r.stats.kernelLaunches).toBeGreaterThan(10);
      expect(r.stats.programmaticLaunches).toBeGreaterThan(10);
    }
    expect([out.onGraphs.stats.programmaticLaunches, out.onGraphs.stats.kernelLaunches, out.onGraphs.stats.graphProgrammaticKernels, out.onGraphs.stats.graphKernels]).toEqual([38, 46, 39, 42]);
    expect([out.onLaunches.stats.programmaticLaunches, out.onLaunches.stats.kernelLaunches]).toEqual([76, 86]);
    expect(out.onGraphs.stats.graphKernels).toBeGreaterThan(2);  // the steps replayed captured graphs
    expect([out.onLaunches.stats.graphLaunches, out.onLaunches.stats.graphKernels]).toEqual([1, 2]);  // the probe's graph only
    for (const r of [out.offGraphs, out.offLaunches]) expect([r.stats.programmaticLaunches, r.stats.graphProgrammaticKernels]).toEqual([0, 0]);
  });

  test('the emulator reports no finding', () => {
    expect(stderr).not.toMatch(/"finding"|finding/i);
  });

  test('kernels whose manifest has no programmaticLaunch run without PDL, even when asked, and say why', () => {
    expect(out.olderEntry).toBe(true);
    expect(out.older.hasField).toBe(false);
    expect(out.older.decision).toEqual({ on: false, why: expect.stringMatching(/manifest has no programmaticLaunch/) });
    expect([out.older.stats.programmaticLaunches, out.older.stats.graphProgrammaticKernels]).toEqual([0, 0]);
    expect(out.older.stats.kernelLaunches).toBeGreaterThan(10);
  });
});
