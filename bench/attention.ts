/**
 * The written prediction of issue 15 (a benchmark of the cost model, not a test): the generated
 * attention of Qwen3-8B (32 query heads, 8 KV heads, head dim 128, bf16) for the AR step, the
 * TiDAR steps k = 4, 8, 16 and the prefill chunk at L = 4k and 16k, batch 1 and 8, on the lent
 * H200, as src/codegen/plan.ts plans them for sm_90 (its row tile per variant: plannedRowTile, the
 * candidate the cost model predicts fastest over these shapes, src/codegen/row-tile-choice.ts)
 * and with the split-KV count the runtime chooses (call-params.ts splitsFor: the count of least
 * estimated time, splits.ts chooseAttentionSplits), beside the prediction for the row tile the
 * planner took before it weighed the cost model (rowTileOf's structural rule: one CTA up to 128
 * rows, else tiles of 64 to 128 rows of 16-row warps at head dim 128): 'old tile' and 'old us'.
 * Occupancy comes from ptxas (nvcc -cubin -arch=sm_90 on the generated source) when nvcc is here,
 * else from the registers recorded below. The model and its assumptions:
 * src/codegen/attention-cost-model.ts. The device check prints its measurements next to the same
 * predictions (grid.json's predictions, scripts/device-check).
 *
 *   npm run bench:attention        # prints the table; --json for the figures
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ARCHES } from '../src/codegen/arch.js';
import { occupancy } from '../src/codegen/occupancy.js';
import { type AttentionPlan, planAttention, rowTileOf } from '../src/codegen/plan.js';
import { variantsForModel } from '../src/codegen/variant.js';
import { parseModelJson } from '../src/ir/model-validate.js';
import { packageRoot } from '../src/util/paths.js';
import { predictAttention } from '../src/codegen/attention-cost-model.js';
import { H200 } from '../src/codegen/machine.js';
import { printSm90aAttention } from './attention-sm90a.js';
import { attentionRegisters } from './ptxas-registers.js';

export const BENCH_VARIANTS = ['ar', 'tidar_k4', 'tidar_k8', 'tidar_k16', 'prefill_c64'] as const;
export const BENCH_PREFIXES = [4096, 16384] as const;
export const BENCH_BATCHES = [1, 8] as const;
/**
 * ptxas sm_90 registers of the main kernels (nvcc 13.0, 2026-12-05), when nvcc is not here: the
 * planned row tiles (AR 4 split-key warps; k = 4 one CTA of 5 warps; k = 8 3 x 3 and k = 16 9 x 4
 * warps of 32 rows at 32 keys; the prefill chunk 2 x 8) and the old ones (k = 4 one CTA of 5 warps,
 * k = 8 3 x 6, k = 16 17 x 4, the prefill chunk 2 x 8).
 */
const RECORDED_REGISTERS: Readonly<Record<string, number>> = { ar: 160, tidar_k4: 208, tidar_k8: 252, tidar_k16: 251, prefill_c64: 202 };
const RECORDED_OLD_REGISTERS: Readonly<Record<string, number>> = { ar: 160, tidar_k4: 208, tidar_k8: 209, tidar_k16: 219, prefill_c64: 202 };

function qwen3Variants() {
  const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
  const variants = variantsForModel({ ...spec, draftLengths: [4, 8, 16] });
  return BENCH_VARIANTS.map((name) => variants.find((v) => v.name === name)!);
}

/** Planned for an sm_90 compile: its row tiles (plan.ts plannedRowTile) and cp.async stages (defaultStages). */
function qwen3Plans(): AttentionPlan[] {
  return qwen3Variants().map((v) => planAttention(v, ARCHES.sm_90.tile, [ARCHES.sm_90]));
}

/** The row tiles of rowTileOf's structural rule, which the planner took before it weighed the cost model, for sm_90. */
function qwen3OldPlans(): AttentionPlan[] {
  return qwen3Variants().map((v) => {
    const rt = rowTileOf(v.mask.tokens.length * (v.shape.qHeads / v.shape.kvHeads), ARCHES.sm_90.tile.tileN, v.shape.headDim);
    return planAttention(v, { ...ARCHES.sm_90.tile, warps: rt.warps, warpRows: rt.warpRows }, [ARCHES.sm_90]);
  });
}

const tileName = (p: AttentionPlan): string => `${p.rowTiles}x${p.rowTile.warps}${p.rowTile.layout === 'keys' ? 'k' : `r${p.rowTile.warpRows}`}n${p.tile.tileN}p${p.tile.stages}`;

async function registersOf(plans: readonly AttentionPlan[], recorded: Readonly<Record<string, number>>): Promise<{ registers: Map<string, number>; source: string }> {
  const r = await attentionRegisters(plans);
  return r.registers ? { registers: r.registers, source: r.source } : { registers: new Map(Object.entries(recorded)), source: `recorded (${r.source})` };
}

const us = (s: number): string => (s * 1e6).toFixed(1);

