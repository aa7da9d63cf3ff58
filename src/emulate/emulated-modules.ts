/**
 * Device code for the emulated CUDA driver (runtime/emu/fake_cuda.cpp): when $TIDARC_LIBCUDA
 * points the runtime at it, the cuda backend runs on the SIMT emulator, and each module it
 * loads ("X.fatbin") is the sibling "X.emu.so" built here from the same .cu sources. This lets
 * the whole cuda backend (driver calls, launches, device memory, the GPU operators) run on a
 * machine without a GPU; the emulator checks every access. Slow: for tests and debugging.
 */
import { existsSync } from 'node:fs';
import { copyFile, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeTextFileAtomic } from '../fs/atomic-write.js';
import { withFileLock } from '../fs/file-lock.js';
import { makeDirs } from '../fs/make-dirs.js';
import { templatesDigest } from '../codegen/templates.js';
import { sha256Hasher } from '../util/hash.js';
import { buildEmulatedModule, countedLog, emulateCompiledDir, emulatedModuleKey, emulatedModulePath } from './emulated-driver.js';
import { buildEmulatedGemmModules, emulatedGemmModulesToBuild } from './gemm-modules.js';
import { buildEmulatedAttentionSm90aModules, emulatedAttentionSm90aToBuild } from './attention-sm90a-modules.js';
import { adoptSharedModules, publishSharedModules, sourceInputs } from './shared-modules.js';
import { readManifest } from '../runtime/kernel-library.js';
import { OPS_MODULE } from '../runtime/cuda/gpu-runner.js';
import { opKernels } from '../runtime/cuda/op-abi.js';

/** cuDeviceGetName of the emulated driver starts with this (defined beside the kernel library, which checks it too). */
export { EMULATED_DEVICE_PREFIX } from '../runtime/kernel-library.js';

/**
 * Builds the .emu.so of every variant, of the GPU operators and of the GEMM units in a compiled kernels
 * directory, skipping those already built (a recompile replaces the directory, and them). With
 * `sharedDir` (the kernel cache's), the GPU operators' module is built there once and copied, and
 * a module another entry built from the same sources is copied too (shared-modules.ts).
 * Each module it builds is one line `[k/n] built X`, counted over all of them.
 */
export async function buildEmulatedCudaModules(kernelsDir: string, log: (line: string) => void = () => undefined, sharedDir?: string): Promise<void> {
  const manifest = readManifest(kernelsDir);
  const key = await emulatedModuleKey();
  if (await dropStaleModules(join(kernelsDir, 'cuda'), key)) log('the emulator changed since these modules were built: rebuilding them');
  if (sharedDir !== undefined) {
    const adopted = await adoptSharedModules(kernelsDir, sharedDir, key);
    if (adopted.length > 0) log(`${adopted.length} modules (${adopted.join(', ')}) copied from another entry of the cache, built from the same sources`);
  }
  const missing = manifest.variants.filter((v) => !existsSync(emulatedModulePath(resolve(kernelsDir, v.sources.cuda.replace(/\.cu$/, '.fatbin')))));
  const ops = emulatedModulePath(resolve(kernelsDir, OPS_MODULE));
  // The operators' module is built here, or into sharedDir where no entry built it yet (else copied from there: no build).
  const opsShared = existsSync(ops) || sharedDir === undefined ? undefined : emulatedModulePath(join(await sharedOpsDir(kernelsDir, sharedDir, key), 'tidarc_ops.fatbin'));
  const buildsOps = !existsSync(ops) && (opsShared === undefined || !existsSync(opsShared));
  const total = missing.length + (buildsOps ? 1 : 0) + emulatedGemmModulesToBuild(kernelsDir, manifest).length + emulatedAttentionSm90aToBuild(kernelsDir, manifest).length;
  const step = countedLog(total, log);
  if (missing.length > 0) await emulateCompiledDir(kernelsDir, { variants: missing.map((v) => v.name), step });
  if (!existsSync(ops)) {
    if (sharedDir === undefined) {
      await buildEmulatedModule(join(kernelsDir, 'cuda', 'tidarc_ops.cu'), ops, opKernels(), { includeDirs: [join(kernelsDir, 'cuda')] });
      step(`built ${OPS_MODULE.replace(/\.fatbin$/, '.emu.so')}`);
    } else {
      const shared = await sharedOpsModule(kernelsDir, sharedDir, key, log, buildsOps ? step : undefined);
      const temp = `${ops}.${process.pid}.tmp`;
      await copyFile(shared, temp);
      await rename(temp, ops);
    }
  }
  await buildEmulatedGemmModules(kernelsDir, manifest, step);
  await buildEmulatedAttentionSm90aModules(kernelsDir, manifest, step);
  if (sharedDir !== undefined) await publishSharedModules(kernelsDir, sharedDir, key);
  await writeTextFileAtomic(join(kernelsDir, 'cuda', MODULES_STAMP), `${key}\n`);
}

