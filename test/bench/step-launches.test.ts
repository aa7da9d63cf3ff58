/**
 * The launches of a Qwen3-shape AR decode step as the cuda runner issues them (src/bench/step-
 * launches.ts recordStep: the runner on a recording device), with Qwen3's q/k head norms inside
 * rope_pack (src/ir/step-rewrite.ts fuseHeadNorms): 8 launches a layer (rmsnorm, the q|k|v GEMM,
 * rope_pack, attention, the o GEMM, rmsnorm, the gate|up GEMM, the down GEMM), where there were 10
 * (two head-norm rmsnorm launches), and ONE K/V commit for every layer in the tail
 * (tidarc_op_kv_commit_layers), where there was one a layer: 8 L + 7 launches (was 9 L + 6). The
 * commit reads each layer's step K/V and cache addresses from one device table: its entries are
 * the runner's own buffers, a distinct cache per layer. Each rope_pack carries its layer's
 * q_norm / k_norm, the checkpoint dtype and the model's eps, and the step cost model prices the
 * norm weights' bytes with it. A Qwen2.5-style model (no head norms) keeps rope_pack without them.
 * With the RMSNorms folded into the GEMMs around them (fold-design.md, the runtime's default for a
 * bf16 model): 6 launches a layer and no final norm, layer 0's input norm kept: 6 L + 7 launches;
 * --no-fold-norms (recordStep's foldNorms: false) gives the 8 L + 7 above.
 * Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { H200 } from '../../src/codegen/machine.js';
import { priceLaunch, stepModelContext, type StepRegisters } from '../../src/bench/step-cost-model.js';
import { argField, recordStep } from '../../src/bench/step-launches.js';
import { QWEN3_0_6B, QWEN3_8B } from '../../src/bench/step-report.js';
import type { ModelSpec } from '../../src/ir/model.js';
import { DTYPE_CODE, KV_COMMIT_LAYERS, ROPE_PACK } from '../../src/runtime/cuda/op-abi.js';

const short = (n: string): string => n.replace(/^tidarc_gemm_.*$/, 'gemm').replace(/^tidarc_attn_.*$/, 'attn').replace(/^tidarc_op_/, '');
const LAYER = ['rmsnorm', 'gemm', 'rope_pack', 'attn', 'gemm', 'rmsnorm', 'gemm', 'gemm'];
/** After the layers: the final norm, lm_head and its row statistics' merge, verify, accept, then one K/V commit for every layer. */
const TAIL = ['rmsnorm', 'gemm', 'gemm', 'verify', 'accept', 'kv_commit_layers'];
/** The norms folded: a layer without its two (its input norm is the previous down GEMM's epilogue), the tail without the final norm. */
const FOLDED_LAYER = ['gemm', 'rope_pack', 'attn', 'gemm', 'gemm', 'gemm'];
const FOLDED_TAIL = TAIL.slice(1);
const REGISTERS: StepRegisters = { gemm: () => 128, attention: () => 168, sm90a: () => 137, source: 'assumed (test)' };

