/**
 * What a compile is for, as data: one Target record per place generated code runs (the CPU,
 * CUDA per arch, the SIMT emulator), with its device limits, default tile, C++ dialect, the
 * files it emits and its build stage. generate.ts emits and plans from it, kernel-source.ts
 * spells code in its dialect, compile-model.ts runs its build steps and CMakeLists.txt is
 * rendered from the same steps. Adding sm_XX stays one record in arch.ts.
 */
import { TidarcError } from '../errors.js';
import { type ArchName, type ArchSpec, type TileConfig, ARCHES, ARCH_NAMES, CPU_TILE } from './arch.js';
import type { DType } from '../util/dtype.js';
import type { Backend } from './target.js';

export type TargetName = 'cpu' | 'emulator' | ArchName;

/** How a target's C++ is spelled. */
export interface CppDialect {
  /** Directory of the target's sources in a compiled output, and the extension of a kernel unit. */
  readonly dir: 'cpu' | 'cuda';
  readonly sourceExt: '.cpp' | '.cu';
  /** The template of a variant's kernel unit (templates/). */
  readonly variantTemplate: string;
  /** A 16-bit element type as the kernels name it. */
  readonly elementTypes: Readonly<Record<DType, string>>;
  /** Declares a mask table: constant memory on a device (trees have no closed form), a constexpr array on the host. */
  readonly tableQualifier: string;
}

/** Files a target adds to a compiled output beside its kernel units: output path -> template path. */
export type StaticFiles = readonly (readonly [string, string])[];

/**
 * How a target's sources become binaries. 'units': each unit compiles alone to a binary beside
 * it (nvcc: one fatbin per variant, operators, GEMM shape). 'library': every unit to an object,
 * linked into one shared library. 'modules': g++ builds each unit as an .emu.so module when the
 * emulated driver first loads it (src/emulate), never at compile time.
 */
export type BuildStage =
  | { readonly kind: 'units'; readonly tool: 'nvcc'; readonly flags: readonly string[]; readonly binaryExt: '.fatbin' }
  | { readonly kind: 'library'; readonly tool: 'cxx'; readonly flags: readonly string[]; readonly linkFlags: readonly string[]; readonly library: string }
  | { readonly kind: 'modules'; readonly tool: 'cxx'; readonly flags: readonly string[]; readonly kernelFlags: readonly string[]; readonly moduleFlags: readonly string[]; readonly includeDirs: readonly string[]; readonly binaryExt: '.emu.so' };

export interface Target {
  readonly name: TargetName;
  /** What runs the code: the CPU library, or the cuda backend (a GPU, or the emulated driver). */
  readonly backend: Backend;
  /** The device whose limits plans are checked against (the emulator reports one); none on the CPU. */
  readonly device?: ArchSpec;
  readonly tile: TileConfig;
  readonly dialect: CppDialect;
  readonly staticFiles: StaticFiles;
  /** Whether the linear layers' GEMM units are emitted (the CPU runner has its own matmul). */
  readonly gemms: boolean;
  /**
   * Also the compute-bound variants' sm_90a attention (attention-sm90a.ts), with the compile's
   * arches naming sm_90a so the selection rule takes it on the 9.0 device; not the sm_90a GEMMs.
   */
  readonly sm90aAttention?: boolean;
  readonly build: BuildStage;
}

/** A 16-bit element type as CUDA spells it (the attention variants and the GEMM units alike). */
export const CUDA_ELEMENT_TYPES: Readonly<Record<DType, string>> = { bf16: '__nv_bfloat16', fp16: '__half' };

const CUDA_DIALECT: CppDialect = {
  dir: 'cuda', sourceExt: '.cu', variantTemplate: 'cuda/variant.cu.hbs', elementTypes: CUDA_ELEMENT_TYPES, tableQualifier: '__constant__ const',
};
const CPU_DIALECT: CppDialect = {
  dir: 'cpu', sourceExt: '.cpp', variantTemplate: 'cpu/variant.cpp.hbs', elementTypes: { bf16: 'tidarc_cpu::Bf16', fp16: 'tidarc_cpu::Fp16' }, tableQualifier: 'static constexpr',
};

const CUDA_FILES: StaticFiles = [
  ['cuda/tidarc_abi.h', 'common/tidarc_abi.h'],
  ['cuda/tidarc_attention.cuh', 'cuda/tidarc_attention.cuh'],
  ['cuda/tidarc_device.cuh', 'cuda/tidarc_device.cuh'],
  ['cuda/tidarc_ops.cu', 'cuda/tidarc_ops.cu'],
  ['cuda/tidarc_ops_abi.h', 'cuda/tidarc_ops_abi.h'],
];
const CPU_FILES: StaticFiles = [
  ['cpu/tidarc_abi.h', 'common/tidarc_abi.h'],
  ['cpu/tidarc_cpu_attention.h', 'cpu/tidarc_cpu_attention.h'],
];

/** -fatbin of real code per arch (no PTX JIT surprises); -Xptxas -v reports registers and spills. */
export const NVCC_BASE_FLAGS: readonly string[] = ['-fatbin', '-O3', '-std=c++17', '-Xptxas', '-v'];
export const CPU_FLAGS: readonly string[] = ['-O3', '-march=native', '-std=c++17', '-fPIC', '-pthread'];
/** -O1 keeps emulator builds quick (~2 s a variant); shared memory is thread_local and never needs
 *  dynamic initialisation, which -fno-extern-tls-init tells the compiler. */
