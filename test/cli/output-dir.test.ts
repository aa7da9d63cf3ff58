/**
 * Issue 12 (items 1, 4, 7): every command that writes a directory replaces only what tidarc
 * wrote. `compile --out ""` in a git work tree deleted it with exit 0; `init-model` replaced
 * any directory with a config.json; `--out /` printed a raw EBUSY; `--out /proc/x` spun
 * forever; `--out --json` made a directory named "--json"; an unwritable kernel cache said
 * EACCES and a temp name. Each case: exit 1, one line naming the option (or the kernel cache)
 * and why, and nothing of the user's changed.
 * Needs: the built CLI (`npm run build:ts`) for the cases that depend on the working directory;
 * g++ for the emulated driver case.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { MARKER_FILE, markerText } from '../../src/fs/tidarc-dir.js';
import { type Run, expectOneErrorLine, runTidarc, withoutDebugEnv } from '../helpers/cli.js';

const BIN = resolve('bin/tidarc.js');
const TINY = resolve('examples/tiny.json');
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-out-dir-'));
const cxx = await findCxx();

withoutDebugEnv();
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The built CLI in `cwd`, as a user runs it; a hang fails the test after 30 s instead of hanging it. */
function tidarcIn(cwd: string, ...args: string[]): Run {
  const env = { ...process.env };
  delete env['TIDARC_DEBUG'];
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 30_000, env });
  return { code: r.status ?? (r.signal ? -1 : -2), stdout: r.stdout, stderr: r.stderr };
}

/** Every file under `dir` with its content: what must not change. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out[join(e.parentPath, e.name).slice(dir.length)] = readFileSync(join(e.parentPath, e.name), 'utf8');
  }
  return out;
}

/** A git work tree with a file of the user's, like the reproduction. */
function userRepo(name: string): string {
  const p = join(scratch, name);
  mkdirSync(join(p, 'sub', 'deeper'), { recursive: true });
  expect(spawnSync('git', ['init', '-q'], { cwd: p }).status).toBe(0);
  writeFileSync(join(p, 'keep'), 'my data');
  return p;
}

describe('the working directory, its parents, / and HOME are never replaced', () => {
  test('compile --out "" in a git work tree (issue 12: the directory was gone, exit 0)', () => {
    const p = userRepo('repo-empty');
    const before = snapshot(p);
    expectOneErrorLine(tidarcIn(p, 'compile', TINY, '--no-build', '--out', ''), 'the output path is the current directory', '(--out = "")');
    expect(snapshot(p)).toEqual(before);
  });
  test.each([
    ['.', '', 'the output path is the current directory'],
    ['..', 'sub', 'the output path contains the current directory'],
    ['../..', 'sub/deeper', 'the output path contains the current directory'],
  ])('compile --out %s (run in %s)', (out, sub, why) => {
    const p = userRepo(`repo-${sub.replace('/', '-') || 'top'}`);
    const before = snapshot(p);
    expectOneErrorLine(tidarcIn(join(p, sub), 'compile', TINY, '--no-build', '--out', out), why, `(--out = ${out})`);
    expect(snapshot(p)).toEqual(before);
  });
  test('a git work tree root given by path', async () => {
    const p = userRepo('repo-path');
    expectOneErrorLine(await runTidarc('compile', TINY, '--no-build', '--out', p), 'is the root of a git work tree');
    expect(readFileSync(join(p, 'keep'), 'utf8')).toBe('my data');
  });
  test('init-model --out "" (was: ENOENT rename \'.tmp-PID\' -> \'\')', () => {
    const p = userRepo('repo-init');
    const before = snapshot(p);
    expectOneErrorLine(tidarcIn(p, 'init-model', TINY, '--seed', '1', '--out', ''), 'the output path is the current directory', '(--out = "")');
    expect(snapshot(p)).toEqual(before);
  });
  test('--out / (was: EBUSY: rename \'/\' -> \'/.old-PID\')', async () => {
    expectOneErrorLine(await runTidarc('compile', TINY, '--no-build', '--out', '/'), 'the output path is the root directory', '(--out = /)');
  });
  test('--out HOME', () => {
    const home = join(scratch, 'home');
    mkdirSync(home);
    writeFileSync(join(home, '.bashrc'), 'x');
    const r = spawnSync(process.execPath, [BIN, 'compile', TINY, '--no-build', '--out', home], { cwd: scratch, encoding: 'utf8', timeout: 30_000, env: { ...process.env, HOME: home } });
    expectOneErrorLine({ code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }, 'the output path is your home directory');
    expect(readdirSync(home)).toEqual(['.bashrc']);
  });
});

