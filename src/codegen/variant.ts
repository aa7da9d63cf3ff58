/**
 * An attention variant: one structured mask on one head configuration and dtype.
 * The kernels are generated per variant (and per tile config, which comes from the arch).
 */
import { TidarcError } from '../errors.js';
import type { MaskSpec } from '../ir/mask.js';
import { blockDiffusion, causal, tidarDecode } from '../ir/mask-builders.js';
import { type DType, type ModelSpec, MAX_DRAFT_COMPILE, MAX_HEADS, SUPPORTED_HEAD_DIMS } from '../ir/model.js';
import { AR_VARIANT, blockVariantName, prefillVariantName, tidarVariantName } from './variant-name.js';

export interface AttentionShape {
  readonly dtype: DType;
  readonly headDim: number;
  readonly qHeads: number;
  readonly kvHeads: number;
}

export interface AttentionVariant {
  /** Name inside one compiled model: `tidar_k4`, `ar`. */
  readonly name: string;
  /** Exported symbol stem, unique across models of different shapes. */
  readonly symbol: string;
  /** One line for comments and docs. */
  readonly description: string;
  readonly mask: MaskSpec;
  readonly shape: AttentionShape;
  /** Draft length for TiDAR decode variants. */
  readonly draft?: number;
}

export function groupSize(shape: AttentionShape): number {
  return shape.qHeads / shape.kvHeads;
}

export function validateShape(shape: AttentionShape): AttentionShape {
  if (!SUPPORTED_HEAD_DIMS.includes(shape.headDim)) {
    throw new TidarcError('unsupported', 'unsupported head dim', { field: 'headDim', value: shape.headDim, allowed: SUPPORTED_HEAD_DIMS.join(', ') });
  }
  if (shape.dtype !== 'bf16' && shape.dtype !== 'fp16') {
    throw new TidarcError('unsupported', 'unsupported dtype', { field: 'dtype', value: shape.dtype, allowed: 'bf16, fp16' });
  }
  for (const f of ['qHeads', 'kvHeads'] as const) {
    if (!Number.isInteger(shape[f]) || shape[f] < 1 || shape[f] > MAX_HEADS) {
      throw new TidarcError('invalid-spec', `head counts must be integers from 1 to ${MAX_HEADS}`, { field: f, value: shape[f], allowed: `1..${MAX_HEADS}` });
    }
  }
  if (shape.qHeads % shape.kvHeads !== 0) {
    throw new TidarcError('invalid-spec', 'query heads must be a multiple of KV heads', { field: 'qHeads', value: shape.qHeads, allowed: `a multiple of kvHeads (${shape.kvHeads})` });
  }
  return shape;
}

function shapeSuffix(s: AttentionShape): string {
  return `${s.dtype}_d${s.headDim}_q${s.qHeads}_kv${s.kvHeads}`;
}

export function variantForMask(name: string, mask: MaskSpec, shape: AttentionShape, description: string, draft?: number): AttentionVariant {
  if (!/^[a-z][a-z0-9_]*$/.test(name)) {
    throw new TidarcError('invalid-argument', 'variant names are lower-case identifiers', { field: 'name', value: name, allowed: '[a-z][a-z0-9_]*' });
  }
  validateShape(shape);
  return { name, symbol: `tidarc_attn_${name}_${shapeSuffix(shape)}`, description, mask, shape, ...(draft === undefined ? {} : { draft }) };
}

export function tidarDecodeVariant(draft: number, shape: AttentionShape): AttentionVariant {
  if (!Number.isInteger(draft) || draft < 1 || draft > MAX_DRAFT_COMPILE) {
    throw new TidarcError('invalid-argument', 'draft length out of range', { field: '--draft', value: draft, allowed: `integers from 1 to ${MAX_DRAFT_COMPILE}` });
  }
  const n = draft * (draft + 1);
  return variantForMask(tidarVariantName(draft), tidarDecode(draft), shape, `TiDAR decode step, draft length ${draft}: ${n} in-step tokens (${draft} drafts + ${draft} blocks of ${draft} mask tokens)`, draft);
}

/** The plain AR decode step: one new token that sees the prefix and itself. */
export function arVariant(shape: AttentionShape): AttentionVariant {
  return variantForMask(AR_VARIANT, causal(1), shape, 'AR decode step: 1 in-step token (the k = 0 case)');
}

/**
 * The trailing mask block of a TiDAR prefill: k mask tokens that see the whole (already
 * cached) prompt and each other; one bidirectional block, the block-diffusion kind.
 */
export function prefillBlockVariant(draft: number, shape: AttentionShape): AttentionVariant {
  return variantForMask(blockVariantName(draft), blockDiffusion(draft), shape, `prefill mask block: ${draft} mask tokens that see the prompt and each other`, draft);
}

/** Prompt rows of a prefill, PREFILL_CHUNK tokens a launch (the last chunk is padded at its end). */
export const PREFILL_CHUNK = 64;
export function prefillChunkVariant(shape: AttentionShape): AttentionVariant {
  return variantForMask(prefillVariantName(PREFILL_CHUNK), causal(PREFILL_CHUNK), shape, `prefill chunk: ${PREFILL_CHUNK} prompt tokens, causal among themselves, after the cached prompt so far`);
}

export function modelShape(spec: ModelSpec): AttentionShape {
  return { dtype: spec.dtype, headDim: spec.headDim, qHeads: spec.queryHeads, kvHeads: spec.kvHeads };
}

/**
 * Every variant a model compiles to: per draft length the TiDAR decode step and the prefill
 * mask block; then the AR step and the prefill chunk (everything a generation launches).
 */
export function variantsForModel(spec: ModelSpec, drafts: readonly number[] = spec.draftLengths): AttentionVariant[] {
  const shape = modelShape(spec);
  const unique = [...new Set(drafts)].sort((a, b) => a - b);
  return [
    ...unique.map((k) => tidarDecodeVariant(k, shape)),
    ...unique.map((k) => prefillBlockVariant(k, shape)),
    arVariant(shape),
    prefillChunkVariant(shape),
  ];
}

/**
 * The variants of a compile that `names` asks for (`tidarc compile --variant`), in the compile's
 * order. A filtered compile builds only these: a test that runs two variants need not wait for
 * g++ on the others. A name the compile does not make is an error naming those it does.
 */
export function pickVariants(all: readonly AttentionVariant[], names: readonly string[], field = 'variants'): AttentionVariant[] {
  const allowed = all.map((v) => v.name).join(', ');
  if (names.length === 0) throw new TidarcError('invalid-argument', 'no variant named', { field, allowed });
  const unknown = names.filter((n) => !all.some((v) => v.name === n));
  if (unknown.length > 0) throw new TidarcError('invalid-argument', 'no such variant in this compile', { field, value: unknown.join(','), allowed });
  return all.filter((v) => names.includes(v.name));
}
