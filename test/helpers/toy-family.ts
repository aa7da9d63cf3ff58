/**
 * A toy model family, added in one place through the public family table: the llama-style
 * attention with a bias-free GELU MLP, down(gelu(up(x))), instead of SwiGLU. Registering it is
 * all a backend needs besides a gelu op in its op table: the runners only execute graphs.
 */
import type { ModelSpec } from '../../src/ir/model.js';
import { llamaAttention, llamaAttentionTensors, registerFamily } from '../../src/ir/model-families.js';
import { smallSpec } from './random-model.js';

export const TOY_FAMILY = 'toy_gelu';

export function registerToyFamily(): void {
  registerFamily(TOY_FAMILY, {
    layerTensors: (spec) => [
      ...llamaAttentionTensors(spec, { bias: false }),
      { name: 'mlp.up_proj.weight', shape: [spec.intermediateSize, spec.hiddenSize], dims: '[I, H]', role: 'linear' },
      { name: 'mlp.down_proj.weight', shape: [spec.hiddenSize, spec.intermediateSize], dims: '[H, I]', role: 'linear' },
    ],
    layer: (b) => {
      llamaAttention(b, { bias: false });
      b.op({ kind: 'rmsnorm', x: 'x', weight: b.w('post_attention_layernorm.weight'), out: 'h' });
      const up = b.w('mlp.up_proj.weight'), down = b.w('mlp.down_proj.weight');
      b.op({ kind: 'linear', role: 'up', x: 'h', weight: up, parts: [{ weight: up, out: b.tensor('up', b.spec.intermediateSize) }] });
      b.op({ kind: 'gelu', x: 'up', out: 'up' });
      b.op({ kind: 'linear', role: 'down', x: 'up', weight: down, parts: [{ weight: down, out: b.tensor('mlp_out', b.spec.hiddenSize) }] });
      b.op({ kind: 'add', x: 'x', y: 'mlp_out' });
    },
  });
}

/** The toy spec (smallSpec's shapes, no qk-norm), and the llama spec its kernels compile from (kernels depend on shapes only). */
export function toySpec(): { spec: ModelSpec; kernelSpec: ModelSpec } {
  const kernelSpec = smallSpec('toy-gelu', [1], { family: 'llama', qkNorm: false });
  return { spec: { ...kernelSpec, family: TOY_FAMILY as ModelSpec['family'] }, kernelSpec };
}
