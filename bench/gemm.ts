/**
 * Predicted cost of the generated GEMMs (a benchmark of the cost model, not a test): the
 * Qwen3-8B linear layers (qkv 6144x4096, o 4096x4096, gate_up 24576x4096, down 4096x12288,
 * lm_head 151936x4096) at M = 1 (AR), 20, 72, 272 (TiDAR k = 4, 8, 16) on the lent H200,
 * as src/codegen/gemm-plan.ts plans them for sm_90. Occupancy comes from ptxas (nvcc -cubin
 * -arch=sm_90 on the generated source, bench/ptxas-registers.ts as bench:step uses it) when nvcc
 * is here, else 128 registers are assumed.
 * Then the step: 36 layers x (qkv + o + gate_up + down) + lm_head, per M, against AR, with the
 * fused epilogues the cuda backend runs (SwiGLU in gate_up; greedy lm_head as row statistics)
 * and, for comparison, unfused (gate_up writes gate and up, silu_mul; lm_head writes the
 * [M, V] float32 logits and row_stats reads them): the bytes and time the epilogues save.
 * "issue us" is the issue term (the k-tile loop's SASS counts from gemm-sass-counts.ts at the SM
 * clock; "not measured" where the tile has none). Split-K is summed inside the GEMM launch; the "2-launch" columns predict the same kernels with
 * the old separate reduce kernel (before GEMM ABI 5), so the table shows what that saved.
 *
 *   npm run bench:gemm        # prints the table; --json for the figures
 */
import { type GemmRole, gemmShapeOf } from '../src/codegen/gemm-model.js';
import { stepRows } from '../src/codegen/step-rows.js';
import { gemmRegisters as tableRegisters } from '../src/codegen/gemm-registers.js';
import { GEMM_MAX_SPLIT_K, type GemmPlan, gemmSymbol, gemmTarget, planGemm, planReduction } from '../src/codegen/gemm-plan.js';
import type { ModelSpec } from '../src/ir/model.js';
import { H200 } from '../src/codegen/machine.js';
import { ACTIVATION_BYTES, type GemmEpilogue, type GemmPrediction, predictGemm, predictOp } from '../src/bench/gemm-cost-model.js';
import { gemmRegisters } from './ptxas-registers.js';

const ROWS = [1, 20, 72, 272];
const ROLES: readonly GemmRole[] = ['qkv', 'o', 'gate_up', 'down', 'lm_head'];
/** The residual add happens in these GEMMs' epilogue (accumulate): their output is read too. */
const ACCUMULATES: ReadonlySet<GemmRole> = new Set(['o', 'down']);
/** The epilogue each role runs with on the cuda backend (greedy decoding for lm_head). */
const EPILOGUES: Readonly<Partial<Record<GemmRole, GemmEpilogue>>> = { gate_up: 'swiglu', lm_head: 'rowStats' };
const QWEN3_8B: ModelSpec = {
  name: 'qwen3-8b', family: 'qwen3', layers: 36, hiddenSize: 4096, queryHeads: 32, kvHeads: 8, headDim: 128, intermediateSize: 12288,
  vocabSize: 151936, ropeTheta: 1e6, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: false, dtype: 'bf16', maskTokenId: 151662, draftLengths: [4, 8, 16],
};
/** The rows the planner chooses each shape's split-K over: the model's step rows (AR, k = 4, 8, 16, the prefill chunk). */
const SPLIT_ROWS = stepRows(QWEN3_8B.draftLengths);
const ASSUMED_REGISTERS = 128;

interface Row {
  readonly role: GemmRole;
  readonly plan: GemmPlan;
  readonly registers: number;
  readonly measuredRegisters: boolean;
  readonly p: GemmPrediction;
  /** The same launch without its epilogue (a plain [M, N] output). */
  readonly plain: GemmPrediction;
  /** The same launch with the split-K parts summed by a second kernel (before GEMM ABI 5). */
  readonly twoLaunch: GemmPrediction;
  /** The plan before the 64-column tile: 128 columns at every M, split-K over 128-column tiles. */
  readonly wide: GemmPrediction;
}

/**
 * The plan before the 64-column tile (GEMM_NARROW_BLOCK_N): 128-column tiles at every M and the
 * split rule over them: what a unit with row statistics still gets, so planned with that option.
 */
const WIDE = { rowStats: true } as const;
/** What the heuristic must know of a role: the lm_head's row statistics keep 128-column tiles. */
const optsOf = (role: GemmRole) => ({ rowStats: EPILOGUES[role] === 'rowStats' });

const us = (s: number): string => (s * 1e6).toFixed(1);

