/**
 * Fold-norms (src/ir/step-fold-norms.ts), the cuda rewrite's last pass:
 *   - with every role's units flagged, each layer's post-attention norm folds into o / gate_up,
 *     layers 1.. input norms into the previous down / this qkv, the final norm into the last
 *     down / the lm_head: exactly 2L rmsnorm ops fewer, layer 0's input norm (after the
 *     embedding) kept; the new float64 sums tensor [ceil(H / 64)] is declared once;
 *   - without the option the graph is today's, op for op;
 *   - a norm whose out has any reader that is not a flagged GEMM's x stays (the mutant: folding
 *     it anyway), and so does one whose producer or a consumer role lacks its flag;
 *   - normFolding: only bf16 folds, and only when the units have the flags (the reason otherwise).
 * Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { buildStepGraph, type StepGraph, type StepOp } from '../../src/ir/step-graph.js';
import { type NormFolding, foldNorms, normFolding } from '../../src/ir/step-fold-norms.js';
import { rewriteForGpu } from '../../src/ir/step-rewrite.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { smallSpec } from '../helpers/random-model.js';

const CHUNK = { size: 64, variant: 'prefill_c64' };
const ALL: NormFolding = { normOut: ['o', 'down'], rowScale: ['qkv', 'gate_up', 'lm_head'] };
const spec = (family: ModelSpec['family'], o: Partial<ModelSpec> = {}): ModelSpec => smallSpec('g', [4], { family, qkNorm: family === 'qwen3', layers: 3, hiddenSize: 200, ...o });
const tidar4 = (s: ModelSpec): StepGraph => buildStepGraph(s, { tokens: 20, schedule: { kind: 'step', variant: 'tidar_k4' }, prefillChunk: CHUNK });
const norms = (g: StepGraph): StepOp[] => g.ops.filter((o) => o.kind === 'rmsnorm');
const linear = (g: StepGraph, layer: number, role: string) => g.ops.find((o) => o.kind === 'linear' && o.layer === layer && o.role === role) as Extract<StepOp, { kind: 'linear' }>;

describe('foldNorms', () => {
  for (const family of ['qwen3', 'qwen2', 'llama'] as const) {
    test(`${family}: 2L norms fold, layer 0's input norm stays; producers and consumers named`, () => {
      const s = spec(family);
      const plain = rewriteForGpu(tidar4(s), { swigluInterleave: 8 });
      const g = rewriteForGpu(tidar4(s), { swigluInterleave: 8, foldNorms: ALL });
      expect(norms(plain)).toHaveLength(2 * s.layers + 1);
      expect(g.ops).toHaveLength(plain.ops.length - 2 * s.layers);
      expect(norms(g)).toEqual([{ kind: 'rmsnorm', layer: 0, x: 'x', weight: 'model.layers.0.input_layernorm.weight', out: 'h' }]);
      expect(g.tensors.find((t) => t.name === 'h.sumsq')).toEqual({ name: 'h.sumsq', width: Math.ceil(200 / 64), type: 'f64' });
      expect(g.tensors.find((t) => t.name === 'h')?.type).toBe('u16');
      for (let l = 0; l < s.layers; l++) {
        expect(linear(g, l, 'o').normOut).toEqual({ weight: `model.layers.${l}.post_attention_layernorm.weight`, out: 'h', sumsq: 'h.sumsq' });
        const next = l + 1 < s.layers ? `model.layers.${l + 1}.input_layernorm.weight` : 'model.norm.weight';
        expect(linear(g, l, 'down').normOut).toEqual({ weight: next, out: 'h', sumsq: 'h.sumsq' });
        expect(linear(g, l, 'gate_up').rowScale).toEqual({ sumsq: 'h.sumsq' });
        expect(linear(g, l, 'qkv').rowScale).toEqual(l === 0 ? undefined : { sumsq: 'h.sumsq' });
      }
      expect(g.head.rowScale).toEqual({ sumsq: 'h.sumsq' });
      // Nothing else moved: with the fold's fields dropped and the norms back, today's graph.
      const unfolded = g.ops.map((o) => (o.kind === 'linear' ? (({ normOut: _, rowScale: __, ...rest }) => rest)(o) : o));
      expect(unfolded).toEqual(plain.ops.filter((o) => o.kind !== 'rmsnorm' || o.layer === 0 && o.weight.endsWith('input_layernorm.weight')));
    });
  }

  test('without the option: today\'s graph', () => {
    const s = spec('qwen3');
    expect(rewriteForGpu(tidar4(s), { foldNorms: undefined })).toEqual(rewriteForGpu(tidar4(s)));
    expect(foldNorms(rewriteForGpu(tidar4(s)), undefined)).toEqual(rewriteForGpu(tidar4(s)));
  });

  test('a norm whose out another op reads stays (only its own layer\'s)', () => {
    const s = spec('qwen3');
    const base = rewriteForGpu(tidar4(s));
    // Layer 1's post-attention norm's out also read by a gelu: that norm stays, the others fold.
    const at = base.ops.findIndex((o) => o.kind === 'linear' && o.layer === 1 && o.role === 'gate_up');
    const extra: StepGraph = { ...base, tensors: [...base.tensors, { name: 'spy', width: 200, type: 'f32' }], ops: [...base.ops.slice(0, at), { kind: 'gelu', layer: 1, x: 'h', out: 'spy' }, ...base.ops.slice(at)] };
    const g = foldNorms(extra, ALL);
    expect(norms(g).map((o) => (o as { weight: string }).weight)).toEqual(['model.layers.0.input_layernorm.weight', 'model.layers.1.post_attention_layernorm.weight']);
    expect(linear(g, 1, 'o').normOut).toBeUndefined();
    expect(linear(g, 1, 'gate_up').rowScale).toBeUndefined();
    expect(linear(g, 1, 'qkv').rowScale).toEqual({ sumsq: 'h.sumsq' });
  });

  test('a norm with a reader of its out between producer and norm stays (its writes would move above that reader)', () => {
    const s = spec('qwen3');
    const base = rewriteForGpu(tidar4(s));
    // A gelu reading h between layer 0's down (the producer of layer 1's input norm) and that norm:
    // folded, down would write layer 1's h before the gelu reads layer 0's.
    const at = base.ops.findIndex((o) => o.kind === 'rmsnorm' && o.layer === 1);
    expect(base.ops[at - 1]).toMatchObject({ kind: 'linear', layer: 0, role: 'down' });
    const extra: StepGraph = { ...base, tensors: [...base.tensors, { name: 'spy', width: 200, type: 'f32' }], ops: [...base.ops.slice(0, at), { kind: 'gelu', layer: 0, x: 'h', out: 'spy' }, ...base.ops.slice(at)] };
    const g = foldNorms(extra, ALL);
    expect(norms(g).map((o) => (o as { weight: string }).weight)).toEqual(['model.layers.0.input_layernorm.weight', 'model.layers.0.post_attention_layernorm.weight', 'model.layers.1.input_layernorm.weight']);
    expect(linear(g, 0, 'down').normOut).toBeUndefined();
    expect(linear(g, 1, 'qkv').rowScale).toBeUndefined();
    expect(linear(g, 1, 'o').normOut).toEqual({ weight: 'model.layers.1.post_attention_layernorm.weight', out: 'h', sumsq: 'h.sumsq' });
  });

  test('a producer that reads the norm\'s out keeps that norm (its CTAs would overwrite the x other CTAs read)', () => {
    const s = spec('qwen3');
    const base = rewriteForGpu(tidar4(s));
    const at = base.ops.findIndex((o) => o.kind === 'linear' && o.layer === 1 && o.role === 'down');
    const down = base.ops[at] as Extract<StepOp, { kind: 'linear' }>;
    const g = foldNorms({ ...base, ops: base.ops.map((o, j) => (j === at ? { ...down, x: 'h' } : o)) }, ALL);
    expect(linear(g, 1, 'down').normOut).toBeUndefined();
    expect(norms(g).map((o) => (o as { weight: string }).weight)).toEqual(['model.layers.0.input_layernorm.weight', 'model.layers.1.post_attention_layernorm.weight', 'model.layers.2.input_layernorm.weight']);
  });

  test('a role without its flag keeps its norms', () => {
    const s = spec('qwen3');
    const noHead = rewriteForGpu(tidar4(s), { foldNorms: { normOut: ['o', 'down'], rowScale: ['qkv', 'gate_up'] } });
    expect(norms(noHead).map((o) => (o as { weight: string }).weight)).toEqual(['model.layers.0.input_layernorm.weight', 'model.norm.weight']);
    expect(noHead.head.rowScale).toBeUndefined();
    const noDown = rewriteForGpu(tidar4(s), { foldNorms: { normOut: ['o'], rowScale: ALL.rowScale } });
    expect(norms(noDown)).toHaveLength(s.layers + 1);
    expect(noDown.ops.filter((o) => o.kind === 'linear' && o.normOut).map((o) => (o as { role: string }).role)).toEqual(['o', 'o', 'o']);
    const noQkv = rewriteForGpu(tidar4(s), { foldNorms: { normOut: ALL.normOut, rowScale: ['gate_up', 'lm_head'] } });
    expect(norms(noQkv)).toHaveLength(s.layers);
    expect(norms(noQkv).every((o) => (o as { weight: string }).weight.endsWith('input_layernorm.weight'))).toBe(true);
  });

  test('unfused q, k, v (a graph without fuseLinears): each is a consumer when its role is flagged', () => {
    const s = spec('llama');
    const base = rewriteForGpu(tidar4(s));
    const split = (o: StepOp): StepOp[] => (o.kind === 'linear' && o.role === 'qkv' ? o.parts.map((p, i) => ({ kind: 'linear', layer: o.layer!, role: 'qkv'[i]!, x: o.x, weight: p.weight, parts: [p] }) as StepOp) : [o]);
    const unfused = { ...base, ops: base.ops.flatMap(split) };
    const g = foldNorms(unfused, { normOut: ['o', 'down'], rowScale: ['q', 'k', 'v', 'gate_up', 'lm_head'] });
    expect(norms(g)).toHaveLength(1);
    expect(g.ops.filter((o) => o.kind === 'linear' && o.layer === 2 && 'qkv'.includes(o.role) && o.rowScale)).toHaveLength(3);
    // One of the three without its flag: the input norm it reads stays.
    expect(norms(foldNorms(unfused, { normOut: ['o', 'down'], rowScale: ['q', 'v', 'gate_up', 'lm_head'] }))).toHaveLength(s.layers);
  });
});

describe('normFolding', () => {
  const units = [
    { roles: ['qkv'], rowScale: true }, { roles: ['o'], normOut: true }, { roles: ['gate_up'], rowScale: true },
    { roles: ['down'], normOut: true }, { roles: ['lm_head'], rowScale: true },
  ];
  test('bf16 with the flags: every flagged role', () => {
    expect(normFolding(spec('qwen3'), units)).toEqual({ folding: { normOut: ['o', 'down'], rowScale: ['qkv', 'gate_up', 'lm_head'] } });
  });
  test('fp16, f32 or no flags: no fold, and why', () => {
    expect(normFolding(spec('qwen3', { dtype: 'fp16' }), units)).toEqual({ why: expect.stringMatching(/fp16.*65504/) });
    expect(normFolding(spec('qwen3'), units.map(({ roles }) => ({ roles })))).toEqual({ why: expect.stringMatching(/no GEMM with the norm-out epilogue/) });
    expect(normFolding(spec('qwen3'), undefined)).toEqual({ why: expect.stringMatching(/no compiled GEMMs/) });
  });
});
