/**
 * The checkpoint's tensors as the operators take them, under the checkpoint's own names
 * (model.layers.3.self_attn.q_proj.weight): the names a step graph reads (ir/step-graph.ts).
 * Matrices and norms stay in the checkpoint's 16-bit format; biases are decoded to fp32 (the
 * operators add them to fp32 activations). A tied lm_head is the embedding's matrix under
 * `lm_head.weight`.
 */
import type { Checkpoint } from '../../model/checkpoint.js';
import type { Tensor } from '../../model/safetensors.js';
import { TidarcError } from '../../errors.js';
import { decode } from '../../util/dtype.js';
import type { WeightMatrix } from '../ops.js';

/** Checkpoint tensor name -> matrix (a vector is one row; a bias is f32). */
export type ModelWeights = ReadonlyMap<string, WeightMatrix>;

function matrix(t: Tensor): WeightMatrix {
  const rows = t.shape.length === 2 ? t.shape[0]! : 1;
  const cols = t.shape[t.shape.length - 1]!;
  const dtype = t.dtype === 'BF16' ? 'bf16' : t.dtype === 'F16' ? 'fp16' : 'f32';
  return { data: t.data, dtype, rows, cols };
}

/** A bias vector in fp32. */
function vector(t: Tensor): WeightMatrix {
  const data = t.data instanceof Float32Array ? t.data : decode(t.dtype === 'BF16' ? 'bf16' : 'fp16', t.data);
  return { data, dtype: 'f32', rows: 1, cols: data.length };
}

/** The weights of named tensors (a checkpoint's, or any writer's under the same names). */
export function weightsFromTensors(tensors: ReadonlyMap<string, Tensor>, tieEmbeddings: boolean): ModelWeights {
  const out = new Map<string, WeightMatrix>();
  for (const [name, t] of tensors) out.set(name, name.endsWith('.bias') ? vector(t) : matrix(t));
  const embedding = out.get('model.embed_tokens.weight');
  if (tieEmbeddings && embedding) out.set('lm_head.weight', embedding);
  return out;
}

export function modelWeights(ckpt: Checkpoint): ModelWeights {
  return weightsFromTensors(ckpt.tensors, ckpt.spec.tieEmbeddings);
}

/** The weight a graph names; a name the checkpoint lacks is an error naming it. */
export function weightOf(w: ModelWeights, name: string): WeightMatrix {
  const m = w.get(name);
  if (!m) throw new TidarcError('runtime', 'the step graph reads a tensor the weights do not have', { field: 'tensor', value: name });
  return m;
}
