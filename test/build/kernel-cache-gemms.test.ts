/**
 * The kernel cache with tuned GEMMs (`run --tuned` / `bench-step --tuned` on the cuda backend:
 * src/load/model-parts.ts passes the database's GEMM entries as `gemms`): they are part of the
 * entry's key, so a tuned and an untuned compile never share an entry, and the entry's manifest
 * and sources carry the tuned split-K and tiles. On the emulator's target (its device is sm_90;
 * a compile without a build). Needs: nothing.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cachedKernels, kernelCacheEntry, kernelCacheKey } from '../../src/build/kernel-cache.js';
import type { GemmOverrides } from '../../src/codegen/gemm-plan.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { packageRoot } from '../../src/util/paths.js';

const spec = await loadModelSpecFile(join(packageRoot(), 'examples', 'tiny.json'));
const cacheDir = mkdtempSync(join(tmpdir(), 'tidarc-cache-gemms-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

const UNIT = 'gemm_bf16_n1024_k256';
const GEMMS: GemmOverrides = { [UNIT]: { arch: 'sm_90', splitK: 2, tiles: { 20: { blockM: 16, warpsM: 1, stages: 5 } }, measuredOn: 'NVIDIA H200 x 132 SMs' } };

describe('tuned GEMMs in the kernel cache', () => {
  test('are part of the key: a tuned entry is not the untuned one', () => {
    expect(kernelCacheKey({ spec, target: 'emulator', gemms: GEMMS })).not.toBe(kernelCacheKey({ spec, target: 'emulator' }));
    expect(kernelCacheKey({ spec, target: 'emulator', gemms: {} })).toBe(kernelCacheKey({ spec, target: 'emulator' }));
  });
  test('reach the compile: the entry\'s manifest and source have the record\'s split-K and tile', async () => {
    const tuned = await cachedKernels({ spec, target: 'emulator', gemms: GEMMS, cacheDir });
    const plain = await cachedKernels({ spec, target: 'emulator', cacheDir });
    expect(tuned.outDir).toBe(kernelCacheEntry({ spec, target: 'emulator', gemms: GEMMS, cacheDir }));
    expect(tuned.outDir).not.toBe(plain.outDir);
    const mine = tuned.manifest.gemms!.filter((g) => g.unit === UNIT);
    expect(mine.map((g) => [g.m, g.splitK, g.plan.blockM, g.plan.stages, g.tuned?.tile])).toEqual(
      plain.manifest.gemms!.filter((g) => g.unit === UNIT).map((g) => [g.m, 2, g.m === 20 ? 16 : g.plan.blockM, g.m === 20 ? 5 : g.plan.stages, g.m === 20]));
    expect(plain.manifest.gemms!.every((g) => g.tuned === undefined)).toBe(true);
    expect(readFileSync(join(tuned.outDir, 'cuda', `${UNIT}.cu`), 'utf8')).toContain('static constexpr int kSplitK = 2;');
  });
});
