/**
 * Named barriers (bar.sync / bar.arrive id, count) on the SIMT emulator, as the sm_90a
 * attention's consumer ping-pong uses them (fixtures/named_barrier_main.cpp): two warpgroups take
 * strict turns (without the barriers warpgroup 0, whose turns are shorter, would run ahead), a
 * 9th warp takes no part; a missing bar.arrive is a deadlock reported as a "barrier" finding (the
 * launch stops; it does not hang), and so are arrivals of one phase with different counts, id 0
 * (__syncthreads'), a count that is not a multiple of 32, a thread arriving twice in one phase
 * (a bar.arrive, then another on that barrier before the phase completed), a block that ends with
 * a phase half-arrived, and .aligned barriers reached divergently (lanes of one warp through
 * different instructions, or a phase completing with part of a warp). Shared-memory handoffs
 * between warps ordered by a named barrier alone (the sm_90a GEMM's fold-norms staging) are no
 * race: read after write and write after read across a warpgroup's bar.sync, and a bar.arrive
 * after the writes before another warpgroup's bar.sync; without the barrier, with the bar.arrive
 * before the writes, or read by a warp outside the barrier, they are. Tagged: g++.
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
const dir = mkdtempSync(join(tmpdir(), 'tidarc-named-barrier-'));
const exe = join(dir, 'named_barrier');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(mode: string): Promise<ReturnType<typeof parseHarnessReport> & { log: number[] }> {
  const { stdout } = await exec(exe, [mode], { timeout: 60_000 });
  const lines = stdout.trim().split('\n');
  const log = (JSON.parse(lines[0]!) as { log: number[] }).log;
  return { log, ...parseHarnessReport(lines.slice(1).join('\n')) };
}

beforeAll(async () => {
  if (!cxx.found) return;
  const objects = await sharedEmulatorRuntime();
  await exec(cxx.tool.path, [
    ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${join(packageRoot(), 'templates', 'cuda')}`, '-include', 'tidarc_emu.h',
    '-x', 'c++', join(FIXTURES, 'named_barrier_main.cpp'), '-x', 'none', ...objects, '-o', exe,
  ], { maxBuffer: 64 << 20 });
}, 600_000);

describe.skipIf(!cxx.found)('named barriers on the emulator', () => {
  test('ping-pong: the warpgroups alternate, no findings', async () => {
    const r = await run('pingpong');
    expect(r.messages).toEqual([]);
    expect(r.completed).toBe(true);
    expect(r.log).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
  });

  test('a missing bar.arrive: a deadlock finding, the launch stops', async () => {
    const r = await run('no-arrive');
    expect(r.completed).toBe(false);
    expect(r.counts['barrier']).toBeGreaterThan(0);
    expect(r.messages.join('\n')).toMatch(/bar\.sync 2 never completes: 128 of its 256 threads arrived/);
  });

  test.for(['handoff-sync', 'handoff-arrive'] as const)('%s: a shared-memory handoff ordered by a named barrier alone, no findings', async (mode) => {
    const r = await run(mode);
    expect(r.messages).toEqual([]);
    expect(r.completed).toBe(true);
    expect(r.log).toEqual([0]);
  });

  test.for([
    ['handoff-none', /^race: a plain load of shared byte \d+ by warp 1 follows the write of thread \(0,0,0\) \(warp 0\)/m],
    ['handoff-early', /^race: a plain load of shared byte 0 by warp 4 follows the write of thread \(0,0,0\) \(warp 0\)/m],
    ['handoff-outsider', /^race: a plain load of shared byte 0 by warp 8 follows the write of thread \(0,0,0\) \(warp 0\)/m],
  ] as const)('%s: a race finding', async ([mode, message]) => {
    const r = await run(mode);
    expect(r.counts['race'], r.messages.join('\n')).toBeGreaterThan(0);
    expect(r.messages.join('\n')).toMatch(message);
  });

  test.for([
    ['count-mismatch', /bar\.(sync|arrive) 2 counts (128|256) threads but the phase in progress, begun by a bar\.(sync|arrive), counts (256|128)/],
    ['id-zero', /bar\.(sync|arrive) 0: a named barrier id is 1\.\.15/],
    ['count-odd', /bar\.sync 1, 200: the thread count must be a multiple of 32 in 32\.\.288/],
    // No deadlock: the extra arrivals complete the phases; the PTX ISA calls it unpredictable.
    ['arrive-twice', /bar\.arrive [12]: thread \d+ \(warp \d+\) arrives again in the phase it already arrived in/],
    // An arrival that no bar.sync consumes: warpgroup 1 hands over after its last turn too.
    ['exit-half-arrived', /^barrier: named barrier 1: the block ends with a phase half-arrived \(128 of its 256 threads arrived, begun by a bar\.arrive\)/m],
    // bar.sync/bar.arrive are .aligned: the lanes of a warp arrive through one instruction, as one.
    ['diverge-sync', /^barrier: bar\.sync [12] at .*named_barrier_main\.cpp:\d+: lanes of warp \d+ also arrive in this phase through the bar\.sync at .*named_barrier_main\.cpp:\d+; bar\.sync\/bar\.arrive are \.aligned/m],
    ['diverge-lanes', /^barrier: bar\.arrive 2 at .*named_barrier_main\.cpp:\d+ completes a phase with 16 of warp 3's 32 running lanes arrived/m],
  ] as const)('%s: a barrier finding', async ([mode, message]) => {
    const r = await run(mode);
    expect(r.counts['barrier'], r.messages.join('\n')).toBeGreaterThan(0);
    expect(r.messages.join('\n')).toMatch(message);
  });
});
