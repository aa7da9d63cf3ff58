/**
 * A whole decode step on a GPU, predicted before one measures it (issue 16's targets): the
 * step's launches as the cuda backend issues them (step-launches.ts: the runner itself on a
 * recording device), each priced by the model of its kernel, plus the launch and host costs of
 * running them one by one or as one CUDA graph. Pure: spec + step + machine + registers in.
 *
 *   GEMM        the compile's plan for the kernel the runtime picked (gemm-plan.ts, the unit's
 *               kernel of the fewest rows >= M), predictGemm at the launch's rows, accumulate and
 *               epilogue; the row statistics' merge kernel is its own launch (its bytes, below).
 *   attention   the variant's plan (plan.ts, sm_90), predictAttention at the step's prefix and
 *               the split count the runtime launched with (grid z: its split rule, at the CTAs
 *               an SM holds with the given registers).
 *   other       every operator of tidarc_ops.cu (rmsnorm, rope_pack, embed, verify, accept,
 *               draft_rows, kv_commit_layers, ...): the bytes it reads and writes at the copy rate.
 *               Every kernel takes at least smallKernelS (one DRAM round trip, a CTA wave).
 *   overheads   named below, with where each figure comes from. GPU time with graphs: the
 *               upload, the graph's start, the kernels back to back with GRAPH_NODE_GAP_S
 *               between them, the download. Launch by launch: the host issues launch i at
 *               i x HOST_LAUNCH_S (after the upload call) and the GPU runs it at the later of
 *               that and the previous kernel's end + STREAM_GAP_S, so a step whose kernels are
 *               shorter than their issue waits on the host. Host time (what bench-step calls
 *               hostMs: the step's wall time outside its waits for the GPU): the decoder's own
 *               work, the copies' calls, and the launches' (or the graph launch's) issue.
 *   roofline    roofline.ts stepCost at the machine's copy and matmul rates.
 */
import { ARCHES } from '../codegen/arch.js';
import { GEMM_EPILOGUE } from '../codegen/gemm-epilogue.js';
import { planModelGemms } from '../codegen/gemm-model.js';
import { GEMM_BLOCK_N, type GemmPlan, type GemmReduction, gemmUnitName } from '../codegen/gemm-plan.js';
import { sm90aRegisters } from '../codegen/gemm-sm90a.js';
import type { Machine } from '../codegen/machine.js';
import type { Manifest } from '../codegen/manifest.js';
import { occupancy } from '../codegen/occupancy.js';
import { type AttentionPlan, planAttention } from '../codegen/plan.js';
import { variantsForModel } from '../codegen/variant.js';
import { parseVariantName } from '../codegen/variant-name.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import {
  ACCEPT, DRAFT_ROWS, EMBED, GELU, GEMM, KV_COMMIT, KV_COMMIT_LAYER, KV_COMMIT_LAYERS, MATMUL, NEXT_DRAFTS, RMSNORM, ROPE_PACK, ROW_STATS, SAMPLE, SILU_MUL, type StructSchema, TO_FLOAT, VERIFY, layoutOf,
} from '../runtime/cuda/op-abi.js';
import { predictAttention } from '../codegen/attention-cost-model.js';
import { planAttentionSm90a } from '../codegen/attention-sm90a.js';
import { generateModel } from '../codegen/generate.js';
import { TENSOR_MAP_BYTES } from '../runtime/cuda/tensor-map.js';
import { predictAttentionSm90a } from './attention-sm90a-cost-model.js';
import { predictSm90aGemm } from './gemm-sm90a-cost-model.js';
import { type GemmEpilogue, predictGemm } from './gemm-cost-model.js';
import { type Roofline, type StepCost, roofline, stepCost } from './roofline.js';
import { type RecordedLaunch, type RecordedStep, argField, recordStep } from './step-launches.js';

/**
 * Launch and host costs. Each is a figure someone measured on other hardware or an assumption,
 * never an H200 measurement: the device check's e2e part measures the step (and the host
 * microseconds per launch) to replace them.
 */
