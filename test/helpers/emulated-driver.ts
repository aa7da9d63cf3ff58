/**
 * What the emulated-driver tests share, built once per checkout instead of once per test file
 * (each build is 20-60 s of g++ on CI): the driver, the GPU operators' module and a kernel cache
 * for `tidarc run --backend cuda` children. All live under node_modules/.cache/tidarc-test, which
 * `npm ci` empties, and are only read by tests; a test that changes what it is given (a module,
 * a cache entry) must build its own.
 *   - the driver: buildEmulatedDriver's own cache (a stamp of its sources, compiler and flags;
 *     a lock in the directory, so concurrent vitest workers build it once);
 *   - the operators' module and the kernel cache: a directory per hash of everything g++ reads
 *     for an emulated module (runtime/emu, templates, flags, compiler; src/ too for the kernel
 *     cache), under a file lock. The kernel cache's own key leaves runtime/emu and the
 *     generator's code out (tidarc's version stands for them), so without this a test cache
 *     that outlives an edit would hand out kernels or modules built from the old code.
 *     Entries unused for an hour beyond the newest 3 of their kind are removed (test-cache.ts).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { findCxx } from '../../src/build/toolchain.js';
import { templatesDigest } from '../../src/codegen/templates.js';
import { buildEmulatedDriver, buildEmulatedModule, emulatedModulePath } from '../../src/emulate/emulated-driver.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, EMU_MODULE_FLAGS, EMU_RUNTIME_SOURCES, buildEmulatorRuntime, emulatorSourceDir } from '../../src/emulate/emulator-build.js';
import { fileTreeDigest } from '../../src/fs/file-tree-digest.js';
import { withFileLock } from '../../src/fs/file-lock.js';
import { makeDirs } from '../../src/fs/make-dirs.js';
import { opKernels } from '../../src/runtime/cuda/op-abi.js';
import { sha256, sha256Hasher } from '../../src/util/hash.js';
import { packageRoot } from '../../src/util/paths.js';
import { markUsed, pruneTestCache } from './test-cache.js';

/** The tests' build cache: inside the checkout, so two checkouts never share one. */
export const TEST_CACHE = join(packageRoot(), 'node_modules', '.cache', 'tidarc-test');
const FIELD = `the test cache (${TEST_CACHE})`;

/** The shared libcuda.so.1 over the emulator: point a child's $TIDARC_LIBCUDA at it. */
export function sharedEmulatedDriver(): Promise<string> {
  return buildEmulatedDriver(join(TEST_CACHE, 'emulated-driver'), { outField: FIELD });
}

let inputs: Promise<string> | undefined;

/** Hex hash of what an emulated module's build reads besides its own .cu: one per process. */
export function emulatedBuildKey(): Promise<string> {
  inputs ??= (async () => {
    const cxx = await findCxx();
    const hash = sha256Hasher();
    hash.update(`${cxx.found ? cxx.tool.version : 'no compiler'}\n${EMU_FLAGS.join(' ')}\n${EMU_KERNEL_FLAGS.join(' ')}\n${EMU_MODULE_FLAGS.join(' ')}\n${templatesDigest()}\n`);
    hash.update(fileTreeDigest(packageRoot(), [relative(packageRoot(), emulatorSourceDir())]));
    return hash.digest();
  })();
  return inputs;
}

/**
 * Hex hash of src/: the kernel cache keys an entry by tidarc's version, not by the generator's
 * code, so a test cache that outlives an edit of the code generator must change with it.
 */
function sourceDigest(): string {
  return fileTreeDigest(packageRoot(), ['src']);
}

let pruned = false;

/** Marks an entry of the cache used and, once a process, removes stale ones (test-cache.ts). */
function taken(dir: string): void {
  markUsed(dir);
  if (pruned) return;
  pruned = true;
  pruneTestCache(TEST_CACHE);
}

/** `dir` made once under its lock: `build` runs only where `done` is absent. */
async function once(dir: string, done: string, what: string, build: () => Promise<unknown>): Promise<void> {
  if (!existsSync(done)) {
    makeDirs(dir, { field: FIELD, value: dir });
    await withFileLock(`${dir}.lock`, { what, field: FIELD }, async () => {
      if (!existsSync(done)) await build();
    });
  }
  taken(dir);
}

/**
 * The GPU operators (templates/cuda/tidarc_ops.cu) as the emulated driver loads them: returns
 * the .fatbin path to hand CudaDevice (never written; the driver loads the .emu.so beside it).
 */
export async function sharedOpsModule(): Promise<string> {
  const kernels = opKernels();
  const dir = join(TEST_CACHE, `ops-${sha256(`${await emulatedBuildKey()}\n${JSON.stringify(kernels)}`).slice(0, 16)}`);
  const module = join(dir, 'tidarc_ops.fatbin'), library = emulatedModulePath(module);
  const templates = join(packageRoot(), 'templates');
  await once(dir, library, 'building the GPU operators for the emulated driver', () =>
    buildEmulatedModule(join(templates, 'cuda', 'tidarc_ops.cu'), library, kernels, { includeDirs: [join(templates, 'cuda'), join(templates, 'common')] }));
  return module;
}

/**
 * The emulator runtime's object files (buildEmulatorRuntime: a g++ compile per source) that the emulator
 * executables of a test link, built once for every test file instead of once per file. Only for
 * tests that link them unchanged.
 */
export async function sharedEmulatorRuntime(): Promise<string[]> {
  const cxx = await findCxx();
  if (!cxx.found) throw new Error(`the emulator runtime needs a C++ compiler (${cxx.reason})`);
  const dir = join(TEST_CACHE, `emu-runtime-${sha256(`${await emulatedBuildKey()}\n${EMU_RUNTIME_SOURCES.join(' ')}`).slice(0, 16)}`);
  const list = join(dir, 'objects.txt');
  // The list names the objects by file name, resolved against the entry: an entry built through
  // another path to this cache (a checkout reached through a link, or a copy) listed absolute paths
  // that no longer exist once that path is gone, and every linking test failed with ld's "cannot find".
  await once(dir, list, 'building the emulator runtime for the tests', async () => {
    const objects = await buildEmulatorRuntime(cxx.tool.path, dir);
    writeFileSync(list, `${objects.map((o) => basename(o)).join('\n')}\n`);
  });
  return readFileSync(list, 'utf8').split('\n').filter(Boolean).map((o) => join(dir, basename(o)));
}

/**
 * A kernel cache ($TIDARC_CACHE) for children that run models on the emulated driver: the
 * kernel cache's lock makes each model's kernels and modules compile once across test files.
 * Only for tests that read their entries; one that alters an entry needs its own cache.
 */
export async function sharedKernelCache(): Promise<string> {
  const dir = join(TEST_CACHE, `kernels-${sha256(`${await emulatedBuildKey()}\n${sourceDigest()}`).slice(0, 16)}`);
  makeDirs(dir, { field: FIELD, value: dir });
  taken(dir);
  return dir;
}
