/**
 * A model directory in the Hugging Face layout: config.json, model.safetensors (or
 * model.safetensors.index.json and its shards) and tokenizer.json, with the tensor names of
 * transformers' Qwen2 / Qwen3 / Llama implementations. What TiDAR adds to a plain HF config
 * lives in one "tidar" object of config.json:
 *   "tidar": {"mask_token_id": 151662, "draft_lengths": [16], "name": "..."}   (all optional)
 * Without it the importer's defaults apply (the Qwen mask token, draft length 16, the
 * directory's name).
 *
 * Loading checks every tensor the spec needs (present, shaped as the spec says, stored in the
 * model's dtype or F32, every value finite) and that every tensor of the files is used: a
 * checkpoint with tensors the config does not use (3 layers under num_hidden_layers = 2, a
 * qwen2 checkpoint's biases under model_type llama) is refused, naming a few of them, because
 * running it computes another model. Two kinds are known to be safe to leave unused and are
 * listed in unusedTensors instead:
 *   - `*.rotary_emb.inv_freq`: RoPE buffers transformers saved before 4.31; they are derived
 *     from rope_theta, which tidarc recomputes;
 *   - `lm_head.weight` under tie_word_embeddings = true when it equals the embedding bit for
 *     bit (exporters that write the tied matrix twice); a different one is refused, because
 *     the config would silently drop a trained head.
 * The mask token is checked against the ids the tokenizer gives a meaning (eos, bytes). A
 * checkpoint without one (no "tidar" object, a vocabulary without a default, none passed in
 * options) loads for AR decoding only: AR feeds no mask token, TiDAR is refused.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TidarcError } from '../errors.js';
import { defaultMaskTokenId, importHfConfig, modelNameFromPath } from '../ir/hf-config.js';
import type { ModelFamily, ModelSpec } from '../ir/model.js';
import { readJsonFile } from '../ir/model-file.js';
import { familyOf } from '../ir/model-families.js';
import { layerPrefix } from '../ir/step-ops.js';
import { checkMaskTokenId, shownValue } from '../ir/model-validate.js';
import { findNonFinite } from './finite.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';
import {
  type SafetensorsDType, type Tensor, type TensorStore,
  SAFETENSORS_INDEX_FILE, readSafetensors, readShardedSafetensors, tensorField,
} from './safetensors.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';

/** What a tensor is, which decides how init-model fills it. */
export type TensorRole = 'embedding' | 'linear' | 'bias' | 'norm';

export interface ExpectedTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** The shape in symbols, for errors: `[Hq*D, H]`. */
  readonly dims: string;
  readonly role: TensorRole;
}

export interface Checkpoint {
  readonly dir: string;
  readonly spec: ModelSpec;
  /** Every expected tensor, in expectedTensors order; views into the file's buffer. */
  readonly tensors: ReadonlyMap<string, Tensor>;
  readonly tokenizer: Tokenizer;
  /** Tensors in the files that the spec does not use and that are safe to leave so (see the file comment; sorted). */
  readonly unusedTensors: readonly string[];
  /**
   * The mask token TiDAR feeds, or undefined when the checkpoint names none and the options
   * gave none: AR decoding only (spec.maskTokenId is then a placeholder, never fed).
   */
  readonly maskTokenId: number | undefined;
}

export interface CheckpointOptions {
  /** The mask token id, in place of config.json's tidar.mask_token_id (the CLI's --mask-token). */
  readonly maskTokenId?: number;
  /** How errors name that option (default 'maskTokenId'). */
  readonly maskTokenField?: string;
  /**
   * Refuse a config without a mask token instead of reading it as AR-only: a checkpoint that
   * tidarc writes (init-model) records its mask token in the "tidar" object.
   */
  readonly requireMaskToken?: boolean;
  /**
   * Runs on the spec after config.json is read and before any weights file is (a caller's
   * preflight: openModelParts checks the host's memory here, host-memory.ts).
   */
  readonly beforeWeights?: (spec: ModelSpec) => void;
}

/** The safetensors dtype of a model dtype. */
export const WEIGHT_DTYPE: Readonly<Record<ModelSpec['dtype'], SafetensorsDType>> = { bf16: 'BF16', fp16: 'F16' };

