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

type GemmManifest = Manifest & { readonly gemmsSm90a?: readonly ManifestGemmSm90a[] };

export async function buildEmulatedGemmModules(kernelsDir: string, manifest: GemmManifest, log: (line: string) => void = () => undefined): Promise<void> {
  for (const u of emulatedGemmModulesToBuild(kernelsDir, manifest)) {
    await buildEmulatedModule(join(kernelsDir, u.source), u.so, u.kernels, { includeDirs: [join(kernelsDir, 'cuda')] });
    log(`built cuda/${u.name}.emu.so`);
  }
}

/** The GEMM units whose .emu.so is not built yet, with the kernels each holds. */
export function emulatedGemmModulesToBuild(kernelsDir: string, manifest: GemmManifest): { name: string; source: string; so: string; kernels: { name: string; argsType: string }[] }[] {
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
  return [...units].flatMap(([name, u]) => {
    const so = emulatedModulePath(resolve(kernelsDir, u.source.replace(/\.cu$/, '.fatbin')));
    return existsSync(so) ? [] : [{ name, source: u.source, so, kernels: [...u.kernels].map(([k, argsType]) => ({ name: k, argsType })) }];
  });
}
