/**
 * The primary context is released when tidarc is done with the device (runtime/src/cuda/cuda_napi.cc
 * close(), CudaDevice.close()): each CudaDevice holds one reference, and the last close frees the
 * stream, unloads the modules and calls cuDevicePrimaryCtxRelease_v2. On a GPU the context holds a
 * few hundred MiB of device memory, which a library user's process kept for its whole life.
 *   - a device that allocated, launched, captured a graph, pinned memory and timed events closes
 *     to no context (cuDevicePrimaryCtxGetState); a call on it after is one error;
 *   - a second device in the same process loads the kernels again and computes the same; the
 *     first's function handle is dead (one error, never a launch through an unloaded module);
 *   - one of two open devices closing keeps the context for the other, and its function handle
 *     is dead there too (its module was unloaded);
 *   - the addon's last close refuses while a pinned block is allocated, then releases;
 *   - (emulated) a context a launch fault left unusable: close() throws the first refused free but
 *     releases the context all the same, and a device opened after it computes as before;
 *   - on the emulated driver, its own log (TIDARC_FAKE_CONTEXT_LOG): every release that let the
 *     context go found nothing left in it (modules, allocations, streams, events, graphs, pinned),
 *     and each device's modules were unloaded by tidarc, not by the context's destruction.
 * In a child process (the addon picks its driver once per process). Tagged: a C++ compiler (the
 * emulated driver); [gpu] the same on a GPU.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { packageRoot } from '../../../src/util/paths.js';
import { gpuAvailable, opsModule } from '../../helpers/ops-module.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const gpu = await gpuAvailable();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-context-release-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface LogLine {
  call: string;
  retains: number;
  modules: number;
  allocations: number;
  allocated: number;
  streams: number;
  events: number;
  graphs: number;
  pinned: number;
}

const none = { active: false, opens: 0 };

describe.for([
  { on: 'emulated' as const, label: 'the emulated driver', skip: !cxx.found },
  { on: 'gpu' as const, label: '[gpu] the GPU', skip: !gpu },
])('the primary context on $label', ({ on, skip }) => {
  test.skipIf(skip)('closing the last device releases it; a device opened after works; stale handles are one error', { timeout: 300_000 }, async () => {
    const { module, env } = await opsModule(root, on);
    const log = join(root, `context-${on}.jsonl`);
    // On the emulated driver the last device's first programmatic launch faults (sticky, as a GPU's fault is).
    const fault = on === 'emulated' ? ['fault'] : [];
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'context-release-child.ts'), module, ...fault], {
      cwd: packageRoot(), env: { ...env, TIDARC_FAKE_CONTEXT_LOG: log, ...(on === 'emulated' ? { TIDARC_FAKE_REFUSE_PROGRAMMATIC: 'fault' } : {}) }, timeout: 240_000,
    });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    expect(out.before).toEqual(none);
    expect(out.opened).toEqual({ active: true, opens: 1 });
    expect(out.closed).toEqual(none);
    expect(out.closedUse).toMatch(/^CUDA: .+ was closed \(CudaDevice\.close\): open the device again$/);
    expect(out.again).toBe(true);
    expect(out.staleHandle).toMatch(/^CUDA: cannot launch tidarc_op_silu_mul: cuda: function handle \d+ is from a session closed since \(open the device and load it again\)$/);
    expect(out.oneClosed).toEqual({ active: true, opens: 1 });
    expect(out.staleWhileHeld).toMatch(/^CUDA: cannot launch tidarc_op_silu_mul: cuda: function handle \d+ was unloaded with its module \(load the kernel again\)$/);
    expect(out.stillRuns).toBe(true);
    expect(out.allClosed).toEqual(none);
    expect(out.refused).toBe('cuda: cannot close the device: 1 pinned host block still held; free them first (releasing the context would free them under their owners)');
    expect(out.refusedState).toEqual({ active: true, opens: 1 });
    expect(out.released).toEqual({ released: true });
    expect(out.end).toEqual(none);
    expect(out.extraClose).toBe('cuda: close() without an open device (each open() is closed once)');
    if (on !== 'emulated') return;

    // A context a fault left unusable: every free and unload fails, the release still happens, and a device opened after it works.
    expect(out.faulted).toMatch(/^CUDA: cannot launch tidarc_op_silu_mul programmatically: cuLaunchKernelEx failed: CUDA_ERROR_LAUNCH_FAILED/);
    expect(out.faultedClose).toMatch(/^CUDA: cannot free [xy]: cuMemFree failed: CUDA_ERROR_LAUNCH_FAILED/);
    expect(out.afterFault).toEqual(none);
    expect(out.afterFaultRuns).toBe(true);
    expect(out.faultEnd).toEqual(none);

    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LogLine);
    const calls = (call: string) => lines.filter((l) => l.call === call);
    // Five sessions (device a; b with c beside it; the addon's own; the faulted f; g), each retained once and released once.
    expect(calls('cuDevicePrimaryCtxRetain').map((l) => l.retains)).toEqual([1, 1, 1, 1, 1]);
    const releases = calls('cuDevicePrimaryCtxRelease_v2');
    expect(releases).toHaveLength(5);
    // What each last release found: nothing. tidarc gave it all back before letting the context go, except in the
    // faulted context (the 4th), where the driver refused every free and unload and the release destroyed what was left.
    const empty = { call: 'cuDevicePrimaryCtxRelease_v2', retains: 0, modules: 0, allocations: 0, allocated: 0, streams: 0, events: 0, graphs: 0, pinned: 0 };
    for (const [i, r] of releases.entries()) if (i !== 3) expect(r).toEqual(empty);
    expect(releases[3]).toMatchObject({ retains: 0, modules: 1 });
    expect(releases[3]!.allocations).toBeGreaterThanOrEqual(2);
    // One module per device (a, b, c, f, g), each unloaded by its own close (c's while b's stayed loaded), f's refused.
    expect(calls('cuModuleLoad')).toHaveLength(5);
    expect(calls('cuModuleUnload').map((l) => [l.retains, l.modules])).toEqual([[1, 0], [1, 1], [1, 0], [1, 0]]);
    expect(lines.at(-1)!.call).toBe('cuDevicePrimaryCtxRelease_v2');
  });
});
