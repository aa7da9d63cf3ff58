/**
 * One launch of a decode step (step-launches.ts records them) priced by the model of its kernel,
 * with what the PDL overlap (step-timeline.ts) reads of it: its CTAs, their resources, a GEMM's
 * L2 prefetch terms. Pure.
 *
 *   GEMM        the compile's plan for the kernel the runtime picked (gemm-plan.ts, the unit's
 *               kernel of the fewest rows >= M), predictGemm at the launch's rows, accumulate,
 *               epilogue and folded norm (gemmNormFold); the row statistics' merge kernel is its
 *               own launch (its bytes, below).
 *   attention   the variant's plan (plan.ts, sm_90), predictAttention at the step's prefix and
 *               the split count the runtime launched with (grid z: its split rule, at the CTAs
 *               an SM holds with the given registers).
 *   other       every operator of tidarc_ops.cu (rmsnorm, rope_pack, embed, verify, accept,
 *               draft_rows, kv_commit_layers, ...): the bytes it reads and writes at the copy rate.
 *               Every kernel takes at least smallKernelS (one DRAM round trip, a CTA wave).
 */
import { GEMM_EPILOGUE } from '../codegen/gemm-epilogue.js';
import { GEMM_BLOCK_N, GEMM_REDUCE_THREADS, gemmUnitName } from '../codegen/gemm-plan.js';
import { sm90aTokenTile } from '../codegen/gemm-sm90a.js';
import { type KernelResources, occupancy } from '../codegen/occupancy.js';
import { type GemmPrefetch, gemmPlanPrefetch, sm90aPrefetch } from '../codegen/gemm-prefetch.js';
import { variantsForModel } from '../codegen/variant.js';
import { TidarcError } from '../errors.js';
import {
  ACCEPT, DRAFT_ROWS, EMBED, GELU, GEMM, KV_COMMIT, KV_COMMIT_LAYER, KV_COMMIT_LAYERS, MATMUL, NEXT_DRAFTS, RMSNORM, ROPE_PACK, ROW_STATS, SAMPLE, SILU_MUL, type StructSchema, TO_FLOAT, VERIFY, layoutOf,
} from '../runtime/cuda/op-abi.js';
import { predictAttention } from '../codegen/attention-cost-model.js';
import { planAttentionSm90a } from '../codegen/attention-sm90a.js';
import { TENSOR_MAP_BYTES } from '../runtime/cuda/tensor-map.js';
import { predictAttentionSm90a } from './attention-sm90a-cost-model.js';
import { predictSm90aGemm } from './gemm-sm90a-cost-model.js';
import { type GemmEpilogue, type GemmNormFold, predictGemm } from './gemm-cost-model.js';
import type { StepModelContext } from './step-model-context.js';
import { type RecordedLaunch, argField } from './step-launches.js';
import { STEP_OVERHEADS, type StepOverheads } from './step-overheads.js';

/**
 * The operators of tidarc_ops.cu and the row statistics' merge kernel: registers and static shared
 * memory as ptxas (nvcc 13.0, V13.0.88, sm_90) reported for the templates of commit 4aaf601
 * (before the PDL primitives), 2026-12-05; threads as the launch sets them. What the PDL fit
 * reads beside the predecessor's CTAs.
 */
export const OP_PTXAS: Readonly<Record<string, { readonly registers: number; readonly sharedBytes: number }>> = {
  kv_commit_layers: { registers: 32, sharedBytes: 0 }, next_drafts: { registers: 30, sharedBytes: 0 }, draft_rows: { registers: 30, sharedBytes: 0 },
  verify: { registers: 32, sharedBytes: 2048 }, accept: { registers: 22, sharedBytes: 0 }, sample: { registers: 102, sharedBytes: 36872 },
  row_stats: { registers: 29, sharedBytes: 4096 }, kv_commit: { registers: 32, sharedBytes: 0 }, to_float: { registers: 10, sharedBytes: 0 },
  rope_pack: { registers: 40, sharedBytes: 10240 }, gelu: { registers: 16, sharedBytes: 0 }, silu_mul: { registers: 18, sharedBytes: 0 },
  matmul: { registers: 63, sharedBytes: 20736 }, rmsnorm: { registers: 32, sharedBytes: 2048 }, embed: { registers: 26, sharedBytes: 0 },
};
/** A GEMM unit's row statistics' merge kernel (tidarc_gemm*_row_stats): 26 registers, no shared memory (ptxas, as OP_PTXAS). */
export const ROW_STATS_MERGE_PTXAS = { registers: 26, sharedBytes: 0 } as const;

export type LaunchTerm = 'gemm' | 'attention' | 'other';