/**
 * The tensors transformers' implementation of `spec.family` holds, in module order; a layer's
 * come from the family table (ir/model-families.ts: biases of q/k/v for Qwen2 only, q_norm /
 * k_norm for models with qkNorm).
 */
export function expectedTensors(spec: ModelSpec): ExpectedTensor[] {
  const H = spec.hiddenSize;
  const V = spec.vocabSize;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [V, H], dims: '[V, H]', role: 'embedding' }];
  const layer = familyOf(spec).layerTensors(spec);
  for (let i = 0; i < spec.layers; i++) for (const t of layer) out.push({ ...t, name: `${layerPrefix(i)}${t.name}` });
  out.push({ name: 'model.norm.weight', shape: [H], dims: '[H]', role: 'norm' });
  if (!spec.tieEmbeddings) out.push({ name: 'lm_head.weight', shape: [V, H], dims: '[V, H]', role: 'linear' });
  return out;
}

/** Parameters of a spec: the elements of its expected tensors. */
export function parameterCount(spec: ModelSpec): number {
  return expectedTensors(spec).reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
}

/** A config.json object (HF keys plus our "tidar" object) -> ModelSpec. Pure. */
export function specFromCheckpointConfig(config: unknown, source: string, options: CheckpointOptions = {}): ModelSpec {
  const tidar = isObject(config) ? config['tidar'] : undefined;
  if (tidar !== undefined && !isObject(tidar)) {
    throw new TidarcError('invalid-spec', 'invalid value', { field: 'tidar', value: shownValue(tidar), allowed: 'an object with mask_token_id, draft_lengths and name', source });
  }
  const maskTokenId = tidar?.['mask_token_id'];
  const draftLengths = tidar?.['draft_lengths'];
  const name = tidar?.['name'];
  if (draftLengths !== undefined && !Array.isArray(draftLengths)) {
    throw new TidarcError('invalid-spec', 'invalid value', { field: 'tidar.draft_lengths', value: shownValue(draftLengths), allowed: 'an array of draft lengths such as [4, 8, 16]', source });
  }
  if (name !== undefined && typeof name !== 'string') {
    throw new TidarcError('invalid-spec', 'invalid value', { field: 'tidar.name', value: shownValue(name), allowed: 'a model name (a string)', source });
  }
  const given = options.maskTokenId ?? maskTokenId;
  // Wrong types and ranges are reported by the importer's validation, under these names.
  return importHfConfig(config, {
    ...(given !== undefined ? { maskTokenId: given as number } : {}),
    noMaskToken: !options.requireMaskToken && !hasMaskToken(config, options),
    ...(draftLengths !== undefined ? { draftLengths: draftLengths as number[] } : {}),
    name: name ?? modelNameFromPath(resolve(source)),
    source,
    optionNames: { maskTokenId: maskTokenField(options), draftLengths: 'tidar.draft_lengths', name: 'tidar.name' },
  });
}

function maskTokenField(options: CheckpointOptions): string {
  return options.maskTokenId === undefined ? 'tidar.mask_token_id' : options.maskTokenField ?? 'maskTokenId';
}

/** Whether a config (and the options) give a mask token: its own, the options', or its vocabulary's default. */
function hasMaskToken(config: unknown, options: CheckpointOptions): boolean {
  if (options.maskTokenId !== undefined) return true;
  if (!isObject(config)) return true;  // the importer reports what is wrong with it
  const tidar = config['tidar'];
  if (isObject(tidar) && tidar['mask_token_id'] !== undefined) return true;
  return defaultMaskTokenId(config['model_type'] as ModelFamily, config['vocab_size']) !== undefined;
}

/**
 * The config.json object of a spec, in transformers' form (keys sorted, as transformers writes
 * them) plus "tidar". Refuses specs the HF layout cannot express (qkNorm is implied by model_type).
 */
