/**
 * Tokenizers of a model directory's tokenizer.json: our byte-level one, which random-weight
 * checkpoints (init-model) carry, and real Hugging Face tokenizers through
 * @huggingface/tokenizers (pure JS, loaded only when a directory has one).
 *
 * Byte-level layout ("type": "tidarc-byte"): ids 0..255 are the bytes of UTF-8 text, the ids
 * from 256 to vocab_size - 1 are specials or reserved. The default layout (byteTokenizerConfig):
 *   256 <|endoftext|> (eos), 257 <|pad|>, maskTokenId <|mask|>, every other id <|reserved_N|>;
 * for examples/tiny.json (vocab 260, mask 259) that is 256 eos, 257 pad, 258 reserved, 259 mask.
 * encode() never produces specials: text that spells "<|endoftext|>" is encoded as its bytes,
 * so prompts cannot inject control tokens. decode() renders specials by name.
 *
 * Streaming: a token sequence may split a UTF-8 character (a 4-byte emoji is 4 byte tokens);
 * createStreamDecoder emits only complete characters and holds the rest for the next step.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TidarcError } from '../errors.js';
import { readJsonFile } from '../fs/read-json.js';
import { shownValue } from '../ir/model-validate.js';

export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  readonly vocabSize: number;
  /** End-of-sequence id, when the tokenizer names one. */
  readonly eos?: number;
  /**
   * What an id already means, when it is text or a control token (a byte, eos, pad), for the
   * check that a model's mask token is an id of its own; undefined for reserved or unused ids.
   */
  meaningOf?(id: number): string | undefined;
  /** An exact streaming decoder; createStreamDecoder falls back to a generic one without it. */
  streamDecoder?(): StreamDecoder;
}

/** Turns ids arriving step by step into text, emitting only complete characters. */
export interface StreamDecoder {
  /** Text completed by these ids (possibly ''). */
  push(ids: number | readonly number[]): string;
  /** Whatever is held back (an incomplete character becomes U+FFFD); ends the stream. */
  flush(): string;
}

export const TOKENIZER_FILE = 'tokenizer.json';
export const BYTE_TOKENIZER_TYPE = 'tidarc-byte';
export const BYTE_EOS = '<|endoftext|>';
export const BYTE_PAD = '<|pad|>';
export const BYTE_MASK = '<|mask|>';
export const BYTE_EOS_ID = 256;
export const BYTE_PAD_ID = 257;
/** The first id the default layout leaves free (for the mask token). */
const FIRST_FREE_ID = 258;
const MAX_VOCAB = 1 << 24;

/** The tokenizer.json of a byte-level tokenizer. */
export interface ByteTokenizerConfig {
  readonly type: typeof BYTE_TOKENIZER_TYPE;
  readonly vocab_size: number;
  /** Special token text -> id (ids 256 .. vocab_size - 1). */
  readonly specials: Readonly<Record<string, number>>;
  /** The special that ends a sequence, by name. */
  readonly eos_token?: string;
}

/** The default byte layout for a model: eos 256, pad 257, the mask token at maskTokenId. */
export function byteTokenizerConfig(vocabSize: number, maskTokenId: number, source?: string): ByteTokenizerConfig {
  if (!Number.isInteger(vocabSize) || vocabSize < FIRST_FREE_ID + 1 || vocabSize > MAX_VOCAB) {
    throw new TidarcError('unsupported', 'a byte-level tokenizer needs 256 byte ids, eos, pad and the mask token', {
      field: 'vocabSize', value: vocabSize, allowed: `an integer from ${FIRST_FREE_ID + 1} to ${MAX_VOCAB}`, ...(source ? { source } : {}),
    });
  }
  if (!Number.isInteger(maskTokenId) || maskTokenId < FIRST_FREE_ID || maskTokenId >= vocabSize) {
    throw new TidarcError('unsupported', 'the mask token collides with a byte or eos/pad id of the byte-level tokenizer', {
      field: 'maskTokenId', value: maskTokenId, allowed: `an integer from ${FIRST_FREE_ID} to ${vocabSize - 1}`, ...(source ? { source } : {}),
    });
  }
  return { type: BYTE_TOKENIZER_TYPE, vocab_size: vocabSize, specials: { [BYTE_EOS]: BYTE_EOS_ID, [BYTE_PAD]: BYTE_PAD_ID, [BYTE_MASK]: maskTokenId }, eos_token: BYTE_EOS };
}

