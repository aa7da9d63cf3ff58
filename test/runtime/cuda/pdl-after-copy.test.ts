/**
 * CudaDevice makes a launch asked to be programmatic (PDL) programmatic only where a kernel launch
 * is right before it on the stream (device.ts launch): after an upload, download, device copy,
 * fill, graph launch, event record or capture, at the start of a capture and for the stream's
 * first launch it launches plainly, and stats count it as plain. On the emulated driver
 * (fixtures/pdl-after-copy-child.ts) with test/emulate/fixtures/pdl_kernels.cu: the early reader
 * (a global read before its grid_dependency_wait) runs clean only when the driver gets no PDL
 * attribute, and fails with a 'pdl' finding when it does (the last step shows that the attribute
 * does reach the driver after a kernel). In a child process: the addon picks its driver once per
 * process. Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { buildEmulatedModule, emulatedModulePath } from '../../../src/emulate/emulated-driver.js';
import { packageRoot } from '../../../src/util/paths.js';
import { sharedEmulatedDriver } from '../../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-pdl-after-copy-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

type Step = { step: string; kernel: string; programmatic: boolean; error?: string };

describe.skipIf(!cxx.found)('programmatic launches only right after a kernel (emulated driver)', () => {
  test('after a copy, fill, graph launch, event, capture, at a capture\'s start and first on the stream: plain; after a kernel: programmatic', async () => {
    const driver = await sharedEmulatedDriver();
    const module = join(root, 'pdl_kernels.fatbin');  // never written: the driver loads its .emu.so
    await buildEmulatedModule(join(packageRoot(), 'test', 'emulate', 'fixtures', 'pdl_kernels.cu'), emulatedModulePath(module),
      ['tidarc_test_pdl_early', 'tidarc_test_pdl_waits'].map((name) => ({ name, argsType: 'TidarcAttentionArgs' })));
    const { stdout, stderr } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'pdl-after-copy-child.ts'), module], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 16 << 20, timeout: 240_000,
    });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as { steps: Step[]; captured?: { kernels: number; programmaticKernels: number }; graphKernels: number[] | null };
    const steps = new Map(out.steps.map((s) => [s.step, s]));
    const plainOk = (name: string): void => {
      const s = steps.get(name);
      expect(s, name).toBeDefined();
      expect([s!.kernel, s!.programmatic, s!.error], `${name}: ${stderr}`).toEqual(['tidarc_test_pdl_early', false, undefined]);
    };
    const programmaticOk = (name: string): void => {
      const s = steps.get(name);
      expect(s, name).toBeDefined();
      expect([s!.kernel, s!.programmatic, s!.error], `${name}: ${stderr}`).toEqual(['tidarc_test_pdl_waits', true, undefined]);
    };
    plainOk('first launch on the stream');
    programmaticOk('after a kernel');
    for (const op of ['upload', 'uploadAsync', 'download', 'downloadAsync', 'copy', 'fill', 'a capture', 'launchGraph', 'timeGpu']) {
      plainOk(`after ${op}`);
      programmaticOk(`after ${op}, then a kernel`);
    }
    // Captured: [early (the capture's first), waits, uploadAsync, early, waits] -> 2 of 4 programmatic; the replay runs the early reader clean.
    expect(out.captured).toEqual({ kernels: 4, programmaticKernels: 2 });
    plainOk('a captured graph replayed');
    expect(out.graphKernels).toEqual([1, 0]);  // a capture of one kernel: its first, plain
    programmaticOk('after the replay, then a kernel');
    // The attribute does reach the driver after a kernel: the early reader fails with its 'pdl' finding.
    const last = steps.get('the early reader after a kernel')!;
    expect(last.programmatic).toBe(false);  // a failed launch is not counted
    expect(last.error).toMatch(/^CUDA: cannot .*tidarc_test_pdl_early|CUDA_ERROR_LAUNCH_FAILED/);
    expect(stderr).toMatch(/"finding":"pdl".*tidarc_test_pdl_early/);
    expect(out.steps.at(-1)!.step).toBe('the early reader after a kernel');
  }, 300_000);
});
