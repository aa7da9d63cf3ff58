/**
 * The kernel cache's compile for a device's arch (kernel-cache.ts cacheCompile): a 9.0 device's
 * entry is compiled for sm_90 and sm_90a (its key says so), so the selection rule (arch.ts
 * selectArch) takes the sm_90a GEMMs and attention on it without `tidarc compile --arch sm_90a`;
 * other arches compile for themselves alone. The emulator's entry makes the sm_90a attention (not
 * the GEMMs) for its 9.0 device. Pure: the entry's generated manifest (no nvcc), for Qwen3-8B (tiny has no compute-bound variant to take sm_90a attention).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { cacheCompile, kernelCacheKey } from '../../src/build/kernel-cache.js';
import { type ArchName, selectArch } from '../../src/codegen/arch.js';
import { generateModel } from '../../src/codegen/generate.js';
import { compileInputKey } from '../../src/codegen/input-key.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { attentionKernelOf } from '../../src/runtime/cuda/attention-launch.js';
import { gemmPathFor } from '../../src/runtime/cuda/gpu-gemm-sm90a.js';
import { sha256 } from '../../src/util/hash.js';
import { packageRoot } from '../../src/util/paths.js';

const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'qwen3-8b.json'), 'utf8'));

describe('a device arch\'s cache entry', () => {
  test('a 9.0 device\'s compiles sm_90 and sm_90a, and its key is that compile\'s; sm_80, cpu and the emulator their own target alone', () => {
    expect(cacheCompile('sm_90')).toEqual({ targets: ['sm_90', 'sm_90a'], build: 'all' });
    expect(cacheCompile('sm_80')).toEqual({ targets: ['sm_80'], build: 'all' });
    expect(cacheCompile('cpu')).toEqual({ targets: ['cpu'], build: 'all' });
    expect(cacheCompile('emulator')).toEqual({ targets: ['emulator'], build: 'none' });
    expect(kernelCacheKey({ spec, target: 'sm_90' })).toBe(sha256(`${compileInputKey(spec, spec.draftLengths, ['sm_90', 'sm_90a'])}\nall`));
  });

  test('on a 9.0 device the selection rule takes the entry\'s sm_90a GEMMs and attention', () => {
    const { targets } = cacheCompile('sm_90');
    const { manifest } = generateModel(spec, { targets });
    expect(manifest.arches).toContain('sm_90a');
    expect(selectArch(manifest.arches, [9, 0])).toBe('sm_90a');
    expect(manifest.gemmsSm90a?.length ?? 0).toBeGreaterThan(0);
    expect(gemmPathFor(manifest.arches, { major: 9, minor: 0 })).toBe('sm_90a');
    const sm90aAttention = manifest.variants.filter((v) => attentionKernelOf(v, manifest.arches, [9, 0]) !== undefined);
    expect(sm90aAttention.length).toBeGreaterThan(0);
    // An 8.0 device's entry has none to select.
    const sm80 = generateModel(spec, { targets: cacheCompile('sm_80').targets }).manifest;
    expect(sm80.arches as readonly ArchName[]).toEqual(['sm_80']);
    expect(sm80.gemmsSm90a).toBeUndefined();
  });

  test('the emulator\'s entry (its 9.0 device) has the compute-bound variants\' sm_90a attention and names sm_90a, but no sm_90a GEMMs; a model without such a variant keeps sm_90 alone', () => {
    const { manifest } = generateModel(spec, { targets: cacheCompile('emulator').targets });
    expect(manifest.arches as readonly ArchName[]).toEqual(['sm_90', 'sm_90a']);
    // gemmsFor (gpu-gemm-sm90a.ts) takes sm_90a GEMMs only where the manifest has some.
    expect(manifest.gemmsSm90a).toBeUndefined();
    const taken = manifest.variants.filter((v) => attentionKernelOf(v, manifest.arches, [9, 0]) !== undefined).map((v) => v.name);
    expect(taken).toEqual(manifest.variants.filter((v) => v.sm90a).map((v) => v.name));
    expect(taken).toContain('tidar_k16');
    const tiny = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'tiny.json'), 'utf8'));
    const plain = generateModel(tiny, { targets: ['emulator'] }).manifest;
    expect(plain.arches as readonly ArchName[]).toEqual(['sm_90']);
    expect(plain.variants.some((v) => v.sm90a)).toBe(false);
  });
});
