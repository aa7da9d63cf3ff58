/**
 * validateModelSpec: the one gate every ModelSpec passes, whether it came from a tidarc
 * model.json, an HF config.json or a library caller. It checks each field in a fixed order,
 * refuses unknown fields (typo protection) and returns a fresh object with keys in the
 * canonical order, so serialising it is deterministic. Pure: no file system here.
 */
import { TidarcError, invalid } from '../errors.js';
import { parseJsonText } from '../util/json.js';
import {
  MAX_DRAFT_COMPILE,
  MAX_HEADS,
  SUPPORTED_HEAD_DIMS,
  type DType,
  type ModelFamily,
  type ModelSpec,
  type RopeScaling,
} from './model.js';

export const MODEL_FAMILIES: readonly ModelFamily[] = ['qwen2', 'qwen3', 'llama'];
export const DTYPES: readonly DType[] = ['bf16', 'fp16'];
export const ROPE_SCALING_TYPES: readonly RopeScaling['type'][] = ['linear', 'llama3'];

/** ModelSpec keys in the order they are checked and written. */
export const MODEL_SPEC_KEYS = [
  'name', 'family', 'layers', 'hiddenSize', 'queryHeads', 'kvHeads', 'headDim',
  'intermediateSize', 'vocabSize', 'ropeTheta', 'ropeScaling', 'rmsNormEps', 'qkNorm',
  'tieEmbeddings', 'dtype', 'maskTokenId', 'draftLengths', 'maxPositionEmbeddings',
] as const satisfies readonly (keyof ModelSpec)[];
// Compile-time guard: adding a field to ModelSpec without listing it here fails to type-check.
const everyKeyListed: Exclude<keyof ModelSpec, (typeof MODEL_SPEC_KEYS)[number]> extends never ? true : never = true;
void everyKeyListed;

const ROPE_SCALING_KEYS = {
  linear: ['type', 'factor'],
  llama3: ['type', 'factor', 'lowFreqFactor', 'highFreqFactor', 'originalMaxPositionEmbeddings'],
} as const;

/** Generous sanity bounds: they catch unit mistakes, not real models. queryHeads is what the kernels are generated for. */
const LIMITS = { layers: 1024, hiddenSize: 65536, queryHeads: MAX_HEADS, intermediateSize: 1 << 20, vocabSize: 1 << 24, positions: 1 << 30 };

/**
 * Physically meaningful ranges of the real-valued fields: a value outside runs without error
 * and produces garbage (1e-300 as rope_theta or as a scaling factor gives infinite or NaN
 * angles; an eps that rounds to 0 in float32 divides a zero row by zero). Each range holds
 * every published model with room to spare:
 *   ropeTheta     1e4 (Llama 2) .. 5e5 (Llama 3) .. 1e6 (Qwen) .. 3.6e9 (1M-context Llama 3 ports);
 *                 below 10 the "frequencies" barely fall across the head (theta <= 1: they rise);
 *   rmsNormEps    1e-6 / 1e-5 in LLMs, 1e-12 in BERT-style norms;
 *   factor        >= 1 as transformers requires (it stretches positions), 8 / 32 in Llama 3.x;
 *   low/high freq wavelength divisors of the original context (Llama 3: 1 and 4).
 */
export const REAL_RANGES = {
  ropeTheta: { min: 10, max: 1e12 },
  rmsNormEps: { min: 1e-12, max: 0.1 },
  ropeScalingFactor: { min: 1, max: 1024 },
  ropeFreqFactor: { min: 1e-3, max: 1e3 },
} as const;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const NAME_ALLOWED = '1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit';

export interface CheckOptions {
  /** Where the input came from (a file path), named in every error. */
  readonly source?: string;
  /** Renames a spec field path (e.g. `ropeScaling.factor`) to the caller's name for it. */
  readonly fieldName?: (specPath: string) => string;
}

interface Where {
  readonly prefix: string;
  readonly options: CheckOptions;
}

type Fields = Readonly<Record<string, unknown>>;

/** Checks `raw` and returns it as a ModelSpec with canonical key order and sorted draft lengths. */
export function validateModelSpec(raw: unknown, source?: string): ModelSpec {
  return checkModelSpec(raw, { source });
}

