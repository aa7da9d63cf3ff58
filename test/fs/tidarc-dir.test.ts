/**
 * Which directories tidarc may replace (src/fs/tidarc-dir.ts): absent, empty, or written by
 * tidarc as the same kind (marker, or an older tidarc's layout); never a user's directory, a
 * file, a link, HOME, `/`, a git work tree root, the current directory or a parent of it.
 * Needs: nothing.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { packageRoot } from '../../src/util/paths.js';
import { type DirKind, MARKER_FILE, checkReplaceable, legacyKind, markerText, tidarcKind } from '../../src/fs/tidarc-dir.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-dir-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fresh directory holding `files` (relative path -> text). */
function dirWith(files: Record<string, string>): string {
  const dir = join(root, `d${n++}`);
  mkdirSync(dir);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}

const place = (path: string, kind: DirKind = 'compile-output') => ({ path, kind, field: '--out' });
const refused = (path: string, kind: DirKind, why: RegExp) => expect(() => checkReplaceable(place(path, kind))).toThrow(why);

const TIDAR_CONFIG = JSON.stringify({ model_type: 'qwen3', tidar: { mask_token_id: 259 } });

describe('what may be written', () => {
  test('an absent path (its parents may be missing too)', () => {
    expect(checkReplaceable(place(join(root, 'none', 'deeper')))).toBe('absent');
  });
  test('an empty directory', () => {
    expect(checkReplaceable(place(dirWith({})))).toBe('replace');
  });
  test('a directory carrying the marker of the same kind, whatever else it holds', () => {
    expect(checkReplaceable(place(dirWith({ [MARKER_FILE]: markerText('compile-output'), 'notes.txt': 'x' })))).toBe('replace');
    expect(checkReplaceable(place(dirWith({ [MARKER_FILE]: markerText('checkpoint'), 'config.json': '{}' }), 'checkpoint'))).toBe('replace');
  });
  test('a compile output of an older tidarc (no marker): the committed generated/tiny', () => {
    const dir = join(root, `d${n++}`);
    cpSync(join(packageRoot(), 'generated', 'tiny'), dir, { recursive: true });
    rmSync(join(dir, MARKER_FILE), { force: true });
    writeFileSync(join(dir, '.tidarc-stamp'), '{}\n');
    writeFileSync(join(dir, 'cpu', 'libtidarc_cpu.so'), 'elf');
    expect(legacyKind(dir)).toBe('compile-output');
    expect(checkReplaceable(place(dir))).toBe('replace');
  });
  test('a checkpoint of an older tidarc: config.json with "tidar" and only the three files init-model writes', () => {
    const dir = dirWith({ 'config.json': TIDAR_CONFIG, 'model.safetensors': 'x', 'tokenizer.json': '{}' });
    expect(tidarcKind(dir)).toBe('checkpoint');
    expect(checkReplaceable(place(dir, 'checkpoint'))).toBe('replace');
  });
});

describe('what is refused, with the reason and the option', () => {
  test('a user directory, even one holding a config.json with "tidar" (issue 12: a project was wiped)', () => {
    const project = dirWith({ 'config.json': TIDAR_CONFIG, 'pytorch_model.bin': 'weights', 'src/main.py': 'print(1)' });
    refused(project, 'checkpoint', /the output directory is not empty and was not written by tidarc, so tidarc does not replace it \(--out = .*\); allowed: a new path, an empty directory or a tidarc checkpoint/);
    expect(legacyKind(project)).toBeUndefined();
  });
  test('a config.json without "tidar" is not a tidarc checkpoint', () => {
    refused(dirWith({ 'config.json': '{"model_type":"qwen3"}', 'model.safetensors': 'x' }), 'checkpoint', /not written by tidarc/);
  });
  test('an older compile output with a file tidarc does not write in it', () => {
    const dir = join(root, `d${n++}`);
    cpSync(join(packageRoot(), 'generated', 'tiny'), dir, { recursive: true });
    rmSync(join(dir, MARKER_FILE), { force: true });
    writeFileSync(join(dir, 'cuda', 'my-kernel.cu'), '// mine');
    refused(dir, 'compile-output', /not written by tidarc/);
  });
  test('a manifest.json that another tool wrote', () => {
    refused(dirWith({ 'manifest.json': '{"generator":"webpack 5","files":{}}' }), 'compile-output', /not written by tidarc/);
  });
  test('a tidarc directory of another kind', () => {
    const ckpt = dirWith({ [MARKER_FILE]: markerText('checkpoint'), 'config.json': TIDAR_CONFIG });
    refused(ckpt, 'compile-output', /holds a tidarc checkpoint \(init-model\), not a tidarc compile output/);
  });
  test('a marker naming an unknown kind, or not tidarc, counts as none', () => {
    refused(dirWith({ [MARKER_FILE]: '{"writtenBy":"tidarc","kind":"photos"}\n', 'a.jpg': 'x' }), 'compile-output', /not written by tidarc/);
    refused(dirWith({ [MARKER_FILE]: '{"kind":"compile-output"}\n', 'a.jpg': 'x' }), 'compile-output', /not written by tidarc/);
  });
  test('a file, and a symbolic link (even to a tidarc directory)', () => {
    const file = join(root, 'file.txt');
    writeFileSync(file, 'keep');
    refused(file, 'compile-output', /the output path is a file/);
    const link = join(root, 'link');
    symlinkSync(dirWith({ [MARKER_FILE]: markerText('compile-output') }), link);
    refused(link, 'compile-output', /is a symbolic link/);
  });
  test('a path under a file', () => {
    refused(join(root, 'file.txt', 'out'), 'compile-output', /cannot use the output path \(a part of the path is a file, not a directory\) \(--out = .*file\.txt\/out\)/);
  });
  test('the root directory', () => {
    refused('/', 'compile-output', /the output path is the root directory, which tidarc never replaces \(--out = \/\)/);
  });
  test('a git work tree root, even marked', () => {
    const repo = dirWith({ [MARKER_FILE]: markerText('compile-output'), '.git/HEAD': 'ref: refs/heads/main\n' });
    refused(repo, 'compile-output', /is the root of a git work tree/);
  });
  test('HOME, even marked', () => {
    const home = dirWith({ [MARKER_FILE]: markerText('compile-output') });
    const saved = process.env['HOME'];
    process.env['HOME'] = home;
    try {
      refused(home, 'compile-output', /is your home directory/);
    } finally {
      process.env['HOME'] = saved;
    }
  });
  test('the current directory and its parents, even marked', () => {
    const cwd = process.cwd();
    const dir = dirWith({ [MARKER_FILE]: markerText('compile-output'), 'sub/x': '' });
    process.chdir(join(dir, 'sub'));
    try {
      refused('', 'compile-output', /the output path is the current directory, which tidarc never replaces \(--out = ""\)/);
      refused('.', 'compile-output', /the output path is the current directory/);
      refused('..', 'compile-output', /the output path contains the current directory, which tidarc never replaces \(--out = \.\.\)/);
    } finally {
      process.chdir(cwd);
    }
  });
});