/** tokenizer.json text for a byte config: fixed key order, specials sorted by id, LF. */
export function formatByteTokenizerJson(config: ByteTokenizerConfig): string {
  const specials = Object.fromEntries(Object.entries(config.specials).sort((a, b) => a[1] - b[1]));
  const ordered = { type: config.type, vocab_size: config.vocab_size, specials, ...(config.eos_token !== undefined ? { eos_token: config.eos_token } : {}) };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/** A byte-level tokenizer from its (validated) config. */
export function createByteTokenizer(raw: unknown, source?: string): Tokenizer {
  const config = checkByteConfig(raw, source);
  const vocabSize = config.vocab_size;
  const nameOf = new Map<number, string>(Object.entries(config.specials).map(([name, id]) => [id, name]));
  const tokenText = (id: number): string => nameOf.get(id) ?? `<|reserved_${id}|>`;
  const eos = config.eos_token !== undefined && Object.hasOwn(config.specials, config.eos_token) ? config.specials[config.eos_token] : undefined;
  const meaningOf = (id: number): string | undefined => {
    if (id >= 0 && id < 256) return `the byte 0x${id.toString(16).padStart(2, '0')} of the byte-level tokenizer`;
    const name = nameOf.get(id);
    return name === undefined || name === BYTE_MASK ? undefined : `the special ${name} of the byte-level tokenizer`;
  };
  const encoder = new TextEncoder();
  const decodeIds = (ids: readonly number[], decoder: TextDecoder, stream: boolean): string => {
    let text = '';
    let bytes: number[] = [];
    for (const id of ids) {
      checkId(id, vocabSize, source);
      if (id < 256) {
        bytes.push(id);
        continue;
      }
      // A special ends any pending byte run: an incomplete character before it is U+FFFD.
      text += decoder.decode(Uint8Array.from(bytes)) + tokenText(id);
      bytes = [];
    }
    return text + decoder.decode(Uint8Array.from(bytes), { stream });
  };
  return {
    vocabSize,
    ...(eos !== undefined ? { eos } : {}),
    meaningOf,
    encode: (text) => Array.from(encoder.encode(text)),
    decode: (ids) => decodeIds(ids, new TextDecoder('utf-8'), false),
    streamDecoder: () => {
      const decoder = new TextDecoder('utf-8');
      return {
        push: (ids) => decodeIds(typeof ids === 'number' ? [ids] : ids, decoder, true),
        flush: () => decoder.decode(),
      };
    },
  };
}

/**
 * A streaming decoder for any tokenizer: its own when it has one, else the incremental scheme of
 * serving engines (vLLM): decode a short window of recent ids with and without the new ones and
 * emit the difference once it no longer ends in U+FFFD. The window keeps context-dependent
 * decoders (a leading-space rule) right without re-decoding the whole sequence each step.
 */
export function createStreamDecoder(tokenizer: Tokenizer): StreamDecoder {
  const own = tokenizer.streamDecoder?.();
  if (own) return own;
  const ids: number[] = [];
  let prefixOffset = 0;
  let readOffset = 0;
  const step = (final: boolean): string => {
    const prefixText = tokenizer.decode(ids.slice(prefixOffset, readOffset));
    const newText = tokenizer.decode(ids.slice(prefixOffset));
    if (newText.length <= prefixText.length || (!final && newText.endsWith('\uFFFD'))) return '';
    prefixOffset = readOffset;
    readOffset = ids.length;
    return newText.slice(prefixText.length);
  };
  return {
    push: (more) => {
      if (typeof more === 'number') ids.push(more);
      else ids.push(...more);
      return step(false);
    },
    flush: () => step(true),
  };
}

export interface LoadTokenizerOptions {
  /**
   * The model's vocabulary size: no tokenizer id may reach it. Checked on the file's ids before
   * the tokenizer is built, because the library allocates by the largest id (one id of 1e9 took
   * 46 s to refuse). Without it, ids are bounded by 2^24.
   */
  readonly maxVocabSize?: number;
}

/**
 * The tokenizer of a model directory: `dir/tokenizer.json`, either ours ("type": "tidarc-byte")
 * or a Hugging Face one (it has "model"; `tokenizer_config.json` beside it is used when present).
 */
export async function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const path = join(dir, TOKENIZER_FILE);
  const json = await readJsonFile(path, 'tokenizer');
  const maxVocab = options.maxVocabSize ?? MAX_VOCAB;
  if (isObject(json) && json['type'] === BYTE_TOKENIZER_TYPE) {
    const tokenizer = createByteTokenizer(json, path);
    if (tokenizer.vocabSize > maxVocab) tooManyIds(options, 'tokenizer vocabulary size', tokenizer.vocabSize, `at most vocab_size = ${maxVocab}`, path);
    return tokenizer;
  }
  if (isObject(json) && isObject(json['model'])) {
    checkHfIds(json, options, path);
    return loadHfTokenizer(dir, json, path);
  }
  throw new TidarcError('unsupported', 'unknown tokenizer format', {
    field: 'type', value: shownValue(isObject(json) ? json['type'] : json), allowed: `"${BYTE_TOKENIZER_TYPE}", or a Hugging Face tokenizer.json (with "model")`, source: path,
  });
}

