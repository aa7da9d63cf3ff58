/**
 * Whether the cuda backend launches a model's kernels with programmatic dependent launch ("PDL
 * on": cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, a
 * programmatic edge in a captured graph), decided once per loaded model, here and nowhere else.
 *
 * A kernel so launched may be scheduled before its predecessor on the stream has finished: it is
 * correct only if its first global memory access comes after griddepcontrol.wait, which tidarc's
 * kernels issue (tidarc::grid_dependency_wait) only where built for sm_90+: SASS for sm_8x, or
 * sm_8x PTX JIT-compiled on a newer device, has no wait. Hence every condition below; where one
 * fails the launches are plain cuLaunchKernel, as before, and `why` says which (an explicit
 * `pdl: true` that cannot be honoured is not an error: the model runs without PDL).
 */
import { ARCHES, type ArchName } from '../../codegen/arch.js';

/** The manifest's top-level `programmaticLaunch` (codegen: the kernels keep the PDL contract from this compute capability). */
export interface ProgrammaticLaunchField {
  readonly minComputeCapability: readonly [number, number];
}

export interface ProgrammaticLaunchInputs {
  /** loadModel's `pdl` (undefined: on where allowed; false: `--no-pdl`). */
  readonly option: boolean | undefined;
  /** The compiled directory's manifest: older compiles have no `programmaticLaunch`. */
  readonly manifest: { readonly programmaticLaunch?: ProgrammaticLaunchField };
  /** The device's compute capability. */
  readonly computeCapability: readonly [number, number];
  /** The arches the compile built (manifest.arches). */
  readonly compiledArches: readonly ArchName[];
  /** Whether the driver exports cuLaunchKernelEx (CudaDevice.programmaticLaunch). */
  readonly driverHasLaunchEx: boolean;
}

export interface ProgrammaticLaunchDecision {
  readonly on: boolean;
  /** Why it is off (which condition failed), or what made it on. */
  readonly why: string;
}

const cc = (c: readonly [number, number]): string => `${c[0]}.${c[1]}`;
const atLeast = (a: readonly [number, number], b: readonly [number, number]): boolean => a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1]);

/** The one decision (pure): PDL on only where every condition of the design holds. */
export function programmaticLaunchFor(i: ProgrammaticLaunchInputs): ProgrammaticLaunchDecision {
  if (i.option === false) return { on: false, why: 'turned off (--no-pdl, or loadModel pdl: false)' };
  const field = i.manifest.programmaticLaunch;
  const min = field?.minComputeCapability;
  if (!Array.isArray(min) || min.length !== 2 || !min.every((x) => Number.isInteger(x) && x >= 0)) {
    return { on: false, why: 'the compiled kernels\' manifest has no programmaticLaunch (compiled before PDL): recompile to get it' };
  }
  const minCc = [min[0]!, min[1]!] as const;
  if (!atLeast(i.computeCapability, minCc)) {
    return { on: false, why: `the device's compute capability ${cc(i.computeCapability)} is below ${cc(minCc)}, the least the kernels wait for their predecessor on` };
  }
  // SASS built for the device's major (minor up to the device's, at least the field's minimum) has the wait; JIT'd older PTX may not.
  const native = i.compiledArches.filter((a) => {
    const c = ARCHES[a]?.computeCapability;
    return c !== undefined && c[0] === i.computeCapability[0] && c[1] <= i.computeCapability[1] && atLeast(c, minCc);
  });
  if (native.length === 0) {
    return { on: false, why: `the compile has no arch of compute capability ${i.computeCapability[0]}.x (it built ${i.compiledArches.join(', ') || 'none'}): the device would run JIT-compiled older PTX, which has no griddepcontrol.wait` };
  }
  if (!i.driverHasLaunchEx) return { on: false, why: 'the CUDA driver has no cuLaunchKernelEx (a CUDA 12.0+ driver has it)' };
  return { on: true, why: `${native.join(', ')} kernels keep the PDL contract (manifest: from ${cc(minCc)}), device ${cc(i.computeCapability)}, the driver has cuLaunchKernelEx` };
}
