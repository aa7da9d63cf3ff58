/**
 * Device code for the emulated CUDA driver (runtime/emu/fake_cuda.cpp): when $TIDARC_LIBCUDA
 * points the runtime at it, the cuda backend runs on the SIMT emulator, and each module it
 * loads ("X.fatbin") is the sibling "X.emu.so" built here from the same .cu sources. This lets
 * the whole cuda backend (driver calls, launches, device memory, the GPU operators) run on a
 * machine without a GPU; the emulator checks every access. Slow: for tests and debugging.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeTextFileAtomic } from '../fs/atomic-write.js';
import { buildEmulatedModule, emulateCompiledDir, emulatedModuleKey, emulatedModulePath } from './emulated-driver.js';
import { buildEmulatedGemmModules } from './gemm-modules.js';
import { readManifest } from '../runtime/kernel-library.js';
import { OPS_MODULE } from '../runtime/cuda/gpu-runner.js';
import { opKernels } from '../runtime/cuda/op-abi.js';

/** cuDeviceGetName of the emulated driver starts with this. */
export const EMULATED_DEVICE_PREFIX = 'tidarc emulated';

/**
 * Builds the .emu.so of every variant, of the GPU operators and of the GEMM units in a compiled kernels
 * directory, skipping those already built (a recompile replaces the directory, and them).
 */
export async function buildEmulatedCudaModules(kernelsDir: string, log: (line: string) => void = () => undefined): Promise<void> {
  const manifest = readManifest(kernelsDir);
  const key = await emulatedModuleKey();
  if (await dropStaleModules(join(kernelsDir, 'cuda'), key)) log('the emulator changed since these modules were built: rebuilding them');
  const missing = manifest.variants.filter((v) => !existsSync(emulatedModulePath(resolve(kernelsDir, v.sources.cuda.replace(/\.cu$/, '.fatbin')))));
  if (missing.length > 0) await emulateCompiledDir(kernelsDir, { variants: missing.map((v) => v.name), log });
  const ops = emulatedModulePath(resolve(kernelsDir, OPS_MODULE));
  if (!existsSync(ops)) {
    await buildEmulatedModule(join(kernelsDir, 'cuda', 'tidarc_ops.cu'), ops, opKernels(), { includeDirs: [join(kernelsDir, 'cuda')] });
    log(`built ${OPS_MODULE.replace(/\.fatbin$/, '.emu.so')}`);
  }
  await buildEmulatedGemmModules(kernelsDir, manifest, log);
  await writeTextFileAtomic(join(kernelsDir, 'cuda', MODULES_STAMP), `${key}\n`);
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
