// Needs: nothing (writes small random checkpoints into temp directories).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelSpec } from '../../src/ir/model.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { expectedTensors, hfConfigOf, loadCheckpoint, parameterCount, specFromCheckpointConfig } from '../../src/model/checkpoint.js';
import { initModel } from '../../src/model/init-model.js';
import { readSafetensors, serializeSafetensors, type Tensor } from '../../src/model/safetensors.js';

const TINY = await loadModelSpecFile('examples/tiny.json');

/** Temp directories of this file, removed when it is done (checkpoints are megabytes). */
const temps: string[] = [];
afterAll(() => Promise.all(temps.map((d) => rm(d, { recursive: true, force: true }))));

/** A small spec of a family: 2 layers, hidden 128, 2/1 heads of 64. */
function small(family: ModelSpec['family'], extra: Partial<ModelSpec> = {}): ModelSpec {
  return {
    ...TINY, name: `small-${family}`, family, qkNorm: family === 'qwen3', hiddenSize: 128, queryHeads: 2, kvHeads: 1, intermediateSize: 96, ...extra,
  };
}

async function written(spec: ModelSpec, seed = 1): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'tidarc-ckpt-'));
  temps.push(root);
  const dir = join(root, 'model');
  await initModel({ spec, outDir: dir, seed });
  return dir;
}

/** Rewrites dir/model.safetensors through `edit` of its tensors. */
async function editWeights(dir: string, edit: (t: Record<string, Tensor>) => void): Promise<void> {
  const file = await readSafetensors(join(dir, 'model.safetensors'));
  const tensors: Record<string, Tensor> = {};
  for (const n of file.names()) tensors[n] = file.tensor(n);
  edit(tensors);
  await writeFile(join(dir, 'model.safetensors'), serializeSafetensors(tensors, file.metadata));
}

describe('expectedTensors', () => {
  it('names the tensors of transformers Qwen3 (q_norm / k_norm, no biases), tied embeddings', () => {
    const names = expectedTensors(TINY).map((t) => `${t.name} [${t.shape.join(',')}]`);
    expect(names.slice(0, 12)).toEqual([
      'model.embed_tokens.weight [260,256]',
      'model.layers.0.input_layernorm.weight [256]',
      'model.layers.0.self_attn.q_proj.weight [256,256]',
      'model.layers.0.self_attn.k_proj.weight [128,256]',
      'model.layers.0.self_attn.v_proj.weight [128,256]',
      'model.layers.0.self_attn.o_proj.weight [256,256]',
      'model.layers.0.self_attn.q_norm.weight [64]',
      'model.layers.0.self_attn.k_norm.weight [64]',
      'model.layers.0.post_attention_layernorm.weight [256]',
      'model.layers.0.mlp.gate_proj.weight [512,256]',
      'model.layers.0.mlp.up_proj.weight [512,256]',
      'model.layers.0.mlp.down_proj.weight [256,512]',
    ]);
    expect(names.at(-1)).toBe('model.norm.weight [256]');
    expect(names.length).toBe(1 + 2 * 11 + 1);
  });

  it('Qwen2 has q/k/v biases, Llama neither biases nor norms; untied models have lm_head', () => {
    const qwen2 = expectedTensors(small('qwen2', { tieEmbeddings: false })).map((t) => t.name);
    expect(qwen2).toContain('model.layers.1.self_attn.q_proj.bias');
    expect(qwen2).toContain('model.layers.1.self_attn.v_proj.bias');
    expect(qwen2).not.toContain('model.layers.1.self_attn.o_proj.bias');
    expect(qwen2.some((n) => n.includes('q_norm'))).toBe(false);
    expect(qwen2.at(-1)).toBe('lm_head.weight');
    const llama = expectedTensors(small('llama')).map((t) => t.name);
    expect(llama.some((n) => n.includes('bias') || n.includes('_norm.'))).toBe(false);
  });

  it('counts the published parameter totals', async () => {
    expect(parameterCount(await loadModelSpecFile('examples/qwen3-8b.json'))).toBe(8_190_735_360);
    expect(parameterCount(await loadModelSpecFile('examples/qwen2.5-1.5b.json'))).toBe(1_543_714_304);
    expect(parameterCount(await loadModelSpecFile('examples/hf/llama-3.2-1b/config.json', { maskTokenId: 128002 }))).toBe(1_235_814_400);
  });
});