describe('a Qwen3-shape AR step: 8 launches a layer and one K/V commit', () => {
  test.each([QWEN3_0_6B, QWEN3_8B])('$name: embed, 8 launches a layer, the tail with one K/V commit for every layer (8 L + 7)', (spec) => {
    const r = recordStep(spec, 'ar', 1024, { foldNorms: false });
    const names = r.launches.map((l) => short(l.kernel));
    expect(names).toEqual(['embed', ...Array.from({ length: spec.layers }, () => LAYER).flat(), ...TAIL]);
    expect(names).toHaveLength(8 * spec.layers + 7);
  });

  test.each([QWEN3_0_6B, QWEN3_8B])('$name, the norms folded (the default): embed, layer 0\'s input norm, 6 launches a layer, no final norm (6 L + 7)', (spec) => {
    const names = recordStep(spec, 'ar', 1024).launches.map((l) => short(l.kernel));
    expect(names).toEqual(['embed', 'rmsnorm', ...Array.from({ length: spec.layers }, () => FOLDED_LAYER).flat(), ...FOLDED_TAIL]);
    expect(names).toHaveLength(6 * spec.layers + 7);
  });

  test('qwen3-0.6b: the commit covers every layer (grid z), the step\'s one verify row, and is priced by every layer\'s rows and table entry', () => {
    const spec = QWEN3_0_6B;
    const r = recordStep(spec, 'ar', 1024);
    const commits = r.launches.filter((l) => l.kernel === 'tidarc_op_kv_commit_layers');
    expect(commits).toHaveLength(1);
    const l = commits[0]!;
    const f = (name: string): number => argField(KV_COMMIT_LAYERS, l.args, name);
    expect([f('layers'), f('maxCount'), f('kvHeads'), f('headDim')]).toEqual([spec.layers, 1, spec.kvHeads, spec.headDim]);
    expect(l.grid).toEqual([1, spec.kvHeads, spec.layers]);
    expect([f('table'), f('count'), f('slot')].every((p) => p !== 0)).toBe(true);
    const c = stepModelContext(spec, H200, REGISTERS);
    expect(priceLaunch(c, l, 1024).bytes).toBe(spec.layers * (2 * 2 * spec.kvHeads * spec.headDim * 2 + 32));
  });

  test('qwen3-0.6b: every rope_pack normalises q and k with that layer\'s weights, in the checkpoint dtype, at the model\'s eps; priced with their bytes', () => {
    const spec = QWEN3_0_6B;
    const r = recordStep(spec, 'ar', 1024);
    const packs = r.launches.filter((l) => l.kernel === 'tidarc_op_rope_pack');
    expect(packs).toHaveLength(spec.layers);
    const f = (l: (typeof packs)[number], name: string): number => argField(ROPE_PACK, l.args, name);
    const norms = new Set<number>();
    for (const l of packs) {
      expect([f(l, 'qNorm'), f(l, 'kNorm')].every((p) => p !== 0)).toBe(true);
      norms.add(f(l, 'qNorm')), norms.add(f(l, 'kNorm'));
      expect(f(l, 'normDtype')).toBe(DTYPE_CODE[spec.dtype]);
      expect(f(l, 'eps')).toBe(Math.fround(spec.rmsNormEps));
      expect([f(l, 'rows'), f(l, 'qHeads'), f(l, 'kvHeads'), f(l, 'headDim')]).toEqual([1, spec.queryHeads, spec.kvHeads, spec.headDim]);
    }
    expect(norms.size).toBe(2 * spec.layers);  // each layer's own q_norm and k_norm
    const c = stepModelContext(spec, H200, REGISTERS);
    const unfused = 1 * (4 + (spec.queryHeads + 2 * spec.kvHeads) * spec.headDim * 6);
    expect(priceLaunch(c, packs[0]!, 1024).bytes).toBe(unfused + 2 * spec.headDim * 2);
  });

  test('a Qwen2.5-style shape (no head norms): rope_pack without norms, also 8 launches a layer and one commit', () => {
    const spec: ModelSpec = { ...QWEN3_0_6B, name: 'qwen2-shape', family: 'qwen2', qkNorm: false, layers: 2 };
    const r = recordStep(spec, 'ar', 64, { foldNorms: false });
    const packs = r.launches.filter((l) => l.kernel === 'tidarc_op_rope_pack');
    expect(packs).toHaveLength(spec.layers);
    for (const l of packs) expect([argField(ROPE_PACK, l.args, 'qNorm'), argField(ROPE_PACK, l.args, 'kNorm')]).toEqual([0, 0]);
    expect(r.launches.map((l) => short(l.kernel))).toEqual(['embed', ...LAYER, ...LAYER, ...TAIL]);
    expect(recordStep(spec, 'ar', 64).launches.map((l) => short(l.kernel))).toEqual(['embed', 'rmsnorm', ...FOLDED_LAYER, ...FOLDED_LAYER, ...FOLDED_TAIL]);
  });
});