/** What a GEMM's L2 prefetch before its PDL wait changes of its price (its model's terms). */
export interface PrefetchTerms {
  /** The rule's prefetch (gemm-prefetch.ts): launchBytes distinct weight bytes, bytesPerCta a CTA. */
  readonly prefetch: GemmPrefetch;
  /** The main loop's HBM bytes and their time at the launch's HBM rate (the model's hbmS). */
  readonly mainBytes: number;
  readonly hbmS: number;
  /** The other terms of the main loop's max (L2, and compute with its wave term). */
  readonly restS: number;
  /** What follows the main loop in the launch (the split-K sum). */
  readonly tailS: number;
}

export interface LaunchPrice {
  readonly kernel: string;
  readonly term: LaunchTerm;
  /** GEMMs: the roles of the weight shape (qkv, o, gate_up, down, lm_head; roles of one shape share a unit). */
  readonly role?: string;
  readonly gpuS: number;
  /** HBM bytes (other: what the operator reads and writes; GEMM and attention: their model's). */
  readonly bytes: number;
  /** The model's time before the floor (smallKernelS). */
  readonly modelS: number;
  /** CTAs of the launch, CTAs an SM holds, and one CTA's resources: what the PDL fit reads. */
  readonly ctas: number;
  readonly ctasPerSm: number;
  readonly resources: KernelResources;
  /** GEMMs: the terms an L2 prefetch before the wait shortens. */
  readonly prefetch?: PrefetchTerms;
  /** GEMMs producing or consuming a folded RMSNorm (gemmNormFold). */
  readonly fold?: GemmNormFold;
}

/** A GEMM's time when `bytes` of its main loop's HBM bytes are already in L2 (read at the L2 rate its restS already counts). */
export function prefetchedGemmS(t: PrefetchTerms, bytes: number): number {
  const left = Math.max(0, t.mainBytes - bytes);
  return Math.max(t.hbmS * (t.mainBytes > 0 ? left / t.mainBytes : 0), t.restS) + t.tailS;
}

const EPILOGUE_NAME = new Map<number, GemmEpilogue>(Object.entries(GEMM_EPILOGUE).map(([k, v]) => [v, k as GemmEpilogue]));
const F32 = 2;  // DTYPE_CODE.f32
const elementBytes = (dtypeCode: number): number => (dtypeCode === F32 ? 4 : 2);

/**
 * Bytes an operator of tidarc_ops.cu reads and writes, from its launch argument (op-abi.ts). The
 * caches and tables are counted by the rows touched, not their size.
 */
const OP_BYTES: Readonly<Record<string, { readonly schema: StructSchema; bytes(f: (field: string) => number): number }>> = {
  embed: { schema: EMBED, bytes: (f) => f('rows') * (4 + f('cols') * (elementBytes(f('dtype')) + 4)) },
  rmsnorm: { schema: RMSNORM, bytes: (f) => f('rows') * f('cols') * (4 + elementBytes(f('outDtype'))) + f('cols') * elementBytes(f('dtype')) },
  // Positions, q and k read (float32) and written (16-bit), v packed; the head norms' weights once each.
  rope_pack: {
    schema: ROPE_PACK,
    bytes: (f) => f('rows') * (4 + (f('qHeads') + 2 * f('kvHeads')) * f('headDim') * (4 + 2)) + ((f('qNorm') ? 1 : 0) + (f('kNorm') ? 1 : 0)) * f('headDim') * elementBytes(f('normDtype')),
  },
  // Every layer: its K and V rows read and written (at most max_count: the accepted count is not known here), and its 32-byte table entry.
  kv_commit_layers: { schema: KV_COMMIT_LAYERS, bytes: (f) => f('layers') * (2 * 2 * f('maxCount') * f('kvHeads') * f('headDim') * 2 + layoutOf(KV_COMMIT_LAYER).size) },
  kv_commit: { schema: KV_COMMIT, bytes: (f) => 2 * 2 * f('count') * f('kvHeads') * f('headDim') * 2 },
  row_stats: { schema: ROW_STATS, bytes: (f) => f('rows') * (f('cols') * 4 + 12) },
  verify: { schema: VERIFY, bytes: (f) => f('rows') * ((f('logits') ? f('vocab') * 4 : 4) + (f('mixLogits') ? f('vocab') * 4 : 0) + 12) },
  sample: { schema: SAMPLE, bytes: (f) => f('rows') * (f('vocab') * 4 * (f('mixLogits') ? 2 : 1) + 12) },
  accept: { schema: ACCEPT, bytes: (f) => f('rows') * 12 },
  draft_rows: { schema: DRAFT_ROWS, bytes: (f) => 4 + f('count') * 4 },
  next_drafts: { schema: NEXT_DRAFTS, bytes: (f) => 4 + f('count') * 16 },
  matmul: { schema: MATMUL, bytes: (f) => f('n') * f('k') * elementBytes(f('dtype')) + f('rows') * (f('k') * elementBytes(f('xDtype')) + f('n') * 4 * (f('accumulate') ? 2 : 1)) },
  silu_mul: { schema: SILU_MUL, bytes: (f) => f('count') * (8 + elementBytes(f('outDtype'))) },
  gelu: { schema: GELU, bytes: (f) => f('count') * (4 + elementBytes(f('outDtype'))) },
  to_float: { schema: TO_FLOAT, bytes: (f) => f('count') * 6 },
};

