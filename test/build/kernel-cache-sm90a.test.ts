/**
 * The kernel cache's compile for a device's arch (kernel-cache.ts cacheCompile): a 9.0 device's
 * entry is compiled for sm_90 and sm_90a (its key says so), so the selection rule (arch.ts
 * selectArch) takes the sm_90a GEMMs and attention on it without `tidarc compile --arch sm_90a`;
 * other arches compile for themselves alone. Pure: the entry's generated manifest (no nvcc), for Qwen3-8B (tiny has no compute-bound variant to take sm_90a attention).
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
});
