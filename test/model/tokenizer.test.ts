// Needs: nothing (pure TypeScript; @huggingface/tokenizers for the HF tokenizer.json case).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  byteTokenizerConfig, createByteTokenizer, createStreamDecoder, formatByteTokenizerJson, loadTokenizer, type Tokenizer,
} from '../../src/model/tokenizer.js';

/** Temp directories of this file, removed when it is done (checkpoints are megabytes). */
const temps: string[] = [];
afterAll(() => Promise.all(temps.map((d) => rm(d, { recursive: true, force: true }))));

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
}

const tiny = createByteTokenizer(byteTokenizerConfig(260, 259));
const EMOJI = '\u{1F600}'; // 4 UTF-8 bytes: f0 9f 98 80

/** Pushes ids in the given groups; returns what each push emitted, then the flush. */
function stream(tok: Tokenizer, groups: readonly (readonly number[])[]): string[] {
  const d = createStreamDecoder(tok);
  return [...groups.map((g) => d.push(g)), d.flush()];
}

describe('byte-level tokenizer', () => {
  it('has the documented layout for the tiny vocabulary', () => {
    expect(byteTokenizerConfig(260, 259)).toEqual({
      type: 'tidarc-byte', vocab_size: 260, specials: { '<|endoftext|>': 256, '<|pad|>': 257, '<|mask|>': 259 }, eos_token: '<|endoftext|>',
    });
    expect(tiny.vocabSize).toBe(260);
    expect(tiny.eos).toBe(256);
    expect(tiny.decode([256, 257, 258, 259])).toBe('<|endoftext|><|pad|><|reserved_258|><|mask|>');
  });

  it.each(['hello, world', 'héllo', '中文字符', `a${EMOJI}b`, 'e\u0301 (combining)', '\u0000\n\t', ''])('round-trips %j through UTF-8 bytes', (text) => {
    const ids = tiny.encode(text);
    expect(ids).toEqual(Array.from(Buffer.from(text, 'utf8')));
    expect(tiny.decode(ids)).toBe(text);
  });

  it('encodes special-token text as bytes, never as the special', () => {
    expect(tiny.encode('<|endoftext|>')).toEqual(Array.from(Buffer.from('<|endoftext|>')));
  });

  it('decodes invalid UTF-8 as U+FFFD and refuses ids outside the vocabulary', () => {
    expect(tiny.decode([0x61, 0xff, 0x62])).toBe('a\uFFFDb');
    expect(tiny.decode([0xf0, 0x9f, 256])).toBe('\uFFFD<|endoftext|>');
    expect(() => tiny.decode([260])).toThrow(/token id outside the vocabulary \(token id = 260\); allowed: an integer from 0 to 259/);
    expect(() => tiny.decode([-1])).toThrow(/token id = -1/);
    expect(() => tiny.decode([1.5])).toThrow(/token id = 1\.5/);
  });

  it('streams a 4-byte emoji split across steps, emitting it only when complete', () => {
    const bytes = tiny.encode(`x${EMOJI}y`);
    expect(stream(tiny, bytes.map((b) => [b]))).toEqual(['x', '', '', '', EMOJI, 'y', '']);
    expect(stream(tiny, [bytes.slice(0, 2), bytes.slice(2, 4), bytes.slice(4)])).toEqual(['x', '', `${EMOJI}y`, '']);
    const d = createStreamDecoder(tiny);
    expect(d.push(0xf0)).toBe('');
    expect(d.push(0x9f)).toBe('');
    expect(d.push(256)).toBe('\uFFFD<|endoftext|>'); // a special ends the broken character
    expect(d.push([0xe4, 0xb8])).toBe('');
    expect(d.flush()).toBe('\uFFFD'); // the stream ended inside a character
  });

  it('writes and loads tokenizer.json', async () => {
    const dir = await tempDir('tidarc-tok-');
    const text = formatByteTokenizerJson(byteTokenizerConfig(260, 259));
    expect(text).toBe(`{
  "type": "tidarc-byte",
  "vocab_size": 260,
  "specials": {
    "<|endoftext|>": 256,
    "<|pad|>": 257,
    "<|mask|>": 259
  },
  "eos_token": "<|endoftext|>"
}
`);
    await writeFile(join(dir, 'tokenizer.json'), text);
    const tok = await loadTokenizer(dir);
    expect(tok.decode(tok.encode(`ok ${EMOJI}`))).toBe(`ok ${EMOJI}`);
    expect(tok.eos).toBe(256);
  });

  it.each([
    ['vocabulary too small', () => byteTokenizerConfig(258, 257), /\(vocabSize = 258\); allowed: an integer from 259/],
    ['mask on the pad id', () => byteTokenizerConfig(260, 257), /mask token collides.*\(maskTokenId = 257\); allowed: an integer from 258 to 259/],
    ['mask on a byte', () => byteTokenizerConfig(260, 65), /maskTokenId = 65/],
  ])('refuses a layout with %s', (_what, fn, pattern) => {
    expect(fn).toThrow(pattern);
  });

  it.each([
    [{ type: 'tidarc-byte', vocab_size: 100 }, /vocab_size = 100\); allowed: an integer from 256/],
    [{ type: 'tidarc-byte', vocab_size: 260, specials: { '<|x|>': 12 } }, /specials\.<\|x\|> = 12\); allowed: a distinct integer from 256 to 259/],
    [{ type: 'tidarc-byte', vocab_size: 260, specials: { a: 256, b: 256 } }, /specials\.b = 256/],
    [{ type: 'tidarc-byte', vocab_size: 260, eos_token: '<|eos|>' }, /eos_token = "<\|eos\|>"\); allowed: the text of one of the specials/],
    // Prototype keys are not specials: `in` found Object.prototype's members (issue 12).
    [{ type: 'tidarc-byte', vocab_size: 260, specials: { '<|endoftext|>': 256 }, eos_token: '__proto__' }, /eos_token = "__proto__"\); allowed: the text of one of the specials/],
    [{ type: 'tidarc-byte', vocab_size: 260, eos_token: 'toString' }, /eos_token = "toString"\); allowed: the text of one of the specials/],
    [{ type: 'sentencepiece' }, /unknown tokenizer format \(type = "sentencepiece"\)/],
  ])('refuses tokenizer.json %j naming the field', async (json, pattern) => {
    const dir = await tempDir('tidarc-tok-');
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
    await expect(loadTokenizer(dir)).rejects.toThrow(pattern);
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')}: `);
  });

  it('a missing tokenizer.json names the path', async () => {
    const dir = await tempDir('tidarc-tok-');
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')}: no such file`);
  });
});

