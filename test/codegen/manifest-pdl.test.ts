/**
 * The manifest says the kernels keep the PDL contract (docs: programmatic dependent launch):
 * top-level `programmaticLaunch: { minComputeCapability: [9, 0] }` in every compile with CUDA
 * sources (the bundled examples' manifest.json, an emulator-target compile), none in a
 * CPU-only one; and every GEMM kernel is rendered with its L2 prefetch tile count from
 * gemm-prefetch.ts (the one rule the cost model reads too).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { generateModel } from '../../src/codegen/generate.js';
import { gemmPlanPrefetch, sm90aPrefetch } from '../../src/codegen/gemm-prefetch.js';
import { planModelGemms } from '../../src/codegen/gemm-model.js';
import { planSm90aGemms, planSm90aKernels, sm90aTokenTile } from '../../src/codegen/gemm-sm90a.js';
import { gemmSource } from '../../src/codegen/gemm-source.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';

const spec = parseModelJson(readFileSync(join(packageRoot(), 'examples', 'tiny.json'), 'utf8'));

describe('manifest programmaticLaunch', () => {
  test('generated/tiny/manifest.json carries it; an emulator compile too; a CPU-only compile not', () => {
    const committed = JSON.parse(readFileSync(join(packageRoot(), 'generated', 'tiny', 'manifest.json'), 'utf8')) as { programmaticLaunch?: unknown };
    expect(committed.programmaticLaunch).toEqual({ minComputeCapability: [9, 0] });
    expect(generateModel(spec, { targets: ['emulator'] }).manifest.programmaticLaunch).toEqual({ minComputeCapability: [9, 0] });
    expect(generateModel(spec, { targets: ['cpu'] }).manifest.programmaticLaunch).toBeUndefined();
  });
});

describe('the GEMM sources carry the prefetch rule', () => {
  test('mma.sync: each Config has kPrefetchTiles = gemmPlanPrefetch(plan).tiles; sm_90a: sm90aPrefetch at the most rows a tile serves', () => {
    const units = planModelGemms(spec, spec.draftLengths, ['sm_90', 'sm_90a']).units;
    const out = generateModel(spec, { arches: ['sm_90', 'sm_90a'] });
    for (const u of units) {
      const text = out.files.get(gemmSource(u.shape))!;
      const got = [...text.matchAll(/kPrefetchTiles = (\d+);/g)].map((m) => Number(m[1]));
      expect(got, gemmSource(u.shape)).toEqual([...u.plans].sort((a, b) => a.m - b.m).map((p) => gemmPlanPrefetch(p).tiles));
      expect(text).toMatch(/gemm_prefetch_weights<ConfigM\d+, ConfigM\d+::kBlockN, tidarc::GemmShape<ConfigM\d+>::kThreads>\(args\.w, [^)]*\);\n  tidarc::grid_dependency_wait\(\);\n  tidarc::grid_dependents_launch\(\);/);
    }
    const sm90a = planSm90aGemms(units, spec.name);
    expect(sm90a.gemms.length).toBeGreaterThan(0);
    for (const u of units.filter((x) => sm90a.gemms.some((g) => g.n === x.shape.n && g.k === x.shape.k))) {
      const g = sm90a.gemms.find((x) => x.n === u.shape.n && x.k === u.shape.k)!;
      const kernels = planSm90aKernels(u.shape, u.plans.map((p) => p.m), u.reduction);
      const got = [...out.files.get(g.source)!.matchAll(/kPrefetchTiles = (\d+);/g)].map((m) => Number(m[1]));
      expect(got, g.source).toEqual(kernels.map((k) => sm90aPrefetch(u.shape, u.reduction, k, u.plans.map((p) => p.m).filter((m) => sm90aTokenTile(m) === k.tileT)).tiles));
    }
  });
});
