/**
 * The checkpoint's tensors as the operators take them: per layer the projections, norms,
 * optional biases (Qwen2) and QK-norms (Qwen3), in the checkpoint's own 16-bit format.
 */
import type { Checkpoint } from '../../model/checkpoint.js';
import type { Tensor } from '../../model/safetensors.js';
import { decode } from '../../util/dtype.js';
import type { WeightMatrix } from '../ops.js';

export interface LayerWeights {
  readonly inputNorm: WeightMatrix;
  readonly postNorm: WeightMatrix;
  readonly q: WeightMatrix;
  readonly k: WeightMatrix;
  readonly v: WeightMatrix;
  readonly o: WeightMatrix;
  readonly qBias: Float32Array | null;
  readonly kBias: Float32Array | null;
  readonly vBias: Float32Array | null;
  readonly qNorm: WeightMatrix | null;
  readonly kNorm: WeightMatrix | null;
  readonly gate: WeightMatrix;
  readonly up: WeightMatrix;
  readonly down: WeightMatrix;
}

export interface ModelWeights {
  readonly embedding: WeightMatrix;
  readonly layers: readonly LayerWeights[];
  readonly finalNorm: WeightMatrix;
  readonly lmHead: WeightMatrix;
}

function matrix(t: Tensor): WeightMatrix {
  const rows = t.shape.length === 2 ? t.shape[0]! : 1;
  const cols = t.shape[t.shape.length - 1]!;
  const dtype = t.dtype === 'BF16' ? 'bf16' : t.dtype === 'F16' ? 'fp16' : 'f32';
  return { data: t.data, dtype, rows, cols };
}

/** A bias vector in fp32 (the operators add it to fp32 activations). */
function vector(t: Tensor | undefined): Float32Array | null {
  if (!t) return null;
  if (t.data instanceof Float32Array) return t.data;
  return decode(t.dtype === 'BF16' ? 'bf16' : 'fp16', t.data);
}

export function modelWeights(ckpt: Checkpoint): ModelWeights {
  const get = (name: string): Tensor => ckpt.tensors.get(name)!;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < ckpt.spec.layers; i++) {
    const p = `model.layers.${i}.`;
    layers.push({
      inputNorm: matrix(get(`${p}input_layernorm.weight`)),
      postNorm: matrix(get(`${p}post_attention_layernorm.weight`)),
      q: matrix(get(`${p}self_attn.q_proj.weight`)),
      k: matrix(get(`${p}self_attn.k_proj.weight`)),
      v: matrix(get(`${p}self_attn.v_proj.weight`)),
      o: matrix(get(`${p}self_attn.o_proj.weight`)),
      qBias: vector(ckpt.tensors.get(`${p}self_attn.q_proj.bias`)),
      kBias: vector(ckpt.tensors.get(`${p}self_attn.k_proj.bias`)),
      vBias: vector(ckpt.tensors.get(`${p}self_attn.v_proj.bias`)),
      qNorm: ckpt.tensors.has(`${p}self_attn.q_norm.weight`) ? matrix(get(`${p}self_attn.q_norm.weight`)) : null,
      kNorm: ckpt.tensors.has(`${p}self_attn.k_norm.weight`) ? matrix(get(`${p}self_attn.k_norm.weight`)) : null,
      gate: matrix(get(`${p}mlp.gate_proj.weight`)),
      up: matrix(get(`${p}mlp.up_proj.weight`)),
      down: matrix(get(`${p}mlp.down_proj.weight`)),
    });
  }
  const embedding = matrix(get('model.embed_tokens.weight'));
  return {
    embedding,
    layers,
    finalNorm: matrix(get('model.norm.weight')),
    lmHead: ckpt.spec.tieEmbeddings ? embedding : matrix(get('lm_head.weight')),
  };
}
