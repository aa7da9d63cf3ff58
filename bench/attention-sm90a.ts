/**
 * The written prediction of issue 18: the sm_90a attention (TMA + wgmma, attention-sm90a.ts) of
 * Qwen3-8B (32 query heads, 8 KV heads, head dim 128, bf16) for the compute-bound variants, the
 * TiDAR k = 16 step and the prefill chunk (64 prompt tokens after a cached prompt of L), at
 * L = 4k and 16k, batch 1 and 8, on the lent H200. Registers from ptxas (nvcc -arch=sm_90a on the
 * generated unit) when nvcc is here, else those recorded below. The model and its assumptions:
 * src/bench/attention-sm90a-cost-model.ts. Printed by `npm run bench:attention` after the
 * mma.sync table, or alone: `npx tsx bench/attention-sm90a.ts` (--json for the figures).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ptxasOfSource } from '../src/build/ptxas.js';
import { findNvcc } from '../src/build/toolchain.js';
import { type AttentionSm90aPlan, SM90A_ATTENTION_STATIC_FILES, SM90A_ATTENTION_TILE_N, planAttentionSm90a, renderAttentionSm90a } from '../src/codegen/attention-sm90a.js';
import { readTemplateFile } from '../src/codegen/templates.js';
import { PREFILL_CHUNK, variantsForModel } from '../src/codegen/variant.js';
import { H200 } from '../src/codegen/machine.js';
import { type AttentionSm90aPrediction, predictAttentionSm90a, sm90aSoftmaxCycles, SOFTMAX_PER_EXP } from '../src/bench/attention-sm90a-cost-model.js';
import { sm90aLoopCounts } from '../src/codegen/sass-counts-sm90a.js';
import { parseModelJson } from '../src/ir/model-validate.js';
import { packageRoot } from '../src/util/paths.js';

/** Keys a tile of the sm_90a kernel (attention-sm90a.ts SM90A_ATTENTION_TILE_N). */
const SM90A_TILE_KEYS = SM90A_ATTENTION_TILE_N;
export const SM90A_BENCH_VARIANTS = ['tidar_k16', `prefill_c${PREFILL_CHUNK}`] as const;
const PREFIXES = [4096, 16384] as const;
const BATCHES = [1, 8] as const;
/**
 * ptxas sm_90a registers (nvcc 13.0, 2026-12-05, head dim 128, 2 consumer warpgroups in ping-pong + the producer warp), when nvcc is not here:
 * 138 before the split merge's dynamic CTA ids (29c1bef), 160 / 152 since (tidarc_attention_sm90a.cuh says why); 1 CTA an SM either way (shared memory).
 */
const RECORDED_REGISTERS: Readonly<Record<string, number>> = { tidar_k16: 160, [`prefill_c${PREFILL_CHUNK}`]: 152 };

function qwen3Plans(): AttentionSm90aPlan[] {
  const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));
  const variants = variantsForModel({ ...spec, draftLengths: [16] });
  return SM90A_BENCH_VARIANTS.map((name) => planAttentionSm90a(variants.find((v) => v.name === name)!));
}

