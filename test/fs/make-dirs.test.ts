/**
 * makeDirs ends: Node's recursive mkdir spins at 100% CPU forever on `/proc/x` (mkdir says
 * ENOENT under a parent that exists); each level here is tried once and a failure names the
 * option, the path and why. Needs: nothing (the /proc cases: Linux).
 */
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { makeDirs } from '../../src/fs/make-dirs.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-make-dirs-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const label = (value: string) => ({ field: '--out', value });

test('creates every missing level, and accepts one that exists', () => {
  const deep = join(root, 'a', 'b', 'c');
  makeDirs(deep, label(deep));
  expect(statSync(deep).isDirectory()).toBe(true);
  makeDirs(deep, label(deep));
});

test.skipIf(!existsSync('/proc/self'))('a directory the kernel refuses under /proc is an error at once, not an endless loop', () => {
  const t0 = performance.now();
  expect(() => makeDirs('/proc/tidarc-x/y', label('/proc/tidarc-x/y'))).toThrow(/cannot create the directory \/proc\/tidarc-x \(no such file or directory\) \(--out = \/proc\/tidarc-x\/y\); allowed: a path in a writable directory/);
  expect(performance.now() - t0).toBeLessThan(1000);
});

test('a file in the way names the option and the reason', () => {
  const file = join(root, 'file');
  writeFileSync(file, 'x');
  expect(() => makeDirs(join(file, 'sub'), { field: 'the kernel cache (TIDARC_CACHE=/x)', value: join(file, 'sub') }))
    .toThrow(/cannot create the directory .*file\/sub \(a part of the path is a file, not a directory\) \(the kernel cache \(TIDARC_CACHE=\/x\) = /);
});