/**
 * A GEMM launch's folded-norm role from its TidarcGemmArgs (ABI v6, fold-design.md): a producer
 * (normWeight set: it writes norm_out and the sums of squares) or a consumer (rowSumsq set: it
 * reads sumsqChunks sums a row), else none.
 */
export function gemmNormFold(args: Uint8Array): GemmNormFold | undefined {
  if (argField(GEMM, args, 'normWeight') !== 0) return { normOut: true };
  if (argField(GEMM, args, 'rowSumsq') !== 0) return { rowScaleChunks: argField(GEMM, args, 'sumsqChunks') };
  return undefined;
}

/** One launch's predicted GPU time, by the model of its kernel, with what the PDL overlap reads of it (its CTAs, their resources, a GEMM's prefetch). */
export function priceLaunch(c: StepModelContext, l: RecordedLaunch, prefix: number, o: StepOverheads = STEP_OVERHEADS): LaunchPrice {
  const { machine, spec } = c;
  const floor = (s: number): number => Math.max(s, o.smallKernelS);
  const gridCtas = l.grid[0] * l.grid[1] * l.grid[2];
  const launch = (x: { kernel: string; term: LaunchTerm; role?: string; modelS: number; bytes: number; ctas?: number; ctasPerSm?: number; resources: KernelResources; prefetch?: PrefetchTerms; fold?: GemmNormFold }): LaunchPrice => ({
    kernel: x.kernel, term: x.term, ...(x.role !== undefined ? { role: x.role } : {}), gpuS: floor(x.modelS), bytes: x.bytes, modelS: x.modelS,
    ctas: x.ctas ?? gridCtas, ctasPerSm: x.ctasPerSm ?? occupancy(machine.arch, x.resources).ctasPerSm, resources: x.resources, ...(x.prefetch ? { prefetch: x.prefetch } : {}),
    ...(x.fold ? { fold: x.fold } : {}),
  });
  const g = c.manifest.gemms?.find((x) => x.kernel === l.kernel || x.rowStatsKernel === l.kernel);
  if (g) {
    const rows = argField(GEMM, l.args, 'rows');
    if (l.kernel === g.rowStatsKernel) {
      // The tiles' statistics merged per row (gemm-cost-model.ts mergeBytes), its own launch.
      const bytes = rows * Math.ceil(g.n / GEMM_BLOCK_N) * 12 + rows * 12;
      return launch({ kernel: l.kernel, term: 'gemm', role: g.roles.join('|'), modelS: bytes / machine.copyBytesPerS, bytes, resources: { ...ROW_STATS_MERGE_PTXAS, threads: GEMM_REDUCE_THREADS } });
    }
    const plan = c.gemmPlans.get(`${g.unit} m${g.m}`);
    if (!plan) throw new TidarcError('runtime', `step cost model: no GEMM plan for ${g.unit} at M = ${g.m}`);
    const epilogue = EPILOGUE_NAME.get(argField(GEMM, l.args, 'epilogue')) ?? 'none';
    const registers = c.registers.gemm(g.kernel);
    const fold = gemmNormFold(l.args);
    const p = predictGemm(plan, rows, machine, registers, { accumulate: argField(GEMM, l.args, 'accumulate') === 1, epilogue, ...(fold ? { fold } : {}) });
    const restS = Math.max(p.l2S, Math.max(p.mmaS, p.sharedS, p.issueS ?? 0) + p.waveS);
    // The merge (mergeS, with its own launch gap) is the row statistics kernel's launch above.
    return launch({
      kernel: l.kernel, term: 'gemm', role: g.roles.join('|'), modelS: p.predictedS - p.mergeS, bytes: p.hbmBytes, ctas: p.ctas, ctasPerSm: p.ctasPerSm,
      resources: { registers, sharedBytes: plan.sharedBytes, threads: plan.threads },
      prefetch: { prefetch: gemmPlanPrefetch(plan), mainBytes: p.hbmS * p.hbm.bytesPerS, hbmS: p.hbmS, restS, tailS: p.reduceS }, ...(fold ? { fold } : {}),
    });
  }
  const u = c.manifest.gemmsSm90a?.find((x) => x.kernels.some((k) => k.symbol === l.kernel));
  if (u) {
    // TidarcGemmSm90aArgs: the W and x tensor maps, then TidarcGemmArgs.
    const args = l.args.subarray(2 * TENSOR_MAP_BYTES);
    const kernel = u.kernels.find((k) => k.symbol === l.kernel)!;
    const shape = { n: u.n, k: u.k, dtype: u.dtype };
    const reduction = c.reductions.get(gemmUnitName(shape));
    if (!reduction) throw new TidarcError('runtime', `step cost model: no reduction for ${u.unit}`);
    const epilogue = EPILOGUE_NAME.get(argField(GEMM, args, 'epilogue')) === 'swiglu' ? 'swiglu' : 'none';
    const registers = c.registers.sm90a(l.kernel, { tileT: kernel.tileT, splitK: reduction.splitK });
    const fold = gemmNormFold(args);
    const p = predictSm90aGemm(shape, reduction, kernel.tileT, argField(GEMM, args, 'rows'), machine, registers, { accumulate: argField(GEMM, args, 'accumulate') === 1, epilogue, blockW: kernel.blockW, stages: kernel.stages, ...(fold ? { fold } : {}) });
    // The rule counts the kernel's CTAs at the most rows it serves of the unit's planned row counts (gemm-sm90a.ts planSm90aKernels).
    const ms = (c.unitMs.get(gemmUnitName(shape)) ?? []).filter((m) => sm90aTokenTile(m) === kernel.tileT);
    return launch({
      kernel: l.kernel, term: 'gemm', role: u.roles.join('|'), modelS: p.predictedS, bytes: p.hbmBytes, ctas: p.ctas, ctasPerSm: p.ctasPerSm,
      resources: { registers, sharedBytes: kernel.sharedBytes, threads: kernel.threads },
      prefetch: { prefetch: sm90aPrefetch(shape, reduction, kernel, ms.length > 0 ? ms : [kernel.tileT]), mainBytes: p.hbmS * p.hbm.bytesPerS, hbmS: p.hbmS, restS: Math.max(p.l2S, p.wgmmaS + p.waveS), tailS: p.reduceS },
      ...(fold ? { fold } : {}),
    });
  }
  const a = c.manifest.variants.find((x) => x.sm90a?.symbol === l.kernel);
  if (a?.sm90a) {
    const variant = variantsForModel(spec).find((x) => x.name === a.name)!;
    const registers = c.registers.sm90a(l.kernel);
    const p = predictAttentionSm90a(planAttentionSm90a(variant, a.sm90a.consumers as 1 | 2), { batch: 1, prefix }, machine, registers, l.grid[2]);
    return launch({ kernel: l.kernel, term: 'attention', modelS: p.predictedS, bytes: p.hbmBytes, ctasPerSm: p.ctasPerSm, resources: { registers, sharedBytes: a.sm90a.dynamicSharedBytes, threads: a.sm90a.block } });
  }
  const v = c.manifest.variants.find((x) => x.symbols.cuda === l.kernel);
  if (v) {
    const plan = c.attentionPlans.get(v.name)!;
    const ctasPerSm = v.occupancy?.[machine.arch]?.ctasPerSm ?? 1;
    const p = predictAttention(plan, { batch: 1, prefix }, machine, ctasPerSm, l.grid[2]);
    return launch({ kernel: l.kernel, term: 'attention', modelS: p.predictedS, bytes: p.hbmBytes, ctasPerSm, resources: { registers: c.registers.attention(v.name), sharedBytes: plan.sharedBytes, threads: plan.threads } });
  }
  const name = l.kernel.replace(/^tidarc_op_/, '');
  const op = OP_BYTES[name];
  if (!op) throw new TidarcError('runtime', `step cost model: no price for kernel ${l.kernel} of ${spec.name}`, { field: 'kernel', value: l.kernel, allowed: `a GEMM, an attention variant or tidarc_op_${Object.keys(OP_BYTES).join('/')}` });
  const bytes = op.bytes((field) => argField(op.schema, l.args, field));
  const ptxas = OP_PTXAS[name];
  if (!ptxas) throw new TidarcError('runtime', `step cost model: no ptxas record of ${l.kernel} (OP_PTXAS)`);
  return launch({ kernel: l.kernel, term: 'other', modelS: bytes / machine.copyBytesPerS, bytes, resources: { ...ptxas, threads: l.block } });
}
