// Needs: nothing (pure TypeScript + reading bundled HF configs).
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { importHfConfig, looksLikeHfConfig, modelNameFromPath } from '../../src/ir/hf-config.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { validateModelSpec } from '../../src/ir/model-validate.js';

type Config = Record<string, unknown>;

async function readJson(path: string): Promise<Config> {
  return JSON.parse(await readFile(path, 'utf8')) as Config;
}

function errorOf(fn: () => unknown): TidarcError {
  try {
    fn();
  } catch (err) {
    if (err instanceof TidarcError) return err;
    throw err;
  }
  throw new Error('expected a TidarcError, nothing was thrown');
}

const QWEN3 = 'examples/hf/qwen3-8b/config.json';
const QWEN25 = 'examples/hf/qwen2.5-1.5b/config.json';
const LLAMA = 'examples/hf/llama-3.2-1b/config.json';

describe('importHfConfig on the bundled HF configs', async () => {
  const qwen3 = await readJson(QWEN3);
  const qwen25 = await readJson(QWEN25);
  const llama = await readJson(LLAMA);

  it('Qwen3-8B equals examples/qwen3-8b.json', async () => {
    const spec = importHfConfig(qwen3, { source: QWEN3, draftLengths: [16, 4, 8] });
    expect(spec).toEqual(validateModelSpec(await readJson('examples/qwen3-8b.json')));
  });

  it('Qwen2.5-1.5B equals examples/qwen2.5-1.5b.json (head_dim derived, default draft and mask)', async () => {
    expect(qwen25['head_dim']).toBeUndefined();
    const spec = importHfConfig(qwen25, { source: QWEN25 });
    expect(spec).toEqual(validateModelSpec(await readJson('examples/qwen2.5-1.5b.json')));
    expect(spec.headDim).toBe(1536 / 12);
  });

  it('Llama-3.2-1B: llama3 RoPE scaling accepted, mask token required', () => {
    const err = errorOf(() => importHfConfig(llama, { source: LLAMA }));
    expect(err.code).toBe('invalid-spec');
    expect(err.message).toBe(
      `${LLAMA}: missing mask token id: this vocabulary has no default (only Qwen vocabularies do), pass one (maskTokenId); allowed: an integer from 0 to 128255`,
    );
    expect(errorOf(() => importHfConfig(llama, { optionNames: { maskTokenId: '--mask-token' } })).details.field).toBe('--mask-token');

    const spec = importHfConfig(llama, { source: LLAMA, maskTokenId: 128002 });
    expect(spec).toMatchObject({
      name: 'llama-3.2-1b', family: 'llama', layers: 16, hiddenSize: 2048, queryHeads: 32, kvHeads: 8, headDim: 64,
      intermediateSize: 8192, vocabSize: 128256, ropeTheta: 500000, rmsNormEps: 1e-5, qkNorm: false,
      tieEmbeddings: true, dtype: 'bf16', maskTokenId: 128002, draftLengths: [16], maxPositionEmbeddings: 131072,
    });
    expect(spec.ropeScaling).toEqual({ type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  });

  it('loadModelSpecFile detects HF configs and names them after their directory', async () => {
    const spec = await loadModelSpecFile(QWEN3, { draftLengths: [4, 8, 16] });
    expect(spec).toEqual(await loadModelSpecFile('examples/qwen3-8b.json'));
    expect(looksLikeHfConfig(qwen3)).toBe(true);
    expect(looksLikeHfConfig(await readJson('examples/tiny.json'))).toBe(false);
  });

  describe('defaults and mappings', () => {
    const base = { ...qwen25 };
    const del = (cfg: Config, ...keys: string[]): Config => Object.fromEntries(Object.entries(cfg).filter(([k]) => !keys.includes(k)));

    it('num_key_value_heads defaults to num_attention_heads (plain MHA)', () => {
      expect(importHfConfig(del(base, 'num_key_value_heads')).kvHeads).toBe(12);
    });

    it('rope_theta defaults to 10000, tie_word_embeddings to false, dtype to bf16', () => {
      const spec = importHfConfig(del(base, 'rope_theta', 'tie_word_embeddings', 'torch_dtype'));
      expect([spec.ropeTheta, spec.tieEmbeddings, spec.dtype]).toEqual([10000, false, 'bf16']);
    });

    it.each([
      ['bfloat16', 'bf16'],
      ['float16', 'fp16'],
      ['float32', 'bf16'],
    ])('torch_dtype %s -> %s', (torchDtype, dtype) => {
      expect(importHfConfig({ ...base, torch_dtype: torchDtype }).dtype).toBe(dtype);
    });

    it('reads the newer `dtype` key and lets options.dtype override', () => {
      expect(importHfConfig({ ...del(base, 'torch_dtype'), dtype: 'float16' }).dtype).toBe('fp16');
      expect(importHfConfig(base, { dtype: 'fp16' }).dtype).toBe('fp16');
    });

    it('qkNorm is true for qwen3 only', () => {
      expect(importHfConfig({ ...base, model_type: 'qwen3' }).qkNorm).toBe(true);
      expect(importHfConfig(base).qkNorm).toBe(false);
    });

    it('name: option, else directory name (sanitised), else "model"', () => {
      expect(importHfConfig(base, { name: 'mine' }).name).toBe('mine');
      expect(importHfConfig(base, { source: '/models/Qwen 2.5 (1.5B)/config.json' }).name).toBe('Qwen-2.5-1.5B-');
      expect(importHfConfig(base, { source: 'config.json' }).name).toBe('model');
      expect(importHfConfig(base).name).toBe('model');
      expect(modelNameFromPath('C:\\models\\qwen3-8b\\config.json')).toBe('qwen3-8b');
    });

    it('mask token defaults to 151662 only for Qwen vocabularies larger than it', () => {
      expect(importHfConfig(base).maskTokenId).toBe(151662);
      expect(errorOf(() => importHfConfig({ ...base, vocab_size: 151000 })).message).toContain('missing mask token id');
      expect(importHfConfig({ ...base, vocab_size: 151000 }, { maskTokenId: 7 }).maskTokenId).toBe(7);
    });

    it('mask token: an explicit id, else the config\'s "tidar": {"mask_token_id"} (as compile and run read it), else the default', () => {
      const small = { ...base, vocab_size: 151000 };
      expect(importHfConfig({ ...small, tidar: { mask_token_id: 9 } }).maskTokenId).toBe(9);
      expect(importHfConfig({ ...base, tidar: { mask_token_id: 9 } }).maskTokenId).toBe(9);  // over the Qwen default
      expect(importHfConfig({ ...small, tidar: { mask_token_id: 9 } }, { maskTokenId: 7 }).maskTokenId).toBe(7);
      expect(importHfConfig({ ...base, tidar: { draft_lengths: [4] } }).maskTokenId).toBe(151662);
      // Its errors name the key it came from.
      expect(errorOf(() => importHfConfig({ ...small, tidar: { mask_token_id: 151000 } })).message).toContain('(tidar.mask_token_id = 151000)');
      expect(errorOf(() => importHfConfig({ ...small, tidar: { mask_token_id: '9' } })).message).toContain('tidar.mask_token_id');
      expect(errorOf(() => importHfConfig({ ...small, eos_token_id: 9, tidar: { mask_token_id: 9 } })).message).toMatch(/eos_token_id \(9\) \(tidar\.mask_token_id = 9\)/);
      expect(errorOf(() => importHfConfig({ ...small, tidar: 259 })).message).toContain('(tidar = 259)');
    });

    it('linear RoPE scaling, with `type` or `rope_type`', () => {
      expect(importHfConfig({ ...base, rope_scaling: { type: 'linear', factor: 2.0 } }).ropeScaling).toEqual({ type: 'linear', factor: 2 });
      expect(importHfConfig({ ...base, rope_scaling: { rope_type: 'linear', factor: 4 } }).ropeScaling).toEqual({ type: 'linear', factor: 4 });
      expect(importHfConfig({ ...base, rope_scaling: { rope_type: 'default' } }).ropeScaling).toBeUndefined();
    });

    it('transformers 5 rope_parameters', () => {
      const cfg = { ...del(base, 'rope_theta'), rope_parameters: { rope_type: 'default', rope_theta: 1000000 } };
      expect(importHfConfig(cfg)).toMatchObject({ ropeTheta: 1000000 });
      expect(importHfConfig(cfg).ropeScaling).toBeUndefined();
    });
  });

  describe('refusals name the HF key', () => {
    const base = { ...qwen3 };
    // [what is wrong, config, code, field named, a piece of what is allowed]
    const cases: [string, Config, string, string, string][] = [
      ['yarn RoPE scaling', { ...base, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }, 'unsupported', 'rope_scaling.rope_type', '"linear" or "llama3"'],
      ['dynamic RoPE scaling (old `type` key)', { ...base, rope_scaling: { type: 'dynamic', factor: 2 } }, 'unsupported', 'rope_scaling.type', '"linear" or "llama3"'],
      ['longrope in rope_parameters', { ...base, rope_scaling: null, rope_parameters: { rope_type: 'longrope', rope_theta: 1e6 } }, 'unsupported', 'rope_parameters.rope_type', 'llama3'],
      ['linear without factor', { ...base, rope_scaling: { type: 'linear' } }, 'invalid-spec', 'rope_scaling.factor', 'a number from 1 to 1024'],
      ['linear factor 1e-300', { ...base, rope_scaling: { type: 'linear', factor: 1e-300 } }, 'invalid-spec', 'rope_scaling.factor', 'a number from 1 to 1024'],
      ['llama3 missing low_freq_factor', { ...base, rope_scaling: { rope_type: 'llama3', factor: 8, high_freq_factor: 4, original_max_position_embeddings: 8192 } }, 'invalid-spec', 'rope_scaling.low_freq_factor', 'a number from 0.001 to 1000'],
      ['rope_theta 1e-300', { ...base, rope_theta: 1e-300 }, 'invalid-spec', 'rope_theta', 'a number from 10 to 1e12'],
      ['rope_parameters.rope_theta 1e-300', { ...base, rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 1e-300 } }, 'invalid-spec', 'rope_theta', 'a number from 10 to 1e12'],
      ['rms_norm_eps 1e-300', { ...base, rms_norm_eps: 1e-300 }, 'invalid-spec', 'rms_norm_eps', 'a number from 1e-12 to 0.1'],
      ['num_attention_heads 1024', { ...base, num_attention_heads: 1024, num_key_value_heads: 8 }, 'invalid-spec', 'num_attention_heads', 'an integer from 1 to 256'],
      ['mask token = eos_token_id', { ...base, eos_token_id: 151662 }, 'invalid-spec', 'maskTokenId', 'an id of its own'],
      ['mask token in an eos_token_id list', { ...base, eos_token_id: [151645, 151662] }, 'invalid-spec', 'maskTokenId', 'an id of its own'],
      ['mask token = bos_token_id', { ...base, bos_token_id: 151662 }, 'invalid-spec', 'maskTokenId', 'an id of its own'],
      ['torch_dtype "__proto__"', { ...base, torch_dtype: '__proto__' }, 'unsupported', 'torch_dtype', 'bfloat16, float16 or float32'],
      ['torch_dtype "toString"', { ...base, torch_dtype: 'toString' }, 'unsupported', 'torch_dtype', 'bfloat16, float16 or float32'],
      ['mistral', { ...base, model_type: 'mistral' }, 'unsupported', 'model_type', 'qwen2, qwen3, llama'],
      ['no model_type', Object.fromEntries(Object.entries(base).filter(([k]) => k !== 'model_type')), 'invalid-spec', 'model_type', 'qwen2, qwen3, llama'],
      ['head_dim 96', { ...base, head_dim: 96 }, 'invalid-spec', 'head_dim', 'one of 64, 128'],
      ['derived head dim 96', { ...base, head_dim: undefined, hidden_size: 3072 }, 'invalid-spec', 'head_dim (hidden_size / num_attention_heads)', 'one of 64, 128'],
      ['hidden_size not a multiple of heads', { ...base, head_dim: undefined, hidden_size: 4100 }, 'invalid-spec', 'hidden_size', 'a multiple of num_attention_heads (32)'],
      ['kv heads not dividing', { ...base, num_key_value_heads: 5 }, 'invalid-spec', 'num_key_value_heads', 'a divisor of the query head count (32)'],
      ['layers missing', { ...base, num_hidden_layers: undefined }, 'invalid-spec', 'num_hidden_layers', 'an integer from 1'],
      ['vocab as string', { ...base, vocab_size: '151936' }, 'invalid-spec', 'vocab_size', 'an integer from 1'],
      ['eps missing', { ...base, rms_norm_eps: undefined }, 'invalid-spec', 'rms_norm_eps', 'a number from 1e-12 to 0.1'],
      ['float8 checkpoint', { ...base, torch_dtype: 'float8_e4m3fn' }, 'unsupported', 'torch_dtype', 'bfloat16, float16 or float32'],
      ['gelu activation', { ...base, hidden_act: 'gelu' }, 'unsupported', 'hidden_act', 'silu'],
      ['sliding window', { ...base, use_sliding_window: true }, 'unsupported', 'use_sliding_window', 'false'],
      ['not an object', [] as unknown as Config, 'invalid-spec', 'config', 'a JSON object'],
    ];

    it.each(cases)('%s', (_what, cfg, code, field, allowed) => {
      const err = errorOf(() => importHfConfig(cfg, { source: 'cfg/config.json' }));
      expect(err.code).toBe(code);
      expect(err.details.field).toBe(field);
      expect(err.message).toContain(allowed);
      expect(err.message.startsWith('cfg/config.json: ')).toBe(true);
      expect(err.message).not.toContain('\n');
    });

    it('a mask token equal to eos names what it collides with, under the caller\'s name for the field', () => {
      const err = errorOf(() => importHfConfig({ ...base, eos_token_id: 7 }, { maskTokenId: 7, optionNames: { maskTokenId: '--mask-token' } }));
      expect(err.message).toContain("the mask token id is already the config's eos_token_id (7) (--mask-token = 7)");
      expect(importHfConfig({ ...base, eos_token_id: 7 }, { maskTokenId: 8 }).maskTokenId).toBe(8);
    });

    it('option-sourced fields are named as the caller asks', () => {
      const names = { draftLengths: '--draft', maskTokenId: '--mask-token' };
      expect(errorOf(() => importHfConfig(base, { draftLengths: [64], optionNames: names })).details.field).toBe('--draft');
      expect(errorOf(() => importHfConfig(base, { maskTokenId: 200000, optionNames: names })).details.field).toBe('--mask-token');
      expect(errorOf(() => importHfConfig(base, { maskTokenId: 200000 })).details.field).toBe('maskTokenId');
    });
  });
});
