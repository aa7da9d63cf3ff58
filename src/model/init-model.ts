/**
 * A random-weight checkpoint for a ModelSpec, in the layout loadCheckpoint reads: config.json
 * (HF form plus "tidar"), model.safetensors in the model's dtype, and a byte-level
 * tokenizer.json. Norm weights are 1 (Hugging Face's init), or 1 + N(0, normStd^2) when normStd > 0
 * (tests use that, so a norm weight that a backend drops, swaps or reads from the wrong layer
 * changes the output); every other tensor (embeddings, projections, Qwen2's biases) is N(0, std^2).
 *
 * Deterministic: each tensor draws from its own PRNG, seeded by (seed, tensor name), so the
 * same seed gives byte-identical files whatever order tensors are written in (and the values do
 * not depend on CHUNK_ELEMENTS). Tensors are generated and written in chunks, so memory stays
 * flat for any model size.
 * The directory is staged beside DIR and renamed into place only when complete; an existing DIR
 * is replaced only when it is empty or an earlier tidarc checkpoint (src/fs/tidarc-dir.ts).
 */
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type OutputPlace, commitStaging, createStaging, discardStaging } from '../build/output-dir.js';
import { checkReplaceable } from '../fs/tidarc-dir.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { shownValue, validateModelSpec } from '../ir/model-validate.js';
import { encode, encodeScalarBits } from '../util/dtype.js';
import { type Rng, seededRandom } from '../util/random.js';
import { CONFIG_FILE, WEIGHTS_FILE, WEIGHT_DTYPE, expectedTensors, hfConfigOf, type ExpectedTensor } from './checkpoint.js';
import { writeSafetensors, type TensorChunks, type WriteProgress } from './safetensors.js';
import { BYTE_EOS_ID, TOKENIZER_FILE, byteTokenizerConfig, formatByteTokenizerJson } from './tokenizer.js';

export const DEFAULT_INIT_STD = 0.02;
export const MAX_INIT_STD = 10;
export const MAX_SEED = 0xffffffff;
/** Elements generated per piece: 1 Mi keeps a piece at 8 MB of float64 scratch. */
const CHUNK_ELEMENTS = 1 << 20;

export interface InitModelOptions {
  readonly spec: ModelSpec;
  readonly outDir: string;
  /** PRNG seed, an integer from 0 to 2^32 - 1. */
  readonly seed: number;
  /** Standard deviation of the non-norm weights (default DEFAULT_INIT_STD). */
  readonly std?: number;
  /**
   * Standard deviation of the norm weights around 1 (default 0: every norm weight exactly 1).
   * Each norm tensor draws from its own seeded stream, like the other tensors.
   */
  readonly normStd?: number;
  /** Called after each piece of weights is written (see WriteProgress). */
  readonly onProgress?: (p: InitProgress) => void;
  /** How errors name seed, std, normStd and outDir (the CLI passes its flags). */
  readonly optionNames?: Partial<Record<'seed' | 'std' | 'normStd' | 'outDir', string>>;
}

/** Progress of model.safetensors, the only file that takes time. */
export type InitProgress = WriteProgress;

export interface InitModelResult {
  readonly outDir: string;
  readonly spec: ModelSpec;
  readonly parameters: number;
  /** Files written, sorted by name, with their sizes in bytes. */
  readonly files: readonly { readonly name: string; readonly bytes: number }[];
  readonly totalBytes: number;
}

