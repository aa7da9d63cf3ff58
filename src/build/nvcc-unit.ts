/**
 * The nvcc command line of one unit of a compile (a variant, the operators, a GEMM shape),
 * run in the output's staging directory with paths relative to it: the CUDA targets' build
 * stage applied to the unit (src/codegen/build-steps.ts, which CMakeLists.txt spells too).
 *
 * nvcc names a translation unit's internal symbols (anonymous namespaces, constants with
 * internal linkage) after a hash of the source's absolute path, which it passes to cicc as
 * --orig_src_path_name: the same .cu compiled into two output directories gave fatbins that
 * differed in those names, so caches keyed on content missed. A later --orig_src_path_name
 * replaces nvcc's; the path relative to the output keeps the fatbin a function of the source
 * alone (test/build/compile-reproducible.test.ts compares the bytes).
 */
import { nvccUnitStep, stepArgs } from '../codegen/build-steps.js';

export function nvccUnitArgs(flags: readonly string[], source: string, binary: string): string[] {
  return stepArgs(nvccUnitStep(flags, '', source, [], binary));
}
