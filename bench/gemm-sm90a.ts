/**
 * Predicted cost of the sm_90a GEMMs (a benchmark of the cost model, not a test): the Qwen3-8B
 * linear layers (qkv 6144x4096, o 4096x4096, gate_up 24576x4096, down 4096x12288) at M = 1 (AR),
 * 72 (k = 8) and 272 (k = 16) on the lent H200, as src/codegen/gemm-sm90a.ts plans them (the
 * reduction of the sm_90 plan, the token tile per M, the ring depth per kernel: sm90aStages, for
 * HBM latency up to SM90A_LATENCY_MARGIN x the assumed one; "4 st" prints the 4-stage ring's
 * figures beside it, at the assumed latency and at the margin), beside the mma.sync GEMM of the same shape
 * (src/bench/gemm-cost-model.ts). Registers from ptxas (nvcc -arch=sm_90a on the generated
 * units) when nvcc is here, else the figures below. Then a step's linear layers (36 layers).
 *
 *   npm run bench:gemm-sm90a        # prints the table; --json for the figures
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parsePtxasReport } from '../src/build/ptxas.js';
import { runPool } from '../src/build/pool.js';
import { findNvcc } from '../src/build/toolchain.js';
import { ARCHES } from '../src/codegen/arch.js';
import { type GemmShape, gemmTarget, planGemm } from '../src/codegen/gemm-plan.js';
import { stepRows } from '../src/codegen/step-rows.js';
import { planUnitReduction } from '../src/codegen/gemm-unit-split.js';
import { SM90A_LATENCY_MARGIN, SM90A_STAGES, planSm90aKernels, renderSm90aUnit, sm90aRegisters, sm90aSource, sm90aTokenTile } from '../src/codegen/gemm-sm90a.js';
import { gemmRegisters } from '../src/codegen/gemm-registers.js';
import { readTemplateFile } from '../src/codegen/templates.js';
import { H200 } from '../src/codegen/machine.js';
import { predictGemm } from '../src/bench/gemm-cost-model.js';
import { predictSm90aGemm } from '../src/bench/gemm-sm90a-cost-model.js';

const exec = promisify(execFile);
const ROWS = [1, 72, 272];
const ROLES = [
  { role: 'qkv', shape: { n: 6144, k: 4096, dtype: 'bf16' }, accumulate: false, epilogue: 'none' },
  { role: 'o', shape: { n: 4096, k: 4096, dtype: 'bf16' }, accumulate: true, epilogue: 'none' },
  { role: 'gate_up', shape: { n: 24576, k: 4096, dtype: 'bf16' }, accumulate: false, epilogue: 'swiglu' },
  { role: 'down', shape: { n: 4096, k: 12288, dtype: 'bf16' }, accumulate: true, epilogue: 'none' },
] as const;
/** Registers per role and token tile, from one role's unit (its split-K and epilogue: the split sum and SwiGLU cost registers). */
type Registers = Readonly<Record<string, Readonly<Record<number, number>>>>;
/** What a compile for sm_90 and sm_90a plans: both paths share the reduction, over 64-column tiles (gemm-plan.ts heuristicBlockN). */
const TARGET = gemmTarget(['sm_90', 'sm_90a']);
/** The rows a Qwen3-8B compile chooses each unit's split-K over (AR, k = 4, 8, 16, the prefill chunk). */
const STEP_ROWS = stepRows([4, 8, 16]);

/** The planner's ptxas table (gemm-sm90a.ts sm90aRegisters, per token tile and split-K): what the compile prices with, and this bench's figures where nvcc is missing. */
function tableRegisters(): Registers {
  return Object.fromEntries(ROLES.map((r) => {
    const reduction = planUnitReduction(r.shape, [r.role], TARGET, STEP_ROWS);
    return [r.role, Object.fromEntries(planSm90aKernels(r.shape, ROWS, reduction).map((k) => [k.tileT, sm90aRegisters(k.tileT, reduction.splitK)]))];
  }));
}