export function hfConfigOf(spec: ModelSpec, extras: { eosTokenId?: number } = {}): Record<string, unknown> {
  if (spec.qkNorm !== (spec.family === 'qwen3')) {
    throw new TidarcError('unsupported', 'a Hugging Face config cannot express this qkNorm for this family (qwen3 has q/k norms, qwen2 and llama do not)', {
      field: 'qkNorm', value: spec.qkNorm, allowed: String(spec.family === 'qwen3'),
    });
  }
  const architecture = { qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM', llama: 'LlamaForCausalLM' }[spec.family];
  const rs = spec.ropeScaling;
  const ropeScaling = rs === undefined ? null : rs.type === 'linear' ? { factor: rs.factor, rope_type: 'linear' } : {
    factor: rs.factor,
    high_freq_factor: rs.highFreqFactor,
    low_freq_factor: rs.lowFreqFactor,
    original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
    rope_type: 'llama3',
  };
  const config: Record<string, unknown> = {
    architectures: [architecture],
    ...(spec.family === 'qwen2' ? {} : { attention_bias: false }),
    ...(extras.eosTokenId !== undefined ? { eos_token_id: extras.eosTokenId } : {}),
    head_dim: spec.headDim,
    hidden_act: 'silu',
    hidden_size: spec.hiddenSize,
    intermediate_size: spec.intermediateSize,
    ...(spec.maxPositionEmbeddings !== undefined ? { max_position_embeddings: spec.maxPositionEmbeddings } : {}),
    model_type: spec.family,
    num_attention_heads: spec.queryHeads,
    num_hidden_layers: spec.layers,
    num_key_value_heads: spec.kvHeads,
    rms_norm_eps: spec.rmsNormEps,
    rope_scaling: ropeScaling,
    rope_theta: spec.ropeTheta,
    tidar: { draft_lengths: [...spec.draftLengths], mask_token_id: spec.maskTokenId, name: spec.name },
    tie_word_embeddings: spec.tieEmbeddings,
    torch_dtype: spec.dtype === 'bf16' ? 'bfloat16' : 'float16',
    vocab_size: spec.vocabSize,
  };
  return config;
}

/** Reads and checks a model directory; see the file comment for what is checked. */
export async function loadCheckpoint(dir: string, options: CheckpointOptions = {}): Promise<Checkpoint> {
  const configPath = join(dir, CONFIG_FILE);
  const config = await readJsonFile(configPath);
  const spec = specFromCheckpointConfig(config, configPath, options);
  const maskTokenId = hasMaskToken(config, options) ? spec.maskTokenId : undefined;
  options.beforeWeights?.(spec);
  const { store, source } = await openWeights(dir);
  const expected = expectedTensors(spec);
  const missing = expected.filter((t) => !store.has(t.name));
  if (missing.length > 0) {
    const more = missing.length > 1 ? ` (and ${missing.length - 1} more)` : '';
    const first = missing[0]!;
    throw new TidarcError('invalid-spec', `missing tensor${more}: a ${spec.family} model with this config needs it, of shape ${first.dims} = [${first.shape.join(', ')}]`, {
      field: tensorField(first.name), source,
    });
  }
  const unusedTensors = checkUnused(spec, store, expected, source);
  const allowedDtypes: readonly SafetensorsDType[] = [WEIGHT_DTYPE[spec.dtype], 'F32'];
  const tensors = new Map<string, Tensor>();
  for (const t of expected) {
    const info = store.info(t.name);
    if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
      throw new TidarcError('invalid-spec', 'tensor has the wrong shape', {
        field: tensorField(t.name, 'shape'), value: `[${info.shape.join(', ')}]`, allowed: `${t.dims} = [${t.shape.join(', ')}] for this config`, source,
      });
    }
    if (!allowedDtypes.includes(info.dtype)) {
      throw new TidarcError('invalid-spec', `tensor dtype does not match the model's ${spec.dtype}`, {
        field: tensorField(t.name, 'dtype'), value: info.dtype, allowed: allowedDtypes.join(' or '), source,
      });
    }
    const tensor = store.tensor(t.name);
    checkFinite(t, tensor, source);
    tensors.set(t.name, tensor);
  }
  const tokenizer = await loadTokenizer(dir, { maxVocabSize: spec.vocabSize });
  if (tokenizer.vocabSize > spec.vocabSize) {
    throw new TidarcError('invalid-spec', 'the tokenizer has more ids than the model has embeddings', {
      field: 'tokenizer vocabulary size', value: tokenizer.vocabSize, allowed: `at most vocab_size = ${spec.vocabSize}`, source: join(dir, 'tokenizer.json'),
    });
  }
  const meaningOf = (id: number): string | undefined => tokenizer.meaningOf?.(id) ?? (id === tokenizer.eos ? "the tokenizer's eos token" : undefined);
  if (maskTokenId !== undefined) checkMaskTokenId(maskTokenId, meaningOf, maskTokenField(options), options.maskTokenId === undefined ? configPath : undefined);
  return { dir, spec, tensors, tokenizer, unusedTensors, maskTokenId };
}