async function loadHfTokenizer(dir: string, json: Record<string, unknown>, path: string): Promise<Tokenizer> {
  const configPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? await readJsonFile(configPath, 'tokenizerConfig') : {};
  let lib: typeof import('@huggingface/tokenizers');
  try {
    lib = await import('@huggingface/tokenizers');
  } catch {
    throw new TidarcError('unsupported', 'a Hugging Face tokenizer.json needs the @huggingface/tokenizers package, which is not installed', { source: path });
  }
  let hf: InstanceType<typeof lib.Tokenizer>;
  try {
    hf = new lib.Tokenizer(json, isObject(config) ? config : {});
  } catch (err) {
    throw new TidarcError('unsupported', `cannot load this Hugging Face tokenizer (${(err as Error).message.replace(/\s+/g, ' ')})`, { source: path });
  }
  let maxId = -1;
  for (const id of hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
  const vocabSize = maxId + 1;
  const eosToken = isObject(config) ? config['eos_token'] : undefined;
  const eosText = typeof eosToken === 'string' ? eosToken : isObject(eosToken) && typeof eosToken['content'] === 'string' ? eosToken['content'] : undefined;
  const eos = eosText !== undefined ? hf.token_to_id(eosText) : undefined;
  const added = Array.isArray(json['added_tokens']) ? (json['added_tokens'] as unknown[]) : [];
  const specialIds = new Set(added.filter((t): t is Record<string, unknown> => isObject(t) && t['special'] === true).map((t) => t['id']));
  return {
    vocabSize,
    ...(eos !== undefined ? { eos } : {}),
    meaningOf: (id) => {
      if (id === eos) return `the tokenizer's eos token (${eosText})`;
      // A special added token (<|fim_pad|>, <|MASK|>) is the mask token's kind; an ordinary
      // token is text the prompt and the model's output use, which a mask would shadow.
      if (specialIds.has(id)) return undefined;
      const token = hf.id_to_token(id);
      return token === undefined ? undefined : `an ordinary token of the tokenizer (${JSON.stringify(token)})`;
    },
    encode: (text) => {
      const ids: unknown[] = hf.encode(text).ids;
      // The library encodes a word it has no id for as undefined (WordLevel without an unk_token it can use).
      if (!ids.every((id) => typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < vocabSize)) {
        throw new TidarcError('unsupported', 'the tokenizer has no id for part of this text (a word outside its vocabulary, and no unk_token it can use)', {
          field: 'text', value: shownValue(text), source: path,
        });
      }
      return ids as number[];
    },
    decode: (ids) => {
      for (const id of ids) checkId(id, vocabSize, path);
      // The library refuses an empty list; an empty sequence is the empty string.
      return ids.length === 0 ? '' : hf.decode([...ids]);
    },
  };
}

/**
 * The ids of an HF tokenizer.json (model.vocab as token -> id, or Unigram's list whose ids are
 * its indices, and added_tokens[].id): integers from 0 to maxVocab - 1. Anything else the
 * library checks itself.
 */
function checkHfIds(json: Record<string, unknown>, options: LoadTokenizerOptions, path: string): void {
  const maxVocab = options.maxVocabSize ?? MAX_VOCAB;
  const allowed = `an integer from 0 to ${maxVocab - 1}${options.maxVocabSize === undefined ? '' : ` (the model's vocab_size is ${maxVocab})`}`;
  const check = (field: string, id: unknown): void => {
    if (typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < maxVocab) return;
    if (typeof id === 'number' && Number.isInteger(id) && id >= maxVocab) tooManyIds(options, field, id, allowed, path);
    throw new TidarcError('invalid-spec', 'invalid token id', { field, ...(id === undefined ? {} : { value: shownValue(id) }), allowed, source: path });
  };
  const vocab = (json['model'] as Record<string, unknown>)['vocab'];
  if (Array.isArray(vocab)) {
    if (vocab.length > maxVocab) tooManyIds(options, 'model.vocab length', vocab.length, `at most ${maxVocab}`, path);
  } else if (isObject(vocab)) {
    for (const [token, id] of Object.entries(vocab)) check(`model.vocab[${JSON.stringify(token)}]`, id);
  }
  const added = json['added_tokens'];
  if (Array.isArray(added)) added.forEach((t, i) => check(`added_tokens[${i}].id`, isObject(t) ? t['id'] : undefined));
}

function tooManyIds(options: LoadTokenizerOptions, field: string, value: number, allowed: string, source: string): never {
  const message = options.maxVocabSize === undefined ? 'token id too large' : 'the tokenizer has more ids than the model has embeddings';
  throw new TidarcError('invalid-spec', message, { field, value, allowed, source });
}

function checkByteConfig(raw: unknown, source: string | undefined): ByteTokenizerConfig {
  const where = source ? { source } : {};
  const bad = (field: string, value: unknown, allowed: string): never => {
    throw new TidarcError('invalid-spec', 'invalid byte tokenizer', { field, value: shownValue(value), allowed, ...where });
  };
  if (!isObject(raw)) return bad('tokenizer', raw, 'an object');
  if (raw['type'] !== BYTE_TOKENIZER_TYPE) bad('type', raw['type'], `"${BYTE_TOKENIZER_TYPE}"`);
  const vocabSize = raw['vocab_size'];
  if (typeof vocabSize !== 'number' || !Number.isInteger(vocabSize) || vocabSize < 256 || vocabSize > MAX_VOCAB) {
    bad('vocab_size', vocabSize, `an integer from 256 to ${MAX_VOCAB}`);
  }
  const specials = raw['specials'] ?? {};
  if (!isObject(specials)) return bad('specials', specials, 'an object of token text -> id');
  const ids = new Set<number>();
  for (const [name, id] of Object.entries(specials)) {
    if (name === '') bad('specials', name, 'non-empty token texts');
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 256 || id >= (vocabSize as number) || ids.has(id)) {
      bad(`specials.${name}`, id, `a distinct integer from 256 to ${(vocabSize as number) - 1}`);
    }
    ids.add(id as number);
  }
  const eos = raw['eos_token'];
  // hasOwn, not `in`: "__proto__" or "toString" must not name Object.prototype's members.
  if (eos !== undefined && (typeof eos !== 'string' || !Object.hasOwn(specials, eos))) bad('eos_token', eos, 'the text of one of the specials');
  return { type: BYTE_TOKENIZER_TYPE, vocab_size: vocabSize as number, specials: specials as Record<string, number>, ...(eos !== undefined ? { eos_token: eos as string } : {}) };
}

function checkId(id: number, vocabSize: number, source: string | undefined): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new TidarcError('invalid-argument', 'token id outside the vocabulary', {
      field: 'token id', value: shownValue(id), allowed: `an integer from 0 to ${vocabSize - 1}`, ...(source ? { source } : {}),
    });
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
