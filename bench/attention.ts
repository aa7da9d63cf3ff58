/**
 * The written prediction of issue 15 (a benchmark of the cost model, not a test): the generated
 * attention of Qwen3-8B (32 query heads, 8 KV heads, head dim 128, bf16) for the AR step and the
 * TiDAR steps k = 4, 8, 16 at L = 4k and 16k, batch 1 and 8, on the lent H200, as
 * src/codegen/plan.ts plans them for sm_90 (its row tile per variant: rowTileOf) and with the split-KV count the runtime chooses
 * (call-params.ts splitsFor: the count of least estimated time, splits.ts chooseAttentionSplits),
 * beside the prediction at the count of the wave rule it replaced (chooseSplits over SMs x CTAs
 * per SM): 'old s' and 'old us'. Occupancy comes from ptxas (nvcc -cubin -arch=sm_90 on
 * the generated source) when nvcc is here, else from the registers recorded below. The model
 * and its assumptions: src/bench/attention-cost-model.ts. The device check prints its measurements next
 * to the same predictions (grid.json's predictions, scripts/device-check).
 *
 *   npm run bench:attention        # prints the table; --json for the figures
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ptxasOfSource } from '../src/build/ptxas.js';
import { findNvcc } from '../src/build/toolchain.js';
import { ARCHES } from '../src/codegen/arch.js';
import { renderCudaVariant } from '../src/codegen/kernel-source.js';
import { occupancy } from '../src/codegen/occupancy.js';
import { type AttentionPlan, planAttention } from '../src/codegen/plan.js';
import { readTemplateFile } from '../src/codegen/templates.js';
import { variantsForModel } from '../src/codegen/variant.js';
import { parseModelJson } from '../src/ir/model-validate.js';
import { packageRoot } from '../src/util/paths.js';
import { H200, predictAttention, waveRuleSplits } from '../src/bench/attention-cost-model.js';
import { printSm90aAttention } from './attention-sm90a.js';

export const BENCH_VARIANTS = ['ar', 'tidar_k4', 'tidar_k8', 'tidar_k16'] as const;
export const BENCH_PREFIXES = [4096, 16384] as const;
export const BENCH_BATCHES = [1, 8] as const;
/**
 * ptxas sm_90 registers of the main kernels (nvcc 13.0, 2026-12-04, the planner's row tiles: AR
 * 4 split-key warps, k = 4 one CTA of 5 warps, k = 8 3 x 6, k = 16 17 x 4), when nvcc is not here.
 */
const RECORDED_REGISTERS: Readonly<Record<string, number>> = { ar: 128, tidar_k4: 171, tidar_k8: 171, tidar_k16: 171 };

function qwen3Plans(): AttentionPlan[] {
  const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
  const variants = variantsForModel({ ...spec, draftLengths: [4, 8, 16] });
  // Planned for an sm_90 compile: its cp.async stages (plan.ts defaultStages) size the shared memory.
  return BENCH_VARIANTS.map((name) => planAttention(variants.find((v) => v.name === name)!, ARCHES.sm_90.tile, [ARCHES.sm_90]));
}

/**
 * Issue 15 item 1(c): 32-row warps (two m16 tiles share each K/V fragment). At head dim 128 their
 * O and S fragments fit in registers only at tileN 32 with 2 stages (plan.ts fitsInRegisters), a
 * tile `tidarc tune` may pick but the planner does not; the same variants at that tile, beside
 * the planned ones (16-row warps, tileN 64).
 */
function qwen3WarpRows32Plans(): AttentionPlan[] {
  const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
  const variants = variantsForModel({ ...spec, draftLengths: [8, 16] });
  return ['tidar_k8', 'tidar_k16'].map((name) => planAttention(variants.find((v) => v.name === name)!, { tileN: 32, warpRows: 32, stages: 2 }, [ARCHES.sm_90]));
}

