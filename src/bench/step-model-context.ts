/**
 * What the step cost model (step-cost-model.ts) needs of a model once, shared by its steps: the
 * compile's manifest for the kernels the H200 runs (StepPath) with each attention variant's
 * occupancy at the given registers, the GEMM plans and reductions by unit, and the kernels'
 * registers (StepRegisters; SM90A_RECORDED_REGISTERS where a bench has no ptxas figure). Pure.
 */
import { ARCHES } from '../codegen/arch.js';
import { planModelGemms } from '../codegen/gemm-model.js';
import type { GemmPlan, GemmReduction } from '../codegen/gemm-plan.js';
import { sm90aRegisters } from '../codegen/gemm-sm90a.js';
import type { Machine } from '../codegen/machine.js';
import type { Manifest } from '../codegen/manifest.js';
import { occupancy } from '../codegen/occupancy.js';
import { type AttentionPlan, planAttention } from '../codegen/plan.js';
import { variantsForModel } from '../codegen/variant.js';
import { generateModel } from '../codegen/generate.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';

/** Registers per thread of the step's kernels (ptxas), and where the figures came from. */
export interface StepRegisters {
  /** By GEMM kernel symbol (manifest gemms[].kernel). */
  gemm(symbol: string): number;
  /** By attention variant name. */
  attention(variant: string): number;
  /** The sm_90a kernels (GEMM units, compute-bound attention), by kernel symbol; a GEMM kernel's token tile and its unit's split-K beside it. */
  sm90a(symbol: string, gemm?: { readonly tileT: number; readonly splitK: number }): number;
  readonly source: string;
}

/**
 * Which kernels the H200 runs: 'sm_90' the mma.sync GEMMs and attention of an sm_90 compile;
 * 'sm_90a' what the kernel cache builds for a 9.0 device (sm_90 and sm_90a: the sm_90a GEMMs
 * for every role but lm_head, the sm_90a attention for the compute-bound variants; gemmsFor,
 * attentionKernelOf).
 */
export type StepPath = 'sm_90' | 'sm_90a';

/**
 * What ptxas (nvcc 13.0, sm_90a) reported for the sm_90a kernels, 2026-12-05: a GEMM kernel by
 * its token tile and split-K (gemm-sm90a.ts sm90aRegisters, the table the family choice and the
 * ring depth read: 30 to 168), attention 160 (bench/attention-sm90a.ts; 138 before the split
 * merge's dynamic CTA ids; the same 1 CTA an SM). The bench takes these where it has no ptxas
 * figure of its own.
 */
export const SM90A_RECORDED_REGISTERS = (symbol: string, gemm?: { readonly tileT: number; readonly splitK: number }): number => {
  if (gemm) return sm90aRegisters(gemm.tileT, gemm.splitK);
  if (symbol.includes('_attn_')) return 160;
  throw new TidarcError('runtime', `step cost model: no token tile and split-K for the sm_90a GEMM kernel ${symbol}`);
};

/** What the pricing needs of a model once (the compile's manifest and plans), shared by its steps. */
export interface StepModelContext {
  readonly spec: ModelSpec;
  readonly manifest: Manifest;
  readonly path: StepPath;
  readonly gemmPlans: ReadonlyMap<string, GemmPlan>;
  /** Each weight shape's reduction (the compile's: gemm-unit-split.ts planUnitReduction), by unit name: the sm_90a units take it unchanged. */
  readonly reductions: ReadonlyMap<string, GemmReduction>;
  readonly attentionPlans: ReadonlyMap<string, AttentionPlan>;
  readonly registers: StepRegisters;
  readonly machine: Machine;
  /** Each weight shape's planned row counts, by unit name (the sm_90a kernels' prefetch counts CTAs at the most rows a kernel serves). */
  readonly unitMs: ReadonlyMap<string, readonly number[]>;
}

/**
 * The model's sm_90 compile, with each variant's occupancy at the given registers (what
 * `tidarc compile` records from ptxas and the runtime's split rule reads).
 */
export function stepModelContext(spec: ModelSpec, machine: Machine, registers: StepRegisters, path: StepPath = 'sm_90'): StepModelContext {
  const base = generateModel(spec, { arches: path === 'sm_90' ? ['sm_90'] : ['sm_90', 'sm_90a'] }).manifest;
  const sm90 = [ARCHES.sm_90];
  const attentionPlans = new Map(variantsForModel(spec).map((v) => [v.name, planAttention(v, ARCHES.sm_90.tile, sm90)]));
  const variants = base.variants.map((v) => {
    const plan = attentionPlans.get(v.name);
    if (!plan) return v;
    const occ = occupancy(machine.arch, { registers: registers.attention(v.name), sharedBytes: plan.sharedBytes, threads: plan.threads });
    // The split rule of an sm_90a launch counts that kernel's CTAs an SM (attention-launch.ts).
    const k = v.sm90a, r = k && registers.sm90a(k.symbol);
    const occ90a = k && r !== undefined ? occupancy(machine.arch, { registers: r, sharedBytes: k.dynamicSharedBytes, threads: k.block }) : undefined;
    return {
      ...v, occupancy: { ...v.occupancy, [machine.arch]: { registers: registers.attention(v.name), sharedBytes: plan.sharedBytes, ctasPerSm: occ.ctasPerSm, limit: occ.limit } },
      ...(k && occ90a ? { sm90a: { ...k, occupancy: { registers: r!, sharedBytes: k.dynamicSharedBytes, ctasPerSm: occ90a.ctasPerSm, limit: occ90a.limit } } } : {}),
    };
  });
  const gemmPlans = new Map<string, GemmPlan>(), reductions = new Map<string, GemmReduction>(), unitMs = new Map<string, number[]>();
  for (const u of planModelGemms(spec, spec.draftLengths, base.arches).units) {
    reductions.set(u.name, u.reduction);
    unitMs.set(u.name, u.plans.map((p) => p.m));
    for (const p of u.plans) gemmPlans.set(`${u.name} m${p.m}`, p);
  }
  return { spec, manifest: { ...base, variants }, path, gemmPlans, reductions, attentionPlans, registers, machine, unitMs };
}
