/**
 * The sm_90a attention's plan and its place in a compile (src/codegen/attention-sm90a.ts), pure:
 * which variants take it (data: packed rows per KV head past the H200's ridge, head dim 64 or
 * 128), its row tiles (64 rows a consumer warpgroup, 2 from 128 rows), its in-step schedule
 * (the sm_80 planner's classification on its own tiles), its shared memory, and that
 * `--arch sm_90a` adds a unit per compute-bound variant (compiled for sm_90a alone, named by the
 * manifest variant) while a compile without it is unchanged.
 */
import { describe, expect, test } from 'vitest';
import { SM90A_ATTENTION_MIN_ROWS, planAttentionSm90a, sm90aAttentionRefusal, sm90aAttentionSharedBytes } from '../../src/codegen/attention-sm90a.js';
import { cudaUnits, planBuild } from '../../src/codegen/build-steps.js';
import { generateModel } from '../../src/codegen/generate.js';
import { TARGETS } from '../../src/codegen/targets.js';
import { arVariant, prefillChunkVariant, tidarDecodeVariant } from '../../src/codegen/variant.js';
import { classifyStepRect } from '../../src/ir/mask.js';
import { modelForShape } from '../helpers/models.js';

const G4 = { dtype: 'bf16', headDim: 128, qHeads: 32, kvHeads: 8 } as const;  // Qwen3-8B's heads

describe('which variants take the sm_90a attention', () => {
  test('compute-bound variants (k = 16, the prefill chunk, k = 8 at G = 4) take it; AR and k = 4 stay on mma.sync, in one line each', () => {
    expect(sm90aAttentionRefusal(tidarDecodeVariant(16, G4))).toBeNull();  // 1088 rows
    expect(sm90aAttentionRefusal(prefillChunkVariant(G4))).toBeNull();  // 256
    expect(sm90aAttentionRefusal(tidarDecodeVariant(8, G4))).toBeNull();  // 288
    expect(sm90aAttentionRefusal(tidarDecodeVariant(4, G4))).toBe(`80 packed rows per KV head is memory-bound (below ${SM90A_ATTENTION_MIN_ROWS}): mma.sync serves it`);
    expect(sm90aAttentionRefusal(arVariant(G4))).toMatch(/^4 packed rows per KV head is memory-bound/);
    expect(sm90aAttentionRefusal(prefillChunkVariant({ ...G4, qHeads: 8 }))).toMatch(/^64 packed rows/);  // G = 1
  });
});

describe('the sm_90a plan', () => {
  test('k = 16 at G = 4: 9 tiles of 2 warpgroups (128 rows), 288 threads, 3 stages, the shared memory the kernel static_asserts', () => {
    const p = planAttentionSm90a(tidarDecodeVariant(16, G4));
    expect({ consumers: p.consumers, tileM: p.tileM, rowTiles: p.rowTiles, threads: p.threads, stages: p.stages, tileN: p.tileN }).toEqual({ consumers: 2, tileM: 128, rowTiles: 9, threads: 288, stages: 3, tileN: 64 });
    // 1024 slack + Q 2 x 16 KiB + 3 stages x (K + V) x 16 KiB + 6 mbarriers.
    expect(p.sharedBytes).toBe(1024 + 2 * 16384 + 3 * 2 * 16384 + 48);
    expect(sm90aAttentionSharedBytes(64, 1)).toBe(1024 + 8192 + 3 * 2 * 8192 + 48);
    expect(planAttentionSm90a(tidarDecodeVariant(16, G4), 1).rowTiles).toBe(17);
  });

  test('the in-step schedule is the mask IR\'s classification of its own tiles: empty tiles dropped, full ones only where every key is in the step', () => {
    const v = tidarDecodeVariant(16, G4);
    const p = planAttentionSm90a(v);
    for (let rt = 0; rt < p.rowTiles; rt++) {
      const q0 = Math.floor((rt * p.tileM) / 4), q1 = Math.floor((Math.min(p.rows, (rt + 1) * p.tileM) - 1) / 4) + 1;
      const slots = p.stepTileKey.slice(p.stepTileOffset[rt], p.stepTileOffset[rt + 1]);
      for (let kt = 0; kt < p.stepKeyTiles; kt++) {
        const cls = classifyStepRect(v.mask, q0, q1, kt * 64, Math.min(p.steps, kt * 64 + 64));
        const at = slots.indexOf(kt);
        expect(at >= 0, `row tile ${rt}, key tile ${kt}`).toBe(cls !== 'empty');
        if (at >= 0) expect(p.stepTileFull[p.stepTileOffset[rt]! + at]).toBe(cls === 'full' && kt * 64 + 64 <= p.steps);
      }
    }
    expect(p.stepTileCounts.empty).toBeGreaterThan(0);  // causal among the drafts: some tiles are never loaded
  });
});

describe('a compile with --arch sm_90a', () => {
  const spec = modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 1 }, [2, 16]);
  const both = generateModel(spec, { arches: ['sm_90', 'sm_90a'] });
  const plain = generateModel(spec, { arches: ['sm_90'] });

  test('a unit per compute-bound variant, named by its manifest variant and built for sm_90a alone; nothing for the others', () => {
    const named = both.manifest.variants.filter((v) => v.sm90a).map((v) => [v.name, v.sm90a!.source, v.sm90a!.symbol]);
    expect(named).toEqual([['tidar_k16', 'cuda/tidar_k16.sm90a.cu', 'tidarc_attn_tidar_k16_bf16_d64_q4_kv1_sm90a'], ['prefill_c64', 'cuda/prefill_c64.sm90a.cu', 'tidarc_attn_prefill_c64_bf16_d64_q4_kv1_sm90a']].sort((a, b) => both.manifest.variants.findIndex((v) => v.name === a[0]) - both.manifest.variants.findIndex((v) => v.name === b[0])));
    for (const [, source] of named) expect(both.files.get(source!)).toContain('tidarc::attention_sm90a_kernel<Config>(args, work);');
    for (const h of ['cuda/tidarc_attention_sm90a.cuh', 'cuda/tidarc_attention_sm90a_abi.h', 'cuda/tidarc_hopper.cuh']) expect(both.files.has(h), h).toBe(true);
    const steps = planBuild([TARGETS.sm_90, TARGETS.sm_90a], both.manifest, [...both.files.keys()]).cuda!.steps;
    expect(steps.filter((s) => s.unit.endsWith('_sm90a') && !s.unit.startsWith('gemm')).map((s) => [s.unit, s.arches])).toEqual(named.map(([name]) => [`${name}_sm90a`, ['sm_90a']]));
  });

  test('without sm_90a: no sm_90a attention file, no manifest field, no unit', () => {
    expect([...plain.files.keys()].filter((f) => f.includes('.sm90a.') || f.includes('attention_sm90a'))).toEqual([]);
    expect(plain.manifest.variants.some((v) => v.sm90a)).toBe(false);
    expect(cudaUnits(plain.manifest).some((u) => u.arch)).toBe(false);
  });
});
