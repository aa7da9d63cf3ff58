/**
 * A compile's build as data: the targets' build stages applied to its units, one step per
 * compiler run (tool, arguments, inputs -> outputs). `tidarc compile` runs these steps
 * (src/build/compile-model.ts) and the generated CMakeLists.txt spells the same steps as
 * custom commands, so both build the same files with the same command lines.
 *
 * Paths are relative to the compiled output and steps run there. An argument is a plain
 * string, a source (a file of the output) or a product (a file a step writes): CMake writes
 * products into its build tree and reads sources from the output, and nothing else differs.
 * nvcc's --orig_src_path_name keeps the source path relative on purpose (see nvcc-unit.ts).
 */
import { TidarcError } from '../errors.js';
import { ARCHES, type ArchName } from './arch.js';
import type { ManifestGemmSm90a } from './gemm-sm90a.js';
import { type Manifest, OPS_UNIT } from './manifest.js';
import { type CppDialect, type Target, nvccFlags } from './targets.js';

/** A manifest's sm_90a GEMM units (gemm-sm90a.ts), compiled for sm_90a alone. */
type WithSm90a = { readonly gemmsSm90a?: readonly ManifestGemmSm90a[] };

export type StepArg = string | { readonly source: string } | { readonly product: string };

export interface BuildStep {
  /** The variant, operator or GEMM unit this step builds ('' for the CPU library's link). */
  readonly unit: string;
  readonly tool: 'nvcc' | 'cxx';
  readonly args: readonly StepArg[];
  /** Every file the result depends on: the unit's source, then the headers it may include. */
  readonly inputs: readonly string[];
  readonly output: string;
  /** An nvcc step's arches, each with real code in its fatbin (an sm_90a unit: sm_90a alone). */
  readonly arches?: readonly ArchName[];
}

export interface CudaBuild {
  readonly flags: readonly string[];
  readonly steps: readonly BuildStep[];
}

export interface CpuBuild {
  readonly flags: readonly string[];
  /** One object per source; the link step then reads them and writes `library`. */
  readonly compile: readonly BuildStep[];
  readonly link: BuildStep;
  readonly library: string;
}

/** Which of a compile's build stages run: everything, the CPU library only, or none. */
export type BuildTargets = 'all' | 'cpu' | 'none';

export interface BuildPlan {
  readonly cuda?: CudaBuild;
  readonly cpu?: CpuBuild;
}

/** The headers of a dialect's directory among `files` (paths of the compiled output): every unit may include any. */
function headersOf(files: readonly string[], dir: CppDialect['dir']): string[] {
  return files.filter((f) => f.startsWith(`${dir}/`) && /\.(h|cuh)$/.test(f)).sort();
}

/** The nvcc step of one unit: its fatbin beside its source unless `binary` says otherwise. */
export function nvccUnitStep(flags: readonly string[], unit: string, source: string, headers: readonly string[] = [], binary = source.replace(/\.cu$/, '.fatbin')): BuildStep {
  return {
    unit, tool: 'nvcc', output: binary, inputs: [source, ...headers],
    args: [...flags, '-Xcicc', `--orig_src_path_name=${source}`, '-o', { product: binary }, { source }],
  };
}

/** Every nvcc unit of a compile: each variant, the GPU operators, each GEMM shape, and the sm_90a units (GEMMs, compute-bound variants' attention). */
export function cudaUnits(manifest: Pick<Manifest, 'variants' | 'gemms'> & WithSm90a): { name: string; source: string; arch?: 'sm_90a' }[] {
  const gemms = [...new Map((manifest.gemms ?? []).map((g) => [g.unit, g.source])).entries()].map(([name, source]) => ({ name, source }));
  const sm90a = (manifest.gemmsSm90a ?? []).map((g) => ({ name: g.unit, source: g.source, arch: 'sm_90a' as const }));
  const attentionSm90a = manifest.variants.flatMap((v) => (v.sm90a ? [{ name: `${v.name}_sm90a`, source: v.sm90a.source, arch: 'sm_90a' as const }] : []));
  return [...manifest.variants.map((v) => ({ name: v.name, source: v.sources.cuda })), { name: OPS_UNIT, source: 'cuda/tidarc_ops.cu' }, ...gemms, ...sm90a, ...attentionSm90a];
}

