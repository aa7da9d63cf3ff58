// The lock file around a kernel cache entry's build: exclusion across processes, stale locks, bounded waits.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { withFileLock } from '../../src/fs/file-lock.js';

const here = dirname(fileURLToPath(import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-lock-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function holder(lock: string, journal: string, holdMs: number): Promise<number | null> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'hold-lock.ts'), lock, journal, String(holdMs)], { stdio: 'inherit' });
  return new Promise((resolve) => child.on('exit', resolve));
}

test('two processes take turns: one works while the other waits and says whom it waits for', async () => {
  const lock = join(scratch, 'a.lock'), journal = join(scratch, 'a.log');
  writeFileSync(journal, '');
  expect(await Promise.all([holder(lock, journal, 1500), holder(lock, journal, 1500)])).toEqual([0, 0]);
  const lines = readFileSync(journal, 'utf8').trim().split('\n');
  const work = lines.filter((l) => !l.startsWith('log '));
  const first = work[0]!.split(' ')[1], second = work[2]!.split(' ')[1];
  expect(work).toEqual([`start ${first}`, `end ${first}`, `start ${second}`, `end ${second}`]);
  expect(lines).toContain(`log ${second} waiting for process ${first} to finish the test work (lock ${lock})`);
  expect(existsSync(lock)).toBe(false);
});

test("a lock whose process is gone is broken at once, and the work's lock is removed when it throws", async () => {
  const lock = join(scratch, 'stale.lock');
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  writeFileSync(lock, `${JSON.stringify({ pid: dead, host: hostname() })}\n`);
  const log: string[] = [];
  const t0 = Date.now();
  await expect(withFileLock(lock, { what: 'x', field: 'test', log: (l) => log.push(l), timeoutMs: 60_000 }, async () => {
    expect(JSON.parse(readFileSync(lock, 'utf8'))).toEqual({ pid: process.pid, host: hostname() });
    throw new Error('work failed');
  })).rejects.toThrow('work failed');
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(log).toEqual([`removing a stale lock of process ${dead}, which is gone: ${lock}`]);
  expect(existsSync(lock)).toBe(false);
});

test("a live owner's lock (or another host's) is waited for up to the timeout, then one error naming the lock file", async () => {
  for (const owner of [{ pid: 1, host: hostname() }, { pid: 999_999_999, host: 'another-host' }]) {
    const lock = join(scratch, `live-${owner.host}.lock`);
    writeFileSync(lock, `${JSON.stringify(owner)}\n`);
    const log: string[] = [];
    const err = await withFileLock(lock, { what: 'the build', field: 'the kernel cache (TIDARC_CACHE=/c)', log: (l) => log.push(l), timeoutMs: 400 }, async () => 'ran').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TidarcError);
    expect((err as TidarcError).message).toBe(
      `${lock}: timed out after 0 s waiting for process ${owner.pid} on ${owner.host} to finish the build; if no such process is running, delete the lock file (the kernel cache (TIDARC_CACHE=/c))`);
    expect(log).toEqual([`waiting for process ${owner.pid} to finish the build (lock ${lock})`]);
    expect(existsSync(lock)).toBe(true);
  }
});
