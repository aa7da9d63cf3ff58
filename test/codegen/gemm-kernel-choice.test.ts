/**
 * The GEMM family choice prices each role with the epilogue it launches with (issue 18,
 * src/codegen/gemm-kernel-choice.ts): o and down accumulate into the residual stream, an
 * M x N float32 read beside the write, on both families; the other roles do not. The list of
 * residual roles is the rewritten step graph's (foldResidualAdds), not a guess. Pure.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { RESIDUAL_ROLES, sm90aGemmTimes } from '../../src/codegen/gemm-kernel-choice.js';
import { predictGemm } from '../../src/codegen/gemm-cost-model.js';
import { planModelGemms } from '../../src/codegen/gemm-model.js';
import { gemmRegisters } from '../../src/codegen/gemm-registers.js';
import { sm90aBlockW, sm90aRegisters, sm90aStages, sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';
import { predictSm90aGemm } from '../../src/codegen/gemm-sm90a-cost-model.js';
import { H200 } from '../../src/codegen/machine.js';
import { buildStepGraph } from '../../src/ir/step-graph.js';
import { rewriteForGpu } from '../../src/ir/step-rewrite.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';
import { smallSpec } from '../helpers/random-model.js';

test('the residual roles are the linears the GPU step graph folds the residual add into', () => {
  for (const family of ['qwen2', 'qwen3'] as const) {
    const g = rewriteForGpu(buildStepGraph(smallSpec('r', [4], { family, qkNorm: family === 'qwen3' }), { tokens: 20, schedule: { kind: 'step', variant: 'tidar_k4' }, prefillChunk: { size: 64, variant: 'prefill_c64' } }), { swigluInterleave: 8 });
    const accumulating = new Set(g.ops.flatMap((o) => (o.kind === 'linear' && o.accumulate ? [o.role] : [])));
    expect([...accumulating].sort(), family).toEqual([...RESIDUAL_ROLES].sort());
  }
});

describe('Qwen3-8B\'s GEMM units on both families', () => {
  const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
  const units = planModelGemms(spec, spec.draftLengths, ['sm_90', 'sm_90a']).units;
  // sm_90a at each kernel's own registers (ptxas's table by token tile and split-K), or at `registers` for every kernel.
  const priced = (role: string, accumulate: boolean, registers?: number, machine = H200) => {
    const u = units.find((x) => x.roles.includes(role as never))!;
    const epilogue = role === 'gate_up' ? 'swiglu' as const : 'none' as const;
    return u.plans.map((p) => {
      const tileT = sm90aTokenTile(p.m), stages = sm90aStages(u.shape, u.reduction, tileT, u.plans.map((q) => q.m));
      return {
        m: p.m,
        sm90S: predictGemm(p, p.m, machine, gemmRegisters(p, p.reduction.splitK).registers, { accumulate, epilogue }).predictedS,
        sm90aS: predictSm90aGemm(u.shape, u.reduction, tileT, p.m, machine, registers ?? sm90aRegisters(tileT, u.reduction.splitK), { accumulate, epilogue, blockW: sm90aBlockW(tileT), stages }).predictedS,
      };
    });
  };
  const timesOf = (role: string) => sm90aGemmTimes(units.find((x) => x.roles.includes(role as never))!);

  test('o and down are priced with the residual read on both families, above the same launch without it', () => {
    for (const role of ['o', 'down']) {
      expect(timesOf(role), role).toEqual(priced(role, true));
      const without = priced(role, false);
      timesOf(role).forEach((t, i) => {
        expect(t.sm90S, `${role} M = ${t.m}`).toBeGreaterThan(without[i]!.sm90S);
        expect(t.sm90aS, `${role} M = ${t.m}`).toBeGreaterThan(without[i]!.sm90aS);
      });
    }
  });

  test('qkv and gate_up (SwiGLU) are priced without it', () => {
    for (const role of ['qkv', 'gate_up']) expect(timesOf(role), role).toEqual(priced(role, false));
  });

  test('each sm_90a kernel is priced at its own registers (ptxas\'s table), not at one figure for all', () => {
    // At the 1050 ns the rings are sized for, gate_up's 384 CTAs of 8 tokens at M = 1 need more
    // than one an SM: 30 registers let shared memory hold 5, the old flat 137 only 1.
    const slow = { ...H200, hbmLatencyS: 1050e-9 };
    const u = units.find((x) => x.roles.includes('gate_up'))!;
    expect(sm90aRegisters(sm90aTokenTile(1), u.reduction.splitK)).toBe(30);
    const own = sm90aGemmTimes(u, slow);
    expect(own).toEqual(priced('gate_up', false, undefined, slow));
    expect(own[0]!.sm90aS).toBeLessThan(priced('gate_up', false, 137, slow)[0]!.sm90aS);
  });
});