/** Writes the checkpoint directory; a failure leaves an earlier DIR as it was. */
export async function initModel(opts: InitModelOptions): Promise<InitModelResult> {
  const spec = validateModelSpec(opts.spec);
  const std = opts.std ?? DEFAULT_INIT_STD;
  const normStd = opts.normStd ?? 0;
  const names = { seed: 'seed', std: 'std', normStd: 'normStd', outDir: 'outDir', ...opts.optionNames };
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > MAX_SEED) {
    throw new TidarcError('invalid-argument', 'invalid value', { field: names.seed, value: shownValue(opts.seed), allowed: `an integer from 0 to ${MAX_SEED}` });
  }
  for (const [field, value] of [[names.std, std], [names.normStd, normStd]] as const) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_INIT_STD) {
      throw new TidarcError('invalid-argument', 'invalid value', { field, value: shownValue(value), allowed: `a number from 0 to ${MAX_INIT_STD}` });
    }
  }
  const tokenizer = byteTokenizerConfig(spec.vocabSize, spec.maskTokenId);
  const config = hfConfigOf(spec, { eosTokenId: BYTE_EOS_ID });
  const place: OutputPlace = { path: opts.outDir, kind: 'checkpoint', field: names.outDir };
  checkReplaceable(place);

  const expected = expectedTensors(spec);
  const tensors: Record<string, TensorChunks> = {};
  for (const t of expected) tensors[t.name] = randomTensor(t, spec, opts.seed, t.role === 'norm' ? normStd : std);
  const staging = await createStaging(place);
  try {
    await writeFile(join(staging, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
    await writeFile(join(staging, TOKENIZER_FILE), formatByteTokenizerJson(tokenizer));
    await writeSafetensors(join(staging, WEIGHTS_FILE), tensors, { format: 'pt' }, opts.onProgress ? { onProgress: opts.onProgress } : {});
    const files = [];
    for (const name of [CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE].sort()) files.push({ name, bytes: (await stat(join(staging, name))).size });
    await commitStaging(staging, place);
    const parameters = expected.reduce((sum, t) => sum + numel(t.shape), 0);
    return { outDir: opts.outDir, spec, parameters, files, totalBytes: files.reduce((s, f) => s + f.bytes, 0) };
  } catch (err) {
    await discardStaging(staging);
    throw err;
  }
}

/** N(0, std^2), or for a norm 1 + N(0, std^2) (exact ones when std is 0). */
function randomTensor(t: ExpectedTensor, spec: ModelSpec, seed: number, std: number): TensorChunks {
  const count = numel(t.shape);
  const { dtype } = spec;
  const isNorm = t.role === 'norm';
  if (isNorm && std === 0) {
    const one = encodeScalarBits(dtype, 1);
    return { dtype: WEIGHT_DTYPE[dtype], shape: t.shape, chunks: () => [new Uint16Array(count).fill(one)] };
  }
  return {
    dtype: WEIGHT_DTYPE[dtype],
    shape: t.shape,
    *chunks() {
      const draw = normalPairs(seededRandom(fnv1a(`${seed}/${t.name}`)), std);
      // float32 scratch: bf16 encodes it by integer rounding, 3x faster than from float64.
      const scratch = new Float32Array(Math.min(count, CHUNK_ELEMENTS));
      for (let done = 0; done < count; done += scratch.length) {
        const part = scratch.subarray(0, Math.min(scratch.length, count - done));
        draw(part);
        if (isNorm) for (let i = 0; i < part.length; i++) part[i] = part[i]! + 1;
        yield encode(dtype, part);
      }
    },
  };
}

/**
 * Fills arrays with N(0, std^2) samples by Marsaglia's polar method on the PRNG's uniforms:
 * two normals per log and sqrt, where Rng.normal (Box-Muller, one output per log and cos)
 * costs about three times as much, which is seconds for a 100M-parameter model.
 */
function normalPairs(rng: Rng, std: number): (out: Float32Array) => void {
  let spare: number | undefined;
  return (out) => {
    let i = 0;
    if (spare !== undefined && out.length > 0) {
      out[i++] = spare;
      spare = undefined;
    }
    while (i < out.length) {
      const u = 2 * rng.next() - 1;
      const v = 2 * rng.next() - 1;
      const s = u * u + v * v;
      if (s >= 1 || s === 0) continue;
      const m = std * Math.sqrt((-2 * Math.log(s)) / s);
      out[i++] = u * m;
      if (i < out.length) out[i++] = v * m;
      else spare = v * m;
    }
  };
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** 32-bit FNV-1a of a string's UTF-16 units: a stable per-tensor seed. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
