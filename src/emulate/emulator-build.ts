/**
 * Builds emulator executables: g++ compiles a variant's UNCHANGED generated .cu as C++
 * against runtime/emu (force-included tidarc_emu.h; tidarc_device.cuh switches to the
 * emulated primitives under TIDARC_EMULATOR) and links the emulator runtime and harness.
 * Flags and include directories are the emulator target's build stage (codegen/targets.ts).
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { TidarcError } from '../errors.js';
import { childProcessSignal } from '../fs/interrupt.js';
import { packageRoot } from '../util/paths.js';
import type { ManifestVariant } from '../codegen/manifest.js';
import { EMULATOR_BUILD } from '../codegen/targets.js';

const exec = promisify(execFile);

export const EMU_FLAGS: readonly string[] = EMULATOR_BUILD.flags;
/** Added where a kernel's source is compiled (not the emulator's): its plain loads and stores are checked (emu_memory.cpp). */
export const EMU_KERNEL_FLAGS: readonly string[] = EMULATOR_BUILD.kernelFlags;
/** What makes a unit a module the emulated driver dlopens. */
export const EMU_MODULE_FLAGS: readonly string[] = EMULATOR_BUILD.moduleFlags;
/** The emulator runtime, compiled once per compiler and source edit (runtime-cache.ts keeps it in the kernel cache). */
export const EMU_RUNTIME_SOURCES: readonly string[] = ['emu_runtime.cpp', 'emu_memory.cpp', 'emu_global.cpp', 'emu_warp.cpp', 'emu_fiber.cpp', 'emu_hopper_sync.cpp', 'emu_hopper_mma.cpp'];
/** The harness is built with each variant: it names the variant's kernels through -D. */
const HARNESS_SOURCE = 'emu_main.cpp';

export function emulatorSourceDir(): string {
  return join(packageRoot(), 'runtime', 'emu');
}

/** The emulator's headers, its stand-ins for cuda_bf16.h and cuda_fp16.h, and the ABI header. */
export function emulatorIncludeFlags(): string[] {
  return EMULATOR_BUILD.includeDirs.map((d) => `-I${join(packageRoot(), ...d.split('/'))}`);
}

/** Runs the compiler; a failure is one line with its first error. */
export async function compileWith(cxx: string, args: string[], what: string): Promise<void> {
  try {
    await exec(cxx, args, { maxBuffer: 64 << 20, signal: childProcessSignal });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    const lines = (err.stderr || err.message).split('\n').filter(Boolean);
    const first = lines.find((l) => /error:|undefined reference/.test(l) && !/^collect2/.test(l)) ?? lines[0] ?? 'no output';
    throw new TidarcError('build-failed', `building the emulator for ${what} failed: ${first}`);
  }
}

/** Compiles the emulator runtime once into `workDir`; returns the object files. */
export async function buildEmulatorRuntime(cxx: string, workDir: string): Promise<string[]> {
  await mkdir(workDir, { recursive: true });
  return Promise.all(EMU_RUNTIME_SOURCES.map(async (src) => {
    const obj = join(workDir, src.replace(/\.cpp$/, '.o'));
    await compileWith(cxx, [...EMU_FLAGS, ...emulatorIncludeFlags(), '-c', join(emulatorSourceDir(), src), '-o', obj], src);
    return obj;
  }));
}

/**
 * Builds the emulator executable of one variant. `cudaSource` is the generated .cu (any
 * file with the same kernels, e.g. a mutated copy); its directory supplies the headers.
 * `kernelFlags`: [] leaves plain accesses unchecked (bench/emulator-race-check.ts's baseline).
 */
export async function buildVariantEmulator(cxx: string, cudaSource: string, cudaDir: string, v: ManifestVariant, runtimeObjects: readonly string[], exe: string,
  kernelFlags: readonly string[] = EMU_KERNEL_FLAGS): Promise<void> {
  await compileWith(cxx, [
    ...EMU_FLAGS, ...kernelFlags, ...emulatorIncludeFlags(), `-I${cudaDir}`,
    '-include', 'tidarc_emu.h',
    `-DTIDARC_EMU_KERNEL=${v.symbols.cuda}`,
    '-x', 'c++', cudaSource, join(emulatorSourceDir(), HARNESS_SOURCE), '-x', 'none', ...runtimeObjects, '-o', exe,
  ], v.name);
}

/**
 * Builds the GPU twin of an emulator executable (runtime/gpu/gpu_main.cu): the same variant
 * source and the same run protocol, compiled by nvcc for `arch`, so the checks that run on
 * the emulator run unchanged on a GPU.
 */
export async function buildVariantForGpu(nvcc: string, cudaSource: string, cudaDir: string, v: ManifestVariant, gencode: string, exe: string): Promise<void> {
  const harness = join(packageRoot(), 'runtime', 'gpu', 'gpu_main.cu');
  await compileWith(nvcc, [
    '-std=c++17', '-O3', gencode, `-I${cudaDir}`, `-I${join(packageRoot(), 'templates', 'common')}`, `-I${emulatorSourceDir()}`,
    `-DTIDARC_VARIANT_SOURCE="${resolve(cudaSource)}"`,
    `-DTIDARC_EMU_KERNEL=${v.symbols.cuda}`,
    harness, '-o', exe,
  ], `${v.name} (GPU)`);
}