async function main(): Promise<void> {
  const target = gemmTarget(['sm_90']);
  const units = ROLES.map((role) => {
    const shape = gemmShapeOf(QWEN3_8B, role);
    const reduction = planReduction(shape, target, undefined, { ...optsOf(role), rows: SPLIT_ROWS });
    return { role, shape, roles: [role], plans: ROWS.map((m) => planGemm(shape, m, target, reduction, undefined, optsOf(role))) };
  });
  const widePlan = (role: GemmRole, m: number): GemmPlan => {
    const shape = gemmShapeOf(QWEN3_8B, role);
    return planGemm(shape, m, target, planReduction(shape, target, undefined, WIDE), undefined, WIDE);
  };
  const regs = await gemmRegisters(units, QWEN3_8B.name);  // lm_head: with its row statistics merge
  const rows: Row[] = units.flatMap((u) => u.plans.map((plan) => {
    const measured = regs.registers?.get(gemmSymbol(plan.shape, plan.m));
    const registers = measured ?? ASSUMED_REGISTERS;
    const accumulate = ACCUMULATES.has(u.role);
    return {
      role: u.role, plan, registers, measuredRegisters: measured !== undefined,
      p: predictGemm(plan, plan.m, H200, registers, { accumulate, epilogue: EPILOGUES[u.role] ?? 'none' }),
      plain: predictGemm(plan, plan.m, H200, registers, { accumulate }),
      twoLaunch: predictGemm(plan, plan.m, H200, registers, { accumulate, epilogue: EPILOGUES[u.role] ?? 'none', splitSum: 'kernel' }),
      wide: predictGemm(widePlan(u.role, plan.m), plan.m, H200, ASSUMED_REGISTERS, { accumulate, epilogue: EPILOGUES[u.role] ?? 'none' }),
    };
  }));

  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(rows.map((r) => ({ role: r.role, n: r.plan.shape.n, k: r.plan.shape.k, m: r.plan.m, splitK: r.plan.reduction.splitK, blockM: r.plan.blockM, stages: r.plan.stages, registers: r.registers, ...r.p })), null, 2));
    return;
  }
  console.log(`Generated GEMMs of Qwen3-8B on the ${H200.name}, predicted (src/bench/gemm-cost-model.ts):`);
  console.log(`  copy ${H200.copyBytesPerS / 1e12} TB/s and bf16 matmul ${H200.matmulFlops / 1e12} TFLOP/s measured; mma.sync ${H200.mmaSyncFlops / 1e12} TFLOP/s (half of it, performance-model.md);`);
  console.log(`  L2 ${H200.l2BytesPerS / 1e12} TB/s, HBM latency ${H200.hbmLatencyS * 1e9} ns (Little's law: "fill TB/s" is what the CTAs' bytes in flight pull; below the copy rate it bounds HBM)`);
  console.log(`  and shared memory ${(H200.sharedBytesPerS / 1e12).toFixed(1)} TB/s (128 B a clock an SM; cp.async writes + ldmatrix reads: "smem us") assumed;\n  "issue us": the k-tile loop's measured SASS (src/codegen/gemm-sass-counts.ts) issued one instruction a clock a sub-partition at ${(H200.smClockHz / 1e9).toFixed(3)} GHz, each pipe at its rate. Registers: ${regs.registers ? regs.source : `${regs.source}: ${ASSUMED_REGISTERS} registers assumed`}.\n`);
  const header = ['role', 'N x K', 'M', 'tile M x N x K', 'warps', 'st', 'splitK', 'CTAs', 'regs', 'CTA/SM', 'waves', 'HBM MB', 'GFLOP', 'fill TB/s', 'hbm us', 'L2 us', 'mma us', 'smem us', 'issue us', 'wave us', 'sum us', 'pred us', 'bound', 'copy %', 'TFLOP/s', '2-launch us', '2-launch copy %', '128-wide us', '128-wide copy %'];
  const table = rows.map(({ role, plan, registers, p, twoLaunch, wide }) => [
    role, `${plan.shape.n}x${plan.shape.k}`, String(plan.m), `${plan.blockM}x${plan.blockN}x${plan.reduction.blockK}`, `${plan.warpsM}x${plan.warpsN}`, String(plan.stages),
    String(plan.reduction.splitK), String(p.ctas), String(registers), String(p.ctasPerSm), p.waves.toFixed(2), (p.hbmBytes / 1e6).toFixed(1), (p.usefulFlops / 1e9).toFixed(2),
    (p.hbm.pulledBytesPerS / 1e12).toFixed(2), us(p.hbmS), us(p.l2S), us(p.mmaS), us(p.sharedS), p.issueS === undefined ? 'not measured' : us(p.issueS), us(p.waveS), us(p.reduceS), us(p.predictedS), p.bound, (100 * p.copyShare).toFixed(0), (p.usefulFlops / p.predictedS / 1e12).toFixed(0),
    us(twoLaunch.predictedS), (100 * twoLaunch.copyShare).toFixed(0), us(wide.predictedS), (100 * wide.copyShare).toFixed(0),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const r of table) console.log(line(r));

  printSplitChoice(target);

  console.log(`\nA decode step's linear layers (${QWEN3_8B.layers} x (qkv + o + gate_up + down) + lm_head), fused epilogues vs unfused:`);
  const I = QWEN3_8B.intermediateSize, V = QWEN3_8B.vocabSize;
  const times = (r: Row): number => (r.role === 'lm_head' ? 1 : QWEN3_8B.layers);
  const step = (m: number) => {
    const at = rows.filter((r) => r.plan.m === m);
    const fusedS = at.reduce((t, r) => t + r.p.predictedS * times(r), 0);
    const twoLaunchS = at.reduce((t, r) => t + r.twoLaunch.predictedS * times(r), 0);
    const fusedBytes = at.reduce((t, r) => t + r.p.hbmBytes * times(r), 0);
    // Unfused: plain GEMMs, then silu_mul (2 M I 4 read, M I 2 written: down's 16-bit input) a layer and row_stats (M V 4 read) once.
    const siluMul = predictOp(2 * m * I * 4 + m * I * ACTIVATION_BYTES, H200), rowStats = predictOp(m * V * 4 + m * 12, H200);
    const plainS = at.reduce((t, r) => t + r.plain.predictedS * times(r), 0) + QWEN3_8B.layers * siluMul.predictedS + rowStats.predictedS;
    const plainBytes = at.reduce((t, r) => t + r.plain.hbmBytes * times(r), 0) + QWEN3_8B.layers * siluMul.bytes + rowStats.bytes;
    return { fusedS, fusedBytes, plainS, plainBytes, twoLaunchS };
  };
  const ar = step(1);
  for (const m of ROWS) {
    const s = step(m);
    console.log(`  M = ${String(m).padStart(3)}: ${(s.fusedS * 1e3).toFixed(2)} ms predicted (${(s.fusedS / ar.fusedS).toFixed(2)}x the AR step); unfused ${(s.plainS * 1e3).toFixed(2)} ms` +
      ` (${(s.plainS / ar.plainS).toFixed(2)}x); saved ${((s.plainBytes - s.fusedBytes) / 1e6).toFixed(1)} MB, ${((s.plainS - s.fusedS) * 1e6).toFixed(1)} us` +
      ` (lm_head logits written + read: ${((2 * m * V * 4) / 1e6).toFixed(1)} MB); split-K reduce as a second kernel: ${(s.twoLaunchS * 1e3).toFixed(2)} ms`);
  }
}

