/**
 * `loadModel(dir)`: a checkpoint (config.json + safetensors + tokenizer), its attention
 * kernels compiled on first use (cached; an unchanged model does not recompile), and the
 * decoding loops behind `generate` and `stream`.
 */
import { TidarcError } from '../errors.js';
import { type ModelSpec, contextLength } from '../ir/model.js';
import { createStreamDecoder, type Tokenizer } from '../model/tokenizer.js';
import { Decoder, checkDecodeOptions, type DecodeOptions } from '../runtime/model/decoder.js';
import type { KvCache } from '../runtime/model/kv-cache.js';
import { type Backend, type BackendChoice, type LoadOptions, type ModelParts, type OpenPartsOptions, openModelParts } from './model-parts.js';

export type { BackendChoice, LoadOptions };

export interface GenerateOptions {
  /** Text, or token ids. */
  readonly prompt: string | readonly number[];
  readonly maxTokens?: number;
  readonly mode?: 'tidar' | 'ar';
  /** Draft length k (default: the largest the model was compiled for). */
  readonly draft?: number;
  readonly temperature?: number;
  readonly topP?: number;
  /** Keep only the topK most likely tokens before top-p (default 0: all). */
  readonly topK?: number;
  readonly seed?: number;
  /** beta of the verifier mix (default 1: lossless). */
  readonly trustAr?: number;
  /** Stop at the tokenizer's end-of-text token (default true). */
  readonly stopAtEos?: boolean;
  /** Called with the sequence's KV cache when the generation ends (tests, debugging). */
  readonly inspectCache?: (cache: KvCache) => void;
}

export interface GenerateResult {
  readonly text: string;
  readonly tokens: number[];
  /** Forward passes, prefill included. */
  readonly nfe: number;
  readonly tokensPerNfe: number;
  /** acceptHistogram[a] = TiDAR steps that accepted a drafts (index 0 unused; AR: empty). */
  readonly acceptHistogram: number[];
  readonly prefillMs: number;
  readonly decodeMs: number;
  readonly tokensPerSecond: number;
  readonly backend: Backend;
  readonly mode: 'tidar' | 'ar';
  readonly draft: number;
}

export interface StreamChunk {
  readonly tokens: readonly number[];
  readonly text: string;
}

export interface Model {
  readonly spec: ModelSpec;
  readonly tokenizer: Tokenizer;
  readonly backend: Backend;
  readonly backendReason: string;
  /** cuda: whether the kernels are launched with programmatic dependent launch (LoadOptions.pdl), and why (not). Absent on cpu. */
  readonly pdl?: { readonly on: boolean; readonly why: string };
  generate(options: GenerateOptions): Promise<GenerateResult>;
  stream(options: GenerateOptions): AsyncGenerator<StreamChunk, GenerateResult>;
  /**
   * cuda: frees the runners kept for the next generate (KV caches, activations, scratch and
   * captured step graphs; the device then holds the weights only); the next generate allocates
   * and warms up again. close() does this too.
   */
  dropRunners(): void;
  close(): void;
}

/**
 * Throws when a prompt of `promptTokens` plus `maxTokens` (and a step's 2k draft and mask
 * positions) does not fit the model's context. Without maxPositionEmbeddings the family's
 * default bounds the run, and with it the KV cache it allocates. Before the prompt is
 * encoded (promptTokens undefined) it checks maxTokens against the shortest prompt, 1 token,
 * and names the caller's `field` for it.
 */
export function checkContext(spec: ModelSpec, promptTokens: number | undefined, maxTokens: number, k: number, field = 'maxTokens'): void {
  const context = contextLength(spec);
  if ((promptTokens ?? 1) + maxTokens + 2 * k <= context) return;
  const why = spec.maxPositionEmbeddings !== undefined ? 'maxPositionEmbeddings' : `the ${spec.family} default: the config sets no max_position_embeddings`;
  const allowed = `at most ${context} positions (${why}) including ${2 * k} for drafts`;
  if (promptTokens === undefined) throw new TidarcError('invalid-argument', 'more tokens than the context holds, even after a 1-token prompt', { field, value: maxTokens, allowed });
  throw new TidarcError('invalid-argument', 'the prompt plus maxTokens is longer than the context', { field: 'prompt', value: `${promptTokens} + ${maxTokens} tokens`, allowed });
}

/**
 * TiDAR feeds mask tokens; a checkpoint that names none (no "tidar" object in config.json, a
 * vocabulary without a default) decodes in AR mode only, which feeds none.
 */
export function requireMaskToken(maskTokenId: number | undefined, how: { field: string; allowed: string }): void {
  if (maskTokenId !== undefined) return;
  throw new TidarcError('invalid-argument', 'TiDAR mode feeds a mask token and this checkpoint names none (its config.json has no "tidar": {"mask_token_id": ...} and its vocabulary no default)', how);
}

/** `options.checkSpec` runs on the checkpoint's spec before any kernel is compiled (the CLI checks its arguments there). */
export async function loadModel(dir: string, options: OpenPartsOptions = {}): Promise<Model> {
  return modelOf(await openModelParts(dir, options));
}