async function main(): Promise<void> {
  const plans = qwen3Plans();
  const oldPlans = qwen3OldPlans();
  const [{ registers, source }, old] = [await registersOf(plans, RECORDED_REGISTERS), await registersOf(oldPlans, RECORDED_OLD_REGISTERS)];
  const predictAt = (plan: AttentionPlan, regs: number, prefix: number, batch: number) => {
    const occ = occupancy('sm_90', { registers: regs, sharedBytes: plan.sharedBytes, threads: plan.threads });
    return { occ, p: predictAttention(plan, { batch, prefix }, H200, occ.ctasPerSm) };
  };
  const rows = plans.flatMap((plan, i) => {
    const regs = registers.get(plan.variant.name) ?? RECORDED_REGISTERS[plan.variant.name]!;
    const oldPlan = oldPlans[i]!;
    const oldRegs = old.registers.get(plan.variant.name) ?? RECORDED_OLD_REGISTERS[plan.variant.name]!;
    return BENCH_PREFIXES.flatMap((prefix) => BENCH_BATCHES.map((batch) => {
      const { occ, p } = predictAt(plan, regs, prefix, batch);
      return { plan, regs, occ, prefix, batch, p, oldPlan, old: predictAt(oldPlan, oldRegs, prefix, batch).p };
    }));
  });
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(rows.map((r) => ({ variant: r.plan.variant.name, tile: tileName(r.plan), prefix: r.prefix, batch: r.batch, registers: r.regs, ...r.p, oldPlanned: { tile: tileName(r.oldPlan), splits: r.old.splits, predictedS: r.old.predictedS } })), null, 2));
    return;
  }
  console.log(`Generated attention of Qwen3-8B on the ${H200.name}, predicted (src/codegen/attention-cost-model.ts):`);
  console.log(`  copy ${H200.copyBytesPerS / 1e12} TB/s and bf16 matmul ${H200.matmulFlops / 1e12} TFLOP/s measured; mma.sync ${H200.mmaSyncFlops / 1e12} TFLOP/s (half of it);`);
  console.log(`  L2 ${H200.l2BytesPerS / 1e12} TB/s assumed; shared memory ${(H200.sharedBytesPerS / 1e12).toFixed(1)} TB/s (128 B a clock an SM); split-KV merges in the same launch (no launch gap). Registers: ${source}; old tiles: ${old.source}.\n`);
  const header = ['variant', 'L', 'B', 'rows', 'tile', 'regs', 'CTA/SM', 'splits', 'CTAs', 'waves', 'HBM MB', 'GFLOP', 'hbm us', 'L2 us', 'mma us', 'smem us', 'issue us', 'iter pipe', 'merge us', 'fill us', 'pred us', 'bound', 'roof us', 'roof %', 'old tile', 'old s', 'old us', 'old/new'];
  const table = rows.map(({ plan, regs, occ, prefix, batch, p, oldPlan, old: o }) => [
    plan.variant.name, String(prefix), String(batch), String(plan.rows), tileName(plan), String(regs), `${occ.ctasPerSm} (${occ.limit})`, String(p.splits), String(p.ctas),
    p.waves.toFixed(2), (p.hbmBytes / 1e6).toFixed(1), (p.usefulFlops / 1e9).toFixed(2), us(p.hbmS), us(p.l2S), us(p.mmaS), us(p.sharedS), p.issueS === undefined ? 'not measured' : us(p.issueS), p.issue ? `${p.issue.limiter} ${p.issue.cycles.toFixed(0)}` : '-', us(p.mergeS), us(p.fillS), us(p.predictedS), p.bound,
    us(p.rooflineS), (100 * p.rooflineShare).toFixed(0), tileName(oldPlan), String(o.splits), us(o.predictedS), (o.predictedS / p.predictedS).toFixed(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i < 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const r of table) console.log(line(r));
  console.log('\ntile: row tiles x warps, k (split keys) or r<rows a warp>, n<keys a tile>, p<cp.async stages>.');
  console.log('roof: max(essential HBM bytes / copy, useful FLOPs / bf16 matmul); roof % = roof / pred (the issue\'s targets: AR >= 60% at B = 1, L = 4k).');
  console.log('issue us: the busiest SM\'s warp-iterations x one iteration\'s cycles on a sub-partition (max of its SASS instructions, one issued a clock, and each pipe: src/codegen/sass-mix.ts, counts measured by');
  console.log('  bench:sass-counts, src/codegen/sass-counts.ts) / (4 sub-partitions x 1.755 GHz); iter pipe: what limits the iteration and its cycles (hmma: the mma.sync rate, as the mma term). A prediction.');
  console.log('old tile, old s, old us: the row tile the planner took before it weighed the cost model (rowTileOf\'s structural rule), its splits and time.');
  const ar = (prefix: number, batch: number) => rows.find((r) => r.plan.variant.name === 'ar' && r.prefix === prefix && r.batch === batch)!.p.predictedS;
  console.log(`\nk = 4 / AR (the issue's target: <= 1.15): ${rows.filter((r) => r.plan.variant.name === 'tidar_k4').map((r) => `L ${r.prefix} B ${r.batch} ${(r.p.predictedS / ar(r.prefix, r.batch)).toFixed(2)} (old ${(r.old.predictedS / ar(r.prefix, r.batch)).toFixed(2)})`).join(', ')}`);
  await printSm90aAttention();  // issue 18: the compute-bound variants on the sm_90a kernel
}

main().catch((e: unknown) => {
  console.error(`bench:attention: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
