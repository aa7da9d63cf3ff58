// openEmulatedKernelLibrary takes the emulator runtime's objects from the kernel cache
// (runtime-cache.ts cachedEmulatorRuntime), as `tidarc emulate` does: a second open compiles no
// runtime object, only its variants' executables. A stand-in compiler (a shell script that writes
// its -o file and logs what it compiled) keeps this fast; test/emulate/runtime.test.ts links and
// runs the real objects. Needs: nothing (sh).
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test, vi } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { openEmulatedKernelLibrary } from '../../src/emulate/emulated-library.js';
import { EMU_RUNTIME_SOURCES } from '../../src/emulate/emulator-build.js';
import { emulatorRuntimeEntry } from '../../src/emulate/runtime-cache.js';
import { smallSpec } from '../helpers/random-model.js';
import { scratchDir } from '../helpers/scratch.js';

/** Logs each run's source (a runtime .cpp, or the variant's kernel symbol) to `log`; fails for `failOn`. */
function fakeCompiler(dir: string, failOn = '$none'): { path: string; version: string; runs: () => string[] } {
  const log = join(dir, 'cc.runs');
  const path = join(dir, 'cc');
  writeFileSync(path, `#!/bin/sh
out=''; what=''; prev=''
for a in "$@"; do
  [ "$prev" = -o ] && out="$a"
  case "$a" in -DTIDARC_EMU_KERNEL=*) what="$a";; *.cpp) [ -z "$what" ] && what="$a";; esac
  prev="$a"
done
echo "$what" >> '${log}'
case "$what" in *'${failOn}') echo "error: stand-in failure" >&2; exit 1;; esac
echo "output of $what" > "$out"
`);
  chmodSync(path, 0o755);
  return { path, version: 'fake 1.0', runs: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []) };
}

async function compiledDir(root: string): Promise<{ dir: string; variants: number }> {
  const dir = join(root, 'kernels');
  await compileModel({ spec: smallSpec('emulib', [2]), arches: ['sm_80'], outDir: dir, build: 'none', log: () => undefined });
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { variants: unknown[] };
  return { dir, variants: manifest.variants.length };
}

const runtimeRuns = (runs: string[]): string[] => runs.filter((r) => r.endsWith('.cpp'));

test('a second open compiles no emulator runtime object, only the variants', { timeout: 60_000 }, async () => {
  const root = await scratchDir('tidarc-emulib-cache-');
  const cacheDir = join(root, 'cache');
  const cc = fakeCompiler(root);
  const { dir, variants } = await compiledDir(root);
  const lines: string[] = [];
  const first = await openEmulatedKernelLibrary(dir, { cacheDir, compiler: cc, log: (l) => lines.push(l) });
  first.close();
  expect(runtimeRuns(cc.runs())).toHaveLength(EMU_RUNTIME_SOURCES.length);
  expect(cc.runs()).toHaveLength(EMU_RUNTIME_SOURCES.length + variants);
  const entry = emulatorRuntimeEntry(cc, cacheDir);
  expect(lines.join('\n')).toContain(`building the emulator runtime (first use; kept in ${entry})`);

  lines.length = 0;
  const second = await openEmulatedKernelLibrary(dir, { cacheDir, compiler: cc, log: (l) => lines.push(l) });
  expect(second.backend).toBe('emulator');
  expect(second.manifest.variants).toHaveLength(variants);
  second.close();
  expect(runtimeRuns(cc.runs())).toHaveLength(EMU_RUNTIME_SOURCES.length);
  expect(cc.runs()).toHaveLength(EMU_RUNTIME_SOURCES.length + 2 * variants);
  expect(lines).toEqual([`emulator runtime: cached (${entry})`]);
});

test('without cacheDir the runtime is kept under $TIDARC_CACHE', { timeout: 60_000 }, async () => {
  const root = await scratchDir('tidarc-emulib-cache-');
  const cc = fakeCompiler(root);
  const { dir } = await compiledDir(root);
  vi.stubEnv('TIDARC_CACHE', join(root, 'env-cache'));
  try {
    (await openEmulatedKernelLibrary(dir, { compiler: cc })).close();
    (await openEmulatedKernelLibrary(dir, { compiler: cc })).close();
    expect(existsSync(join(emulatorRuntimeEntry(cc, join(root, 'env-cache')), 'objects.json'))).toBe(true);
    expect(runtimeRuns(cc.runs())).toHaveLength(EMU_RUNTIME_SOURCES.length);
  } finally {
    vi.unstubAllEnvs();
  }
});

test('close() removes the temp directory before it returns; a variant that fails to build leaves none', { timeout: 60_000 }, async () => {
  const root = await scratchDir('tidarc-emulib-cache-');
  const tmp = join(root, 'tmp');
  const { dir } = await compiledDir(root);
  const cc = fakeCompiler(root, 'tidarc_attn_ar_bf16_d64_q4_kv2');
  mkdirSync(tmp);
  mkdirSync(join(root, 'ok'));
  const ok = fakeCompiler(join(root, 'ok'));
  vi.stubEnv('TMPDIR', tmp);
  try {
    const lib = await openEmulatedKernelLibrary(dir, { cacheDir: join(root, 'cache'), compiler: ok });
    expect(readdirSync(tmp)).toHaveLength(1);
    lib.close();
    expect(readdirSync(tmp)).toEqual([]);
    await expect(openEmulatedKernelLibrary(dir, { cacheDir: join(root, 'cache'), compiler: cc })).rejects.toThrow(/building the emulator for ar failed: error: stand-in failure/);
    expect(readdirSync(tmp)).toEqual([]);
  } finally {
    vi.unstubAllEnvs();
  }
});