async function registersOf(plans: readonly AttentionPlan[]): Promise<{ registers: Map<string, number>; source: string }> {
  const nvcc = await findNvcc();
  if (!nvcc.found) return { registers: new Map(Object.entries(RECORDED_REGISTERS)), source: `recorded (nvcc not found: ${nvcc.reason})` };
  const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-attention-'));
  try {
    for (const h of ['tidarc_attention.cuh', 'tidarc_device.cuh']) writeFileSync(join(dir, h), readTemplateFile(`cuda/${h}`));
    writeFileSync(join(dir, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
    const registers = new Map<string, number>();
    for (const p of plans) {
      const src = join(dir, `${p.variant.name}.cu`);
      writeFileSync(src, renderCudaVariant(p, 'bench'));
      const r = (await ptxasOfSource(nvcc.tool.path, src, 'sm_90'))[p.variant.symbol];
      if (r) registers.set(p.variant.name, r.registers);
    }
    return { registers, source: `ptxas sm_90 (${nvcc.tool.version})` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const us = (s: number): string => (s * 1e6).toFixed(1);

async function main(): Promise<void> {
  const plans = qwen3Plans();
  const { registers, source } = await registersOf(plans);
  const rows = plans.flatMap((plan) => {
    const regs = registers.get(plan.variant.name) ?? RECORDED_REGISTERS[plan.variant.name]!;
    const occ = occupancy('sm_90', { registers: regs, sharedBytes: plan.sharedBytes, threads: plan.threads });
    return BENCH_PREFIXES.flatMap((prefix) => BENCH_BATCHES.map((batch) => {
      const old = predictAttention(plan, { batch, prefix }, H200, occ.ctasPerSm, waveRuleSplits(plan, { batch, prefix }, H200, occ.ctasPerSm));
      return { plan, regs, occ, prefix, batch, old, p: predictAttention(plan, { batch, prefix }, H200, occ.ctasPerSm) };
    }));
  });
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(rows.map((r) => ({ variant: r.plan.variant.name, prefix: r.prefix, batch: r.batch, registers: r.regs, ...r.p, waveRule: { splits: r.old.splits, predictedS: r.old.predictedS } })), null, 2));
    return;
  }
  console.log(`Generated attention of Qwen3-8B on the ${H200.name}, predicted (src/bench/attention-cost-model.ts):`);
  console.log(`  copy ${H200.copyBytesPerS / 1e12} TB/s and bf16 matmul ${H200.matmulFlops / 1e12} TFLOP/s measured; mma.sync ${H200.mmaSyncFlops / 1e12} TFLOP/s (half of it);`);
  console.log(`  L2 ${H200.l2BytesPerS / 1e12} TB/s assumed; split-KV merges in the same launch (no launch gap). Registers: ${source}.\n`);
  const header = ['variant', 'L', 'B', 'rows', 'tiles', 'regs', 'CTA/SM', 'splits', 'CTAs', 'waves', 'HBM MB', 'GFLOP', 'hbm us', 'L2 us', 'mma us', 'merge us', 'fill us', 'pred us', 'bound', 'roof us', 'roof %', 'old s', 'old us'];
  const table = rows.map(({ plan, regs, occ, prefix, batch, p, old }) => [
    plan.variant.name, String(prefix), String(batch), String(plan.rows), String(plan.rowTiles), String(regs), `${occ.ctasPerSm} (${occ.limit})`, String(p.splits), String(p.ctas),
    p.waves.toFixed(2), (p.hbmBytes / 1e6).toFixed(1), (p.usefulFlops / 1e9).toFixed(2), us(p.hbmS), us(p.l2S), us(p.mmaS), us(p.mergeS), us(p.fillS), us(p.predictedS), p.bound,
    us(p.rooflineS), (100 * p.rooflineShare).toFixed(0), String(old.splits), us(old.predictedS),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i < 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const r of table) console.log(line(r));
  console.log('\nroof: max(essential HBM bytes / copy, useful FLOPs / bf16 matmul); roof % = roof / pred (the issue\'s targets: AR >= 60% at B = 1, L = 4k).');
  console.log('old s, old us: the splits of the wave rule the runtime used before (FA2\'s, chooseSplits) and the model\'s time with them.');
  const alt = qwen3WarpRows32Plans();
  const altRegs = await registersOf(alt);
  console.log(`\n32 rows a warp at tileN 32, 2 stages (a tuned tile; registers: ${altRegs.source}):`);
  for (const plan of alt) {
    const regs = altRegs.registers.get(plan.variant.name) ?? 255;
    const occ = occupancy('sm_90', { registers: regs, sharedBytes: plan.sharedBytes, threads: plan.threads });
    for (const prefix of BENCH_PREFIXES) for (const batch of BENCH_BATCHES) {
      const p = predictAttention(plan, { batch, prefix }, H200, occ.ctasPerSm);
      const planned = rows.find((r) => r.plan.variant.name === plan.variant.name && r.prefix === prefix && r.batch === batch)!.p;
      console.log(`  ${plan.variant.name} L ${prefix} B ${batch}: ${plan.rowTiles} x ${plan.rowTile.warps} warps, ${regs} regs, ${occ.ctasPerSm} CTA/SM, ${p.splits} splits; mma ${us(p.mmaS)} us, pred ${us(p.predictedS)} us (${p.bound}, roof ${(100 * p.rooflineShare).toFixed(0)}%); planned ${us(planned.predictedS)} us (${(100 * planned.rooflineShare).toFixed(0)}%)`);
    }
  }
  await printSm90aAttention();  // issue 18: the compute-bound variants on the sm_90a kernel
}

main().catch((e: unknown) => {
  console.error(`bench:attention: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