describe('config.json with "tidar"', () => {
  it('round-trips every spec field through hfConfigOf and the HF importer', async () => {
    for (const spec of [TINY, small('qwen2'), await loadModelSpecFile('examples/qwen2.5-1.5b.json'),
      small('llama', { ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 }, maxPositionEmbeddings: 131072 }),
      small('llama', { ropeScaling: { type: 'linear', factor: 2 }, dtype: 'fp16' })]) {
      expect(specFromCheckpointConfig(hfConfigOf(spec), '/m/config.json')).toEqual(spec);
    }
  });

  it('without "tidar" the importer defaults apply', () => {
    const cfg = hfConfigOf(small('qwen2', { vocabSize: 151936, maskTokenId: 151662 }));
    delete cfg['tidar'];
    const spec = specFromCheckpointConfig(cfg, '/models/q2/config.json');
    expect(spec).toMatchObject({ name: 'q2', maskTokenId: 151662, draftLengths: [16] });
  });

  it.each([
    [{ tidar: 5 }, /\(tidar = 5\); allowed: an object/],
    [{ tidar: { mask_token_id: 999 } }, /\(tidar\.mask_token_id = 999\); allowed: an integer from 0 to 259/],
    [{ tidar: { mask_token_id: 'x' } }, /tidar\.mask_token_id = "x"/],
    [{ tidar: { draft_lengths: 4 } }, /\(tidar\.draft_lengths = 4\); allowed: an array/],
    [{ tidar: { draft_lengths: [4, 64] } }, /tidar\.draft_lengths = 64/],
    [{ tidar: { name: 3 } }, /\(tidar\.name = 3\)/],
  ])('refuses %j naming the field', (tidar, pattern) => {
    expect(() => specFromCheckpointConfig({ ...hfConfigOf(TINY), ...tidar }, 'm/config.json')).toThrow(pattern);
  });

  it('refuses a spec the HF layout cannot express', () => {
    expect(() => hfConfigOf({ ...TINY, qkNorm: false })).toThrow(/\(qkNorm = false\); allowed: true/);
  });
});

