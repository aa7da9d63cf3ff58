/**
 * The 32-row attention tiles' ptxas table (src/codegen/attention-registers.ts) and what the planner
 * does with it: the table covers every mask kind over every 32-row tile fitsInRegisters admits; a
 * tile that spills is never offered (Qwen2.5-1.5B's block_k16 on 3 warps of 32 rows at 32 keys
 * spilled at sm_90 when the planner took it); the planner prices a 32-row plan at its measured
 * registers. Tagged nvcc: a sample of the table re-measured against ptxas (exact figures with the
 * nvcc the table was measured with, the spills with any), so the table cannot drift from the kernel
 * unnoticed: when it fails, rerun `npm run bench:attention-registers` and paste its table.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePtxasReport, type PtxasByArch } from '../../src/build/ptxas.js';
import { runPool } from '../../src/build/pool.js';
import { findNvcc } from '../../src/build/toolchain.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { ATTENTION_32_ROW_KINDS, attention32Compiles, attention32Registers, attention32RowSpace, MEASURED_32_ROW, MEASURED_32_ROW_NVCC, measuredVariant } from '../../src/codegen/attention-registers.js';
import { nvccFlags } from '../../src/codegen/generate.js';
import { renderCudaVariant } from '../../src/codegen/kernel-source.js';
import { estimatedRegisters, fitsInRegisters, planAttention, plannedRegisters, rowTileCandidates } from '../../src/codegen/plan.js';
import { occupancy } from '../../src/codegen/occupancy.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { variantsForModel } from '../../src/codegen/variant.js';
import { DEFAULT_ARCHES } from '../../src/cli/commands/compile.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';

const example = (name: string) => parseModelJson(readFileSync(join(packageRoot(), 'examples', `${name}.json`), 'utf8'));

describe('the 32-row register table', () => {
  test('covers every mask kind over exactly the 32-row tiles fitsInRegisters admits (2 to 4 warps), once each', () => {
    const admitted = [64, 128].flatMap((headDim) => [16, 32, 64, 128, 256].flatMap((tileN) => ([2, 3] as const).filter((stages) => fitsInRegisters(32, tileN, headDim, stages))
      .flatMap((stages) => [2, 3, 4].map((warps) => `${headDim} ${tileN} ${stages} ${warps}`))));
    expect(attention32RowSpace().map((t) => `${t.headDim} ${t.tileN} ${t.stages} ${t.warps}`)).toEqual(admitted);
    const keys = MEASURED_32_ROW.map((r) => r.slice(0, 5).join(' '));
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.sort()).toEqual(ATTENTION_32_ROW_KINDS.flatMap((k) => admitted.map((t) => `${k} ${t}`)).sort());
  });

  test('every figure is at most 255; at 16 keys (head dim 64) a 32-row warp takes under 168, so an SM holds more of its CTAs than the 255 the estimate assumed', () => {
    for (const r of MEASURED_32_ROW) for (const regs of [r[5], r[7]]) expect(regs, r.join(' ')).toBeLessThanOrEqual(255);
    const v = measuredVariant('tidar-decode', 64);
    const p = planAttention(v, { tileN: 16, stages: 2, warps: 4, warpRows: 32 }, [ARCHES.sm_90]);
    expect(plannedRegisters(p, 'sm_90')).toBeLessThan(168);
    const ctas = (registers: number) => occupancy('sm_90', { registers, threads: p.threads, sharedBytes: p.sharedBytes }).ctasPerSm;
    expect(ctas(plannedRegisters(p, 'sm_90'))).toBeGreaterThan(ctas(estimatedRegisters(p.rowTile, 16, 64)));
  });

  test('Qwen2.5-1.5B\'s block_k16 (96 rows, head dim 128): its 3-warp 32-row tile at 32 keys spills at sm_90 and is not offered; the planned tile compiles without spills by the table', () => {
    expect(attention32Registers('block-diffusion', 128, 32, 2, 3, 'sm_90')!.spillBytes).toBeGreaterThan(0);
    const v = variantsForModel(example('qwen2.5-1.5b')).find((x) => x.name === 'block_k16')!;
    const arches = DEFAULT_ARCHES.map((a) => ARCHES[a]);
    expect(rowTileCandidates(v, ARCHES.sm_90.tile).filter((t) => t.warpRows === 32).map((t) => t.warps)).not.toContain(3);
    const p = planAttention(v, ARCHES.sm_90.tile, arches);
    if (p.rowTile.warpRows === 32) expect(attention32Compiles('block-diffusion', 128, p.tile.tileN, p.tile.stages, p.rowTile.warps)).toBe(true);
  });

  test('the planner prices a 32-row plan at its measured registers (Qwen3-8B k = 16 on 4 warps of 32 rows, 32 keys), a 16-row plan at the estimate', () => {
    const v = variantsForModel(example('qwen3-8b')).find((x) => x.name === 'tidar_k16')!;
    const p = planAttention(v, { tileN: 32, warps: 4, warpRows: 32 }, [ARCHES.sm_90]);
    expect(plannedRegisters(p, 'sm_90')).toBe(attention32Registers('tidar-decode', 128, 32, 2, 4, 'sm_90')!.registers);
    expect(plannedRegisters(p, 'sm_80')).toBe(attention32Registers('tidar-decode', 128, 32, 2, 4, 'sm_80')!.registers);
    expect(plannedRegisters(p, 'sm_90')).toBeLessThan(255);
    expect(plannedRegisters(planAttention(v, { tileN: 64, warps: 4, warpRows: 16 }, [ARCHES.sm_90]), 'sm_90')).toBe(208);
  });
});

const exec = promisify(execFile);
const nvcc = await findNvcc();
/** A sample: Qwen3-8B's planned k = 8 and k = 16 tiles (decode, head dim 128, 3 and 4 warps), the tile that spilled, a causal one at head dim 64 and 3 stages. */
const SAMPLE = [['tidar-decode', 128, 32, 2, 3], ['tidar-decode', 128, 32, 2, 4], ['block-diffusion', 128, 32, 2, 3], ['causal', 64, 64, 3, 4]] as const;
const reports: PtxasByArch[] = [];
let version = '';
const dir = mkdtempSync(join(tmpdir(), 'tidarc-attention-registers-'));

