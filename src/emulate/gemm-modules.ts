/**
 * The generated GEMMs of a compiled kernels directory for the emulated CUDA driver: each GEMM
 * unit's .emu.so beside its .fatbin path, built from the same cuda/<unit>.cu (every kernel of
 * the unit and its split-K reduce), skipping those already built.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Manifest } from '../codegen/manifest.js';
import { buildEmulatedModule, emulatedModulePath } from './emulated-driver.js';

export async function buildEmulatedGemmModules(kernelsDir: string, manifest: Manifest, log: (line: string) => void = () => undefined): Promise<void> {
  const units = new Map<string, { source: string; kernels: Set<string> }>();
  for (const g of manifest.gemms ?? []) {
    const unit = units.get(g.unit) ?? units.set(g.unit, { source: g.source, kernels: new Set() }).get(g.unit)!;
    unit.kernels.add(g.kernel);
    if (g.reduceKernel) unit.kernels.add(g.reduceKernel);
    if (g.rowStatsKernel) unit.kernels.add(g.rowStatsKernel);
  }
  for (const [name, u] of units) {
    const so = emulatedModulePath(resolve(kernelsDir, u.source.replace(/\.cu$/, '.fatbin')));
    if (existsSync(so)) continue;
    const kernels = [...u.kernels].map((k) => ({ name: k, argsType: 'TidarcGemmArgs' }));
    await buildEmulatedModule(join(kernelsDir, u.source), so, kernels, { includeDirs: [join(kernelsDir, 'cuda')] });
    log(`built cuda/${name}.emu.so`);
  }
}