/**
 * The sources of the GPU operators' module in a kernels directory's cuda/: tidarc_ops.cu and the
 * headers it includes. Not every header there: an sm_90a-eligible entry also holds the Hopper
 * headers, which the operators never read, and hashing them gave such an entry a second, identical
 * module (g++ seconds, and emulated-backend.test.ts's "one shared module" failed when an sm_90a
 * model's entry came first).
 */
const opsInputs = (cuda: string): Promise<string[]> => sourceInputs(cuda, 'tidarc_ops.cu');

/**
 * Where `sharedDir` keeps the GPU operators' module for the sources in `kernelsDir`/cuda: a
 * directory named by the hash of everything its build reads (those sources, the templates, the
 * kernels, the emulator's `key`), so entries whose sources are the same share it.
 */
export async function sharedOpsDir(kernelsDir: string, sharedDir: string, key: string): Promise<string> {
  const cuda = join(kernelsDir, 'cuda');
  const hash = sha256Hasher();
  hash.update(`${key}\n${templatesDigest()}\n${JSON.stringify(opKernels())}\n`);
  for (const name of await opsInputs(cuda)) {
    hash.update(`${name}\n`);
    hash.update(await readFile(join(cuda, name)));
  }
  return join(sharedDir, `emulated-ops-${hash.digest().slice(0, 16)}`);
}

/**
 * The GPU operators' module is the same in every entry of a kernel cache (its sources are the
 * templates') and costs seconds of g++ each time: built once into sharedOpsDir, from a copy of the
 * sources there (the emulator's messages name those files, which outlive any one entry), under
 * that directory's lock; returns the library. `step` (the caller counted a build of it): its
 * line, also where another process built it while this one waited on the lock.
 */
async function sharedOpsModule(kernelsDir: string, sharedDir: string, key: string, log: (line: string) => void, step?: (line: string) => void): Promise<string> {
  const dir = await sharedOpsDir(kernelsDir, sharedDir, key);
  const library = emulatedModulePath(join(dir, 'tidarc_ops.fatbin'));
  if (existsSync(library)) {
    step?.(`${library}: built meanwhile by another process`);
    return library;
  }
  const field = `the emulated modules shared by the kernel cache's entries (${sharedDir})`;
  makeDirs(dir, { field, value: dir });
  await withFileLock(`${dir}.lock`, { what: 'building the GPU operators for the emulated driver', field, log }, async () => {
    if (existsSync(library)) {
      step?.(`${library}: built meanwhile by another process`);
      return;
    }
    const cuda = join(kernelsDir, 'cuda');
    for (const name of await opsInputs(cuda)) await writeFile(join(dir, name), await readFile(join(cuda, name)));
    await buildEmulatedModule(join(dir, 'tidarc_ops.cu'), library, opKernels(), { includeDirs: [dir] });
    (step ?? log)(`built ${library}`);
  });
  return library;
}

/**
 * The GPU operators' module alone, for the sources of a kernels directory: built once into
 * `sharedDir` as buildEmulatedCudaModules builds it (or found there), the entry left as it is.
 * Returns the .fatbin path to hand CudaDevice (the emulated driver loads the .emu.so beside it).
 * For a tool that launches only the operators (the device check's launch overheads).
 */
export async function emulatedOpsModule(kernelsDir: string, sharedDir: string, log: (line: string) => void = () => undefined): Promise<string> {
  const key = await emulatedModuleKey();
  await sharedOpsModule(kernelsDir, sharedDir, key, log);
  return join(await sharedOpsDir(kernelsDir, sharedDir, key), 'tidarc_ops.fatbin');
}

/** Beside the modules: the emulatedModuleKey they were built under. */
export const MODULES_STAMP = 'emu-modules.stamp';

/**
 * Removes the .emu.so modules of `cudaDir` when they were built under another key than `key` (the
 * emulator's headers, compiler or flags changed since: the kernel cache's key does not cover
 * them), so they are rebuilt; true when it removed any.
 */
export async function dropStaleModules(cudaDir: string, key: string): Promise<boolean> {
  const stamp = await readFile(join(cudaDir, MODULES_STAMP), 'utf8').catch(() => '');
  if (stamp === `${key}\n`) return false;
  const stale = (await readdir(cudaDir).catch(() => [] as string[])).filter((f) => f.endsWith('.emu.so'));
  await Promise.all(stale.map((f) => rm(join(cudaDir, f), { force: true })));
  return stale.length > 0;
}