describe("a user's directory or file is never replaced", () => {
  test('compile --out a directory of the user\'s, and a file', async () => {
    const dir = join(scratch, 'photos');
    mkdirSync(dir);
    writeFileSync(join(dir, 'cat.jpg'), 'meow');
    expectOneErrorLine(await runTidarc('compile', TINY, '--no-build', '--out', dir), 'not empty and was not written by tidarc', `(--out = ${dir})`);
    expect(snapshot(dir)).toEqual({ '/cat.jpg': 'meow' });
    const file = join(scratch, 'notes.txt');
    writeFileSync(file, 'notes');
    expectOneErrorLine(await runTidarc('compile', TINY, '--no-build', '--out', file), 'the output path is a file', `(--out = ${file})`);
    expect(readFileSync(file, 'utf8')).toBe('notes');
  });
  test('init-model --out a project with a config.json (issue 12: config.json, src/ and pytorch_model.bin were wiped)', async () => {
    const project = join(scratch, 'project');
    mkdirSync(join(project, 'src'), { recursive: true });
    writeFileSync(join(project, 'config.json'), JSON.stringify({ model_type: 'qwen3', tidar: { mask_token_id: 259 } }));
    writeFileSync(join(project, 'pytorch_model.bin'), 'weights');
    writeFileSync(join(project, 'src', 'train.py'), 'print(1)');
    const before = snapshot(project);
    expectOneErrorLine(await runTidarc('init-model', TINY, '--seed', '1', '--out', project), 'not empty and was not written by tidarc', `(--out = ${project})`);
    expect(snapshot(project)).toEqual(before);
  });
  test('a checkpoint is not replaced by a compile, nor a compile output by init-model', async () => {
    const ckpt = join(scratch, 'ckpt');
    expect((await runTidarc('init-model', TINY, '--seed', '1', '--out', ckpt)).code).toBe(0);
    expectOneErrorLine(await runTidarc('compile', TINY, '--no-build', '--out', ckpt), 'holds a tidarc checkpoint (init-model), not a tidarc compile output');
    const lib = join(scratch, 'lib');
    expect((await runTidarc('compile', TINY, '--no-build', '--out', lib)).code).toBe(0);
    expectOneErrorLine(await runTidarc('init-model', TINY, '--seed', '1', '--out', lib), 'holds a tidarc compile output, not a tidarc checkpoint');
  });
  test.skipIf(!cxx.found)('emulated-driver --out a directory with another libcuda.so.1', async () => {
    const dir = join(scratch, 'lib64');
    mkdirSync(dir);
    writeFileSync(join(dir, 'libcuda.so.1'), 'the real driver');
    writeFileSync(join(dir, 'libc.so.6'), 'libc');
    expectOneErrorLine(await runTidarc('emulated-driver', '--out', dir), 'not empty and was not written by tidarc', 'emulated CUDA driver');
    expect(snapshot(dir)).toEqual({ '/libcuda.so.1': 'the real driver', '/libc.so.6': 'libc' });
  });
});

describe('what tidarc wrote is replaced', () => {
  test('a compile output of an older tidarc (no marker), e.g. generated/tiny, is replaced and marked', async () => {
    const old = join(scratch, 'old-tiny');
    cpSync(resolve('generated', 'tiny'), old, { recursive: true });
    rmSync(join(old, MARKER_FILE), { force: true });
    const r = await runTidarc('compile', TINY, '--no-build', '--out', old);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`wrote ${old}`);
    expect(readFileSync(join(old, MARKER_FILE), 'utf8')).toBe(markerText('compile-output'));
  });
  test('an empty directory', async () => {
    const empty = join(scratch, 'empty');
    mkdirSync(empty);
    expect((await runTidarc('init-model', TINY, '--seed', '1', '--out', empty)).code).toBe(0);
    expect(existsSync(join(empty, 'model.safetensors'))).toBe(true);
  });
});

describe('paths that cannot be written: one line, at once', () => {
  test.skipIf(!existsSync('/proc/self'))('--out /proc/self and /proc/x (were: 100% CPU forever in a mkdir loop)', () => {
    expectOneErrorLine(tidarcIn(scratch, 'compile', TINY, '--no-build', '--out', '/proc/self'), '(--out = /proc/self)');
    // Found when the staging directory is made, after compile said what it compiles: stdout has that line.
    const r = tidarcIn(scratch, 'compile', TINY, '--no-build', '--out', '/proc/tidarc-x');
    expectOneErrorLine({ ...r, stdout: '' }, 'cannot create a directory in /proc (no such file or directory)', '(--out = /proc/tidarc-x)');
    expectOneErrorLine(tidarcIn(scratch, 'init-model', TINY, '--seed', '1', '--out', '/proc/tidarc-x/y'), '(--out = /proc/tidarc-x/y)');
  });
  test('--out --json (was: a directory named "--json")', () => {
    expectOneErrorLine(tidarcIn(scratch, 'compile', TINY, '--no-build', '--out', '--json'), 'looks like an option, not a path', '(--out = --json)');
    expectOneErrorLine(tidarcIn(scratch, 'init-model', TINY, '--seed', '1', '--out', '--json'), '(--out = --json)');
    expect(existsSync(join(scratch, '--json'))).toBe(false);
  });
  test('a kernel cache that cannot be created names the kernel cache and TIDARC_CACHE, or HOME\'s default (was: EACCES mkdir <temp name>)', () => {
    const file = join(scratch, 'a-file');
    writeFileSync(file, 'x');
    const env: NodeJS.ProcessEnv = { ...process.env, TIDARC_CACHE: join(file, 'cache') };
    delete env['TIDARC_DEBUG'];
    const args = [BIN, 'run', resolve('models/tidar-tiny-code'), '--prompt', 'def', '--max-tokens', '1', '--backend', 'cpu'];
    let r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000, env });
    expectOneErrorLine({ code: r.status ?? -1, stdout: '', stderr: r.stderr }, `the kernel cache (TIDARC_CACHE=${join(file, 'cache')})`, 'a part of the path is a file, not a directory');
    delete env['TIDARC_CACHE'];
    delete env['XDG_CACHE_HOME'];
    r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000, env: { ...env, HOME: file } });
    expectOneErrorLine({ code: r.status ?? -1, stdout: '', stderr: r.stderr }, `the kernel cache (${file}/.cache/tidarc; TIDARC_CACHE moves it)`);
  });
  test('tune --report --db of a database that does not exist (was: exit 0 and an SVG of nothing)', async () => {
    const db = join(scratch, 'none.json');
    expectOneErrorLine(await runTidarc('tune', '--report', '--db', db), 'no such tuning database', `(--db = ${db})`);
    expect(existsSync(join(scratch, 'none.svg'))).toBe(false);
  });
});
