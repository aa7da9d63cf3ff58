/**
 * The GEMMs of a model: its linear layers as weight shapes (Q/K/V fused into one matrix and
 * gate/up into one, as the weights are uploaded), times the row counts of its step kinds.
 * One unit (one CUDA source) per weight shape, with one reduction and a kernel per M.
 */
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import type { ArchName } from './arch.js';
import { gemmEpilogues } from './gemm-epilogue.js';
import { type GemmOverrides, type GemmPlan, type GemmReduction, type GemmShape, type GemmTuning, checkGemmTuning, gemmTarget, gemmUnitName, planGemm, planReduction } from './gemm-plan.js';
import { stepRows } from './step-rows.js';
import { planUnitReduction } from './gemm-unit-split.js';

/** A layer's four GEMMs, then the vocabulary projection. */
export const GEMM_ROLES = ['qkv', 'o', 'gate_up', 'down', 'lm_head'] as const;
export type GemmRole = (typeof GEMM_ROLES)[number];

export function gemmShapeOf(spec: ModelSpec, role: GemmRole): GemmShape {
  const { hiddenSize: H, queryHeads: Hq, kvHeads: Hkv, headDim: D, intermediateSize: I, vocabSize: V, dtype } = spec;
  const [n, k] = {
    qkv: [(Hq + 2 * Hkv) * D, H],
    o: [H, Hq * D],
    gate_up: [2 * I, H],
    down: [H, I],
    lm_head: [V, H],
  }[role];
  return { n: n!, k: k!, dtype };
}

export interface GemmUnit {
  readonly name: string;
  readonly shape: GemmShape;
  readonly roles: readonly GemmRole[];
  readonly reduction: GemmReduction;
  /** One per step row count, sorted by m. */
  readonly plans: readonly GemmPlan[];
  /** The tuning record the unit was planned with (`compile --tuned`): its split-K, and tiles for the row counts it names. */
  readonly tuned?: GemmTuning;
}

/** A role the GEMMs refuse (its shape breaks a kernel invariant), and the refusal's message. */
export interface GemmRefusal {
  readonly role: GemmRole;
  readonly shape: GemmShape;
  readonly reason: string;
}

/**
 * Every GEMM unit of a model (roles with equal shapes share one and its kernels), sorted by
 * name; roles whose shape the kernels refuse are listed with the reason instead. `tuned`, per
 * unit name: the split-K and tiles a tuning record gives it (checked first: a record the
 * kernels cannot run is an error, never a silent refusal).
 */
export function planModelGemms(spec: ModelSpec, drafts: readonly number[], arches: readonly ArchName[], tuned: GemmOverrides = {}): { units: GemmUnit[]; refusals: GemmRefusal[] } {
  const target = gemmTarget(arches);
  const ms = stepRows(drafts);
  const byShape = new Map<string, { shape: GemmShape; roles: GemmRole[] }>();
  for (const role of GEMM_ROLES) {
    const shape = gemmShapeOf(spec, role);
    const name = gemmUnitName(shape);
    const unit = byShape.get(name);
    if (unit) unit.roles.push(role);
    else byShape.set(name, { shape, roles: [role] });
  }
  const unknown = Object.keys(tuned).filter((name) => !byShape.has(name));
  if (unknown.length > 0) throw new TidarcError('invalid-argument', 'tuned GEMMs name weight shapes this model does not have', { field: 'gemms', value: unknown.join(', '), allowed: [...byShape.keys()].sort().join(', ') });
  const units: GemmUnit[] = [];
  const refusals: GemmRefusal[] = [];
  for (const [name, { shape, roles }] of [...byShape.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const tuning = tuned[name];
    const opts = { rowStats: gemmEpilogues(shape, roles).rowStats === true };
    if (tuning) {
      checkGemmTuning(shape, tuning, target);
      const reduction = planReduction(shape, target, tuning.splitK, opts);
      units.push({ name, shape, roles, reduction, plans: ms.map((m) => planGemm(shape, m, target, reduction, tuning.tiles[String(m)], opts)), tuned: tuning });
      continue;
    }
    try {
      // Split over the model's step rows, not ms: a compile of fewer drafts (--draft, --variant) sums every shape as a full one.
      const reduction = planUnitReduction(shape, roles, target, stepRows(spec.draftLengths), opts);
      units.push({ name, shape, roles, reduction, plans: ms.map((m) => planGemm(shape, m, target, reduction, undefined, opts)) });
    } catch (e) {
      if (!(e instanceof TidarcError)) throw e;
      refusals.push(...roles.map((role) => ({ role, shape, reason: e.message })));
    }
  }
  return { units, refusals };
}