/** A minimal byte-level BPE tokenizer.json (GPT-2 byte alphabet, ids = byte values, two merges). */
function hfByteBpe(): Record<string, unknown> {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const vocab: Record<string, number> = {};
  let extra = 0;
  for (let b = 0; b < 256; b++) vocab[String.fromCodePoint(printable.includes(b) ? b : 256 + extra++)] = b;
  vocab['he'] = 256;
  vocab['hel'] = 257;
  return {
    version: '1.0',
    added_tokens: [{ id: 258, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: ['h e', 'he l'] },
  };
}

describe('Hugging Face tokenizer.json', () => {
  async function hfDir(): Promise<string> {
    const dir = await tempDir('tidarc-hftok-');
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(hfByteBpe()));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>' }));
    return dir;
  }

  it('loads through @huggingface/tokenizers: merges, specials, eos from tokenizer_config.json', async () => {
    const tok = await loadTokenizer(await hfDir());
    expect(tok.vocabSize).toBe(259);
    expect(tok.eos).toBe(258);
    const ids = tok.encode(`hello ${EMOJI}<|endoftext|>`);
    expect(ids).toEqual([257, 108, 111, 32, 0xf0, 0x9f, 0x98, 0x80, 258]);
    expect(tok.decode(ids)).toBe(`hello ${EMOJI}<|endoftext|>`);
    expect(() => tok.decode([259])).toThrow(/token id = 259/);
  });

  it('names an ordinary token or eos as taken for a mask token; a special added token or an unused id is free', async () => {
    const tok = await loadTokenizer(await hfDir());
    expect(tok.meaningOf?.(257)).toBe('an ordinary token of the tokenizer ("hel")');
    expect(tok.meaningOf?.(104)).toMatch(/^an ordinary token of the tokenizer/);
    expect(tok.meaningOf?.(258)).toBe("the tokenizer's eos token (<|endoftext|>)");
    expect(tok.meaningOf?.(300)).toBeUndefined();
  });

  it('streams through the generic decoder without splitting the emoji', async () => {
    const tok = await loadTokenizer(await hfDir());
    expect(tok.streamDecoder).toBeUndefined();
    const ids = tok.encode(`hel${EMOJI}!`);
    expect(stream(tok, ids.map((id) => [id]))).toEqual(['hel', '', '', '', EMOJI, '!', '']);
  });
});

