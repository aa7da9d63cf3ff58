/**
 * The SIMT emulator's check of programmatic dependent launch (PDL) and its prefetch_l2_line
 * (runtime/emu/emu_global.cpp), on fixtures/pdl_main.cpp: one CTA of 64 threads copies a buffer.
 * In a programmatic launch (launch(..., true), what cuLaunchKernelEx with the PDL attribute
 * makes) a thread's access of a device allocation before its tidarc::grid_dependency_wait() is a
 * "pdl" finding naming the kernel, the access and the buffer: a plain C++ load or store (through
 * the -fsanitize=kernel-address hook), ld.global.cg, atomicAdd, cp.async, ld.acquire.gpu,
 * discard.global.L2 and a TMA bulk tensor copy; the same kernel in
 * a plain launch, or with the access after the wait, has none. Stack, static shared memory, the
 * kernel's parameters, prefetch_l2_line and grid_dependents_launch are fine before the wait.
 * prefetch_l2_line (prefetch.global.L2) needs its address inside a device allocation (any
 * alignment: the last byte of one is fine), else "out-of-bounds". Tagged: g++.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, emulatorIncludeFlags } from '../../src/emulate/emulator-build.js';
import { packageRoot } from '../../src/util/paths.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { FIXTURES, parseHarnessReport } from './hopper-emu.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-pdl-'));
const exe = join(dir, 'pdl');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(mode: string, launch: 'pdl' | 'plain'): Promise<ReturnType<typeof parseHarnessReport> & { out0: number }> {
  const { stdout } = await exec(exe, [mode, launch], { timeout: 60_000 });
  const out0 = (JSON.parse(stdout.trim().split('\n').at(-1)!) as { out0: number }).out0;
  return { out0, ...parseHarnessReport(stdout) };
}

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  await exec(cxx.tool.path, [
    ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${join(packageRoot(), 'templates', 'cuda')}`, '-include', 'tidarc_emu.h',
    '-x', 'c++', join(FIXTURES, 'pdl_main.cpp'), '-x', 'none', ...objects, '-o', exe,
  ], { maxBuffer: 64 << 20 });
}, 600_000);

const WHERE = "before this thread's grid_dependency_wait, in a programmatic launch";

describe.skipIf(!cxx.found)('programmatic dependent launch on the emulator', () => {
  test.for([
    ['read-before', 64, new RegExp(`^pdl: pdl_copy: a plain load of 4 bytes at byte 0 of 'in' \\(0x[0-9a-f]+\\) ${WHERE}`, 'm')],
    ['store-before', 64, new RegExp(`^pdl: pdl_copy: a plain store of 4 bytes at byte 0 of 'out' .* ${WHERE}`, 'm')],
    ['cg-before', 64, new RegExp(`^pdl: pdl_copy: ld\\.global\\.cg of 4 bytes at byte 0 of 'in' .* ${WHERE}`, 'm')],
    ['atomic-before', 1, new RegExp(`^pdl: pdl_copy: atomicAdd of 4 bytes at byte 0 of 'counter' .* ${WHERE}`, 'm')],
    ['cp-async-before', 1, new RegExp(`^pdl: pdl_copy: cp\\.async of 16 bytes at byte 0 of 'in' .* ${WHERE}`, 'm')],
    ['acquire-before', 1, new RegExp(`^pdl: pdl_copy: ld\\.acquire\\.gpu of 4 bytes at byte 0 of 'counter' .* ${WHERE}`, 'm')],
    ['discard-before', 1, new RegExp(`^pdl: pdl_copy: discard\\.global\\.L2 of 128 bytes at byte 0 of 'out' .* ${WHERE}`, 'm')],
    ['tma-before', 1, new RegExp(`^pdl: pdl_copy: cp\\.async\\.bulk\\.tensor \\(a box\\) of 256 bytes at byte 0 of 'in' .* ${WHERE}`, 'm')],
  ] as const)('%s: one "pdl" finding per early access under a programmatic launch, none under a plain one', async ([mode, n, message]) => {
    const pdl = await run(mode, 'pdl');
    expect(pdl.counts).toEqual({ pdl: n });
    expect(pdl.messages.join('\n')).toMatch(message);
    expect(pdl.completed).toBe(true);
    const plain = await run(mode, 'plain');
    expect(plain.messages).toEqual([]);
    expect(plain.completed).toBe(true);
  });

  test.for(['read-after', 'local-before', 'prefetch-in'])('%s: no findings in a programmatic launch', async (mode) => {
    const r = await run(mode, 'pdl');
    expect(r.messages).toEqual([]);
    expect(r.completed).toBe(true);
    expect(r.out0).toBe(0.5);
  });

  test.for([
    ['prefetch-oob', 'out-of-bounds', /^out-of-bounds: prefetch\.global\.L2 of an address inside no device allocation: 0x[0-9a-f]+ \(64 bytes past the end of 'in'\)/m],
  ] as const)('%s: one %s finding, programmatic launch or not', async ([mode, kind, message]) => {
    for (const launch of ['pdl', 'plain'] as const) {
      const r = await run(mode, launch);
      expect(r.counts).toEqual({ [kind]: 1 });
      expect(r.messages.join('\n')).toMatch(message);
    }
  });
});
