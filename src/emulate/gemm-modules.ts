/**
 * The generated GEMMs of a compiled kernels directory for the emulated CUDA driver: each GEMM
 * unit's .emu.so beside its .fatbin path, built from the same cuda/<unit>.cu (every kernel of
 * the unit), skipping those already built.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ManifestGemmSm90a } from '../codegen/gemm-sm90a.js';
import type { Manifest } from '../codegen/manifest.js';
import { buildEmulatedModule, emulatedModulePath } from './emulated-driver.js';

export async function buildEmulatedGemmModules(kernelsDir: string, manifest: Manifest & { readonly gemmsSm90a?: readonly ManifestGemmSm90a[] }, log: (line: string) => void = () => undefined): Promise<void> {
  const units = new Map<string, { source: string; kernels: Map<string, string> }>();  // kernel -> its argument struct
  const unitOf = (name: string, source: string) => units.get(name) ?? units.set(name, { source, kernels: new Map() }).get(name)!;
  for (const g of manifest.gemms ?? []) {
    const unit = unitOf(g.unit, g.source);
    unit.kernels.set(g.kernel, 'TidarcGemmArgs');
    if (g.rowStatsKernel) unit.kernels.set(g.rowStatsKernel, 'TidarcGemmArgs');
  }
  // The sm_90a units: the emulator runs their TMA and wgmma as the tests prove them.
  for (const g of manifest.gemmsSm90a ?? []) {
    const unit = unitOf(g.unit, g.source);
    for (const k of g.kernels) unit.kernels.set(k.symbol, 'TidarcGemmSm90aArgs');
  }
  for (const [name, u] of units) {
    const so = emulatedModulePath(resolve(kernelsDir, u.source.replace(/\.cu$/, '.fatbin')));
    if (existsSync(so)) continue;
    const kernels = [...u.kernels].map(([k, argsType]) => ({ name: k, argsType }));
    await buildEmulatedModule(join(kernelsDir, u.source), so, kernels, { includeDirs: [join(kernelsDir, 'cuda')] });
    log(`built cuda/${name}.emu.so`);
  }
}