export interface StepOverheads {
  /**
   * Host time to issue one kernel from tidarc: JS packing of the argument, the N-API call and
   * cuLaunchKernel. 6 us: /work/shared/docs/performance-model.md says 5-7 us for this path;
   * cuLaunchKernel alone enqueues in ~2.7 us and a launch + its share of a sync costs ~6.4 us
   * (github.com/ahrefs/ocannl/issues/488, RTX 5070 Ti, CUDA 13.3); ~5 us per cudaLaunchKernel
   * (github.com/pegainfer-project/pegainfer/pull/163, nsys notes).
   */
  readonly hostLaunchS: number;
  /**
   * GPU idle between two dependent kernels issued one by one on a stream, when the host is ahead:
   * 2 us (machine.ts H200.launchGapS, the figure the GEMM and attention models already use).
   */
  readonly streamGapS: number;
  /**
   * The same gap inside a replayed CUDA graph: 0.58 us a node (a replayed chain of N no-op
   * kernels costs ~15 us + 0.58 us x N, github.com/ahrefs/ocannl/issues/488).
   */
  readonly graphNodeGapS: number;
  /**
   * What a graph replay costs on the GPU's timeline beyond one plain launch: ~15 us fixed per
   * replay (ocannl#488, with its synchronize) less one launch with its sync (~6.4 us): 8.6 us.
   */
  readonly graphStartS: number;
  /** Host time of cuGraphLaunch for a straight-line graph: assumed 5 us (no H100/H200 figure found; NVIDIA's CUDA 12.6 notes call it constant in the node count). */
  readonly hostGraphLaunchS: number;
  /** Latency of one small host<->device copy on the stream (pinned, tens of bytes): assumed 3 us each way. */
  readonly copyLatencyS: number;
  /** Host time of one copy call (N-API + cuMemcpy*Async): assumed 5 us, like a launch. */
  readonly hostCopyS: number;
  /** The decoder's own host work per step (JS: the step input, the pinned fill, reading the result): assumed 20 us. */
  readonly hostStepS: number;
  /** Floor of a small operator kernel (one DRAM round trip, one CTA wave): assumed 1.5 us. */
  readonly smallKernelS: number;
}

export const STEP_OVERHEADS: StepOverheads = {
  hostLaunchS: 6e-6, streamGapS: 2e-6, graphNodeGapS: 0.58e-6, graphStartS: 8.6e-6, hostGraphLaunchS: 5e-6,
  copyLatencyS: 3e-6, hostCopyS: 5e-6, hostStepS: 20e-6, smallKernelS: 1.5e-6,
};

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

export type LaunchTerm = 'gemm' | 'attention' | 'other';

export interface LaunchPrice {
  readonly kernel: string;
  readonly term: LaunchTerm;
  /** GEMMs: the roles of the weight shape (qkv, o, gate_up, down, lm_head; roles of one shape share a unit). */
  readonly role?: string;
  readonly gpuS: number;
  /** HBM bytes (other: what the operator reads and writes; GEMM and attention: their model's). */
  readonly bytes: number;
}

export interface ModeTimes {
  /** GPU time of the step between events around it (upload to download). */
  readonly gpuS: number;
  /** Host time per step outside the waits for the GPU. */
  readonly hostS: number;
  /** gpuS less the kernels' own time: gaps, the graph's start, copies, waits on the host. */
  readonly overheadS: number;
}

export interface StepPrediction {
  readonly model: string;
  readonly step: string;
  readonly tokens: number;
  readonly prefix: number;
  readonly launches: number;
  readonly prices: readonly LaunchPrice[];
  readonly gemmS: number;
  readonly attentionS: number;
  readonly otherS: number;
  readonly kernelS: number;
  readonly uploadBytes: number;
  readonly downloadBytes: number;
  readonly graphs: ModeTimes;
  readonly direct: ModeTimes;
  readonly roofline: Roofline & StepCost;
}

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
  const gemmPlans = new Map<string, GemmPlan>(), reductions = new Map<string, GemmReduction>();
  for (const u of planModelGemms(spec, spec.draftLengths, base.arches).units) {
    reductions.set(u.name, u.reduction);
    for (const p of u.plans) gemmPlans.set(`${u.name} m${p.m}`, p);
  }
  return { spec, manifest: { ...base, variants }, path, gemmPlans, reductions, attentionPlans, registers, machine };
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