describe('loadCheckpoint', () => {
  it('loads what init-model wrote for examples/tiny.json', async () => {
    const dir = await written(TINY);
    const ckpt = await loadCheckpoint(dir);
    expect(ckpt.spec).toEqual(TINY);
    expect([...ckpt.tensors.keys()]).toEqual(expectedTensors(TINY).map((t) => t.name));
    expect(ckpt.unusedTensors).toEqual([]);
    expect(ckpt.tokenizer.vocabSize).toBe(260);
    expect(ckpt.tokenizer.eos).toBe(256);
    const norm = ckpt.tensors.get('model.layers.1.self_attn.k_norm.weight')!;
    expect(norm).toMatchObject({ dtype: 'BF16', shape: [64] });
    expect(new Set(norm.data)).toEqual(new Set([0x3f80])); // bf16 1.0
  });

  it('qwen2 checkpoints carry biases, qwen3 ones q_norm / k_norm', async () => {
    const q2 = await loadCheckpoint(await written(small('qwen2', { tieEmbeddings: false })));
    expect(q2.tensors.get('model.layers.0.self_attn.k_proj.bias')?.shape).toEqual([64]);
    expect(q2.tensors.has('lm_head.weight')).toBe(true);
    const q3 = await loadCheckpoint(await written(small('qwen3')));
    expect(q3.tensors.get('model.layers.1.self_attn.q_norm.weight')?.shape).toEqual([64]);
    expect([...q3.tensors.keys()].some((n) => n.endsWith('.bias'))).toBe(false);
  });

  it('a missing tensor is named, with its shape', async () => {
    const dir = await written(TINY);
    await editWeights(dir, (t) => void delete t['model.layers.1.self_attn.q_norm.weight']);
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      `${join(dir, 'model.safetensors')}: missing tensor: a qwen3 model with this config needs it, of shape [D] = [64] (tensor "model.layers.1.self_attn.q_norm.weight")`,
    );
  });

  it('several missing tensors name the first and count the rest', async () => {
    const dir = await written(small('qwen2'));
    await editWeights(dir, (t) => {
      for (const n of Object.keys(t)) if (n.endsWith('.bias')) delete t[n];
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(/missing tensor \(and 5 more\).*\(tensor "model\.layers\.0\.self_attn\.q_proj\.bias"\)/);
  });

  it('a wrong shape gives the found and the expected shape', async () => {
    const dir = await written(TINY);
    await editWeights(dir, (t) => {
      t['model.layers.0.mlp.down_proj.weight'] = { dtype: 'BF16', shape: [512, 256], data: new Uint16Array(512 * 256) };
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      'tensor has the wrong shape (tensor "model.layers.0.mlp.down_proj.weight".shape = [512, 256]); allowed: [H, I] = [256, 512] for this config',
    );
  });

  it('accepts F32 tensors, refuses the other half-precision dtype, lists the unused tensors known to be safe', async () => {
    const dir = await written(TINY);
    await editWeights(dir, (t) => {
      t['model.norm.weight'] = { dtype: 'F32', shape: [256], data: new Float32Array(256).fill(1) };
      t['model.rotary_emb.inv_freq'] = { dtype: 'F32', shape: [32], data: new Float32Array(32) };
      t['model.layers.0.self_attn.rotary_emb.inv_freq'] = { dtype: 'F32', shape: [32], data: new Float32Array(32) };
      t['lm_head.weight'] = { ...t['model.embed_tokens.weight']!, data: t['model.embed_tokens.weight']!.data.slice() }; // tied, and the same matrix
    });
    const ckpt = await loadCheckpoint(dir);
    expect(ckpt.tensors.get('model.norm.weight')?.dtype).toBe('F32');
    expect(ckpt.unusedTensors).toEqual(['lm_head.weight', 'model.layers.0.self_attn.rotary_emb.inv_freq', 'model.rotary_emb.inv_freq']);
    await editWeights(dir, (t) => {
      t['model.norm.weight'] = { dtype: 'F16', shape: [256], data: new Uint16Array(256) };
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(/tensor dtype does not match the model's bf16 \(tensor "model\.norm\.weight"\.dtype = F16\); allowed: BF16 or F32/);
  });

  it('refuses tensors the config does not use, naming three and counting them (config with fewer layers than the checkpoint)', async () => {
    const dir = await written(small('qwen3', { layers: 3 }));
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 2 }));
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      `${join(dir, 'model.safetensors')}: the checkpoint holds 11 tensors this config does not use (model.layers.2.input_layernorm.weight, model.layers.2.mlp.down_proj.weight, model.layers.2.mlp.gate_proj.weight and 8 more): the checkpoint has 3 layers, num_hidden_layers is 2 (tensors); allowed: only the tensors a qwen3 model with this config needs`,
    );
  });

  it('refuses a stray tensor, and a tied config over an lm_head that is not the embedding', async () => {
    const stray = await written(TINY);
    await editWeights(stray, (t) => {
      t['model.layers.0.self_attn.q_proj.bias'] = { dtype: 'BF16', shape: [256], data: new Uint16Array(256) };
    });
    await expect(loadCheckpoint(stray)).rejects.toThrow(/holds 1 tensor this config does not use \(model\.layers\.0\.self_attn\.q_proj\.bias\) \(tensors\)/);
    const head = await written(TINY);
    await editWeights(head, (t) => {
      t['lm_head.weight'] = { dtype: 'BF16', shape: [260, 256], data: new Uint16Array(260 * 256) }; // a trained head the tie would drop
    });
    await expect(loadCheckpoint(head)).rejects.toThrow(/lm_head\.weight that differs from the embedding.*\(tie_word_embeddings = true\); allowed: false/);
  });

  it('refuses NaN and infinite weights, naming the tensor and the first bad element', async () => {
    const dir = await written(TINY);
    await editWeights(dir, (t) => {
      const w = t['model.layers.1.mlp.up_proj.weight']!.data.slice() as Uint16Array;
      w[3 * 256 + 5] = 0x7fc0;  // bf16 NaN
      w[7 * 256] = 0xff80;      // bf16 -inf
      t['model.layers.1.mlp.up_proj.weight'] = { dtype: 'BF16', shape: [512, 256], data: w };
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(
      `${join(dir, 'model.safetensors')}: tensor holds non-finite values: 2 of 131072, the first at [3, 5] is NaN (tensor "model.layers.1.mlp.up_proj.weight"); allowed: finite weights`,
    );
    await editWeights(dir, (t) => {
      t['model.layers.1.mlp.up_proj.weight'] = { dtype: 'BF16', shape: [512, 256], data: new Uint16Array(512 * 256) };
      t['model.norm.weight'] = { dtype: 'F32', shape: [256], data: new Float32Array(256).fill(1).fill(Infinity, 255) };
    });
    await expect(loadCheckpoint(dir)).rejects.toThrow(/non-finite values: 1 of 256, the first at \[255\] is Infinity \(tensor "model\.norm\.weight"\)/);
  });

  it('refuses a mask token that is a byte or the eos id of the tokenizer', async () => {
    const dir = await written(TINY);
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { tidar: Record<string, unknown> };
    const withMask = (id: number) => writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, eos_token_id: undefined, tidar: { ...config.tidar, mask_token_id: id } }));
    await withMask(65);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/config\.json: the mask token id is already the byte 0x41 of the byte-level tokenizer \(tidar\.mask_token_id = 65\); allowed: an id of its own/);
    await withMask(256);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/the mask token id is already the special <\|endoftext\|> of the byte-level tokenizer \(tidar\.mask_token_id = 256\)/);
    await withMask(258);  // reserved: an id of its own
    expect((await loadCheckpoint(dir)).spec.maskTokenId).toBe(258);
  });

  it('reads a sharded checkpoint through model.safetensors.index.json', async () => {
    const dir = await written(TINY);
    const file = await readSafetensors(join(dir, 'model.safetensors'));
    const names = file.names();
    const shards = [names.slice(0, 10), names.slice(10)];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const shard = `model-0000${i + 1}-of-00002.safetensors`;
      await writeFile(join(dir, shard), serializeSafetensors(Object.fromEntries(part.map((n) => [n, file.tensor(n)]))));
      for (const n of part) weightMap[n] = shard;
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    await rm(join(dir, 'model.safetensors'));
    const ckpt = await loadCheckpoint(dir);
    expect(ckpt.tensors.size).toBe(names.length);
    expect(Array.from(ckpt.tensors.get(names[15]!)!.data)).toEqual(Array.from(file.tensor(names[15]!).data));
  });

  it('names a missing config.json, missing weights and a tokenizer larger than the model', async () => {
    const dir = await written(TINY);
    await rm(join(dir, 'model.safetensors'));
    await expect(loadCheckpoint(dir)).rejects.toThrow(`${dir}: no weights: neither model.safetensors nor model.safetensors.index.json`);
    await rm(join(dir, 'config.json'));
    await expect(loadCheckpoint(dir)).rejects.toThrow(`${join(dir, 'config.json')}: no such file`);
    const other = await written(TINY);
    const tok = JSON.parse(await readFile(join(other, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(other, 'tokenizer.json'), JSON.stringify({ ...tok, vocab_size: 300 }));
    await expect(loadCheckpoint(other)).rejects.toThrow(/more ids than the model has embeddings \(tokenizer vocabulary size = 300\); allowed: at most vocab_size = 260/);
  });
});