/**
 * Every split-K count of each layer GEMM with the heuristic's tiles at each M (the split is one
 * per weight shape, never per M), priced as the planner prices them (gemm-plan.ts
 * costModelSplits: the plain output, gemm-registers.ts's ptxas table) over the rows it sums
 * (the model's step rows, the prefill chunk too): predicted us per M, their sum, the relative
 * regret the planner minimises (sum over M of time / the least time of any count there), and,
 * with each role's epilogue and residual read, the worst share of the copy rate at M <= 72 (the
 * issue's target: >= 80%). `*` marks the planner's count (planReduction): the least regret.
 */
function printSplitChoice(target: ReturnType<typeof gemmTarget>): void {
  console.log(`\nSplit-K per weight shape (one count for every M), heuristic tiles, planner's pricing over M = ${SPLIT_ROWS.join(', ')}; * = planned (least regret):`);
  for (const role of ROLES.filter((r) => r !== 'lm_head')) {
    const shape = gemmShapeOf(QWEN3_8B, role);
    const planned = planReduction(shape, target, undefined, { ...optsOf(role), rows: SPLIT_ROWS }).splitK;
    const counts: { s: number; plans: GemmPlan[] }[] = [];
    for (let s = 1; s <= GEMM_MAX_SPLIT_K; s++) {
      let reduction;
      try {
        reduction = planReduction(shape, target, s, optsOf(role));
      } catch {
        continue;  // a count that leaves a part empty
      }
      counts.push({ s, plans: SPLIT_ROWS.map((m) => planGemm(shape, m, target, reduction, undefined, optsOf(role))) });
    }
    const times = counts.map(({ s, plans }) => plans.map((p) => predictGemm(p, p.m, H200, tableRegisters(p, s).registers).predictedS));
    const least = SPLIT_ROWS.map((_, i) => Math.min(...times.map((t) => t[i]!)));
    counts.forEach(({ s, plans }, c) => {
      const regret = times[c]!.reduce((t, x, i) => t + x / least[i]!, 0);
      const shares = plans.filter((p) => p.m <= 72).map((p) => predictGemm(p, p.m, H200, tableRegisters(p, s).registers, { accumulate: ACCUMULATES.has(role), epilogue: EPILOGUES[role] ?? 'none' }).copyShare);
      console.log(`  ${(s === planned ? '*' : ' ')} ${role.padEnd(8)} split ${s}: ${times[c]!.map((t, i) => `M=${SPLIT_ROWS[i]} ${us(t).padStart(6)}`).join('  ')}  sum ${us(times[c]!.reduce((a, b) => a + b, 0)).padStart(6)} us  regret ${regret.toFixed(3)}  worst copy at M <= 72: ${(100 * Math.min(...shares)).toFixed(0)}%`);
    });
  }
}

main().catch((e: unknown) => {
  console.error(`bench:gemm: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
