/**
 * A runner launches every step kind of its model (step-kinds.ts: the decode steps, AR, the
 * prefill chunk and mask blocks), so its kernels must hold them all. A filtered compile
 * (`tidarc compile --variant`, manifest.omittedVariants) is fine for calling its variants
 * directly, not for a runner: that is refused when the runner is made, in one line naming
 * what is missing, instead of failing mid-decode at the first launch of a missing variant.
 */
import { TidarcError } from '../../errors.js';
import type { ModelSpec } from '../../ir/model.js';
import type { Manifest } from '../../codegen/manifest.js';
import { stepKinds } from '../../codegen/step-kinds.js';

export function checkNeededVariants(spec: Pick<ModelSpec, 'draftLengths'>, manifest: Pick<Manifest, 'variants' | 'omittedVariants'>, source?: string): void {
  const have = manifest.variants.map((v) => v.name);
  const missing = stepKinds(spec).filter((k) => !have.includes(k));
  if (missing.length === 0) return;
  const why = (manifest.omittedVariants ?? []).some((n) => missing.includes(n)) ? ' (left out by `tidarc compile --variant`: compile without it)' : '';
  throw new TidarcError('invalid-argument', `the compiled kernels lack variants this model runs${why}`, { field: 'variants', value: missing.join(','), allowed: `kernels with ${stepKinds(spec).join(', ')}`, ...(source === undefined ? {} : { source }) });
}