beforeAll(async () => {
  if (!nvcc.found) return;
  version = nvcc.tool.version;
  for (const h of ['cuda/tidarc_attention.cuh', 'cuda/tidarc_device.cuh']) writeFileSync(join(dir, h.split('/')[1]!), readTemplateFile(h));
  writeFileSync(join(dir, 'tidarc_abi.h'), readTemplateFile('common/tidarc_abi.h'));
  const pair = [ARCHES.sm_80, ARCHES.sm_90];
  await runPool(SAMPLE, 2, async ([kind, headDim, tileN, stages, warps], i) => {
    const plan = planAttention(measuredVariant(kind, headDim), { tileN, stages, warps, warpRows: 32 }, pair);
    const source = join(dir, `s${i}.cu`);
    writeFileSync(source, renderCudaVariant(plan, 'attention-registers-test'));
    const { stderr } = await exec(nvcc.tool.path, [...nvccFlags(pair), '-o', join(dir, `s${i}.fatbin`), source], { maxBuffer: 64 << 20 });
    reports[i] = parsePtxasReport(stderr);
  });
}, 600_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!nvcc.found)('the table against ptxas (nvcc sm_80 + sm_90)', () => {
  test.for(SAMPLE.map((s, i) => [s.join(' '), i] as const))('%s', ([label, i]) => {
    const [kind, headDim, tileN, stages, warps] = SAMPLE[i]!;
    for (const arch of ['sm_80', 'sm_90'] as const) {
      const real = reports[i]![arch]![measuredVariant(kind, headDim).symbol]!;
      const recorded = attention32Registers(kind, headDim, tileN, stages, warps, arch)!;
      const hint = `${label} ${arch}: rerun npm run bench:attention-registers and paste its table (attention-registers.ts)`;
      expect(real.spillStoreBytes > 0, hint).toBe(recorded.spillBytes > 0);
      if (version === MEASURED_32_ROW_NVCC) expect([real.registers, real.spillStoreBytes], hint).toEqual([recorded.registers, recorded.spillBytes]);
    }
  });
});
