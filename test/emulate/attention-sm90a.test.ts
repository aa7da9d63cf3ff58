/**
 * The sm_90a attention (templates/cuda/tidarc_attention_sm90a.cuh: TMA producer warp, 3-stage
 * mbarrier ring, wgmma consumer warpgroups) rendered by src/codegen/attention-sm90a.ts and
 * compiled UNCHANGED onto the SIMT emulator, against the float64 reference (emulateVariant: batch 3
 * with prefixes 17, 0 and 130: odd, empty, two TMA tiles then a zero-filled tail; NaN in the unused
 * cache tail, outputs poisoned), no findings, splits 1 and 3 (the empty sequence makes every
 * split but the last an empty partial). The subset (the emulator runs a wgmma as 64 x N x 16
 * scalar fmas, so the grid is sampled):
 *   - k = 16, bf16, head dim 128, G = 4: 1088 rows, 9 tiles of 2 consumer warpgroups (the last
 *     half padding), 5 in-step key tiles of which the causal part is partial;
 *   - the prefill chunk, fp16, head dim 64, G = 8: 512 rows, 4 tiles of 2 warpgroups;
 *   - k = 16, fp16, head dim 64, G = 4, forced to 1 consumer warpgroup: 17 tiles of 64 rows;
 *   - k = 16, bf16, head dim 64, G = 8: 2176 rows, 17 tiles of 2 warpgroups (k = 16 at G = 8 and
 *     bf16 at head dim 64, which the cases above leave out; ~6 s of CI).
 * Tagged: g++ (nvcc for the ptxas check: sm_90a, no spills, no "Potential Performance Loss" such
 * as C7520's serialized wgmmas, the named barriers ptxas counts; registers and shared memory printed).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { parsePtxasReport, ptxasPerformanceLosses, type PtxasByArch } from '../../src/build/ptxas.js';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { occupancy } from '../../src/codegen/occupancy.js';
import { type AttentionSm90aPlan, planAttentionSm90a } from '../../src/codegen/attention-sm90a.js';
import { type AttentionVariant, prefillChunkVariant, tidarDecodeVariant } from '../../src/codegen/variant.js';
import { type EmulationReport, emulateVariant } from '../../src/emulate/emulate-variant.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { buildSm90aAttentionHarness, sm90aRunVariant, writeSm90aAttentionUnit } from './attention-sm90a-emu.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const nvcc = await findNvcc();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-attn-sm90a-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Case { readonly label: string; readonly variant: AttentionVariant; readonly consumers?: 1 | 2 }
const CASES: readonly Case[] = [
  { label: 'k = 16, bf16, d128, G4', variant: tidarDecodeVariant(16, { dtype: 'bf16', headDim: 128, qHeads: 4, kvHeads: 1 }) },
  { label: 'prefill chunk, fp16, d64, G8', variant: prefillChunkVariant({ dtype: 'fp16', headDim: 64, qHeads: 8, kvHeads: 1 }) },
  { label: 'k = 16, fp16, d64, G4, 1 consumer', variant: tidarDecodeVariant(16, { dtype: 'fp16', headDim: 64, qHeads: 4, kvHeads: 1 }), consumers: 1 },
  { label: 'k = 16, bf16, d64, G8', variant: tidarDecodeVariant(16, { dtype: 'bf16', headDim: 64, qHeads: 8, kvHeads: 1 }) },
];
const SPLITS = [1, 3] as const;
const PREFIX = [17, 0, 130];
const reports = new Map<string, EmulationReport>();
const plans: AttentionSm90aPlan[] = [];
let ptxas: PtxasByArch = {};
const losses: string[][] = [];  // ptxas's performance-loss lines, by case

beforeAll(async () => {
  if (!cxx.found) return;
  const t0 = performance.now();
  const objects = await sharedEmulatorRuntime();
  await runPool([...CASES.entries()], 2, async ([i, c]) => {
    const dir = join(root, `case${i}`);
    const plan = planAttentionSm90a(c.variant, c.consumers);
    plans[i] = plan;
    const unit = writeSm90aAttentionUnit(dir, plan);
    const exe = join(dir, 'emu');
    await buildSm90aAttentionHarness(cxx.tool.path, unit, objects, exe);
    for (const splits of SPLITS) reports.set(`${i}:${splits}`, await emulateVariant(exe, sm90aRunVariant(plan), { batch: 3, prefixLen: PREFIX, splits, seed: 21 + i }, dir));
    if (nvcc.found) {
      const { stderr } = await exec(nvcc.tool.path, ['-std=c++17', '-O3', '-cubin', '-Xptxas', '-v', ARCHES.sm_90a.gencode, `-I${unit.cudaDir}`, `-I${join(process.cwd(), 'templates', 'common')}`, '-o', join(dir, 'k.cubin'), unit.source], { maxBuffer: 64 << 20 });
      const r = parsePtxasReport(stderr);
      losses[i] = ptxasPerformanceLosses(stderr);
      ptxas = { ...ptxas, sm_90a: { ...ptxas['sm_90a'], ...r['sm_90a'] } };
    }
  });
  console.log(`sm_90a attention: ${reports.size} emulated runs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}, 600_000);

describe.skipIf(!cxx.found)('sm_90a attention on the emulator', () => {
  test.for(CASES.flatMap((c, i) => SPLITS.map((s) => [`${c.label}, splits ${s}`, i, s] as const)))('%s: float64 reference, no findings', ([, i, s]) => {
    const r = reports.get(`${i}:${s}`)!;
    expect(r.findings, JSON.stringify(r.findings.slice(0, 3))).toEqual([]);
    expect(r.completed).toBe(true);
    expect(r.maxError).toBeLessThanOrEqual(r.tolerance);
    expect(r.lseMaxError).toBeLessThan(2e-3);
  });

  test.skipIf(!nvcc.found)('nvcc -arch=sm_90a: every kernel without spills, stack or serialized wgmmas', () => {
    for (const [i, plan] of plans.entries()) {
      const r = ptxas['sm_90a']?.[plan.symbol];
      expect(r, plan.symbol).toBeDefined();
      expect(r!.spillStoreBytes + r!.spillLoadBytes + r!.stackBytes, plan.symbol).toBe(0);
      expect(losses[i], plan.symbol).toEqual([]);  // e.g. C7520: a wgmma on a divergent path serializes them all
      // The dynamic split id costs registers (tidarc_attention_sm90a.cuh says why): never so many that a kernel holds fewer CTAs an SM than at the 138 they had before it.
      const resources = { sharedBytes: plan.sharedBytes, threads: plan.threads };
      expect(occupancy('sm_90a', { ...resources, registers: r!.registers }).ctasPerSm, plan.symbol).toBeGreaterThanOrEqual(occupancy('sm_90a', { ...resources, registers: 138 }).ctasPerSm);
      // __syncthreads' barrier 0, and with ping-pong the turns' 1 and 2, as immediates: an id in a register made ptxas reserve all 16.
      expect(r!.barriers, plan.symbol).toBe(plan.pingPong ? 3 : 1);
      console.log(`${plan.symbol}: ${r!.registers} registers, ${plan.sharedBytes} bytes of dynamic shared memory, ${plan.consumers} consumer(s), ${plan.stages} stages, ${plan.threads} threads`);
    }
  });
});
