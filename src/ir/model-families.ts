/**
 * Model families as data: per family, the checkpoint tensors of one decoder layer and the
 * builder of its ops (step-graph.ts). Qwen2, Qwen3 and Llama are one llama-style layer with an
 * optional q/k/v bias (Qwen2) and optional per-head q/k norms (spec.qkNorm: Qwen3). A new
 * family registers here (registerFamily) and every backend runs it: the runners only execute
 * graphs. Pure.
 */
import { TidarcError } from '../errors.js';
import type { ModelSpec } from './model.js';
import { type LayerBuilder, stepK, stepV } from './step-ops.js';

/** What a tensor is, which decides how init-model fills it. */
export type TensorRole = 'embedding' | 'linear' | 'bias' | 'norm';

/** A tensor of one layer, named relative to `model.layers.<i>.`. */
export interface LayerTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** The shape in symbols, for errors: `[Hq*D, H]`. */
  readonly dims: string;
  readonly role: TensorRole;
}

export interface ModelFamilyDef {
  /** The layer's checkpoint tensors, in the module order of the family's implementation. */
  layerTensors(spec: ModelSpec): LayerTensor[];
  /** Appends one layer's ops; the residual stream is `x` [T, hiddenSize], `h` a scratch of that width. */
  layer(b: LayerBuilder): void;
}

/**
 * Self-attention of the llama-style layer: input norm, q/k/v projections (three linears: the
 * CPU's float ops; the GPU fuses them by rewrite), optional qk-norm, RoPE, the 16-bit pack,
 * attention, o_proj and the residual add.
 */
export function llamaAttention(b: LayerBuilder, o: { bias: boolean }): void {
  const { spec } = b;
  const D = spec.headDim, Hq = spec.queryHeads, Hkv = spec.kvHeads;
  b.op({ kind: 'rmsnorm', x: 'x', weight: b.w('input_layernorm.weight'), out: 'h' });
  for (const [role, width] of [['q', Hq * D], ['k', Hkv * D], ['v', Hkv * D]] as const) {
    const out = b.tensor(role, width), weight = b.w(`self_attn.${role}_proj.weight`);
    const bias = o.bias ? { bias: b.w(`self_attn.${role}_proj.bias`) } : {};
    b.op({ kind: 'linear', role, x: 'h', weight, ...bias, parts: [{ weight, ...bias, out }] });
  }
  if (spec.qkNorm) {
    b.op({ kind: 'headNorm', x: 'q', weight: b.w('self_attn.q_norm.weight'), heads: Hq });
    b.op({ kind: 'headNorm', x: 'k', weight: b.w('self_attn.k_norm.weight'), heads: Hkv });
  }
  b.op({ kind: 'rope', x: 'q', heads: Hq });
  b.op({ kind: 'rope', x: 'k', heads: Hkv });
  const q16 = b.tensor('q16', Hq * D, 'u16'), k16 = b.tensor(stepK(b.layer), Hkv * D, 'u16'), v16 = b.tensor(stepV(b.layer), Hkv * D, 'u16');
  b.op({ kind: 'to16', x: 'q', out: q16 });
  b.op({ kind: 'to16', x: 'k', out: k16 });
  b.op({ kind: 'to16', x: 'v', out: v16 });
  const o16 = b.tensor('o16', Hq * D, 'u16'), lse = b.tensor('lse', Hq);
  b.op({ kind: 'attention', layer: b.layer, q: q16, k: k16, v: v16, out: o16, lse });
  b.op({ kind: 'toFloat', x: o16, out: b.tensor('o', Hq * D) });
  const oProj = b.w('self_attn.o_proj.weight');
  b.op({ kind: 'linear', role: 'o', x: 'o', weight: oProj, parts: [{ weight: oProj, out: b.tensor('attn_out', spec.hiddenSize) }] });
  b.op({ kind: 'add', x: 'x', y: 'attn_out' });
}

