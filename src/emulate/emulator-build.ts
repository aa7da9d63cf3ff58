/**
 * Builds emulator executables: g++ compiles a variant's UNCHANGED generated .cu as C++
 * against runtime/emu (force-included tidarc_emu.h; tidarc_device.cuh switches to the
 * emulated primitives under TIDARC_EMULATOR) and links the emulator runtime and harness.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { TidarcError } from '../errors.js';
import { childProcessSignal } from '../fs/interrupt.js';
import { packageRoot } from '../util/paths.js';
import type { ManifestVariant } from '../codegen/manifest.js';

const exec = promisify(execFile);

/** -O1 keeps builds quick (~2 s a variant); shared memory is thread_local and never needs
 *  dynamic initialisation, which -fno-extern-tls-init tells the compiler. */
export const EMU_FLAGS: readonly string[] = ['-std=c++17', '-O1', '-g', '-fno-strict-aliasing', '-fno-extern-tls-init'];
/** The emulator runtime, compiled once per `tidarc emulate` run. */
export const EMU_RUNTIME_SOURCES: readonly string[] = ['emu_runtime.cpp', 'emu_memory.cpp', 'emu_warp.cpp', 'emu_fiber.cpp'];
/** The harness is built with each variant: it names the variant's kernels through -D. */
const HARNESS_SOURCE = 'emu_main.cpp';

export function emulatorSourceDir(): string {
  return join(packageRoot(), 'runtime', 'emu');
}

/** The emulator's headers, its stand-ins for cuda_bf16.h and cuda_fp16.h, and the ABI header. */
export function emulatorIncludeFlags(): string[] {
  const emu = emulatorSourceDir();
  return [`-I${emu}`, `-I${join(emu, 'include')}`, `-I${join(packageRoot(), 'templates', 'common')}`];
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
 */
export async function buildVariantEmulator(cxx: string, cudaSource: string, cudaDir: string, v: ManifestVariant, runtimeObjects: readonly string[], exe: string): Promise<void> {
  await compileWith(cxx, [
    ...EMU_FLAGS, ...emulatorIncludeFlags(), `-I${cudaDir}`,
    '-include', 'tidarc_emu.h',
    `-DTIDARC_EMU_KERNEL=${v.symbols.cuda}`, `-DTIDARC_EMU_COMBINE=${v.symbols.cudaCombine}`,
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
    `-DTIDARC_EMU_KERNEL=${v.symbols.cuda}`, `-DTIDARC_EMU_COMBINE=${v.symbols.cudaCombine}`,
    harness, '-o', exe,
  ], `${v.name} (GPU)`);
}
