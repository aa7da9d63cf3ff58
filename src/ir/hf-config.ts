/**
 * importHfConfig: a Hugging Face config.json (qwen2, qwen3, llama) -> ModelSpec.
 * Pure: the caller reads the file. HF defaults are applied as transformers applies them;
 * every error names the HF key (`num_key_value_heads`, `rope_scaling.factor`), not ours.
 *
 * dtype: bfloat16 -> bf16, float16 -> fp16, and float32 -> bf16, because the kernels run in
 * bf16 or fp16 only and bf16 keeps fp32's exponent range (no overflow when converting
 * weights). Pass `dtype` to choose otherwise.
 */
import { TidarcError, invalid } from '../errors.js';
import type { DType, ModelFamily, ModelSpec } from './model.js';
import { checkMaskTokenId, checkModelSpec, shownValue } from './model-validate.js';

/** Spec fields that importHfConfig takes from its options rather than from the config. */
type OptionField = 'draftLengths' | 'maskTokenId' | 'name' | 'dtype';
const OPTION_FIELDS: readonly string[] = ['draftLengths', 'maskTokenId', 'name', 'dtype'] satisfies OptionField[];

export interface HfImportOptions {
  /** Draft lengths k to compile; default the config's `"tidar": {"draft_lengths"}`, then DEFAULT_DRAFT_LENGTHS. */
  draftLengths?: number[];
  /**
   * Mask token id; defaults to the config's own `"tidar": {"mask_token_id"}` (what tidarc
   * init-model writes, and compile and run read), then QWEN_MASK_TOKEN_ID for Qwen vocabularies,
   * else required.
   */
  maskTokenId?: number;
  /**
   * A checkpoint for AR decoding only: without a mask token id (given or default) the spec
   * holds 0 as a placeholder that must never be fed to the model; the caller records that
   * there is no mask token.
   */
  noMaskToken?: boolean;
  /** Model name; defaults to the config's `"tidar": {"name"}`, then `defaultName`, then the source file's directory name, else 'model'. */
  name?: string;
  /** The name where neither `name` nor the config's "tidar" gives one (the CLI: the config's resolved directory name). */
  defaultName?: string;
  /** Kernel dtype; defaults to the one torch_dtype implies. */
  dtype?: DType;
  /** Where the config came from (a file path), named in errors. */
  source?: string;
  /** How errors name the option-sourced fields, e.g. { maskTokenId: '--mask-token' } for the CLI. */
  optionNames?: Partial<Record<OptionField, string>>;
}

export const HF_MODEL_TYPES: readonly ModelFamily[] = ['qwen2', 'qwen3', 'llama'];
export const DEFAULT_DRAFT_LENGTHS: readonly number[] = [16];
/** `<|fim_pad|>` in the Qwen2/2.5/3 vocabulary: the id TiDAR checkpoints use as mask token. */
export const QWEN_MASK_TOKEN_ID = 151662;

const TORCH_DTYPES: Readonly<Record<string, DType>> = { bfloat16: 'bf16', float16: 'fp16', float32: 'bf16' };
const ROPE_TYPES_ALLOWED = 'null, "default", "linear" or "llama3"';

/** Our spec field -> the HF key it was read from. */
const HF_KEY_OF: Readonly<Record<string, string>> = {
  family: 'model_type',
  layers: 'num_hidden_layers',
  hiddenSize: 'hidden_size',
  queryHeads: 'num_attention_heads',
  kvHeads: 'num_key_value_heads',
  headDim: 'head_dim',
  intermediateSize: 'intermediate_size',
  vocabSize: 'vocab_size',
  ropeTheta: 'rope_theta',
  ropeScaling: 'rope_scaling',
  'ropeScaling.factor': 'rope_scaling.factor',
  'ropeScaling.lowFreqFactor': 'rope_scaling.low_freq_factor',
  'ropeScaling.highFreqFactor': 'rope_scaling.high_freq_factor',
  'ropeScaling.originalMaxPositionEmbeddings': 'rope_scaling.original_max_position_embeddings',
  rmsNormEps: 'rms_norm_eps',
  tieEmbeddings: 'tie_word_embeddings',
  maxPositionEmbeddings: 'max_position_embeddings',
};

