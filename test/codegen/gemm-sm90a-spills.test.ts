/**
 * The sm_90a GEMM kernels a Qwen3-8B compile plans for draft lengths 1..16 (M = k(k+1) up to 272:
 * every token tile, 256 tokens at k = 12..15) never spill. The 256-token kernel at split-K > 1
 * spilled 152-184 bytes at the 168 registers ptxas allows its 288 threads while its last CTA
 * summed all 128 accumulators before storing any (tidarc_gemm_sm90a.cuh now stores each chunk
 * of sums as it holds them). Here:
 *   - every planned kernel has a ptxas figure in gemm-sm90a.ts's table (sm90aRegisters), within
 *     what its threads allow: the figure the ring depth, the family choice and the step cost
 *     model price it at;
 *   - nvcc -arch=sm_90a on the planned 256-token kernel of the first split-K unit (gate_up at
 *     split-K 2 as planned today: 152 bytes of spills before; rendered alone as the compile renders
 *     it, one ptxas run of a few seconds): no spill stores, loads or stack, and no ptxas
 *     "Potential Performance Loss" (serialized wgmmas).
 * The sweep of every tile at split-K 1..4 over the four units is `npm run bench:gemm-sm90a-registers`
 * (minutes of ptxas), which prints the table and fails on any spill. Tagged: nvcc (the second).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { parsePtxasReport, ptxasPerformanceLosses } from '../../src/build/ptxas.js';
import { findNvcc } from '../../src/build/toolchain.js';
import { ARCHES } from '../../src/codegen/arch.js';
import { planModelGemms } from '../../src/codegen/gemm-model.js';
import { planSm90aGemms, planSm90aKernels, renderSm90aUnit, sm90aRegisters } from '../../src/codegen/gemm-sm90a.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const root = mkdtempSync(join(tmpdir(), 'tidarc-sm90a-spills-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const DRAFTS = Array.from({ length: 16 }, (_, i) => i + 1);
const spec = { ...parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8')), draftLengths: DRAFTS };
const units = planModelGemms(spec, DRAFTS, ['sm_90', 'sm_90a']).units;
const planned = planSm90aGemms(units, spec.name);
/** The registers a thread may hold at `threads` a CTA (sm_90: warps take registers 4 at a time, 8 at a time a thread). */
const allowed = (threads: number): number => Math.min(255, Math.floor(65536 / (Math.ceil(threads / 128) * 128) / 8) * 8);

describe('the sm_90a GEMMs a Qwen3-8B compile plans for draft lengths 1..16', () => {
  test('every token tile is planned; each kernel has a ptxas figure within what its threads allow', () => {
    expect(new Set(planned.gemms.flatMap((g) => g.kernels.map((k) => k.tileT)))).toEqual(new Set([8, 16, 32, 64, 128, 136, 256]));
    expect(planned.gemms.some((g) => g.splitK > 1 && g.kernels.some((k) => k.tileT === 256))).toBe(true);
    for (const g of planned.gemms) {
      for (const k of g.kernels) expect(sm90aRegisters(k.tileT, g.splitK), k.symbol).toBeLessThanOrEqual(allowed(k.threads));
    }
    expect(allowed(288)).toBe(168);
  });

  test.skipIf(!nvcc.found)('nvcc -arch=sm_90a: a split-K unit\'s 256-token kernel without spills, stack or serialized wgmmas', async () => {
    for (const h of ['tidarc_gemm_sm90a.cuh', 'tidarc_gemm_sm90a_abi.h', 'tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_hopper.cuh', 'tidarc_device.cuh']) writeFileSync(join(root, h), readTemplateFile(`cuda/${h}`));
    const split = units.filter((u) => u.reduction.splitK > 1 && planned.gemms.some((g) => g.n === u.shape.n && g.k === u.shape.k)).slice(0, 1);
    expect(split).toHaveLength(1);
    const reports = await runPool(split, 1, async (u, i) => {
      const kernels = planSm90aKernels(u.shape, u.plans.map((p) => p.m), u.reduction).filter((k) => k.tileT === 256);
      const source = join(root, `u${i}.cu`);
      writeFileSync(source, renderSm90aUnit(u.shape, u.reduction, kernels, u.roles, spec.name));
      const { stderr } = await exec(nvcc.found ? nvcc.tool.path : 'nvcc', ['-std=c++17', '-O3', '-cubin', '-Xptxas', '-v', ARCHES.sm_90a.gencode, `-I${root}`, '-o', `${source}.cubin`, source], { maxBuffer: 64 << 20 });
      return { symbol: kernels[0]!.symbol, report: (parsePtxasReport(stderr)['sm_90a'] ?? {})[kernels[0]!.symbol], losses: ptxasPerformanceLosses(stderr) };
    });
    for (const { symbol, report, losses } of reports) {
      expect(report, symbol).toBeDefined();
      expect(losses, symbol).toEqual([]);  // e.g. C7520: wgmmas serialized by the chunked stores
      expect([report!.spillStoreBytes, report!.spillLoadBytes, report!.stackBytes], symbol).toEqual([0, 0, 0]);
      expect(report!.registers, symbol).toBeLessThanOrEqual(allowed(288));
    }
  }, 300_000);
});
