/**
 * What a first user met: refusals that came after work or after a header line, and a long
 * silent wait. Each is now refused (or announced) before the work starts.
 * Needs: nothing (the emulated driver's build is a fake C++ compiler).
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { expectOneErrorLine, runTidarc, withoutDebugEnv } from '../helpers/cli.js';

const scratch = mkdtempSync(join(tmpdir(), 'tidarc-cli-first-user-'));
const TINY = join(import.meta.dirname, '../../examples/tiny.json');
withoutDebugEnv();
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('compile refuses a bad --draft or --tuned before it prints its header', () => {
  test.each([
    ['--draft 0', ['--draft', '0'], ['--draft = 0', '1 to 32']],
    ['--draft 33', ['--draft', '4,33'], ['--draft = 33', '1 to 32']],
    ['a --tuned database that is not there', ['--tuned', join(scratch, 'no-such-tune.json')], ['no such tuning database', '--tuned = ', 'no-such-tune.json', 'allowed: ']],
  ])('%s', async (_name, argv, pieces) => {
    const out = join(scratch, `c-${argv.join('-').replace(/[^a-z0-9]+/gi, '-')}`);
    const r = await runTidarc('compile', TINY, ...argv, '--no-build', '--out', out);
    expectOneErrorLine(r, ...pieces); // nothing on stdout: not even "compiling tiny ..."
    expect(existsSync(out)).toBe(false);
  });
});

test('compile --arch sm_80,sm_80 names the arch once, as the manifest does', async () => {
  const out = join(scratch, 'dup-arch');
  const r = await runTidarc('compile', TINY, '--arch', 'sm_80,sm_80', '--no-build', '--out', out);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(/^compiling tiny \(.*\) for sm_80\n/);
  expect(r.stdout).toMatch(/\nwrote .*: 6 variants for sm_80 \(/);
});

describe('tune refuses a --db it could not write before tuning anything', () => {
  test('a --db in a directory that does not exist', async () => {
    const db = join(scratch, 'missing-dir', 'tune.json');
    const r = await runTidarc('tune', TINY, '--prefix', '64', '--budget', '5', '--db', db);
    expectOneErrorLine(r, 'cannot write the output file (the directory does not exist)', `--db = ${db}`, 'allowed: a file path in an existing, writable directory');
    expect(existsSync(join(scratch, 'missing-dir'))).toBe(false);
  });

  test('a --db that is a directory', async () => {
    const dir = join(scratch, 'db-is-a-dir');
    mkdirSync(dir);
    const r = await runTidarc('tune', TINY, '--prefix', '64', '--budget', '5', '--db', dir);
    expectOneErrorLine(r, 'cannot write the output file (the path is a directory)', '--db = ');
    expect(readdirSync(dir)).toEqual([]);
  });

  // Root writes anywhere: the permission check is only observable as another user.
  test.skipIf(process.getuid?.() === 0)('a --db in a read-only directory', async () => {
    const dir = join(scratch, 'read-only');
    mkdirSync(dir);
    chmodSync(dir, 0o555);
    try {
      const r = await runTidarc('tune', TINY, '--prefix', '64', '--budget', '5', '--db', join(dir, 'tune.json'));
      expectOneErrorLine(r, 'cannot write the output file (permission denied)', '--db = ');
    } finally {
      chmodSync(dir, 0o755);
    }
  });
});

test('run --prompt --json (the text left out) is refused, not run with the prompt "--json"', async () => {
  const dir = join(scratch, 'no-model-needed');
  expectOneErrorLine(await runTidarc('run', dir, '--prompt', '--json'), 'the prompt is an option name of this command', '--prompt = --json');
  expectOneErrorLine(await runTidarc('run', dir, '--prompt', '--ignore-eos'), '--prompt = --ignore-eos');
  // Text that merely starts with dashes is a prompt: the error is then about the missing model.
  expectOneErrorLine(await runTidarc('run', dir, '--prompt', '--json is a flag'), 'no-model-needed');
});

test('run refuses an empty prompt, or one too long for the context, before it compiles any kernel', async () => {
  const model = join(scratch, 'tiny-random');
  expect((await runTidarc('init-model', TINY, '--seed', '1', '--out', model)).code).toBe(0);
  const saved = process.env['TIDARC_CACHE'];
  const cache = join(scratch, 'cache-untouched');
  process.env['TIDARC_CACHE'] = cache;
  try {
    expectOneErrorLine(await runTidarc('run', model, '--prompt', '', '--backend', 'cpu'), 'the prompt is empty (no tokens)', '--prompt');
    // The tiny model's context is 512 positions; 600 bytes are 600 tokens.
    expectOneErrorLine(await runTidarc('run', model, '--prompt', 'y'.repeat(600), '--backend', 'cpu'), 'the prompt plus maxTokens is longer than the context', '600 + 128 tokens');
    expect(existsSync(join(cache, 'kernels'))).toBe(false); // nothing compiled
  } finally {
    if (saved === undefined) delete process.env['TIDARC_CACHE'];
    else process.env['TIDARC_CACHE'] = saved;
  }
});

test('bench-step --help names both backends, not the CPU alone', async () => {
  const r = await runTidarc('--help');
  const line = r.stdout.split('\n').findIndex((l) => l.trimStart().startsWith('bench-step'));
  expect(line).toBeGreaterThanOrEqual(0);
  const text = r.stdout.split('\n').slice(line, line + 3).join(' ').replace(/\s+/g, ' ');
  expect(text).toMatch(/cpu or cuda/);
  expect(text).not.toMatch(/on the CPU\./);
});

test('emulated-driver says on stderr that it builds, once; stdout is the path alone', async () => {
  // A fake g++: answers --version, and "compiles" by writing the -o file after a short wait.
  const fake = join(scratch, 'fake-cxx.sh');
  writeFileSync(fake, '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "fake-c++ 1.0"; exit 0; fi\nout=""\nwhile [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then out="$2"; fi; shift; done\nsleep 0.2\necho fake > "$out"\n');
  chmodSync(fake, 0o755);
  const saved = process.env['CXX'];
  process.env['CXX'] = fake;
  try {
    const out = join(scratch, 'driver');
    const first = await runTidarc('emulated-driver', '--out', out);
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`${join(out, 'libcuda.so.1')}\n`);
    expect(first.stderr).toMatch(/^building the emulated CUDA driver with g\+\+ \(.*20-60 s\)\n$/);
    const again = await runTidarc('emulated-driver', '--out', out);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(first.stdout);
    expect(again.stderr).toBe(''); // up to date: no build, no line
  } finally {
    if (saved === undefined) delete process.env['CXX'];
    else process.env['CXX'] = saved;
  }
});
