/**
 * Pinned host memory (CudaDevice.allocPinned / freePinned: the addon's hostAlloc / hostFree,
 * runtime/src/cuda/cuda_napi.cc) when an address comes back: a block freed with freePinned whose
 * ArrayBuffer is collected only after another allocPinned got the same address. The collected
 * buffer's finalizer used to look its block up by address, so it released the NEW block (freed
 * its memory and dropped it from the live list), and freePinned of the new block then failed
 * ("hostFree: not an ArrayBuffer of hostAlloc"); upload()'s staging blocks, replaced by a larger
 * one when an upload needs it, hit it in `tidarc run --backend cuda` on the emulated driver. Now
 * each block is its own record: the new one stays live, carries its bytes to the device, and is
 * freed once. In a child process with --expose-gc (the addon picks its driver once per process).
 * Tagged: a C++ compiler (the emulated driver); [gpu] the same on a GPU.
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
const root = mkdtempSync(join(tmpdir(), 'tidarc-pinned-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.for([
  { on: 'emulated' as const, label: 'the emulated driver', skip: !cxx.found },
  { on: 'gpu' as const, label: '[gpu] the GPU', skip: !gpu },
])('pinned blocks on $label', ({ on, skip }) => {
  let rounds: { freeError: string | null; roundTrip: boolean }[];
  beforeAll(async () => {
    if (skip) return;
    const { env } = await opsModule(root, on);
    const { stdout } = await exec(process.execPath, ['--expose-gc', '--import', 'tsx', join(here, 'fixtures', 'pinned-reuse-child.ts')], { cwd: packageRoot(), env, timeout: 120_000 });
    rounds = JSON.parse(stdout.trim().split('\n').pop()!) as typeof rounds;
  }, 300_000);

  test.skipIf(skip)('a block allocated where a freed one was stays live after the freed one\'s buffer is collected', () => {
    expect(rounds).toHaveLength(4);
    for (const r of rounds) expect(r).toEqual({ freeError: null, roundTrip: true });
  });
});