async function registersOf(plans: readonly AttentionSm90aPlan[]): Promise<{ registers: Map<string, number>; source: string }> {
  const nvcc = await findNvcc();
  if (!nvcc.found) return { registers: new Map(Object.entries(RECORDED_REGISTERS)), source: `recorded (nvcc not found: ${nvcc.reason})` };
  const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-attention-sm90a-'));
  try {
    for (const h of ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh', 'cuda/tidarc_gemm_abi.h', ...SM90A_ATTENTION_STATIC_FILES.map(([out]) => out)]) writeFileSync(join(dir, h.replace(/^cuda\//, '')), readTemplateFile(h));
    writeFileSync(join(dir, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
    const registers = new Map<string, number>();
    for (const p of plans) {
      const src = join(dir, `${p.variant.name}.sm90a.cu`);
      writeFileSync(src, renderAttentionSm90a(p, 'bench'));
      const r = (await ptxasOfSource(nvcc.tool.path, src, 'sm_90a'))[p.symbol];
      if (r) registers.set(p.variant.name, r.registers);
    }
    return { registers, source: `ptxas sm_90a (${nvcc.tool.version})` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface Sm90aBenchRow extends AttentionSm90aPrediction {
  readonly variant: string;
  readonly prefix: number;
  readonly batch: number;
  readonly registers: number;
  /** The same launch predicted without the consumers' ping-pong (the kernel before it: in-warpgroup overlap only). */
  readonly withoutPingPong: AttentionSm90aPrediction;
}

export async function sm90aAttentionRows(): Promise<{ rows: Sm90aBenchRow[]; source: string; plans: AttentionSm90aPlan[] }> {
  const plans = qwen3Plans();
  const { registers, source } = await registersOf(plans);
  const rows = plans.flatMap((plan) => PREFIXES.flatMap((prefix) => BATCHES.map((batch) => {
    const regs = registers.get(plan.variant.name) ?? RECORDED_REGISTERS[plan.variant.name]!;
    const withoutPingPong = predictAttentionSm90a({ ...plan, pingPong: false }, { batch, prefix }, H200, regs);
    return { variant: plan.variant.name, prefix, batch, registers: regs, ...predictAttentionSm90a(plan, { batch, prefix }, H200, regs), withoutPingPong };
  })));
  return { rows, source, plans };
}

const us = (s: number): string => (s * 1e6).toFixed(1);

export async function printSm90aAttention(): Promise<void> {
  const { rows, source, plans } = await sm90aAttentionRows();
  console.log(`\nThe sm_90a attention (TMA + wgmma) of Qwen3-8B's compute-bound variants on the ${H200.name}, predicted (src/bench/attention-sm90a-cost-model.ts):`);
  console.log(`  wgmma at the measured bf16 matmul rate (${H200.matmulFlops / 1e12} TFLOP/s); the softmax of a tile overlaps the previous tile's P V wgmma, and with ping-pong the other consumer's GEMMs. Registers: ${source}.`);
  for (const p of plans) console.log(`  ${p.variant.name}: ${p.rows} rows per KV head, ${p.rowTiles} row tiles of ${p.tileM} (${p.consumers} consumer warpgroups${p.pingPong ? ', ping-pong' : ''}), ${p.stages} stages, ${p.sharedBytes} bytes of shared memory`);
  // The softmax term's source: a warpgroup tile's non-tensor cycles from the measured SASS (sass-counts-sm90a.ts), or the old assumption.
  const assumed = ((1 + SOFTMAX_PER_EXP) * 64 * SM90A_TILE_KEYS) / 16;
  for (const p of plans.flatMap((x) => (x.pingPong ? [x, { ...x, pingPong: false }] : [x]))) {
    const counts = sm90aLoopCounts(p);
    const name = `${p.variant.name}${p.consumers === 2 && !p.pingPong ? ' (no-pp)' : ''}`;
    if (!counts) {
      console.log(`  softmax of ${name}: ASSUMED (no measured SASS row): (1 + ${SOFTMAX_PER_EXP}) x one exp2 a score, ${assumed} cycles an SM a warpgroup tile`);
      continue;
    }
    const it = sm90aSoftmaxCycles(counts);
    console.log(`  softmax of ${name}: measured SASS, a warp's key tile ${it.issue} instructions (${counts.hmma} HGMMA, ${counts.mufu} MUFU, ${counts.fp32} fp32, ${counts.imad} IMAD, ${counts.alu} ALU, ${counts.conv} conv, ${counts.shfl} SHFL, ${counts.issue} other): ${it.cycles} cycles a warpgroup tile (${it.limiter}-bound) vs the old assumption's ${assumed} (x${(it.cycles / assumed).toFixed(2)}), at ${H200.smClockHz / 1e9} GHz`);
  }
  const header = ['variant', 'L', 'B', 'regs', 'CTA/SM', 'splits', 'CTAs', 'HBM MB', 'GFLOP', 'hbm us', 'L2 us', 'wgmma us', 'softmax us', 'sm src', 'merge us', 'pred us', 'bound', 'TFLOP/s', 'peak %', 'no-pp softmax', 'no-pp pred', 'no-pp %'];
  const table = rows.map((r) => [
    r.variant, String(r.prefix), String(r.batch), String(r.registers), String(r.ctasPerSm), String(r.splits), String(r.ctas), (r.hbmBytes / 1e6).toFixed(1), (r.usefulFlops / 1e9).toFixed(1),
    us(r.hbmS), us(r.l2S), us(r.wgmmaS), us(r.softmaxS), r.softmaxSource === 'measured' ? 'SASS' : 'ASSUMED', us(r.mergeS), us(r.predictedS), r.bound, r.usefulTflops.toFixed(0), (100 * r.matmulShare).toFixed(0),
    us(r.withoutPingPong.softmaxS), us(r.withoutPingPong.predictedS), (100 * r.withoutPingPong.matmulShare).toFixed(0),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i < 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  for (const r of table) console.log(line(r));
  console.log('peak % = useful FLOP/s / the measured bf16 matmul rate (the issue\'s targets: k = 16 at L >= 4k >= 60%; prefill >= 550 TFLOP/s, 70%).');
  console.log('sm src = the softmax term\'s source: SASS (the plan\'s measured key-tile loop) or ASSUMED (no row: one exp2 a score x (1 + SOFTMAX_PER_EXP)). Every figure is a cost-model prediction, not a GPU measurement.');
  console.log('no-pp = the same launch without the consumers\' ping-pong (in-warpgroup overlap only, the kernel before it), each with its own best split count.');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv.includes('--json')) console.log(JSON.stringify((await sm90aAttentionRows()).rows, null, 2));
  else await printSm90aAttention();
}
