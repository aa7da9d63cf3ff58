/**
 * CUDA graphs through CudaDevice (src/runtime/cuda/device.ts) on the emulated driver
 * (runtime/emu/fake_cuda_streams.cpp): a captured sequence of GPU operators replayed gives the
 * same bytes as the same launches one by one; a replay reads its inputs as they are when it
 * runs (pinned memory an in-graph upload reads, or a device buffer changed between replays);
 * capture runs nothing; one replay is one graph launch and no kernel launch in the stats; a
 * synchronous download inside a capture is refused by the driver, as on a GPU, and leaves no
 * graph and a working device. In a child process: the addon picks its driver once per process.
 * Tagged: a C++ compiler; and [gpu] the same on the real driver where a GPU and nvcc are.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { packageRoot } from '../../../src/util/paths.js';
import { gpuAvailable, opsModule } from '../../helpers/ops-module.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const gpu = await gpuAvailable();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-graphs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface ChildOut {
  direct1: string; direct2: string; direct3: string;
  untouchedByCapture: boolean;
  graph: { kernels: number; uploads: number; uploadBytes: number };
  stats: Record<string, number>;
  replay1: string; replay2: string; replay3: string; replay1again: string;
  forbidden: { code: string; message: string; cuda: string } | string;
  afterForbidden: string;
  loadInCapture: string;
  afterLoadInCapture: string;
  timing: { gpuMs: number; hostMs: number };
}

describe.for([
  { on: 'emulated' as const, label: 'the emulated driver', skip: !cxx.found },
  { on: 'gpu' as const, label: '[gpu] the GPU', skip: !gpu },
])('CUDA graphs on $label', ({ on, skip }) => {
  let out: ChildOut;
  beforeAll(async () => {
    if (skip) return;
    const { module, env } = await opsModule(root, on);
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'graph-child.ts'), module], {
      cwd: packageRoot(), env, maxBuffer: 16 << 20, timeout: 240_000,
    });
    out = JSON.parse(stdout.trim().split('\n').pop()!) as ChildOut;
  }, 600_000);

  test.skipIf(skip)('the inputs differ, so equal bytes below mean something', () => {
    expect(new Set([out.direct1, out.direct2, out.direct3]).size).toBe(3);
  });

  test.skipIf(skip)('a replay gives the bytes of the same launches one by one', () => {
    expect(out.replay1).toBe(out.direct1);
  });

  test.skipIf(skip)('a replay reads the inputs as they are when it runs', () => {
    expect(out.replay2).toBe(out.direct2);  // pinned memory rewritten between replays (in-graph upload)
    expect(out.replay3).toBe(out.direct3);  // the device buffer re-uploaded between replays
    expect(out.replay1again).toBe(out.direct1);
  });

  test.skipIf(skip)('capture records without running; one replay is one graph launch and no kernel launch', () => {
    expect(out.untouchedByCapture).toBe(true);
    expect(out.graph).toEqual({ kernels: 4, uploads: 1, uploadBytes: 4 * 3 * 64 });
    expect(out.stats).toMatchObject({ kernelLaunches: 0, graphLaunches: 1, graphKernels: 4, uploads: 1, uploadBytes: 4 * 3 * 64 });
  });

  test.skipIf(skip)('a synchronous download inside a capture is refused as on a GPU; no graph, the device works on', () => {
    // The emulated driver says UNSUPPORTED; a GPU may say IMPLICIT (a legacy-stream copy against a capturing blocking stream).
    expect(out.forbidden).toMatchObject({ code: 'runtime', cuda: expect.stringMatching(/^CUDA_ERROR_STREAM_CAPTURE_(UNSUPPORTED|IMPLICIT)$/) });
    expect((out.forbidden as { message: string }).message).toMatch(/^CUDA: cannot download from f32\[120\]: cuMemcpyDtoH failed: CUDA_ERROR_STREAM_CAPTURE_(UNSUPPORTED \(900\)|IMPLICIT \(906\))/);
    expect(out.afterForbidden).toBe(out.direct2);
  });

  test.skipIf(skip || on !== 'emulated')('the emulated driver refuses a module load during a capture (load before capturing)', () => {
    expect(out.loadInCapture).toBe('CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED');
    expect(out.afterLoadInCapture).toBe(out.direct3);
  });

  test.skipIf(skip)('CUDA events time the GPU work of a replay', () => {
    expect(out.timing.gpuMs).toBeGreaterThanOrEqual(0);
    expect(out.timing.hostMs).toBeGreaterThan(0);
  });
});