async function registersByRole(): Promise<{ readonly registers: Registers; readonly from: string }> {
  const nvcc = await findNvcc();
  if (!nvcc.found) return { registers: tableRegisters(), from: `nvcc not found (${nvcc.reason}): the planner's ptxas table (gemm-sm90a.ts sm90aRegisters)` };
  const table = tableRegisters();
  const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-sm90a-'));
  try {
    for (const h of ['tidarc_gemm_sm90a.cuh', 'tidarc_gemm_sm90a_abi.h', 'tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_hopper.cuh', 'tidarc_device.cuh']) writeFileSync(join(dir, h), readTemplateFile(`cuda/${h}`));
    const registers: Record<string, Record<number, number>> = {};
    await runPool(ROLES, 2, async (r) => {
      const shape: GemmShape = r.shape;
      const reduction = planUnitReduction(shape, [r.role], TARGET, STEP_ROWS);
      const kernels = planSm90aKernels(shape, ROWS, reduction);
      const source = join(dir, sm90aSource(shape).replace('cuda/', ''));
      writeFileSync(source, renderSm90aUnit(shape, reduction, kernels, [r.role], 'bench'));
      const { stderr } = await exec(nvcc.tool.path, ['-cubin', '-O3', '-std=c++17', '-Xptxas', '-v', ARCHES.sm_90a.gencode, `-I${dir}`, '-o', `${source}.cubin`, source], { maxBuffer: 64 << 20 });
      const report = parsePtxasReport(stderr)['sm_90a'] ?? {};
      registers[r.role] = Object.fromEntries(kernels.map((k) => [k.tileT, report[k.symbol]?.registers ?? table[r.role]![k.tileT]!]));
    });
    return { registers, from: `ptxas sm_90a (${nvcc.tool.path})` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const json = process.argv.includes('--json');
const { registers: regs, from: regsFrom } = await registersByRole();
const rows: Record<string, unknown>[] = [];
const stepSm90a = new Map<number, number>(), stepMma = new Map<number, number>();
const stepSlow = new Map<number, number>(), stepSlowFour = new Map<number, number>();  // at the margin's latency: the planned rings, 4 stages
for (const r of ROLES) {
  const shape: GemmShape = r.shape;
  const target = TARGET;
  const reduction = planUnitReduction(shape, [r.role], target, STEP_ROWS);  // what a compile with sm_90a plans: the split priced on the family it runs
  for (const m of ROWS) {
    const kernel = planSm90aKernels(shape, ROWS, reduction).find((k) => k.tileT === sm90aTokenTile(m))!;
    const registers = regs[r.role]![kernel.tileT]!;
    const opts = { accumulate: r.accumulate, epilogue: r.epilogue, blockW: kernel.blockW, stages: kernel.stages };
    const slow = { ...H200, hbmLatencyS: H200.hbmLatencyS * SM90A_LATENCY_MARGIN };
    const p = predictSm90aGemm(shape, reduction, kernel.tileT, m, H200, registers, opts);
    const before = predictSm90aGemm(shape, reduction, kernel.tileT, m, H200, registers, { ...opts, splitSum: 'kernel' });
    const four = predictSm90aGemm(shape, reduction, kernel.tileT, m, H200, registers, { ...opts, stages: SM90A_STAGES });
    const [pSlow, fourSlow] = [kernel.stages, SM90A_STAGES].map((stages) => predictSm90aGemm(shape, reduction, kernel.tileT, m, slow, registers, { ...opts, stages }));
    const mmaPlan = planGemm(shape, m, target, reduction);
    const mma = predictGemm(mmaPlan, m, H200, gemmRegisters(mmaPlan, reduction.splitK).registers, { accumulate: r.accumulate, epilogue: r.epilogue });
    stepSm90a.set(m, (stepSm90a.get(m) ?? 0) + 36 * p.predictedS);
    stepMma.set(m, (stepMma.get(m) ?? 0) + 36 * mma.predictedS);
    stepSlow.set(m, (stepSlow.get(m) ?? 0) + 36 * pSlow!.predictedS);
    stepSlowFour.set(m, (stepSlowFour.get(m) ?? 0) + 36 * fourSlow!.predictedS);
    rows.push({ role: r.role, n: shape.n, k: shape.k, m, tileT: p.tileT, blockW: p.blockW, stages: kernel.stages, sharedBytes: kernel.sharedBytes, splitK: reduction.splitK, ctas: p.ctas, ctasPerSm: p.ctasPerSm, bound: p.bound, fillTBs: +(p.hbm.pulledBytesPerS / 1e12).toFixed(2), registers,
      fillFourTBs: +(four.hbm.pulledBytesPerS / 1e12).toFixed(2), marginUs: +(pSlow!.predictedS * 1e6).toFixed(2), marginFourUs: +(fourSlow!.predictedS * 1e6).toFixed(2), fourUs: +(four.predictedS * 1e6).toFixed(2),
      sm90aUs: +(p.predictedS * 1e6).toFixed(2), sm90aTwoLaunchUs: +(before.predictedS * 1e6).toFixed(2), mmaSyncUs: +(mma.predictedS * 1e6).toFixed(2), copyShare: +p.copyShare.toFixed(3), matmulShare: +p.matmulShare.toFixed(3) });
  }
}
if (json) {
  console.log(JSON.stringify({ machine: H200.name, registers: regs, rows, stepMs: ROWS.map((m) => ({ m, sm90a: stepSm90a.get(m)! * 1e3, mmaSync: stepMma.get(m)! * 1e3, sm90aAtMargin: stepSlow.get(m)! * 1e3, sm90aFourStagesAtMargin: stepSlowFour.get(m)! * 1e3 })) }, null, 2));
} else {
  console.log(`sm_90a GEMM cost model on ${H200.name}: copy ${H200.copyBytesPerS / 1e12} TB/s, wgmma at the measured matmul rate ${H200.matmulFlops / 1e12} TFLOP/s, mma.sync ${H200.mmaSyncFlops / 1e12};`);
  console.log(`  HBM latency ${H200.hbmLatencyS * 1e9} ns assumed ("fill": what the CTAs' bytes in flight pull by Little's law; below the copy rate it bounds HBM; "@${H200.hbmLatencyS * SM90A_LATENCY_MARGIN * 1e9} ns": the same launch at the latency the ring is sized for); registers: ${regsFrom}`);
  console.log(`role     N      K      M   tile  W   stages split CTAs /SM bound  fill TB/s (4 st)  sm_90a us (4 st)  @${H200.hbmLatencyS * SM90A_LATENCY_MARGIN * 1e9} ns us (4 st)  mma.sync us  copy%  matmul%  (2-launch split-K us)`);
  for (const x of rows) {
    const f = x as { role: string; n: number; k: number; m: number; tileT: number; blockW: number; stages: number; splitK: number; ctas: number; ctasPerSm: number; bound: string; fillTBs: number; fillFourTBs: number; sm90aUs: number; fourUs: number; marginUs: number; marginFourUs: number; sm90aTwoLaunchUs: number; mmaSyncUs: number; copyShare: number; matmulShare: number };
    const pair = (a: number, b: number, w: number) => `${a.toFixed(a < 10 ? 2 : 1)} (${b.toFixed(b < 10 ? 2 : 1)})`.padStart(w);
    console.log(`${f.role.padEnd(8)} ${String(f.n).padEnd(6)} ${String(f.k).padEnd(6)} ${String(f.m).padEnd(4)} ${String(f.tileT).padEnd(4)} ${String(f.blockW).padEnd(4)} ${String(f.stages).padEnd(6)} ${String(f.splitK).padEnd(5)} ${String(f.ctas).padEnd(4)} ${String(f.ctasPerSm).padEnd(3)} ${f.bound.padEnd(6)} ${pair(f.fillTBs, f.fillFourTBs, 16)} ${pair(f.sm90aUs, f.fourUs, 16)} ${pair(f.marginUs, f.marginFourUs, 20)} ${f.mmaSyncUs.toFixed(1).padStart(12)} ${(100 * f.copyShare).toFixed(0).padStart(6)} ${(100 * f.matmulShare).toFixed(0).padStart(8)}  ${f.splitK > 1 ? f.sm90aTwoLaunchUs.toFixed(1) : '-'}`);
  }
  for (const m of ROWS) console.log(`step linear layers (36 x qkv, o, gate_up, down) at M = ${m}: sm_90a ${(stepSm90a.get(m)! * 1e3).toFixed(2)} ms, mma.sync ${(stepMma.get(m)! * 1e3).toFixed(2)} ms; at ${H200.hbmLatencyS * SM90A_LATENCY_MARGIN * 1e9} ns HBM latency sm_90a ${(stepSlow.get(m)! * 1e3).toFixed(2)} ms (${(stepSlowFour.get(m)! * 1e3).toFixed(2)} with 4-stage rings)`);
}
