/**
 * The emulated CUDA driver (runtime/emu/fake_cuda.cpp) and its modules: a libcuda.so.1 that
 * runs the generated CUDA on the SIMT emulator, so the runtime's CUDA backend (which dlopens
 * libcuda.so.1, or $TIDARC_LIBCUDA) runs its host code on a machine without a GPU.
 * cuModuleLoad("X.fatbin") loads the sibling "X.emu.so": the same .cu compiled with the
 * emulator flags, plus a generated shim with one `<kernel>__emu_entry(void* param)` per
 * kernel that the driver's cuLaunchKernel calls with kernelParams[0].
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { TidarcError } from '../errors.js';
import { openOutputDir } from '../build/output-dir.js';
import { runPool } from '../build/pool.js';
import { type Tool, findCxx } from '../build/toolchain.js';
import { writeTextFileAtomic } from '../fs/atomic-write.js';
import { withFileLock } from '../fs/file-lock.js';
import { removeOnInterrupt, settled } from '../fs/interrupt.js';
import { removeStaleTemps } from '../fs/stale-temps.js';
import { sha256 } from '../util/hash.js';
import { packageRoot } from '../util/paths.js';
import type { ManifestVariant } from '../codegen/manifest.js';
import { attentionSm90aModule } from '../runtime/cuda/attention-launch.js';
import { emulatedModulePath, readManifest } from '../runtime/kernel-library.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, EMU_MODULE_FLAGS, EMU_RUNTIME_SOURCES, compileWith, emulatorIncludeFlags, emulatorSourceDir } from './emulator-build.js';

const exec = promisify(execFile);

/** The file name every client dlopens; also the library's soname. */
export const EMULATED_DRIVER_LIBRARY = 'libcuda.so.1';
/** The driver's own source, then the emulator runtime compiled into the same library. */
export const EMULATED_DRIVER_SOURCES: readonly string[] = ['fake_cuda.cpp', 'fake_cuda_streams.cpp', 'fake_cuda_tensor_map.cpp', ...EMU_RUNTIME_SOURCES];
const MODULE_FLAGS = EMU_MODULE_FLAGS;

export interface EmulatedKernel {
  /** The kernel's extern "C" symbol. */
  readonly name: string;
  /** The C type of its single by-value parameter (TidarcAttentionArgs, a struct of tidarc_ops_abi.h, or TidarcGemmArgs). */
  readonly argsType: string;
}

export interface EmulatedBuildOptions {
  /** The C++ compiler (default: $CXX, else g++, c++, clang++). */
  readonly cxx?: string;
}

export interface EmulatedDriverOptions extends EmulatedBuildOptions {
  /** How errors name the output directory: the option or setting it came from (default 'outDir'). */
  readonly outField?: string;
  /** Called once when the library is really compiled (not when an up-to-date one is found): a CLI says what the wait is. */
  readonly onBuild?: () => void;
}

export interface EmulatedModuleOptions extends EmulatedBuildOptions {
  /** Searched for the .cu's headers before templates/cuda (default: the .cu's directory). */
  readonly includeDirs?: readonly string[];
}

export interface EmulatedDirOptions extends EmulatedBuildOptions {
  /** Variant names (default: every variant of the manifest). */
  readonly variants?: readonly string[];
  readonly jobs?: number;
  /** Each module built, a line `[k/n] built X` counted over this call's variants. */
  readonly log?: (line: string) => void;
  /**
   * Instead of `log`'s own count: each module built as `built X` to this counted log (countedLog),
   * which a caller building more than the variants (buildEmulatedCudaModules) counts over everything.
   */
  readonly step?: (line: string) => void;
}

/**
 * A log whose lines are numbered `[k/total] ` in the order they come: one count over every module
 * a build makes (variants, operators, GEMMs), not one per kind.
 */
export function countedLog(total: number, log: (line: string) => void): (line: string) => void {
  let k = 0;
  return (line) => log(`[${++k}/${total}] ${line}`);
}