/** The compilers a build of `targets` runs (`which` stages): nvcc for CUDA arches, a C++ compiler for the CPU library. */
export function buildTools(targets: readonly Target[], which: BuildTargets): { readonly nvcc: boolean; readonly cxx: boolean } {
  return {
    nvcc: which === 'all' && targets.some((t) => t.build.kind === 'units'),
    cxx: which !== 'none' && targets.some((t) => t.build.kind === 'library'),
  };
}

/**
 * The steps `targets` build for a compile whose manifest is `manifest` and whose output holds
 * `files`: the nvcc units of the CUDA arches (one fatbin each, real code for every arch) and the
 * CPU library. The emulator's modules are built when the emulated driver loads them, not here.
 */
export function planBuild(targets: readonly Target[], manifest: Pick<Manifest, 'variants' | 'gemms'> & WithSm90a, files: readonly string[], which: BuildTargets = 'all'): BuildPlan {
  const tools = buildTools(targets, which);
  const nvccArches = targets.flatMap((t) => (t.build.kind === 'units' && t.device ? [t.device] : []));
  const cpu = tools.cxx ? targets.find((t) => t.build.kind === 'library') : undefined;
  let cuda: CudaBuild | undefined;
  if (tools.nvcc) {
    // An arch-specific record whose base arch is built too (sm_90a beside sm_90) adds nothing to the
    // ordinary units: the base arch's code runs on that device. Building both doubled nvcc's time.
    const portable = nvccArches.filter((a) => !(a.specific && nvccArches.some((b) => b.name === a.specific!.base)));
    const flags = nvccFlags(portable);
    const headers = headersOf(files, 'cuda');
    // An sm_90a unit (wgmma, TMA) is real code for sm_90a alone, and built only when the compile targets it.
    const sm90aFlags = nvccFlags([ARCHES.sm_90a]);
    const units = cudaUnits(manifest).filter((u) => u.arch === undefined || nvccArches.some((a) => a.name === u.arch));
    const arches = portable.map((a) => a.name);
    cuda = { flags, steps: units.map((u) => ({ ...nvccUnitStep(u.arch ? sm90aFlags : flags, u.name, u.source, headers), arches: u.arch ? [u.arch] : arches })) };
  }
  return { ...(cuda ? { cuda } : {}), ...(cpu && cpu.build.kind === 'library' ? { cpu: cpuBuild(cpu.build, manifest, files) } : {}) };
}

function cpuBuild(stage: Extract<Target['build'], { kind: 'library' }>, manifest: Pick<Manifest, 'variants'>, files: readonly string[]): CpuBuild {
  const headers = headersOf(files, 'cpu');
  const sources = ['cpu/tidarc_cpu_library.cpp', ...manifest.variants.map((v) => v.sources.cpu)];
  const compile = sources.map((source): BuildStep => {
    const object = source.replace(/\.cpp$/, '.o');
    return { unit: source, tool: 'cxx', output: object, inputs: [source, ...headers], args: [...stage.flags, '-c', { source }, '-o', { product: object }] };
  });
  const link: BuildStep = {
    unit: '', tool: 'cxx', output: stage.library, inputs: [],
    args: [...stage.linkFlags, '-o', { product: stage.library }, ...compile.map((s) => ({ product: s.output }))],
  };
  return { flags: stage.flags, compile, link, library: stage.library };
}

/** A step's arguments with products at `productDir` + path (the output itself when ''). */
export function stepArgs(step: BuildStep, productDir = ''): string[] {
  return step.args.map((a) => (typeof a === 'string' ? a : 'source' in a ? a.source : `${productDir}${a.product}`));
}

/** Every file the steps write, for a build tree's directories. */
export function stepOutputs(plan: BuildPlan): string[] {
  const steps = [...(plan.cuda?.steps ?? []), ...(plan.cpu ? [...plan.cpu.compile, plan.cpu.link] : [])];
  return steps.map((s) => s.output);
}

/** Refuses an argument CMake would split or quote (a space, ';', a quote, '$'): the steps are spelled bare in CMakeLists.txt. */
export function checkBareArgs(plan: BuildPlan): void {
  const steps = [...(plan.cuda?.steps ?? []), ...(plan.cpu ? [...plan.cpu.compile, plan.cpu.link] : [])];
  for (const s of steps) {
    for (const a of stepArgs(s)) {
      if (/[\s;"'$\\]/.test(a)) throw new TidarcError('unsupported', 'a build argument cannot be spelled bare in CMakeLists.txt', { field: `build step ${s.output}`, value: a, allowed: 'no spaces, quotes, ";", "$" or "\\"' });
    }
  }
}
