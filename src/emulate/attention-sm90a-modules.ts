/**
 * The sm_90a attention units of a compiled kernels directory for the emulated CUDA driver: each
 * variant's sm_90a kernel (manifest variant.sm90a) as the .emu.so beside its .fatbin path, built
 * from the same cuda/<variant>.sm90a.cu, skipping those already built. The emulated device
 * reports compute capability 9.0, so the launcher's selection rule takes them there.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Manifest } from '../codegen/manifest.js';
import { attentionSm90aModule } from '../runtime/cuda/attention-launch.js';
import { buildEmulatedModule, emulatedModulePath } from './emulated-driver.js';

export async function buildEmulatedAttentionSm90aModules(kernelsDir: string, manifest: Pick<Manifest, 'variants'>, log: (line: string) => void = () => undefined): Promise<void> {
  for (const v of emulatedAttentionSm90aToBuild(kernelsDir, manifest)) {
    const so = emulatedModulePath(resolve(attentionSm90aModule(kernelsDir, v.sm90a)));
    await buildEmulatedModule(join(kernelsDir, v.sm90a.source), so, [{ name: v.sm90a.symbol, argsType: 'TidarcAttentionSm90aArgs' }], { includeDirs: [join(kernelsDir, 'cuda')] });
    log(`built ${v.sm90a.source.replace(/\.cu$/, '.emu.so')}`);
  }
}

/** The variants with an sm_90a kernel whose .emu.so is not built yet. */
export function emulatedAttentionSm90aToBuild(kernelsDir: string, manifest: Pick<Manifest, 'variants'>): (Manifest['variants'][number] & { readonly sm90a: NonNullable<Manifest['variants'][number]['sm90a']> })[] {
  return manifest.variants.flatMap((v) => (v.sm90a && !existsSync(emulatedModulePath(attentionSm90aModule(kernelsDir, v.sm90a))) ? [{ ...v, sm90a: v.sm90a }] : []));
}
