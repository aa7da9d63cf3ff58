/**
 * The files vitest.config.ts runs in a shared worker process (test-projects.ts SHARED_PROCESS) leave
 * nothing behind for the next file: none changes the environment, the working directory or the
 * process's handlers, or mocks; every entry names files that exist; no timed file shares. Needs: nothing.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { expect, test } from 'vitest';
import { packageRoot } from '../../src/util/paths.js';
import { RISKY, SHARED_PROCESS, TIMED, listed } from './test-projects.js';

function testFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return testFiles(path);
    return name.endsWith('.test.ts') ? [relative(packageRoot(), path)] : [];
  });
}

const all = testFiles(join(packageRoot(), 'test'));
// This file shares too; its own samples of RISKY (the last test) are text, not calls.
const SELF = 'test/helpers/test-projects.test.ts';
const shared = all.filter((f) => listed(SHARED_PROCESS, f));

test('every shared file leaves its process as it found it', () => {
  expect(shared.length).toBeGreaterThan(50);
  expect(shared).toContain(SELF);
  const risky = shared.filter((f) => f !== SELF).filter((f) => RISKY.test(readFileSync(join(packageRoot(), f), 'utf8')))
    .map((f) => `${f}: ${RISKY.exec(readFileSync(join(packageRoot(), f), 'utf8'))![0]}`);
  expect(risky, 'move these out of SHARED_PROCESS (test/helpers/test-projects.ts)').toEqual([]);
  expect(shared.filter((f) => TIMED.includes(f))).toEqual([]);
});

test('every entry names a file or folder of tests that exists', () => {
  for (const entry of [...SHARED_PROCESS, ...TIMED]) expect(all.some((f) => listed([entry], f)), entry).toBe(true);
});

test('RISKY finds what a shared process must not see, and lets reading the environment be', () => {
  for (const text of ["process.env['TIDARC_CACHE'] = dir;", 'process.env.NVCC = x;', 'delete process.env.X;', 'Object.assign(process.env, e)', 'process.chdir(dir);',
    "process.on('exit', f);", "vi.mock('../x.js')", 'vi.stubEnv("A", "1")', 'globalThis.x = 1']) {
    expect(RISKY.test(text), text).toBe(true);
  }
  for (const text of ['const env = { ...process.env, TIDARC_LIBCUDA: driver };', "if (process.env['CI'] === 'true') return;", "process.env['X'] ?? 'y'",
    'loadNative().cudaStatus()', 'openKernelLibrary(dir)', 'await sharedEmulatedDriver()', 'runTidarc("compile")']) {
    expect(RISKY.test(text), text).toBe(false);
  }
});