/** The llama-style MLP: post-attention norm, gate and up, silu(gate) * up, down, residual add. */
export function swigluMlp(b: LayerBuilder): void {
  const I = b.spec.intermediateSize;
  b.op({ kind: 'rmsnorm', x: 'x', weight: b.w('post_attention_layernorm.weight'), out: 'h' });
  for (const role of ['gate', 'up'] as const) {
    const weight = b.w(`mlp.${role}_proj.weight`);
    b.op({ kind: 'linear', role, x: 'h', weight, parts: [{ weight, out: b.tensor(role, I) }] });
  }
  b.op({ kind: 'swiglu', gate: 'gate', up: 'up', out: 'gate' });
  const down = b.w('mlp.down_proj.weight');
  b.op({ kind: 'linear', role: 'down', x: 'gate', weight: down, parts: [{ weight: down, out: b.tensor('mlp_out', b.spec.hiddenSize) }] });
  b.op({ kind: 'add', x: 'x', y: 'mlp_out' });
}

/** The attention tensors of a llama-style layer (input norm to o_proj, qk-norms included). */
export function llamaAttentionTensors(spec: ModelSpec, o: { bias: boolean }): LayerTensor[] {
  const H = spec.hiddenSize, q = spec.queryHeads * spec.headDim, kv = spec.kvHeads * spec.headDim;
  return [
    { name: 'input_layernorm.weight', shape: [H], dims: '[H]', role: 'norm' },
    { name: 'self_attn.q_proj.weight', shape: [q, H], dims: '[Hq*D, H]', role: 'linear' },
    { name: 'self_attn.k_proj.weight', shape: [kv, H], dims: '[Hkv*D, H]', role: 'linear' },
    { name: 'self_attn.v_proj.weight', shape: [kv, H], dims: '[Hkv*D, H]', role: 'linear' },
    ...(o.bias ? [
      { name: 'self_attn.q_proj.bias', shape: [q], dims: '[Hq*D]', role: 'bias' },
      { name: 'self_attn.k_proj.bias', shape: [kv], dims: '[Hkv*D]', role: 'bias' },
      { name: 'self_attn.v_proj.bias', shape: [kv], dims: '[Hkv*D]', role: 'bias' },
    ] as const : []),
    { name: 'self_attn.o_proj.weight', shape: [H, q], dims: '[H, Hq*D]', role: 'linear' },
    ...(spec.qkNorm ? [
      { name: 'self_attn.q_norm.weight', shape: [spec.headDim], dims: '[D]', role: 'norm' },
      { name: 'self_attn.k_norm.weight', shape: [spec.headDim], dims: '[D]', role: 'norm' },
    ] as const : []),
    { name: 'post_attention_layernorm.weight', shape: [H], dims: '[H]', role: 'norm' },
  ];
}

/** The llama-style layer; `bias`: q/k/v projections have biases (Qwen2). */
function llamaStyle(o: { bias: boolean }): ModelFamilyDef {
  return {
    layerTensors: (spec) => {
      const H = spec.hiddenSize, I = spec.intermediateSize;
      return [
        ...llamaAttentionTensors(spec, o),
        { name: 'mlp.gate_proj.weight', shape: [I, H], dims: '[I, H]', role: 'linear' },
        { name: 'mlp.up_proj.weight', shape: [I, H], dims: '[I, H]', role: 'linear' },
        { name: 'mlp.down_proj.weight', shape: [H, I], dims: '[H, I]', role: 'linear' },
      ];
    },
    layer: (b) => {
      llamaAttention(b, o);
      swigluMlp(b);
    },
  };
}

const FAMILIES = new Map<string, ModelFamilyDef>([
  ['qwen2', llamaStyle({ bias: true })],
  ['qwen3', llamaStyle({ bias: false })],
  ['llama', llamaStyle({ bias: false })],
]);

/** Adds (or replaces) a family: its layer tensors and builder. */
export function registerFamily(name: string, def: ModelFamilyDef): void {
  FAMILIES.set(name, def);
}

export function familyOf(spec: Pick<ModelSpec, 'family'>): ModelFamilyDef {
  const def = FAMILIES.get(spec.family);
  if (!def) throw new TidarcError('unsupported', 'no layer builder for this model family', { field: 'family', value: spec.family, allowed: [...FAMILIES.keys()].sort().join(', ') });
  return def;
}
