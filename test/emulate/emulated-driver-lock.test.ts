/**
 * Two processes that build the emulated driver into one directory at the same moment (two
 * vitest workers on the shared test build, two `tidarc emulated-driver` in one cache) compile it
 * once: the second waits for the first's lock, then finds the library up to date. The compiler
 * is a script that counts its compiles and takes 2 s, so that without the lock both would
 * compile. Needs no C++ compiler.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { buildEmulatedDriver } from '../../src/emulate/emulated-driver.js';
import { packageRoot } from '../../src/util/paths.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-driver-lock-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A "compiler" that appends a line to `count` per compile and writes its -o file after 2 s. */
function countingCompiler(count: string): string {
  const path = join(root, 'cxx');
  writeFileSync(path, [
    '#!/bin/sh',
    'if [ "$1" = "--version" ]; then echo "counting-cxx 1"; exit 0; fi',
    `echo compile >> '${count}'`,
    'sleep 2',
    'while [ $# -gt 1 ]; do if [ "$1" = "-o" ]; then echo library > "$2"; fi; shift; done',
    '',
  ].join('\n'));
  chmodSync(path, 0o755);
  return path;
}

function child(args: readonly string[]): { proc: ChildProcess; ready: Promise<void>; result: Promise<{ library: string }> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'build-driver-child.ts'), ...args], { cwd: packageRoot() });
  let stdout = '', stderr = '';
  proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const ready = new Promise<void>((resolve) => proc.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); if (stdout.startsWith('ready\n')) resolve(); }));
  const result = new Promise<{ library: string }>((resolve, reject) => proc.on('close', (code) =>
    code === 0 ? resolve(JSON.parse(stdout.trim().split('\n').pop()!) as { library: string }) : reject(new Error(`child exited ${code}: ${stderr}`))));
  return { proc, ready, result };
}

test('two processes building into one directory at once compile the driver once and get the same library', { timeout: 60_000 }, async () => {
  const count = join(root, 'compiles'), cxx = countingCompiler(count);
  const dir = join(root, 'driver'), go = join(root, 'go');
  const children = [child([dir, cxx, go]), child([dir, cxx, go])];
  await Promise.all(children.map((c) => c.ready));
  writeFileSync(go, '');
  const [a, b] = await Promise.all(children.map((c) => c.result));
  expect(readFileSync(count, 'utf8').trim().split('\n')).toEqual(['compile']);
  expect(a!.library).toBe(join(dir, 'libcuda.so.1'));
  expect(b!.library).toBe(a!.library);
  expect(readFileSync(a!.library, 'utf8')).toBe('library\n');
  // No lock (build.lock) or temp file left behind; a later build finds it up to date and compiles nothing.
  expect(readdirSync(dir).sort()).toEqual(['.tidarc-output', 'libcuda.so.1', 'libcuda.so.1.stamp']);
  expect(await buildEmulatedDriver(dir, { cxx })).toBe(a!.library);
  expect(readFileSync(count, 'utf8').trim().split('\n')).toHaveLength(1);
});
