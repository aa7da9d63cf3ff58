/**
 * The step graph (src/ir/step-graph.ts) and the GPU's rewrites of it (src/ir/step-rewrite.ts):
 *   - the base graph of each llama-style family lists the CPU's float ops in order, and reads
 *     exactly the checkpoint's tensors (expectedTensors: biases only for qwen2, qk-norms only
 *     with qkNorm);
 *   - the attention schedule (prefill chunks committed one by one, then the mask block);
 *   - the cuda rewrite: q|k|v and gate|up fused, rope + pack fused (with qwen3's q/k head norms:
 *     fuseHeadNorms; not for families without them), residual adds folded into
 *     the GEMMs, SwiGLU in the gate_up epilogue only when the compile has it (and then no `up`
 *     tensor is left to allocate); 16-bit activations: every linear's input (the normed hidden
 *     state, the attention output, the SwiGLU / GELU output) is declared u16 on the cuda graph,
 *     the residual stream and q/k/v stay f32, an in-place activation gets its own 16-bit output;
 *   - the executor refuses an op the backend's table lacks, naming op and backend.
 * Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { attentionLaunches, buildStepGraph, opWeights, type StepGraph, type StepOp } from '../../src/ir/step-graph.js';
import { type OpOf, opTensors } from '../../src/ir/step-ops.js';
import { fuseHeadNorms, fuseLinears, fuseRopePack, rewriteForGpu } from '../../src/ir/step-rewrite.js';
import { runOps } from '../../src/ir/step-exec.js';
import { expectedTensors } from '../../src/model/checkpoint.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { smallSpec } from '../helpers/random-model.js';

const CHUNK = { size: 64, variant: 'prefill_c64' };
const spec = (family: ModelSpec['family'], o: Partial<ModelSpec> = {}): ModelSpec => smallSpec('g', [4], { family, qkNorm: family === 'qwen3', ...o });
const tidar4 = (s: ModelSpec): StepGraph => buildStepGraph(s, { tokens: 20, schedule: { kind: 'step', variant: 'tidar_k4' }, prefillChunk: CHUNK });
const layerOps = (g: StepGraph, layer: number): StepOp[] => g.ops.filter((o) => o.layer === layer);
const kinds = (ops: readonly StepOp[]): string[] => ops.map((o) => (o.kind === 'linear' ? `linear:${o.role}` : o.kind));

describe('the base step graph', () => {
  test('a qwen3 layer is the CPU forward in order; embed before and the final norm after the layers', () => {
    const g = tidar4(spec('qwen3'));
    expect(kinds(layerOps(g, 1))).toEqual([
      'rmsnorm', 'linear:q', 'linear:k', 'linear:v', 'headNorm', 'headNorm', 'rope', 'rope', 'to16', 'to16', 'to16',
      'attention', 'toFloat', 'linear:o', 'add', 'rmsnorm', 'linear:gate', 'linear:up', 'swiglu', 'linear:down', 'add',
    ]);
    expect(g.ops[0]).toEqual({ kind: 'embed', ids: 'ids', table: 'model.embed_tokens.weight', out: 'x' });
    expect(g.ops.at(-1)).toEqual({ kind: 'rmsnorm', x: 'x', weight: 'model.norm.weight', out: 'h' });
    expect(g.ops).toHaveLength(1 + 2 * 21 + 1);
    // The decoder's lm_head rows of a tidar_k4 step: AR rows 0..3, then block a's slots 1..3.
    expect(g.head).toEqual({ x: 'h', weight: 'lm_head.weight', verify: [0, 1, 2, 3], drafts: { stride: 4, count: 3 } });
  });

  test.each(['qwen2', 'qwen3', 'llama'] as const)('%s: the graph reads exactly the checkpoint\'s tensors', (family) => {
    for (const tie of [true, false]) {
      const s = spec(family, { tieEmbeddings: tie });
      const g = tidar4(s);
      const read = new Set([...g.ops.flatMap(opWeights), g.head.weight]);
      const stored = new Set(expectedTensors(s).map((t) => t.name));
      if (tie) stored.add('lm_head.weight');  // the loader maps it to the embedding
      expect([...read].sort()).toEqual([...stored].sort());
    }
    const q = layerOps(tidar4(spec(family)), 0).find((o) => o.kind === 'linear' && o.role === 'q');
    expect(q && q.kind === 'linear' && q.bias).toBe(family === 'qwen2' ? 'model.layers.0.self_attn.q_proj.bias' : undefined);
  });

  test('tensors carry per-token widths and types; the step K/V are one per layer', () => {
    const s = spec('qwen3');
    const t = new Map(tidar4(s).tensors.map((x) => [x.name, x]));
    expect(t.get('q')).toEqual({ name: 'q', width: s.queryHeads * s.headDim, type: 'f32' });
    expect(t.get('k_step.1')).toEqual({ name: 'k_step.1', width: s.kvHeads * s.headDim, type: 'u16' });
    expect(t.get('gate')!.width).toBe(s.intermediateSize);
    expect(t.get('ids')!.type).toBe('i32');
  });

  test('an unknown family is refused, naming it and the known ones', () => {
    expect(() => tidar4({ ...spec('llama'), family: 'gpt2' as ModelSpec['family'] })).toThrow(/no layer builder for this model family \(family = gpt2\); allowed: .*llama, qwen2, qwen3/);
  });
});

describe('the attention schedule', () => {
  test('a step is one launch; a prefill is causal chunks committed one by one, then the mask block', () => {
    expect(attentionLaunches(20, { kind: 'step', variant: 'tidar_k4' }, CHUNK)).toEqual([{ variant: 'tidar_k4', from: 0, rows: 20, prefixOffset: 0, commitRows: 0 }]);
    expect(attentionLaunches(154, { kind: 'prefill', promptTokens: 150, blockVariant: 'block_k4' }, CHUNK)).toEqual([
      { variant: 'prefill_c64', from: 0, rows: 64, prefixOffset: 0, commitRows: 64 },
      { variant: 'prefill_c64', from: 64, rows: 64, prefixOffset: 64, commitRows: 64 },
      { variant: 'prefill_c64', from: 128, rows: 22, prefixOffset: 128, commitRows: 22 },
      { variant: 'block_k4', from: 150, rows: 4, prefixOffset: 150, commitRows: 0 },
    ]);
    expect(attentionLaunches(5, { kind: 'prefill', promptTokens: 5 }, CHUNK)).toEqual([{ variant: 'prefill_c64', from: 0, rows: 5, prefixOffset: 0, commitRows: 5 }]);
  });
});

describe('the cuda rewrite', () => {
  test('with the SwiGLU epilogue: qkv, rope_pack, accumulating o and down, gate_up with SwiGLU; no up tensor', () => {
    const g = rewriteForGpu(tidar4(spec('qwen2')), { swigluInterleave: 8 });
    const ops = layerOps(g, 0);
    expect(kinds(ops)).toEqual(['rmsnorm', 'linear:qkv', 'ropePack', 'attention', 'linear:o', 'rmsnorm', 'linear:gate_up', 'linear:down']);
    const [qkv, o, gateUp, down] = ops.filter((x) => x.kind === 'linear');
    expect(qkv).toMatchObject({ weight: 'model.layers.0.self_attn.qkv_proj.weight', bias: 'model.layers.0.self_attn.qkv_proj.bias', parts: [{ out: 'q' }, { out: 'k' }, { out: 'v' }] });
    expect(o).toMatchObject({ x: 'o16', accumulate: true, parts: [{ weight: 'model.layers.0.self_attn.o_proj.weight', out: 'x' }] });
    expect(gateUp).toMatchObject({ weight: 'model.layers.0.mlp.gate_up_proj.weight', swiglu: { out: 'gate', interleave: 8 } });
    expect(down).toMatchObject({ x: 'gate', accumulate: true, parts: [{ out: 'x' }] });
    const names = g.tensors.map((t) => t.name);
    expect(names).not.toContain('up');
    expect(names).not.toContain('attn_out');
    expect(names).not.toContain('mlp_out');
    expect(names).not.toContain('o');
    const type = new Map(g.tensors.map((t) => [t.name, t.type]));
    expect(['h', 'o16', 'gate'].map((t) => type.get(t))).toEqual(['u16', 'u16', 'u16']);
    expect(['x', 'q', 'k', 'v', 'lse'].map((t) => type.get(t))).toEqual(['f32', 'f32', 'f32', 'f32', 'f32']);
  });

  test('without it (an older manifest): gate|up as two parts, then swiglu; qk-norm folded into rope_pack', () => {
    const g = rewriteForGpu(tidar4(spec('qwen3')));
    expect(kinds(layerOps(g, 1))).toEqual(['rmsnorm', 'linear:qkv', 'ropePack', 'attention', 'linear:o', 'rmsnorm', 'linear:gate_up', 'swiglu', 'linear:down']);
    expect(g.tensors.map((t) => t.name)).toContain('up');
    // silu_mul no longer overwrites gate in place: it stores gate16 (16-bit), which down reads.
    const [swiglu, down] = layerOps(g, 1).slice(-2);
    expect(swiglu).toMatchObject({ gate: 'gate', up: 'up', out: 'gate16' });
    expect(down).toMatchObject({ x: 'gate16' });
    const type = new Map(g.tensors.map((t) => [t.name, t.type]));
    expect(['gate16', 'gate', 'up', 'h'].map((t) => type.get(t))).toEqual(['u16', 'f32', 'f32', 'u16']);
  });

  test('a linear input some other op reads, or an op cannot round, stays float32', () => {
    const base = tidar4(spec('llama'));
    // rmsnorm's h also read by an add (a family that reuses the normed state): not a GEMM-only tensor.
    const extra = { ...base, ops: [...base.ops.slice(0, -1), { kind: 'add' as const, x: 'x', y: 'h' }, base.ops.at(-1)!] };
    const type = new Map(rewriteForGpu(extra, { swigluInterleave: 8 }).tensors.map((t) => [t.name, t.type]));
    expect(type.get('h')).toBe('f32');
    expect(type.get('gate')).toBe('u16');
  });
});

describe('fuseHeadNorms: qwen3\'s q/k head norms into rope_pack', () => {
  const declared = (g: StepGraph): void => {
    const known = new Set(g.tensors.map((t) => t.name));
    for (const op of g.ops) for (const t of opTensors(op)) expect(known.has(t), `${op.kind} names ${t}`).toBe(true);
  };

  test('qwen3: every layer\'s ropePack carries that layer\'s q_norm and k_norm; no headNorm is left; the graph names only declared tensors and reads the base graph\'s weights', () => {
    for (const swigluInterleave of [undefined, 8]) {
      const s = spec('qwen3'), base = tidar4(s);
      const g = rewriteForGpu(base, swigluInterleave === undefined ? {} : { swigluInterleave });
      expect(g.ops.filter((o) => o.kind === 'headNorm')).toEqual([]);
      const packs = g.ops.filter((o): o is OpOf<'ropePack'> => o.kind === 'ropePack');
      expect(packs).toHaveLength(s.layers);
      packs.forEach((p, layer) => expect(p).toEqual({
        kind: 'ropePack', layer, q: 'q', k: 'k', v: 'v', qOut: 'q16', kOut: `k_step.${layer}`, vOut: `v_step.${layer}`,
        norm: { q: `model.layers.${layer}.self_attn.q_norm.weight`, k: `model.layers.${layer}.self_attn.k_norm.weight` },
      }));
      declared(g);
      // The runner uploads what opWeights names: the norms must still be among them.
      const parts = (ops: readonly StepOp[]): string[] => [...new Set(ops.flatMap((o) => (o.kind === 'linear' ? o.parts.flatMap((p) => [p.weight, ...(p.bias ? [p.bias] : [])]) : opWeights(o))))].sort();
      expect(parts(g.ops)).toEqual(parts(base.ops));
      // q and k stay float32 (rope_pack reads them), as before the fusion.
      expect(['q', 'k'].map((t) => g.tensors.find((d) => d.name === t)?.type)).toEqual(['f32', 'f32']);
    }
  });

  test('qwen2 and llama (no head norms): the pass changes nothing, ropePack has no norm', () => {
    for (const family of ['qwen2', 'llama'] as const) {
      const ops = fuseRopePack(fuseLinears(tidar4(spec(family)).ops));
      expect(fuseHeadNorms(ops)).toEqual(ops);
      const g = rewriteForGpu(tidar4(spec(family)), { swigluInterleave: 8 });
      expect(g.ops.filter((o) => o.kind === 'ropePack').every((o) => o.kind === 'ropePack' && o.norm === undefined)).toBe(true);
      declared(g);
    }
  });

  test('the pattern: either order of the two norms fuses; one norm, a norm of another tensor, or q read after the ropePack does not', () => {
    const qn: StepOp = { kind: 'headNorm', layer: 0, x: 'q', weight: 'qw', heads: 4 };
    const kn: StepOp = { kind: 'headNorm', layer: 0, x: 'k', weight: 'kw', heads: 2 };
    const rp: StepOp = { kind: 'ropePack', layer: 0, q: 'q', k: 'k', v: 'v', qOut: 'q16', kOut: 'k16', vOut: 'v16' };
    const fused = { ...rp, norm: { q: 'qw', k: 'kw' } };
    expect(fuseHeadNorms([qn, kn, rp])).toEqual([fused]);
    expect(fuseHeadNorms([kn, qn, rp])).toEqual([fused]);
    expect(fuseHeadNorms([qn, rp])).toEqual([qn, rp]);
    expect(fuseHeadNorms([qn, { ...kn, x: 'v' }, rp])).toEqual([qn, { ...kn, x: 'v' }, rp]);
    expect(fuseHeadNorms([qn, { ...kn, layer: 1 }, rp])).toEqual([qn, { ...kn, layer: 1 }, rp]);
    // Something reads the normed q later: the fused op would leave it un-normed, so no fusion.
    const reader: StepOp = { kind: 'add', layer: 0, x: 'x', y: 'q' };
    expect(fuseHeadNorms([qn, kn, rp, reader])).toEqual([qn, kn, rp, reader]);
    // The next layer's q|k|v GEMM overwrites q and k first: fused.
    const qkv: StepOp = { kind: 'linear', layer: 1, role: 'qkv', x: 'h', weight: 'w', parts: [{ weight: 'wq', out: 'q' }, { weight: 'wk', out: 'k' }, { weight: 'wv', out: 'v' }] };
    expect(fuseHeadNorms([qn, kn, rp, qkv, reader])).toEqual([fused, qkv, reader]);
  });
});

describe('the executor', () => {
  test('runs ops in order on the table; an op the table lacks is refused naming it and the backend', () => {
    const seen: string[] = [];
    const g = tidar4(spec('llama'));
    const table = Object.fromEntries(['embed', 'rmsnorm', 'linear', 'rope', 'to16', 'attention', 'toFloat', 'add', 'swiglu'].map((k) => [k, (op: StepOp) => seen.push(op.kind)]));
    runOps(g.ops, table, {}, 'test');
    expect(seen).toEqual(g.ops.map((o) => o.kind));
    expect(() => runOps(rewriteForGpu(g).ops, table, {}, 'cpu')).toThrow(/the cpu backend has no ropePack op \(op = ropePack\); allowed: add, attention/);
  });
});
