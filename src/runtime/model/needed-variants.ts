/**
 * A runner launches every step kind of its model (step-kinds.ts: the decode steps, AR, the
 * prefill chunk and mask blocks), so its kernels must hold them all. A filtered compile
 * (`tidarc compile --variant`, manifest.omittedVariants) is fine for calling its variants
 * directly, not for a runner: that is refused when the runner is made, in one line naming
 * what is missing, instead of failing mid-decode at the first launch of a missing variant. The
 * same for a step kind whose GEMM kernels such a compile left out (manifest.omittedGemms).
 */
import { TidarcError } from '../../errors.js';
import type { ModelSpec } from '../../ir/model.js';
import type { Manifest } from '../../codegen/manifest.js';
import { kindsLackingGemms } from '../../codegen/gemm-omission.js';
import { stepKinds } from '../../codegen/step-kinds.js';

const LEFT_OUT = ' (left out by `tidarc compile --variant`: compile without it)';

export function checkNeededVariants(spec: Pick<ModelSpec, 'draftLengths'>, manifest: Pick<Manifest, 'variants' | 'omittedVariants' | 'gemms' | 'gemmsSm90a' | 'omittedGemms'>, source?: string): void {
  const have = manifest.variants.map((v) => v.name);
  const kinds = stepKinds(spec);
  const where = source === undefined ? {} : { source };
  const missing = kinds.filter((k) => !have.includes(k));
  if (missing.length > 0) {
    const why = (manifest.omittedVariants ?? []).some((n) => missing.includes(n)) ? LEFT_OUT : '';
    throw new TidarcError('invalid-argument', `the compiled kernels lack variants this model runs${why}`, { field: 'variants', value: missing.join(','), allowed: `kernels with ${kinds.join(', ')}`, ...where });
  }
  const noGemms = kindsLackingGemms(manifest, kinds);
  if (noGemms.length > 0) {
    throw new TidarcError('invalid-argument', `the compiled kernels lack GEMM kernels of step kinds this model runs${LEFT_OUT}`, { field: 'steps', value: noGemms.join(','), allowed: `kernels with every GEMM of ${kinds.join(', ')}`, ...where });
  }
}