/**
 * Ids are checked on the file before the library builds anything: it allocates by the largest
 * id, so one WordLevel id of 1e9 took 46 s (and gigabytes) before any error.
 */
describe('tokenizer ids bounded before the tokenizer is built', () => {
  function wordLevel(vocab: Record<string, unknown>, added: unknown[] = []): Record<string, unknown> {
    return { version: '1.0', added_tokens: added, normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: 'WordLevel', vocab, unk_token: 'a' } };
  }

  async function dirWith(json: unknown): Promise<string> {
    const dir = await tempDir('tidarc-tokids-');
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
    return dir;
  }

  it('refuses an id of 1e9 at once, by the model\'s vocabulary and without one', async () => {
    const dir = await dirWith(wordLevel({ a: 0, b: 1, c: 1e9 }));
    const started = performance.now();
    await expect(loadTokenizer(dir, { maxVocabSize: 260 })).rejects.toThrow(
      `${join(dir, 'tokenizer.json')}: the tokenizer has more ids than the model has embeddings (model.vocab["c"] = 1000000000); allowed: an integer from 0 to 259 (the model's vocab_size is 260)`,
    );
    await expect(loadTokenizer(dir)).rejects.toThrow(/token id too large \(model\.vocab\["c"\] = 1000000000\); allowed: an integer from 0 to 16777215/);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it.each([
    ['a fractional id', wordLevel({ a: 0, b: 0.5 }), /invalid token id \(model\.vocab\["b"\] = 0\.5\)/],
    ['a negative id', wordLevel({ a: 0, b: -5 }), /invalid token id \(model\.vocab\["b"\] = -5\)/],
    ['a string id', wordLevel({ a: 0, b: '1' }), /invalid token id \(model\.vocab\["b"\] = "1"\)/],
    ['an added token past the vocabulary', wordLevel({ a: 0 }, [{ id: 300, content: 'x', special: true }]), /more ids than the model has embeddings \(added_tokens\[0\]\.id = 300\)/],
    ['an added token without an id', wordLevel({ a: 0 }, [{ content: 'x' }]), /invalid token id \(added_tokens\[0\]\.id\)/],
    ['a Unigram vocabulary longer than the model\'s', { ...wordLevel({}), model: { type: 'Unigram', vocab: Array.from({ length: 261 }, (_, i) => [`t${i}`, -1]) } }, /\(model\.vocab length = 261\); allowed: at most 260/],
    ['a byte tokenizer larger than the model', { type: 'tidarc-byte', vocab_size: 300 }, /more ids than the model has embeddings \(tokenizer vocabulary size = 300\); allowed: at most vocab_size = 260/],
  ])('refuses %s', async (_what, json, pattern) => {
    await expect(loadTokenizer(await dirWith(json), { maxVocabSize: 260 })).rejects.toThrow(pattern);
  });

  it('loads a WordLevel tokenizer whose ids fit', async () => {
    const tok = await loadTokenizer(await dirWith(wordLevel({ a: 0, b: 1, c: 259 })), { maxVocabSize: 260 });
    expect(tok.vocabSize).toBe(260);
  });

  // Found by the fuzz test: the library has no WordLevel model and encodes an unknown word as undefined.
  it('refuses to encode a word the tokenizer has no id for, instead of returning undefined ids', async () => {
    const dir = await dirWith({ ...wordLevel({ '<unk>': 0, hello: 1 }), pre_tokenizer: { type: 'Whitespace' } });
    const tok = await loadTokenizer(dir);
    expect(tok.encode('hello')).toEqual([1]);
    expect(() => tok.encode('hello zebra')).toThrow(`${join(dir, 'tokenizer.json')}: the tokenizer has no id for part of this text (a word outside its vocabulary, and no unk_token it can use) (text = "hello zebra")`);
  });
});
