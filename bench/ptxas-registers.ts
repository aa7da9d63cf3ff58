/**
 * Registers per thread of generated kernels, from ptxas (nvcc -cubin -arch=sm_90 -Xptxas -v on
 * the generated source), for the benchmarks' occupancy: the GEMM units of a model (every kernel
 * of a weight shape, one source per shape) and attention variants. Without nvcc each function
 * says why, and the caller uses its recorded or assumed figures (and prints that it did).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ptxasOfSource } from '../src/build/ptxas.js';
import { runPool } from '../src/build/pool.js';
import { findNvcc } from '../src/build/toolchain.js';
import type { GemmUnit } from '../src/codegen/gemm-model.js';
import { renderGemmUnit } from '../src/codegen/gemm-source.js';
import { renderCudaVariant } from '../src/codegen/kernel-source.js';
import type { AttentionPlan } from '../src/codegen/plan.js';
import { readTemplateFile } from '../src/codegen/templates.js';

export type Registers = { readonly registers: Map<string, number>; readonly source: string } | { readonly registers?: undefined; readonly source: string };

async function inScratch<T>(prefix: string, headers: readonly [string, string][], body: (dir: string, nvcc: string) => Promise<T>): Promise<{ value: T; version: string } | string> {
  const nvcc = await findNvcc();
  if (!nvcc.found) return `nvcc not found (${nvcc.reason})`;
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    for (const [name, template] of headers) writeFileSync(join(dir, name), readTemplateFile(template));
    return { value: await body(dir, nvcc.tool.path), version: nvcc.tool.version };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every kernel of the units (by symbol: manifest gemms[].kernel), sm_90. */
export async function gemmRegisters(units: readonly Pick<GemmUnit, 'shape' | 'plans' | 'roles'>[], modelName: string): Promise<Registers> {
  const headers: [string, string][] = ['tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_device.cuh'].map((h) => [h, `cuda/${h}`]);
  const r = await inScratch('tidarc-bench-gemm-', headers, async (dir, nvcc) => {
    const registers = new Map<string, number>();
    await runPool(units, 2, async (u, i) => {
      const src = join(dir, `u${i}.cu`);
      writeFileSync(src, renderGemmUnit(u.shape, u.plans, u.roles, modelName));
      for (const [kernel, p] of Object.entries(await ptxasOfSource(nvcc, src, 'sm_90'))) registers.set(kernel, p.registers);
    });
    return registers;
  });
  return typeof r === 'string' ? { source: r } : { registers: r.value, source: `ptxas sm_90 (${r.version})` };
}

/** The main kernel of each plan's variant (by variant name), sm_90. */
export async function attentionRegisters(plans: readonly AttentionPlan[]): Promise<Registers> {
  const headers: [string, string][] = [['tidarc_attention.cuh', 'cuda/tidarc_attention.cuh'], ['tidarc_device.cuh', 'cuda/tidarc_device.cuh'], ['tidarc_abi.h', 'common/tidarc_abi.h']];
  const r = await inScratch('tidarc-bench-attention-', headers, async (dir, nvcc) => {
    const registers = new Map<string, number>();
    await runPool(plans, 2, async (p) => {
      const src = join(dir, `${p.variant.name}.cu`);
      writeFileSync(src, renderCudaVariant(p, 'bench'));
      const k = (await ptxasOfSource(nvcc, src, 'sm_90'))[p.variant.symbol];
      if (k) registers.set(p.variant.name, k.registers);
    });
    return registers;
  });
  return typeof r === 'string' ? { source: r } : { registers: r.value, source: `ptxas sm_90 (${r.version})` };
}