/** validateModelSpec with control over how fields are named in errors (used by importHfConfig). */
export function checkModelSpec(raw: unknown, options: CheckOptions): ModelSpec {
  const w: Where = { prefix: '', options };
  const obj = objectAt(raw, 'model', w);
  refuseUnknownKeys(obj, MODEL_SPEC_KEYS, w);
  const name = nameAt(obj, w);
  const family = oneOfAt(obj, 'family', MODEL_FAMILIES, w);
  const layers = integerAt(obj, 'layers', 1, LIMITS.layers, w);
  const hiddenSize = integerAt(obj, 'hiddenSize', 1, LIMITS.hiddenSize, w);
  const queryHeads = integerAt(obj, 'queryHeads', 1, LIMITS.queryHeads, w);
  const kvHeads = integerAt(obj, 'kvHeads', 1, queryHeads, w);
  if (queryHeads % kvHeads !== 0) {
    const divisors = range(1, queryHeads).filter((d) => queryHeads % d === 0);
    fail(w, 'kvHeads', kvHeads, `a divisor of the query head count (${queryHeads}): ${divisors.join(', ')}`);
  }
  const headDim = oneOfAt(obj, 'headDim', SUPPORTED_HEAD_DIMS, w);
  const intermediateSize = integerAt(obj, 'intermediateSize', 1, LIMITS.intermediateSize, w);
  const vocabSize = integerAt(obj, 'vocabSize', 1, LIMITS.vocabSize, w);
  const ropeTheta = rangeAt(obj, 'ropeTheta', REAL_RANGES.ropeTheta, w);
  const ropeScaling = ropeScalingAt(obj, w);
  const rmsNormEps = rangeAt(obj, 'rmsNormEps', REAL_RANGES.rmsNormEps, w);
  const qkNorm = booleanAt(obj, 'qkNorm', w);
  const tieEmbeddings = booleanAt(obj, 'tieEmbeddings', w);
  const dtype = oneOfAt(obj, 'dtype', DTYPES, w);
  const maskTokenId = integerAt(obj, 'maskTokenId', 0, vocabSize - 1, w);
  const draftLengths = draftLengthsAt(obj, w);
  const maxPositionEmbeddings = isAbsent(obj['maxPositionEmbeddings'])
    ? undefined
    : integerAt(obj, 'maxPositionEmbeddings', 1, LIMITS.positions, w);
  return {
    name, family, layers, hiddenSize, queryHeads, kvHeads, headDim, intermediateSize, vocabSize, ropeTheta,
    ...(ropeScaling ? { ropeScaling } : {}),
    rmsNormEps, qkNorm, tieEmbeddings, dtype, maskTokenId, draftLengths,
    ...(maxPositionEmbeddings !== undefined ? { maxPositionEmbeddings } : {}),
  };
}

/**
 * The one rule for the mask token against the ids a tokenizer or config already gives a
 * meaning (eos, bos, the byte ids of a byte-level tokenizer): the mask must be an id of its
 * own. A mask equal to eos makes every mask slot read as end-of-text and a drafted eos
 * indistinguishable from a mask; one equal to a byte is a character of ordinary prompts.
 * `meaningOf` says what an id already is ("the config's eos_token_id"), undefined if nothing.
 */
export function checkMaskTokenId(maskTokenId: number, meaningOf: (id: number) => string | undefined, field: string, source?: string): void {
  const what = meaningOf(maskTokenId);
  if (what === undefined) return;
  throw new TidarcError('invalid-spec', `the mask token id is already ${what}`, {
    field, value: maskTokenId, allowed: 'an id of its own: a reserved or unused special token (e.g. 151662 <|fim_pad|> in Qwen vocabularies)', source,
  });
}

/** The spec as a model.json file: canonical key order, 2-space indent, trailing newline. */
export function formatModelSpecJson(spec: ModelSpec): string {
  return `${JSON.stringify(validateModelSpec(spec), null, 2)}\n`;
}

/** Parses and validates a tidarc model.json text. */
export function parseModelJson(text: string, source?: string): ModelSpec {
  return validateModelSpec(parseJsonText(text, source), source);
}

/**
 * How a found value appears in an error sentence: strings quoted (so "12" is not mistaken
 * for 12) and long values cut, because the sentence must stay one readable line.
 */