/**
 * Architecture switches that change the math our kernels and CPU reference implement:
 * a config that sets one of them is refused rather than silently computed wrong.
 */
const UNSUPPORTED_SWITCHES: readonly { key: string; ok: (v: unknown) => boolean; allowed: string }[] = [
  { key: 'hidden_act', ok: (v) => v === undefined || v === 'silu', allowed: 'silu' },
  { key: 'use_sliding_window', ok: (v) => v === undefined || v === false, allowed: 'false (sliding-window attention is not supported)' },
  { key: 'attention_bias', ok: (v) => v === undefined || v === false, allowed: 'false (q/k/v/o biases are only supported as Qwen2 has them)' },
  { key: 'mlp_bias', ok: (v) => v === undefined || v === false, allowed: 'false' },
];

type Fields = Readonly<Record<string, unknown>>;

/** True for objects that look like an HF config.json rather than a tidarc model.json. */
export function looksLikeHfConfig(data: unknown): boolean {
  return typeof data === 'object' && data !== null && !Array.isArray(data) && 'model_type' in data;
}

export function importHfConfig(config: unknown, options: HfImportOptions = {}): ModelSpec {
  const { source } = options;
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    invalid('config', shownValue(config), 'a JSON object (a Hugging Face config.json)', source);
  }
  const cfg = config as Fields;
  const family = modelFamilyOf(cfg, source);
  for (const s of UNSUPPORTED_SWITCHES) {
    if (!s.ok(cfg[s.key])) throw new TidarcError('unsupported', 'unsupported architecture option', { field: s.key, value: shownValue(cfg[s.key]), allowed: s.allowed, source });
  }
  const queryHeads = cfg['num_attention_heads'];
  const headDimGiven = !isAbsent(cfg['head_dim']);
  const headDim = headDimGiven ? cfg['head_dim'] : derivedHeadDim(cfg['hidden_size'], queryHeads, source);
  const ropeParameters = isObject(cfg['rope_parameters']) ? cfg['rope_parameters'] : undefined;
  const ropeKey = isAbsent(cfg['rope_scaling']) && ropeParameters ? 'rope_parameters' : 'rope_scaling';
  // An option wins over the config's "tidar" object (what init-model writes and compile and run read), which wins over the defaults.
  const tidar = tidarObject(cfg, source);
  const own = (key: string): unknown => (tidar === undefined || isAbsent(tidar[key]) ? undefined : tidar[key]);
  const ownMaskTokenId = options.maskTokenId === undefined ? own('mask_token_id') : undefined;
  const ownDraftLengths = options.draftLengths === undefined ? own('draft_lengths') : undefined;
  const ownName = options.name === undefined ? own('name') : undefined;
  const maskTokenId = options.maskTokenId ?? ownMaskTokenId ?? defaultMaskTokenId(family, cfg['vocab_size']);
  const maskField = options.maskTokenId !== undefined ? options.optionNames?.maskTokenId ?? 'maskTokenId' : ownMaskTokenId !== undefined ? 'tidar.mask_token_id' : 'maskTokenId';
  const candidate = {
    name: options.name ?? ownName ?? options.defaultName ?? modelNameFromPath(source),
    family,
    layers: cfg['num_hidden_layers'],
    hiddenSize: cfg['hidden_size'],
    queryHeads,
    kvHeads: isAbsent(cfg['num_key_value_heads']) ? queryHeads : cfg['num_key_value_heads'],
    headDim,
    intermediateSize: cfg['intermediate_size'],
    vocabSize: cfg['vocab_size'],
    ropeTheta: cfg['rope_theta'] ?? ropeParameters?.['rope_theta'] ?? 10000,
    ropeScaling: ropeScalingOf(cfg['rope_scaling'] ?? ropeParameters, ropeKey, source),
    rmsNormEps: cfg['rms_norm_eps'],
    qkNorm: family === 'qwen3',
    tieEmbeddings: cfg['tie_word_embeddings'] ?? false,
    dtype: options.dtype ?? dtypeOf(cfg, source),
    // A placeholder lets every other field be checked first; the missing id is reported below.
    maskTokenId: maskTokenId ?? 0,
    draftLengths: options.draftLengths ?? ownDraftLengths ?? [...DEFAULT_DRAFT_LENGTHS],
    maxPositionEmbeddings: cfg['max_position_embeddings'],
  };
  const fieldName = (specPath: string): string => {
    const base = specPath.replace(/\[\d+\]$/, '');
    if (base === 'maskTokenId') return maskField;
    if (base === 'draftLengths' && ownDraftLengths !== undefined) return specPath.replace(/^draftLengths/, 'tidar.draft_lengths');
    if (base === 'name' && ownName !== undefined) return 'tidar.name';
    if (isOptionField(base) && options[base] !== undefined) return options.optionNames?.[base] ?? specPath;
    if (base === 'dtype') return torchDtypeKey(cfg);
    if (base === 'headDim' && !headDimGiven) return 'head_dim (hidden_size / num_attention_heads)';
    return (HF_KEY_OF[specPath] ?? specPath).replace(/^rope_scaling/, ropeKey);
  };
  const spec = checkModelSpec(candidate, { source, fieldName });
  if (maskTokenId === undefined && options.noMaskToken) return spec;
  if (maskTokenId === undefined) {
    throw new TidarcError('invalid-spec', 'missing mask token id: this vocabulary has no default (only Qwen vocabularies do), pass one', {
      field: options.optionNames?.maskTokenId ?? 'maskTokenId',
      allowed: `an integer from 0 to ${spec.vocabSize - 1}`,
      source,
    });
  }
  const taken = specialIdsOf(cfg);
  checkMaskTokenId(spec.maskTokenId, (id) => taken.get(id), maskField, source);
  return spec;
}