/** One launch's predicted GPU time, by the model of its kernel. */
export function priceLaunch(c: StepModelContext, l: RecordedLaunch, prefix: number, o: StepOverheads = STEP_OVERHEADS): LaunchPrice {
  const { machine, spec } = c;
  const floor = (s: number): number => Math.max(s, o.smallKernelS);
  const g = c.manifest.gemms?.find((x) => x.kernel === l.kernel || x.rowStatsKernel === l.kernel);
  if (g) {
    const rows = argField(GEMM, l.args, 'rows');
    if (l.kernel === g.rowStatsKernel) {
      // The tiles' statistics merged per row (gemm-cost-model.ts mergeBytes), its own launch.
      const bytes = rows * Math.ceil(g.n / GEMM_BLOCK_N) * 12 + rows * 12;
      return { kernel: l.kernel, term: 'gemm', role: g.roles.join('|'), gpuS: floor(bytes / machine.copyBytesPerS), bytes };
    }
    const plan = c.gemmPlans.get(`${g.unit} m${g.m}`);
    if (!plan) throw new TidarcError('runtime', `step cost model: no GEMM plan for ${g.unit} at M = ${g.m}`);
    const epilogue = EPILOGUE_NAME.get(argField(GEMM, l.args, 'epilogue')) ?? 'none';
    const p = predictGemm(plan, rows, machine, c.registers.gemm(g.kernel), { accumulate: argField(GEMM, l.args, 'accumulate') === 1, epilogue });
    // The merge (mergeS, with its own launch gap) is the row statistics kernel's launch above.
    return { kernel: l.kernel, term: 'gemm', role: g.roles.join('|'), gpuS: floor(p.predictedS - p.mergeS), bytes: p.hbmBytes };
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
    const p = predictSm90aGemm(shape, reduction, kernel.tileT, argField(GEMM, args, 'rows'), machine, c.registers.sm90a(l.kernel, { tileT: kernel.tileT, splitK: reduction.splitK }), { accumulate: argField(GEMM, args, 'accumulate') === 1, epilogue, blockW: kernel.blockW, stages: kernel.stages });
    return { kernel: l.kernel, term: 'gemm', role: u.roles.join('|'), gpuS: floor(p.predictedS), bytes: p.hbmBytes };
  }
  const a = c.manifest.variants.find((x) => x.sm90a?.symbol === l.kernel);
  if (a?.sm90a) {
    const variant = variantsForModel(spec).find((x) => x.name === a.name)!;
    const p = predictAttentionSm90a(planAttentionSm90a(variant, a.sm90a.consumers as 1 | 2), { batch: 1, prefix }, machine, c.registers.sm90a(l.kernel), l.grid[2]);
    return { kernel: l.kernel, term: 'attention', gpuS: floor(p.predictedS), bytes: p.hbmBytes };
  }
  const v = c.manifest.variants.find((x) => x.symbols.cuda === l.kernel);
  if (v) {
    const plan = c.attentionPlans.get(v.name)!;
    const ctasPerSm = v.occupancy?.[machine.arch]?.ctasPerSm ?? 1;
    const p = predictAttention(plan, { batch: 1, prefix }, machine, ctasPerSm, l.grid[2]);
    return { kernel: l.kernel, term: 'attention', gpuS: floor(p.predictedS), bytes: p.hbmBytes };
  }
  const op = OP_BYTES[l.kernel.replace(/^tidarc_op_/, '')];
  if (!op) throw new TidarcError('runtime', `step cost model: no price for kernel ${l.kernel} of ${spec.name}`, { field: 'kernel', value: l.kernel, allowed: `a GEMM, an attention variant or tidarc_op_${Object.keys(OP_BYTES).join('/')}` });
  const bytes = op.bytes((field) => argField(op.schema, l.args, field));
  return { kernel: l.kernel, term: 'other', gpuS: floor(bytes / machine.copyBytesPerS), bytes };
}

