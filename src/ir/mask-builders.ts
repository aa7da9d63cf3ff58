/**
 * Builders for the named mask kinds (see docs/tidar.md). Each returns a
 * validated MaskSpec; bad parameters give one sentence naming the parameter.
 */
import { TidarcError, requireInteger } from '../errors.js';
import { type MaskSpec, type StepToken, validateMask } from './mask.js';

/** Largest draft length / block / length we accept: keeps n = k(k+1) and dense tables sane. */
export const MAX_DRAFT = 64;
export const MAX_LENGTH = 8192;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/**
 * TiDAR decode step, draft length k: tokens 0..k-1 are the drafts (causal chain,
 * positions P+i); token k*j+s is slot s of pre-draft block j (j = 1..k), position
 * P+j+s, seeing drafts d[0..j-1] and its own block.
 */
export function tidarDecode(draft: number): MaskSpec {
  const k = requireInteger('draft', draft, 1, MAX_DRAFT);
  const tokens: StepToken[] = [];
  for (let i = 0; i < k; i++) tokens.push({ offset: i, ancestors: range(i), segment: 'drafts' });
  for (let j = 1; j <= k; j++) {
    for (let s = 0; s < k; s++) tokens.push({ offset: j + s, ancestors: range(j), group: j, segment: `block ${j}` });
  }
  return validateMask({ kind: 'tidar-decode', params: { draft: k }, prefix: 'all', tokens });
}

/**
 * TiDAR prefill: S prompt tokens (causal, positions P..P+S-1), then one block of k
 * mask tokens (positions P+S..P+S+k-1) that see the whole prompt and each other.
 */
export function tidarPrefill(length: number, draft: number): MaskSpec {
  const S = requireInteger('length', length, 1, MAX_LENGTH);
  const k = requireInteger('draft', draft, 1, MAX_DRAFT);
  const tokens: StepToken[] = range(S).map((i) => ({ offset: i, ancestors: range(i), segment: 'prompt' }));
  for (let s = 0; s < k; s++) tokens.push({ offset: S + s, ancestors: range(S), group: 0, segment: 'masks' });
  return validateMask({ kind: 'tidar-prefill', params: { length: S, draft: k }, prefix: 'all', tokens });
}

/**
 * TiDAR training layout: S clean tokens then S mask tokens, positions [0..S-1, 0..S-1].
 * Clean q sees clean keys <= q; mask q of block b = floor(q/B) sees clean keys < b*B and
 * the mask tokens of its own block. There is no cached prefix.
 */
export function tidarTrain(length: number, block: number): MaskSpec {
  const S = requireInteger('length', length, 1, MAX_LENGTH);
  const B = requireInteger('block', block, 1, S);
  const tokens: StepToken[] = range(S).map((i) => ({ offset: i, ancestors: range(i), segment: 'clean' }));
  for (let t = 0; t < S; t++) {
    const b = Math.floor(t / B);
    tokens.push({ offset: t, ancestors: range(b * B), group: b, segment: `mask block ${b}` });
  }
  return validateMask({ kind: 'tidar-train', params: { length: S, block: B }, prefix: 'none', tokens });
}

/** Plain causal attention over S new tokens after a cached prefix (S = 1 is the AR step). */
export function causal(length: number): MaskSpec {
  const S = requireInteger('length', length, 1, MAX_LENGTH);
  const tokens = range(S).map((i) => ({ offset: i, ancestors: range(i), segment: 'tokens' }));
  return validateMask({ kind: 'causal', params: { length: S }, prefix: 'all', tokens });
}

/** Block-diffusion decode (BD3-LM, SDAR): one bidirectional block over a visible cache. */
export function blockDiffusion(block: number): MaskSpec {
  const B = requireInteger('block', block, 1, MAX_LENGTH);
  const tokens = range(B).map((s) => ({ offset: s, ancestors: [], group: 0, segment: 'block' }));
  return validateMask({ kind: 'block-diffusion', params: { block: B }, prefix: 'all', tokens });
}

/**
 * Speculative tree (Medusa / EAGLE): parents[i] is node i's parent index, -1 for a root
 * hanging off the prefix. Parents must come before their children. A node sees the
 * prefix, its ancestors and itself; position P + depth.
 */
export function tree(parents: readonly number[]): MaskSpec {
  if (parents.length < 1 || parents.length > MAX_LENGTH) {
    throw new TidarcError('invalid-spec', 'a tree needs between 1 and ' + MAX_LENGTH + ' nodes', { field: 'parents', value: parents.length, allowed: `1..${MAX_LENGTH} entries` });
  }
  const tokens: StepToken[] = [];
  parents.forEach((p, i) => {
    if (!Number.isInteger(p) || p < -1 || p >= i) {
      throw new TidarcError('invalid-spec', 'each parent must be -1 or the index of an earlier node', { field: `parents[${i}]`, value: p, allowed: i === 0 ? '-1' : `-1..${i - 1}` });
    }
    const ancestors = p < 0 ? [] : [...tokens[p]!.ancestors, p];
    tokens.push({ offset: p < 0 ? 0 : tokens[p]!.offset + 1, ancestors, segment: p < 0 ? 'roots' : `depth ${tokens[p]!.offset + 1}` });
  });
  return validateMask({ kind: 'tree', params: { parents: [...parents] }, prefix: 'all', tokens });
}

/** Rebuilds a mask from its kind and the params a builder recorded (manifest.json, mask JSON). */
export function maskFromParams(kind: string, params: Readonly<Record<string, number | readonly number[]>>): MaskSpec {
  const num = (name: string): number => {
    const v = params[name];
    if (typeof v !== 'number') throw new TidarcError('invalid-spec', `mask ${kind} needs a numeric parameter`, { field: `params.${name}`, value: v, allowed: 'an integer' });
    return v;
  };
  switch (kind) {
    case 'tidar-decode': return tidarDecode(num('draft'));
    case 'tidar-prefill': return tidarPrefill(num('length'), num('draft'));
    case 'tidar-train': return tidarTrain(num('length'), num('block'));
    case 'causal': return causal(num('length'));
    case 'block-diffusion': return blockDiffusion(num('block'));
    case 'tree': {
      const parents = params['parents'];
      if (!Array.isArray(parents)) throw new TidarcError('invalid-spec', 'a tree mask needs its parent list', { field: 'params.parents', value: parents, allowed: 'an array of integers' });
      return tree(parents as number[]);
    }
    default:
      throw new TidarcError('invalid-spec', 'unknown mask kind', { field: 'kind', value: kind, allowed: 'tidar-decode, tidar-prefill, tidar-train, causal, block-diffusion, tree' });
  }
}