/** RoPE buffers older transformers saved; derived from rope_theta, so safe to leave unused. */
const DERIVED_BUFFER = /(^|\.)rotary_emb\.inv_freq$/;
const NAMED_UNUSED = 3;

/**
 * Every tensor of the files is used, or is one of the kinds the file comment lists as safe to
 * leave unused (returned); anything else is one error naming a few and counting them.
 */
function checkUnused(spec: ModelSpec, store: TensorStore, expected: readonly ExpectedTensor[], source: string): string[] {
  const used = new Set(expected.map((t) => t.name));
  const unused = store.names().filter((n) => !used.has(n));
  const tolerated: string[] = [];
  const refused: string[] = [];
  for (const name of unused) {
    if (DERIVED_BUFFER.test(name)) tolerated.push(name);
    else if (name === 'lm_head.weight' && spec.tieEmbeddings) {
      checkTiedHead(store, source);
      tolerated.push(name);
    } else refused.push(name);
  }
  if (refused.length === 0) return tolerated;
  const shown = refused.slice(0, NAMED_UNUSED).join(', ');
  const more = refused.length > NAMED_UNUSED ? ` and ${refused.length - NAMED_UNUSED} more` : '';
  throw new TidarcError('invalid-spec', `the checkpoint holds ${refused.length} tensor${refused.length > 1 ? 's' : ''} this config does not use (${shown}${more})${layersHint(spec, store)}`, {
    field: 'tensors',
    allowed: `only the tensors a ${spec.family} model with this config needs (check num_hidden_layers, model_type and tie_word_embeddings)`,
    source,
  });
}

/** ': the checkpoint has 3 layers, num_hidden_layers is 2' when the layer counts differ. */
function layersHint(spec: ModelSpec, store: TensorStore): string {
  let layers = 0;
  for (const name of store.names()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  return layers > spec.layers ? `: the checkpoint has ${layers} layers, num_hidden_layers is ${spec.layers}` : '';
}

/** A tied config with lm_head.weight present: accepted only when it duplicates the embedding exactly. */
function checkTiedHead(store: TensorStore, source: string): void {
  const head = store.tensor('lm_head.weight');
  const embedding = store.tensor('model.embed_tokens.weight');
  const bytes = (t: Tensor): Uint8Array => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const same = head.dtype === embedding.dtype && head.shape.join() === embedding.shape.join() && Buffer.compare(bytes(head), bytes(embedding)) === 0;
  if (same) return;
  throw new TidarcError('invalid-spec', 'the checkpoint has an lm_head.weight that differs from the embedding, but the config ties them and would ignore it', {
    field: 'tie_word_embeddings', value: true, allowed: 'false, to use the checkpoint\'s lm_head (or a checkpoint without lm_head.weight)', source,
  });
}

/** A NaN or infinite weight is refused by name: it would turn every logit into NaN. */
function checkFinite(t: ExpectedTensor, tensor: Tensor, source: string): void {
  const bad = findNonFinite(tensor.dtype, tensor.data);
  if (!bad) return;
  const at = t.shape.length === 2 ? `[${Math.floor(bad.index / t.shape[1]!)}, ${bad.index % t.shape[1]!}]` : `[${bad.index}]`;
  throw new TidarcError('invalid-spec', `tensor holds non-finite values: ${bad.count} of ${tensor.data.length}, the first at ${at} is ${String(bad.value)}`, {
    field: tensorField(t.name), allowed: 'finite weights (a NaN or infinity makes every output NaN)', source,
  });
}

async function openWeights(dir: string): Promise<{ store: TensorStore; source: string }> {
  const single = join(dir, WEIGHTS_FILE);
  if (existsSync(single)) return { store: await readSafetensors(single), source: single };
  const index = join(dir, SAFETENSORS_INDEX_FILE);
  if (existsSync(index)) return { store: await readShardedSafetensors(dir), source: index };
  throw new TidarcError('missing-file', `no weights: neither ${WEIGHTS_FILE} nor ${SAFETENSORS_INDEX_FILE}`, { source: dir });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