/** Resolves after the event loop's next turn (timers, I/O and signal handlers run meanwhile). */
const nextMacrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The decoding API over opened parts (loadModel; tests that also read the parts' device). */
export function modelOf(parts: ModelParts): Model {
  const { spec, tokenizer, backend } = parts;

  async function* run(o: GenerateOptions): AsyncGenerator<StreamChunk, GenerateResult> {
    const mode = o.mode ?? 'tidar';
    const draft = o.draft ?? Math.max(...spec.draftLengths);
    const decodeOptions: DecodeOptions = { mode, draft, temperature: o.temperature ?? 0, topP: o.topP ?? 1, ...(o.topK === undefined ? {} : { topK: o.topK }), trustAr: o.trustAr ?? 1, seed: o.seed ?? 0 };
    checkDecodeOptions(decodeOptions, spec.draftLengths);
    if (mode === 'tidar') requireMaskToken(parts.maskTokenId, { field: 'maskTokenId', allowed: "loadModel(dir, { maskTokenId }) with an id of its own in this vocabulary, or mode: 'ar'" });
    const maxTokens = o.maxTokens ?? 128;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new TidarcError('invalid-argument', 'maxTokens must be a positive integer', { field: 'maxTokens', value: maxTokens });
    const prompt = typeof o.prompt === 'string' ? tokenizer.encode(o.prompt) : [...o.prompt];
    if (prompt.length === 0) throw new TidarcError('invalid-argument', 'the prompt is empty', { field: 'prompt' });
    for (const id of prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= spec.vocabSize) throw new TidarcError('invalid-argument', 'prompt token id out of range', { field: 'prompt', value: id, allowed: `0..${spec.vocabSize - 1}` });
    }
    const k = mode === 'tidar' ? draft : 0;
    checkContext(spec, prompt.length, maxTokens, k);
    // A runner of this model's pool (cuda: kept from an earlier sequence, its step graphs with it).
    // cuda: refused here, before the prefill, when the generation's memory (its prefill, this step kind's scratch) does not fit.
    const plan = { mode, draft, sampled: decodeOptions.temperature > 0, mix: decodeOptions.trustAr < 1, neverEmit: parts.maskTokenId, promptTokens: prompt.length };
    const runner = parts.runners.acquire(prompt.length + maxTokens + k + 1, plan);
    let failed = false;
    try {
      const decoder = new Decoder(runner, decodeOptions, spec.maskTokenId, parts.maskTokenId);
      const textStream = createStreamDecoder(tokenizer);
      const stopAtEos = (o.stopAtEos ?? true) && tokenizer.eos !== undefined;
      const tokens: number[] = [];
      const histogram: number[] = mode === 'tidar' ? Array<number>(draft + 1).fill(0) : [];
      let nfe = 0, prefillMs = 0, decodeMs = 0, done = false;
      const emit = (step: readonly number[]): number[] => {
        const out: number[] = [];
        for (const t of step) {
          if (stopAtEos && t === tokenizer.eos) { done = true; break; }
          out.push(t);
          if (tokens.length + out.length >= maxTokens) { done = true; break; }
        }
        tokens.push(...out);
        return out;
      };
      // The prefill pauses for a macrotask between its forward's ops (CPU): a long prompt's
      // prefill no longer holds Ctrl-C, timers and I/O until it ends.
      const first = await decoder.prefillAsync(prompt, nextMacrotask);
      nfe++;
      prefillMs = first.ms;
      let out = emit(first.tokens);
      if (out.length > 0) yield { tokens: out, text: textStream.push(out) };
      while (!done) {
        // Each forward is synchronous and an async generator resumes on microtasks only: without
        // this the event loop (signals, timers, I/O, a closed stdout) would wait for the last token.
        await nextMacrotask();
        const s = decoder.step();
        nfe++;
        decodeMs += s.ms;
        if (s.accepted !== undefined) histogram[s.accepted]!++;
        out = emit(s.tokens);
        if (out.length > 0) yield { tokens: out, text: textStream.push(out) };
      }
      o.inspectCache?.(runner.hostCache());
      const tail = textStream.flush();
      if (tail) yield { tokens: [], text: tail };
      return {
        text: tokenizer.decode(tokens),
        tokens,
        nfe,
        tokensPerNfe: tokens.length / nfe,
        acceptHistogram: histogram,
        prefillMs,
        decodeMs,
        tokensPerSecond: tokens.length / ((prefillMs + decodeMs) / 1000),
        backend,
        mode,
        draft: k,
      };
    } catch (e) {
      failed = true;
      // After an error the runner's state is unknown: closed. Its close may fail too (cuda: a
      // kernel fault leaves every free refused), and that must not replace the error that says
      // what failed; the model's close() (CudaDevice.close) frees whatever it left.
      try {
        parts.runners.release(runner, true);
      } catch {
        // the generation's own error is the one to report
      }
      throw e;
    } finally {
      // A stream the caller stops early (return()) leaves the runner between steps: reusable.
      if (!failed) parts.runners.release(runner, false);
    }
  }

  return {
    spec,
    tokenizer,
    backend,
    backendReason: parts.backendReason,
    ...(parts.cuda ? { pdl: parts.cuda.pdl } : {}),
    async generate(o) {
      const it = run(o);
      for (;;) {
        const r = await it.next();
        if (r.done) return r.value;
      }
    },
    stream: run,
    dropRunners: () => parts.runners.drop(),
    close: () => parts.close(),
  };
}
