// The emulator runtime's objects are kept in the kernel cache (src/emulate/runtime-cache.ts): a
// second use compiles nothing, another compiler or source builds another entry, and an entry whose
// objects do not match its list is rebuilt. A stand-in compiler (a shell script that writes its
// -o file and counts its runs) keeps this fast; test/cli/emulate.test.ts links the real objects.
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { EMU_RUNTIME_SOURCES } from '../../src/emulate/emulator-build.js';
import { cachedEmulatorRuntime, emulatorRuntimeEntry } from '../../src/emulate/runtime-cache.js';
import { fileTreeDigest } from '../../src/fs/file-tree-digest.js';
import { scratchDir } from '../helpers/scratch.js';

/** A compiler that writes "object of <source>" to its -o file and a line per run to `count`. */
function fakeCompiler(dir: string, name: string): { path: string; runs: () => number } {
  const count = join(dir, `${name}.runs`);
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\nout=''; src=''; prev=''\nfor a in "$@"; do [ "$prev" = -o ] && out="$a"; case "$a" in *.cpp) src="$a";; esac; prev="$a"; done\necho "object of $src" > "$out"\necho run >> '${count}'\n`);
  chmodSync(path, 0o755);
  return { path, runs: () => (existsSync(count) ? readFileSync(count, 'utf8').split('\n').filter(Boolean).length : 0) };
}

test('a second use reuses the entry; another compiler or version builds its own', async () => {
  const root = await scratchDir('tidarc-emu-runtime-cache-');
  const cacheDir = join(root, 'cache');
  const cc = fakeCompiler(root, 'cc');
  const tool = { path: cc.path, version: 'fake 1.0' };
  const lines: string[] = [];
  const first = await cachedEmulatorRuntime(tool, { cacheDir, log: (l) => lines.push(l) });
  expect(cc.runs()).toBe(EMU_RUNTIME_SOURCES.length);
  expect(lines.join('\n')).toMatch(/building the emulator runtime \(first use/);
  const entry = emulatorRuntimeEntry(tool, cacheDir);
  expect(first).toEqual(EMU_RUNTIME_SOURCES.map((s) => join(entry, s.replace(/\.cpp$/, '.o'))));
  expect(readFileSync(first[0]!, 'utf8')).toMatch(/object of .*emu_runtime\.cpp/);
  // The list names objects by file name only (an absolute path goes stale when the cache moves).
  expect(readFileSync(join(entry, 'objects.json'), 'utf8')).not.toContain(root);
  // No staging directory or lock is left beside the entry.
  expect(readdirSync(join(cacheDir, 'emu-runtime')).sort()).toEqual([entry.split('/').pop()]);

  lines.length = 0;
  expect(await cachedEmulatorRuntime(tool, { cacheDir, log: (l) => lines.push(l) })).toEqual(first);
  expect(cc.runs()).toBe(EMU_RUNTIME_SOURCES.length);
  expect(lines).toEqual([`emulator runtime: cached (${entry})`]);

  // Another version of the same compiler, or another compiler: another entry, compiled.
  const other = await cachedEmulatorRuntime({ ...tool, version: 'fake 2.0' }, { cacheDir });
  expect(cc.runs()).toBe(2 * EMU_RUNTIME_SOURCES.length);
  expect(other[0]).not.toBe(first[0]);
  const cc2 = fakeCompiler(root, 'cc2');
  await cachedEmulatorRuntime({ path: cc2.path, version: 'fake 1.0' }, { cacheDir });
  expect(cc2.runs()).toBe(EMU_RUNTIME_SOURCES.length);
  expect(cc.runs()).toBe(2 * EMU_RUNTIME_SOURCES.length);
});

test.for([
  ['a truncated object', (entry: string) => truncateSync(join(entry, 'emu_memory.o'), 3)],
  ['an object of the same size but other bytes', (entry: string) => {
    const path = join(entry, 'emu_fiber.o');
    writeFileSync(path, readFileSync(path, 'utf8').replace('object', 'OBJECT'));
  }],
  ['an object missing', (entry: string) => rmSync(join(entry, 'emu_warp.o'))],
  ['no list (a partial entry)', (entry: string) => rmSync(join(entry, 'objects.json'))],
  ['a list that is not JSON', (entry: string) => writeFileSync(join(entry, 'objects.json'), '{"key":')],
] as const)('an entry with %s is rebuilt, not trusted', async ([, damage]) => {
  const root = await scratchDir('tidarc-emu-runtime-cache-');
  const cacheDir = join(root, 'cache');
  const cc = fakeCompiler(root, 'cc');
  const tool = { path: cc.path, version: 'fake 1.0' };
  const objects = await cachedEmulatorRuntime(tool, { cacheDir });
  damage(emulatorRuntimeEntry(tool, cacheDir));
  const lines: string[] = [];
  expect(await cachedEmulatorRuntime(tool, { cacheDir, log: (l) => lines.push(l) })).toEqual(objects);
  expect(cc.runs()).toBe(2 * EMU_RUNTIME_SOURCES.length);
  expect(lines.join('\n')).toMatch(/building the emulator runtime \(the cached one is incomplete or corrupt/);
  for (const o of objects) expect(readFileSync(o, 'utf8')).toMatch(/^object of /);
  expect(await cachedEmulatorRuntime(tool, { cacheDir })).toEqual(objects);
  expect(cc.runs()).toBe(2 * EMU_RUNTIME_SOURCES.length);
});

test('concurrent first uses build the entry once', async () => {
  const root = await scratchDir('tidarc-emu-runtime-cache-');
  const cacheDir = join(root, 'cache');
  const cc = fakeCompiler(root, 'cc');
  const tool = { path: cc.path, version: 'fake 1.0' };
  const [a, b] = await Promise.all([cachedEmulatorRuntime(tool, { cacheDir }), cachedEmulatorRuntime(tool, { cacheDir })]);
  expect(a).toEqual(b);
  expect(cc.runs()).toBe(EMU_RUNTIME_SOURCES.length);
});

test("a dead run's staging directory and lock beside the entry are removed by the next build", async () => {
  const root = await scratchDir('tidarc-emu-runtime-cache-');
  const cacheDir = join(root, 'cache');
  const cc = fakeCompiler(root, 'cc');
  const tool = { path: cc.path, version: 'fake 1.0' };
  const entry = emulatorRuntimeEntry(tool, cacheDir);
  // What a SIGKILLed build leaves: its staging directory (half the objects) and its lock.
  const dead = spawnSync('true').pid;
  mkdirSync(`${entry}.tmp-${dead}`, { recursive: true });
  writeFileSync(join(`${entry}.tmp-${dead}`, 'emu_runtime.o'), 'half');
  writeFileSync(`${entry}.lock`, JSON.stringify({ pid: dead, host: hostname() }));
  await cachedEmulatorRuntime(tool, { cacheDir });
  expect(cc.runs()).toBe(EMU_RUNTIME_SOURCES.length);
  expect(readdirSync(join(cacheDir, 'emu-runtime'))).toEqual([entry.split('/').pop()]);
});

test('the sources digest changes with an edit of any file under the directories', async () => {
  const root = await scratchDir('tidarc-emu-runtime-cache-');
  writeFileSync(join(root, 'a.cpp'), 'int a;');
  writeFileSync(join(root, 'b.h'), 'int b;');
  const before = fileTreeDigest(root);
  expect(fileTreeDigest(root)).toBe(before);
  writeFileSync(join(root, 'b.h'), 'int b2;');
  expect(fileTreeDigest(root)).not.toBe(before);
  // A nested directory's files count, once even where two of the directories hold them (runtime/emu and runtime/emu/include).
  mkdirSync(join(root, 'include'));
  writeFileSync(join(root, 'include', 'c.h'), 'int c;');
  const nested = fileTreeDigest(root);
  expect(fileTreeDigest(root, ['', 'include'])).toBe(nested);
  writeFileSync(join(root, 'include', 'c.h'), 'int c2;');
  expect(fileTreeDigest(root)).not.toBe(nested);
});