/**
 * GPU and host time of the priced kernels run one by one (the host issues each) and as one graph.
 * Both timelines start where bench-step's first CUDA event does, before the decoder's own host
 * work: the upload is issued after it, then the launches (or the graph launch).
 */
export function stepTimes(kernels: readonly number[], copies: { uploads: number; downloads: number; bytes: number }, machine: Machine, o: StepOverheads = STEP_OVERHEADS): { graphs: ModeTimes; direct: ModeTimes } {
  const kernelS = kernels.reduce((a, b) => a + b, 0);
  const issued = o.hostStepS + copies.uploads * o.hostCopyS;
  const uploaded = issued + copies.uploads * o.copyLatencyS;
  const tail = copies.downloads * o.copyLatencyS + copies.bytes / machine.copyBytesPerS;
  const hostCopies = (copies.uploads + copies.downloads) * o.hostCopyS;
  const graphGpu = Math.max(uploaded, issued + o.hostGraphLaunchS) + o.graphStartS + kernelS + Math.max(0, kernels.length - 1) * o.graphNodeGapS + tail;
  // Launch by launch: the GPU runs each kernel once it is issued and the previous one is done.
  let host = issued, gpu = uploaded - o.streamGapS;
  for (const k of kernels) {
    host += o.hostLaunchS;
    gpu = Math.max(gpu + o.streamGapS, host) + k;
  }
  const directGpu = gpu + tail;
  return {
    graphs: { gpuS: graphGpu, hostS: o.hostStepS + hostCopies + o.hostGraphLaunchS, overheadS: graphGpu - kernelS },
    direct: { gpuS: directGpu, hostS: o.hostStepS + hostCopies + kernels.length * o.hostLaunchS, overheadS: directGpu - kernelS },
  };
}

/** The step's shape for roofline.ts: AR 1 token and 1 lm_head row, tidar_k<K> K(K+1) tokens and 2K - 1 rows. */
function rooflineShape(step: string, prefix: number): { tokens: number; lmHeadRows: number; prefix: number } {
  const key = parseVariantName(step);
  if (key?.kind === 'tidar') return { tokens: key.draft * (key.draft + 1), lmHeadRows: 2 * key.draft - 1, prefix };
  return { tokens: 1, lmHeadRows: 1, prefix };
}

/** Prices one recorded step (recordStep). */
export function priceStep(c: StepModelContext, rec: RecordedStep, prefix: number, o: StepOverheads = STEP_OVERHEADS): StepPrediction {
  const prices = rec.launches.map((l) => priceLaunch(c, l, prefix, o));
  const sum = (t: LaunchTerm): number => prices.filter((p) => p.term === t).reduce((a, p) => a + p.gpuS, 0);
  const uploadBytes = rec.uploads.reduce((a, b) => a + b, 0), downloadBytes = rec.downloads.reduce((a, b) => a + b, 0);
  const times = stepTimes(prices.map((p) => p.gpuS), { uploads: rec.uploads.length, downloads: rec.downloads.length, bytes: uploadBytes + downloadBytes }, c.machine, o);
  const cost = stepCost(c.spec, rooflineShape(rec.variant, prefix));
  const limit = roofline(cost, { copyBytesPerMs: c.machine.copyBytesPerS / 1e3, matmulFlopsPerMs: c.machine.matmulFlops / 1e3, how: c.machine.name });
  return {
    model: c.spec.name, step: rec.variant, tokens: rec.tokens, prefix, launches: rec.launches.length, prices,
    gemmS: sum('gemm'), attentionS: sum('attention'), otherS: sum('other'), kernelS: prices.reduce((a, p) => a + p.gpuS, 0),
    uploadBytes, downloadBytes, ...times, roofline: { ...cost, ...limit },
  };
}

/** Records and prices one decode step (`ar`, `tidar_k<K>`) at committed prefix `prefix`. */
export function predictStep(c: StepModelContext, step: string, prefix: number, o: StepOverheads = STEP_OVERHEADS): StepPrediction {
  return priceStep(c, recordStep(c.spec, step, prefix, { manifest: c.manifest, sms: c.machine.sms }), prefix, o);
}