/**
 * The config's `"tidar": {"mask_token_id", "draft_lengths", "name"}`, as a checkpoint's config.json
 * carries it (each value's type and range are checked with the spec, named tidar.<key>). A "tidar"
 * that is not an object is refused, as the checkpoint reader refuses it.
 */
function tidarObject(cfg: Fields, source: string | undefined): Fields | undefined {
  const tidar = cfg['tidar'];
  if (tidar === undefined) return undefined;
  if (!isObject(tidar)) {
    throw new TidarcError('invalid-spec', 'invalid value', { field: 'tidar', value: shownValue(tidar), allowed: 'an object with mask_token_id, draft_lengths and name', source });
  }
  return tidar;
}

/** The ids the config names as eos / bos (a number or a list of them): the mask token must differ. */
function specialIdsOf(cfg: Fields): Map<number, string> {
  const taken = new Map<number, string>();
  for (const key of ['eos_token_id', 'bos_token_id']) {
    const raw = cfg[key];
    for (const id of Array.isArray(raw) ? raw : [raw]) {
      if (typeof id === 'number' && !taken.has(id)) taken.set(id, `the config's ${key} (${id})`);
    }
  }
  return taken;
}

/** A ModelSpec name from a config path: its directory name, sanitised, else 'model'. */
export function modelNameFromPath(path: string | undefined): string {
  const parts = (path ?? '').split(/[\\/]+/).filter((p) => p !== '' && p !== '.' && p !== '..');
  const dir = parts.length >= 2 ? parts[parts.length - 2] ?? '' : '';
  const cleaned = dir.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  return cleaned === '' ? 'model' : cleaned;
}

