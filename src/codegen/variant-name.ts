/**
 * The names of attention variants, made and read in one place: a compiled model's manifest,
 * its symbols and typed entry points, the runners' launches, the tuner's database and the
 * device check all meet on these strings.
 *   tidar_k<K>    TiDAR decode step of draft length K
 *   ar            AR decode step
 *   block_k<K>    the mask block of a TiDAR prefill (K mask tokens)
 *   prefill_c<C>  a prefill chunk of C prompt tokens
 */

export type VariantKey =
  | { readonly kind: 'tidar'; readonly draft: number }
  | { readonly kind: 'ar' }
  | { readonly kind: 'block'; readonly draft: number }
  | { readonly kind: 'prefill'; readonly chunk: number };

export const AR_VARIANT = 'ar';

export function variantName(key: VariantKey): string {
  switch (key.kind) {
    case 'tidar': return `tidar_k${key.draft}`;
    case 'ar': return AR_VARIANT;
    case 'block': return `block_k${key.draft}`;
    case 'prefill': return `prefill_c${key.chunk}`;
  }
}

export const tidarVariantName = (draft: number): string => variantName({ kind: 'tidar', draft });
export const blockVariantName = (draft: number): string => variantName({ kind: 'block', draft });
export const prefillVariantName = (chunk: number): string => variantName({ kind: 'prefill', chunk });

const PATTERN = /^(?:(tidar)_k([1-9]\d*)|(ar)|(block)_k([1-9]\d*)|(prefill)_c([1-9]\d*))$/;

/**
 * In-step tokens of a named variant (the mask builders' sizes: k(k + 1) for a TiDAR step, k for
 * a prefill mask block, the chunk, 1 for AR): with G query heads per KV head, its packed rows are
 * steps x G, which decide its row tile (plan.ts rowTileOf). 0 for a name this scheme does not make.
 */
export function variantSteps(name: string): number {
  const key = parseVariantName(name);
  if (!key) return 0;
  switch (key.kind) {
    case 'tidar': return key.draft * (key.draft + 1);
    case 'ar': return 1;
    case 'block': return key.draft;
    case 'prefill': return key.chunk;
  }
}

/** The key of a variant name, or undefined for a name this scheme does not make. */
export function parseVariantName(name: string): VariantKey | undefined {
  const m = PATTERN.exec(name);
  if (!m) return undefined;
  if (m[1]) return { kind: 'tidar', draft: Number(m[2]) };
  if (m[3]) return { kind: 'ar' };
  if (m[4]) return { kind: 'block', draft: Number(m[5]) };
  return { kind: 'prefill', chunk: Number(m[7]) };
}