export function shownValue(value: unknown): unknown {
  if (typeof value === 'boolean' || value === null) return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return `${value}n`;
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function ropeScalingAt(obj: Fields, w: Where): RopeScaling | undefined {
  const raw = obj['ropeScaling'];
  if (isAbsent(raw)) return undefined;
  const rw: Where = { prefix: pathOf(w, 'ropeScaling'), options: w.options };
  const rs = objectAt(raw, rw.prefix, w);
  refuseUnknownKeys(rs, ROPE_SCALING_KEYS.llama3, rw);
  const type = oneOfAt(rs, 'type', ROPE_SCALING_TYPES, rw);
  refuseUnknownKeys(rs, ROPE_SCALING_KEYS[type], rw);
  const factor = rangeAt(rs, 'factor', REAL_RANGES.ropeScalingFactor, rw);
  if (type === 'linear') return { type, factor };
  const lowFreqFactor = rangeAt(rs, 'lowFreqFactor', REAL_RANGES.ropeFreqFactor, rw);
  const { max } = REAL_RANGES.ropeFreqFactor;
  const highFreqFactor = numberAt(rs, 'highFreqFactor', (v) => v > lowFreqFactor && v <= max, `a number greater than the low frequency factor (${lowFreqFactor}), at most ${max}`, rw);
  const originalMaxPositionEmbeddings = integerAt(rs, 'originalMaxPositionEmbeddings', 1, LIMITS.positions, rw);
  return { type, factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings };
}

function draftLengthsAt(obj: Fields, w: Where): number[] {
  const allowed = `a non-empty list of distinct integers from 1 to ${MAX_DRAFT_COMPILE}`;
  const raw = presentAt(obj, 'draftLengths', allowed, w);
  if (!Array.isArray(raw) || raw.length === 0) fail(w, 'draftLengths', raw, allowed);
  const seen = new Set<number>();
  raw.forEach((k: unknown, i) => {
    const key = `draftLengths[${i}]`;
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 1 || k > MAX_DRAFT_COMPILE) {
      fail(w, key, k, `an integer from 1 to ${MAX_DRAFT_COMPILE}`);
    }
    if (seen.has(k)) fail(w, key, k, `distinct draft lengths (${k} is listed twice)`);
    seen.add(k);
  });
  // Sorted so that compile order, file names and JSON output do not depend on how the list was typed.
  return [...seen].sort((a, b) => a - b);
}

function nameAt(obj: Fields, w: Where): string {
  const value = presentAt(obj, 'name', NAME_ALLOWED, w);
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) fail(w, 'name', value, NAME_ALLOWED);
  return value;
}

function integerAt(obj: Fields, key: string, min: number, max: number, w: Where): number {
  const allowed = `an integer from ${min} to ${max}`;
  const value = presentAt(obj, key, allowed, w);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) fail(w, key, value, allowed);
  return value;
}

function rangeAt(obj: Fields, key: string, range: { readonly min: number; readonly max: number }, w: Where): number {
  return numberAt(obj, key, (v) => v >= range.min && v <= range.max, `a number from ${shownBound(range.min)} to ${shownBound(range.max)}`, w);
}

/** 1e12 rather than 1000000000000 in an error sentence. */
function shownBound(n: number): string {
  return n >= 1e5 || n < 1e-4 ? n.toExponential().replace('e+', 'e') : String(n);
}

function numberAt(obj: Fields, key: string, ok: (v: number) => boolean, allowed: string, w: Where): number {
  const value = presentAt(obj, key, allowed, w);
  if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) fail(w, key, value, allowed);
  return value;
}

function booleanAt(obj: Fields, key: string, w: Where): boolean {
  const value = presentAt(obj, key, 'true or false', w);
  if (typeof value !== 'boolean') fail(w, key, value, 'true or false');
  return value;
}

function oneOfAt<T extends string | number>(obj: Fields, key: string, options: readonly T[], w: Where): T {
  const allowed = `one of ${options.join(', ')}`;
  const value = presentAt(obj, key, allowed, w);
  if (!options.includes(value as T)) fail(w, key, value, allowed);
  return value as T;
}

function objectAt(value: unknown, label: string, w: Where): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    invalid(nameOf(w, label), shownValue(value), 'a JSON object', w.options.source);
  }
  return value as Fields;
}

function presentAt(obj: Fields, key: string, allowed: string, w: Where): unknown {
  const value = obj[key];
  if (isAbsent(value)) {
    throw new TidarcError('invalid-spec', 'missing field', { field: nameOf(w, pathOf(w, key)), allowed, source: w.options.source });
  }
  return value;
}

function refuseUnknownKeys(obj: Fields, known: readonly string[], w: Where): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key) || obj[key] === undefined) continue;
    const guess = closest(key, known);
    const hint = guess !== undefined ? `; did you mean ${guess}?` : '';
    throw new TidarcError('invalid-spec', 'unknown field', {
      field: nameOf(w, pathOf(w, key)),
      allowed: `one of ${known.join(', ')}${hint}`,
      source: w.options.source,
    });
  }
}

function fail(w: Where, key: string, value: unknown, allowed: string): never {
  invalid(nameOf(w, pathOf(w, key)), shownValue(value), allowed, w.options.source);
}

function nameOf(w: Where, specPath: string): string {
  return w.options.fieldName ? w.options.fieldName(specPath) : specPath;
}

function pathOf(w: Where, key: string): string {
  return w.prefix ? `${w.prefix}.${key}` : key;
}

/** JSON has no undefined; null in an optional field means "not set" (as HF configs write it). */
function isAbsent(value: unknown): value is undefined | null {
  return value === undefined || value === null;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** The known key nearest to a typo (case-insensitive edit distance <= 2), if any. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = range(0, b.length);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