function modelFamilyOf(cfg: Fields, source: string | undefined): ModelFamily {
  const allowed = `one of ${HF_MODEL_TYPES.join(', ')}`;
  const type = cfg['model_type'];
  if (isAbsent(type)) throw new TidarcError('invalid-spec', 'not a Hugging Face config.json: missing field', { field: 'model_type', allowed, source });
  if (!HF_MODEL_TYPES.includes(type as ModelFamily)) {
    throw new TidarcError('unsupported', 'unsupported model type', { field: 'model_type', value: shownValue(type), allowed, source });
  }
  return type as ModelFamily;
}

function derivedHeadDim(hidden: unknown, heads: unknown, source: string | undefined): unknown {
  // Leave bad inputs to the validator, which names hidden_size / num_attention_heads itself.
  if (typeof hidden !== 'number' || typeof heads !== 'number' || !Number.isInteger(heads) || heads < 1) return undefined;
  const headDim = hidden / heads;
  if (!Number.isInteger(headDim)) {
    invalid('hidden_size', hidden, `a multiple of num_attention_heads (${heads}) when head_dim is absent`, source);
  }
  return headDim;
}

export function defaultMaskTokenId(family: ModelFamily, vocabSize: unknown): number | undefined {
  const qwen = family === 'qwen2' || family === 'qwen3';
  return qwen && typeof vocabSize === 'number' && vocabSize > QWEN_MASK_TOKEN_ID ? QWEN_MASK_TOKEN_ID : undefined;
}

/** transformers >= 4.56 writes `dtype`; older versions write `torch_dtype`. */
function torchDtypeKey(cfg: Fields): string {
  return isAbsent(cfg['dtype']) ? 'torch_dtype' : 'dtype';
}

function dtypeOf(cfg: Fields, source: string | undefined): DType {
  const key = torchDtypeKey(cfg);
  const value = cfg[key];
  if (isAbsent(value)) return 'bf16';
  // hasOwn: "__proto__" or "toString" must not find Object.prototype's members.
  const dtype = typeof value === 'string' && Object.hasOwn(TORCH_DTYPES, value) ? TORCH_DTYPES[value] : undefined;
  if (dtype === undefined) {
    throw new TidarcError('unsupported', 'unsupported checkpoint dtype', {
      field: key, value: shownValue(value), allowed: 'bfloat16, float16 or float32 (imported as bf16), or pass a dtype', source,
    });
  }
  return dtype;
}

/** HF rope_scaling (or transformers 5 rope_parameters) -> our RopeScaling; unsupported types refused. */
function ropeScalingOf(raw: unknown, key: string, source: string | undefined): Fields | undefined {
  if (isAbsent(raw)) return undefined;
  if (!isObject(raw)) invalid(key, shownValue(raw), `${ROPE_TYPES_ALLOWED} scaling object`, source);
  const typeKey = isAbsent(raw['rope_type']) ? 'type' : 'rope_type';
  const type = raw[typeKey];
  if (type === 'default' || (isAbsent(type) && key === 'rope_parameters')) return undefined;
  // Only the keys of the declared type are taken: HF configs carry extras we do not use.
  if (type === 'linear') return { type, factor: raw['factor'] };
  if (type === 'llama3') {
    return {
      type,
      factor: raw['factor'],
      lowFreqFactor: raw['low_freq_factor'],
      highFreqFactor: raw['high_freq_factor'],
      originalMaxPositionEmbeddings: raw['original_max_position_embeddings'],
    };
  }
  throw new TidarcError('unsupported', 'unsupported RoPE scaling', { field: `${key}.${typeKey}`, value: shownValue(type), allowed: ROPE_TYPES_ALLOWED, source });
}

function isOptionField(field: string): field is OptionField {
  return OPTION_FIELDS.includes(field);
}

function isObject(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isAbsent(value: unknown): value is undefined | null {
  return value === undefined || value === null;
}
