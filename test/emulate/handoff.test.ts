/**
 * The reading side of the cross-CTA handoff on the SIMT emulator (runtime/emu/emu_global.cpp), on
 * the "last CTA sums the parts" pattern in miniature (fixtures/handoff_main.cpp: 3 CTAs of 64
 * threads). The last CTA's thread 0 fences after its atomicAdd (the acquire), and a barrier after
 * that fence orders it before every thread's reads: __syncthreads or a named barrier (bar.sync) of
 * the whole CTA, no findings. Without the fence each read of another CTA's part is a "fence"
 * finding, whichever barrier follows; a plain load of a part (L1-cacheable, not ld.global.cg) is a
 * "stale-l1" finding. Blocks run one after another, so every load sees the latest store: only
 * the findings tell these apart (before the reading side was checked, every mode ran clean).
 * Tagged: g++.
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
const dir = mkdtempSync(join(tmpdir(), 'tidarc-handoff-'));
const exe = join(dir, 'handoff');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(mode: string): Promise<ReturnType<typeof parseHarnessReport> & { sums: number[] }> {
  const { stdout } = await exec(exe, [mode], { timeout: 60_000 });
  const lines = stdout.trim().split('\n');
  const sums = (JSON.parse(lines.at(-1)!) as { sums: number[] }).sums;
  return { sums, ...parseHarnessReport(stdout) };
}

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  // The kernel flags: the fixture's plain loads go through the emulator's load hook, as a kernel's do.
  await exec(cxx.tool.path, [
    ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${join(packageRoot(), 'templates', 'cuda')}`, '-include', 'tidarc_emu.h',
    '-x', 'c++', join(FIXTURES, 'handoff_main.cpp'), '-x', 'none', ...objects, '-o', exe,
  ], { maxBuffer: 64 << 20 });
}, 600_000);

const SUMS = Array.from({ length: 64 }, (_, t) => 300 + 3 * t);  // parts 0, 1, 2: 100 part + t each

describe.skipIf(!cxx.found)('the cross-CTA handoff on the emulator', () => {
  test.for(['syncthreads', 'named', 'ids-acquire'])('the acquire reaches the readers through %s: no findings', async (mode) => {
    const r = await run(mode);
    expect(r.messages).toEqual([]);
    expect(r.completed).toBe(true);
    expect(r.sums).toEqual(SUMS);
  });

  test.for([
    ['no-acquire', /^fence: ld\.global\.cg reads byte \d+ of 'parts' \(0x[0-9a-f]+\) that block \([01],0,0\) thread \(\d+,0,0\) published, with no __threadfence after this CTA's atomicAdd \(the acquire\) ordered before it/m],
    ['named-no-acquire', /^fence: ld\.global\.cg reads byte \d+ of 'parts' .* with no __threadfence after this CTA's atomicAdd \(the acquire\)/m],
    // An ld.acquire of the id counter, not of the one the parts were published on (once missed: one acquire covered every counter).
    ['ids-wrong-counter', /^fence: ld\.global\.cg reads byte \d+ of 'parts' .* with no __threadfence after this CTA's atomicAdd \(the acquire\) ordered before it, nor an ld\.acquire, on the counter it was published on \(byte 0 of 'counter'/m],
    ['plain', /^stale-l1: a plain \(L1-cacheable\) load reads byte \d+ of 'parts' \(0x[0-9a-f]+\) that block \([01],0,0\) thread \(\d+,0,0\) of this launch stored/m],
  ] as const)('%s: a finding naming the buffer and the writer', async ([mode, message]) => {
    const r = await run(mode);
    expect(r.messages.join('\n')).toMatch(message);
    expect(r.completed).toBe(true);
  });
});