export interface EmulatedVariantModule {
  readonly variant: string;
  /** What the runtime passes to cuModuleLoad (the variant's .fatbin, which need not exist). */
  readonly module: string;
  /** The .emu.so the emulated driver loads for it. */
  readonly library: string;
  readonly kernels: readonly string[];
}

async function compiler(cxx: string | undefined): Promise<Tool> {
  if (cxx !== undefined) {
    const { stdout } = await exec(cxx, ['--version'], { timeout: 20_000 }).catch((e: Error) => {
      throw new TidarcError('unsupported', `the C++ compiler does not run (${e.message.split('\n')[0]})`, { field: 'cxx', value: cxx });
    });
    return { path: cxx, version: stdout.split('\n')[0]!.trim() };
  }
  const probe = await findCxx();
  if (!probe.found) throw new TidarcError('unsupported', `the emulated CUDA driver needs a C++ compiler (${probe.reason})`);
  return probe.tool;
}

/** Compiles into a temp file beside `out`, then renames: a reader never sees half a library. */
async function compileAtomic(cxx: string, args: readonly string[], out: string, what: string): Promise<void> {
  removeStaleTemps(dirname(out));
  const temp = `${out}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  removeOnInterrupt(temp);
  try {
    await compileWith(cxx, [...args, '-o', temp], what);
    await rename(temp, out);
  } finally {
    await rm(temp, { force: true });
    settled(temp);
  }
}

/** "dir/X.fatbin" (or any extension) -> "dir/X.emu.so": the rule of fake_cuda.cpp's cuModuleLoad. */
export { emulatedModulePath };

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The entry points of a module (pure): each kernel declared, and called with its struct. */
export function emulatedModuleShim(kernels: readonly EmulatedKernel[]): string {
  for (const k of kernels) {
    for (const [field, value] of [['name', k.name], ['argsType', k.argsType]] as const) {
      if (!IDENTIFIER.test(value)) throw new TidarcError('invalid-argument', 'not a C identifier', { field: `kernels.${field}`, value, allowed: 'letters, digits and _' });
    }
  }
  if (kernels.length === 0) throw new TidarcError('invalid-argument', 'a module needs at least one kernel', { field: 'kernels' });
  const entries = [...kernels].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((k) => [
    `extern "C" void ${k.name}(${k.argsType} args);`,
    `extern "C" void ${k.name}__emu_entry(void* param) { ${k.name}(*static_cast<const ${k.argsType}*>(param)); }`,
    `extern "C" const unsigned long long ${k.name}__emu_param_bytes = sizeof(${k.argsType});`,
  ].join('\n'));
  return [
    '/*! generated by tidarc (src/emulate/emulated-driver.ts) -- do not edit */',
    '// Entry points of the emulated CUDA driver: cuLaunchKernel calls <kernel>__emu_entry with',
    '// kernelParams[0], the address of the kernel\'s single struct argument; a stream capture copies',
    '// <kernel>__emu_param_bytes of it.',
    '#include "tidarc_abi.h"',
    '#if __has_include("tidarc_ops_abi.h")',
    '#include "tidarc_ops_abi.h"',
    '#endif',
    '#if __has_include("tidarc_gemm_abi.h")',
    '#include "tidarc_gemm_abi.h"',
    '#endif',
    '#if __has_include("tidarc_gemm_sm90a_abi.h")',
    '#include "tidarc_gemm_sm90a_abi.h"',
    '#endif',
    '#if __has_include("tidarc_attention_sm90a_abi.h")',
    '#include "tidarc_attention_sm90a_abi.h"',
    '#endif',
    '',
    ...entries,
    '',
  ].join('\n');
}

/**
 * Builds `outSoPath` from a .cu and the shim of `kernels`: g++ compiles the UNCHANGED CUDA
 * source as C++ for the emulator (force-included tidarc_emu.h). Emulator symbols stay
 * undefined: the emulated driver provides them when it loads the module.
 */
export async function buildEmulatedModule(cuPath: string, outSoPath: string, kernels: readonly EmulatedKernel[], options: EmulatedModuleOptions = {}): Promise<string> {
  const shim = emulatedModuleShim(kernels);
  const cxx = await compiler(options.cxx);
  const scratch = await mkdtemp(join(tmpdir(), 'tidarc-emu-module-'));
  removeOnInterrupt(scratch);
  try {
    const shimPath = join(scratch, 'emu_entries.cpp');
    await writeFile(shimPath, shim);
    const includes = (options.includeDirs ?? [dirname(cuPath)]).map((d) => `-I${d}`);
    await compileAtomic(cxx.path, [
      ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...MODULE_FLAGS, ...emulatorIncludeFlags(), ...includes, `-I${join(packageRoot(), 'templates', 'cuda')}`,
      '-include', 'tidarc_emu.h', '-x', 'c++', cuPath, shimPath,
    ], outSoPath, `the module ${outSoPath}`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
    settled(scratch);
  }
  return outSoPath;
}

/** The emulator's headers (runtime/emu/*.h and its CUDA header stubs), which every module and the driver compile against. */
async function emulatorHeaders(): Promise<string[]> {
  const emu = emulatorSourceDir();
  const headers = (await readdir(emu)).filter((f) => f.endsWith('.h')).sort().map((f) => join(emu, f));
  const stubs = (await readdir(join(emu, 'include'))).sort().map((f) => join(emu, 'include', f));
  return [...headers, ...stubs];
}

async function buildKey(cxx: Tool, flags: readonly string[], files: readonly string[]): Promise<string> {
  const texts = await Promise.all(files.map(async (f) => `${f.slice(packageRoot().length)}\n${await readFile(f, 'utf8')}`));
  return sha256([cxx.version, flags.join(' '), ...texts].join('\n'));
}

/** Every input of the driver build: sources, headers, compiler and flags. */
async function driverKey(cxx: Tool, flags: readonly string[]): Promise<string> {
  const emu = emulatorSourceDir();
  return buildKey(cxx, flags, [...EMULATED_DRIVER_SOURCES.map((f) => join(emu, f)), ...await emulatorHeaders(), join(driverApiDir(), 'cuda_driver_api.h')]);
}

/**
 * What an emulated module is built against besides its own .cu (which the kernel cache's key
 * covers): the emulator's headers, the compiler and the flags. A module built under another key
 * is stale (emulatedModulesStamp).
 */
export async function emulatedModuleKey(cxxPath?: string): Promise<string> {
  return buildKey(await compiler(cxxPath), [...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...MODULE_FLAGS, ...emulatorIncludeFlags()], await emulatorHeaders());
}

function driverApiDir(): string {
  return join(packageRoot(), 'runtime', 'src', 'cuda');
}

const driverBuilds = new Map<string, Promise<string>>();

/**
 * Builds the emulated driver into `outDir` and returns the path of its libcuda.so.1 (point
 * $TIDARC_LIBCUDA at it). Cached: rebuilt only when a source, header, the compiler or the
 * flags change (a stamp beside the library holds their hash); concurrent calls share a build,
 * in this process and (a lock file in `outDir`) across processes.
 * `outDir` must be absent, empty or an earlier emulated driver build: a directory with
 * anything else (another libcuda.so.1) is refused, never written into.
 */
export function buildEmulatedDriver(outDir: string, options: EmulatedDriverOptions = {}): Promise<string> {
  const dir = resolve(outDir);
  let build = driverBuilds.get(dir);
  if (!build) {
    build = buildDriverUncached(dir, outDir, options).finally(() => driverBuilds.delete(dir));
    driverBuilds.set(dir, build);
  }
  return build;
}

async function buildDriverUncached(dir: string, given: string, options: EmulatedDriverOptions): Promise<string> {
  const cxx = await compiler(options.cxx);
  const emu = emulatorSourceDir();
  // --no-undefined: every function cuda_driver_api.h declares must be defined in fake_cuda.cpp.
  const linkFlags = [`-Wl,-soname,${EMULATED_DRIVER_LIBRARY}`, '-Wl,--no-undefined', '-pthread', '-ldl'];
  const key = await driverKey(cxx, [...EMU_FLAGS, ...MODULE_FLAGS, ...linkFlags]);
  const library = join(dir, EMULATED_DRIVER_LIBRARY), stamp = `${library}.stamp`;
  const upToDate = async () => existsSync(library) && (await readFile(stamp, 'utf8').catch(() => '')) === `${key}\n`;
  if (await upToDate()) return library;
  const field = options.outField ?? 'outDir';
  openOutputDir({ path: given, kind: 'emulated-driver', field });
  // Processes sharing one directory (vitest workers, two CLIs on one cache) compile it once
  // (20-60 s): the others wait on the lock, then find the stamp current. The lock lives inside
  // the directory, so nothing is written beside a user's --out.
  return withFileLock(join(dir, 'build.lock'), { what: 'building the emulated CUDA driver', field }, async () => {
    if (await upToDate()) return library;
    options.onBuild?.();
    await compileAtomic(cxx.path, [
      ...EMU_FLAGS, ...MODULE_FLAGS, ...emulatorIncludeFlags(), `-I${driverApiDir()}`,
      ...EMULATED_DRIVER_SOURCES.map((f) => join(emu, f)), ...linkFlags,
    ], library, 'the emulated CUDA driver');
    await writeTextFileAtomic(stamp, `${key}\n`);
    return library;
  });
}

/**
 * For a directory written by `tidarc compile`: builds cuda/<variant>.emu.so beside each
 * variant's .fatbin path (its one kernel), and for a variant with an sm_90a kernel (a compile
 * for sm_90a) that kernel's module where it is not built yet, so that the runtime's CUDA
 * backend loads the compiled model unchanged on the emulated driver (a 9.0 device).
 */
export async function emulateCompiledDir(dir: string, options: EmulatedDirOptions = {}): Promise<EmulatedVariantModule[]> {
  const manifest = readManifest(dir);
  let variants = manifest.variants;
  if (options.variants !== undefined) {
    const known = new Set(variants.map((v) => v.name));
    const unknown = options.variants.filter((name) => !known.has(name));
    if (unknown.length > 0) throw new TidarcError('invalid-argument', 'no such variant in this directory', { field: 'variants', value: unknown.join(','), allowed: [...known].join(', ') });
    variants = variants.filter((v) => options.variants!.includes(v.name));
  }
  const cxx = (await compiler(options.cxx)).path;
  // A variant's sm_90a kernel (a compile for sm_90a) where its module is not built: the emulated device is a 9.0 one, whose launches take it.
  const sm90aMissing = (v: ManifestVariant): boolean => v.sm90a !== undefined && !existsSync(emulatedModulePath(attentionSm90aModule(dir, v.sm90a)));
  const step = options.step ?? countedLog(variants.length + variants.filter(sm90aMissing).length, options.log ?? (() => undefined));
  return runPool(variants, options.jobs ?? availableParallelism(), async (v) => {
    const fatbin = manifest.build?.nvcc?.variants[v.name]?.binary ?? v.sources.cuda.replace(/\.cu$/, '.fatbin');
    const module = resolve(dir, fatbin), library = emulatedModulePath(module);
    const kernels = [v.symbols.cuda];
    await buildEmulatedModule(join(dir, v.sources.cuda), library, kernels.map((name) => ({ name, argsType: manifest.abi.struct })), { cxx, includeDirs: [join(dir, 'cuda')] });
    step(`built ${fatbin.replace(/\.[^./]*$/, '.emu.so')}`);
    if (sm90aMissing(v)) {
      const so = emulatedModulePath(attentionSm90aModule(dir, v.sm90a!));
      await buildEmulatedModule(join(dir, v.sm90a!.source), resolve(so), [{ name: v.sm90a!.symbol, argsType: 'TidarcAttentionSm90aArgs' }], { cxx, includeDirs: [join(dir, 'cuda')] });
      step(`built ${relative(dir, so)}`);
    }
    return { variant: v.name, module, library, kernels };
  });
}