export const EMU_FLAGS: readonly string[] = ['-std=c++17', '-O1', '-g', '-fno-strict-aliasing', '-fno-extern-tls-init'];
/** Added for a kernel's own source, never the emulator's: a call for each load and store the
 *  compiler cannot prove private (kernel-address instrumentation with no sanitizer runtime;
 *  runtime/emu/emu_memory.cpp defines the calls and race-checks plain shared-memory accesses).
 *  About 7% of an emulated run's CPU time (npm run bench:emulator-race). */
export const EMU_KERNEL_FLAGS: readonly string[] = [
  '-fsanitize=kernel-address', '--param=asan-instrumentation-with-call-threshold=0', '--param=asan-stack=0', '--param=asan-globals=0',
  '--param=asan-memintrin=0', '--param=asan-use-after-return=0', '-fno-sanitize-address-use-after-scope',
];

/** The emulator's stage: g++ builds each CUDA unit as a module against runtime/emu (paths from the package root). */
export const EMULATOR_BUILD = {
  kind: 'modules', tool: 'cxx', flags: EMU_FLAGS, kernelFlags: EMU_KERNEL_FLAGS, moduleFlags: ['-fPIC', '-shared'], includeDirs: ['runtime/emu', 'runtime/emu/include', 'templates/common'], binaryExt: '.emu.so',
} as const satisfies BuildStage;

function cudaTarget(arch: ArchSpec): Target {
  return {
    name: arch.name, backend: 'cuda', device: arch, tile: arch.tile, dialect: CUDA_DIALECT, staticFiles: CUDA_FILES, gemms: true,
    build: { kind: 'units', tool: 'nvcc', flags: [...NVCC_BASE_FLAGS, arch.gencode], binaryExt: '.fatbin' },
  };
}

export const TARGETS: Readonly<Record<TargetName, Target>> = {
  cpu: {
    name: 'cpu', backend: 'cpu', tile: CPU_TILE, dialect: CPU_DIALECT, staticFiles: CPU_FILES, gemms: false,
    build: { kind: 'library', tool: 'cxx', flags: CPU_FLAGS, linkFlags: ['-shared', '-pthread'], library: 'cpu/libtidarc_cpu.so' },
  },
  // The emulated driver reports an sm_90 device; g++ compiles the unchanged CUDA sources against runtime/emu.
  // Its 9.0 device runs a variant's sm_90a attention where one is made, as an H200 does (only
  // variants of >= 256 rows a KV head get one: no small test model pays for it). The sm_90a GEMMs
  // are left out: every model's linear layers would then run through wgmma on the emulator.
  emulator: {
    name: 'emulator', backend: 'cuda', device: ARCHES.sm_90, tile: ARCHES.sm_90.tile, dialect: CUDA_DIALECT, staticFiles: CUDA_FILES, gemms: true,
    sm90aAttention: true, build: EMULATOR_BUILD,
  },
  ...(Object.fromEntries(ARCH_NAMES.map((a) => [a, cudaTarget(ARCHES[a])])) as Record<ArchName, Target>),
};

export const TARGET_NAMES = Object.keys(TARGETS) as TargetName[];

export function parseTarget(name: string, field = 'target'): Target {
  const t = (TARGETS as Record<string, Target | undefined>)[name];
  if (!t) throw new TidarcError('invalid-argument', 'unknown target', { field, value: name, allowed: TARGET_NAMES.join(', ') });
  return t;
}

/**
 * The targets of a compile, in a fixed order (cpu, then the devices in ARCHES order, emulator
 * last): `targets` when given, else what `tidarc compile --arch` means: the CPU and those arches.
 */
export function compileTargets(o: { readonly targets?: readonly TargetName[]; readonly arches?: readonly ArchName[] }): Target[] {
  const names = new Set<TargetName>(o.targets ?? ['cpu', ...(o.arches ?? [])]);
  for (const n of names) parseTarget(n, o.targets ? 'targets' : '--arch');
  if (![...names].some((n) => n !== 'cpu') && o.targets === undefined) {
    throw new TidarcError('invalid-argument', 'at least one GPU architecture is needed', { field: '--arch', allowed: ARCH_NAMES.join(', ') });
  }
  if (names.size === 0) throw new TidarcError('invalid-argument', 'at least one target is needed', { field: 'targets', allowed: TARGET_NAMES.join(', ') });
  const order: TargetName[] = ['cpu', ...ARCH_NAMES, 'emulator'];
  return order.filter((n) => names.has(n)).map((n) => TARGETS[n]);
}

/** The devices a compile's CUDA sources are planned and compiled for (the emulator's device included). */
export function deviceArches(targets: readonly Target[]): ArchSpec[] {
  return [...new Map(targets.flatMap((t) => (t.device ? [[t.device.name, t.device] as const] : []))).values()];
}

/** nvcc's flags for `arches`: one fatbin carries real code for each. */
export function nvccFlags(arches: readonly ArchSpec[]): string[] {
  return [...NVCC_BASE_FLAGS, ...arches.map((a) => a.gencode)];
}

/** The files every target of a compile emits besides its kernel units, sorted by path, each once. */
export function staticFilesOf(targets: readonly Target[]): [string, string][] {
  return [...new Map(targets.flatMap((t) => t.staticFiles.map(([out, src]) => [out, src] as const))).entries()].sort(([a], [b]) => (a < b ? -1 : 1));
}

/** The dialects a compile's sources are written in, each once (its directory names it). */
export function dialectsOf(targets: readonly Target[]): CppDialect[] {
  return [...new Map(targets.map((t) => [t.dialect.dir, t.dialect] as const)).values()];
}
