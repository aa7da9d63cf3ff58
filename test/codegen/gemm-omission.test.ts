/**
 * `tidarc compile --variant` leaves out the GEMM kernels only its omitted step kinds launch
 * (codegen/gemm-omission.ts): the kernels it keeps are the full compile's (plan, split-K,
 * symbols, source text, sm_90a family choice), every launch of a kept step kind picks the same
 * kernel as over the full compile (recorded from the real runner, bench/step-launches.ts), and a
 * runner whose step kinds need a left-out kernel is refused in one line. Needs: nothing (pure).
 */
import { expect, test } from 'vitest';
import { recordStep } from '../../src/bench/step-launches.js';
import { generateModel } from '../../src/codegen/generate.js';
import type { Manifest } from '../../src/codegen/manifest.js';
import { GpuModelRunner } from '../../src/runtime/cuda/gpu-runner.js';
import { checkNeededVariants } from '../../src/runtime/model/needed-variants.js';
import { smallSpec } from '../helpers/random-model.js';

const spec = smallSpec('omit', [2, 4]);
const arches = ['sm_90', 'sm_90a'] as const;
const full = generateModel(spec, { arches: [...arches] });
const ar = generateModel(spec, { arches: [...arches], variants: ['ar'] });

/** A source's kernel blocks: each Config struct and each extern "C" kernel, by its text. */
function kernelBlocks(source: string): string[] {
  return [...source.matchAll(/^(?:struct Config\w* : Reduction \{[\s\S]*?^\};|extern "C" [^\n]*\n[\s\S]*?^\})/gm)].map((m) => m[0]);
}

test('--variant ar keeps the m = 1 kernels, each the full compile\'s, and names the rest', () => {
  const kept = ar.manifest.gemms!, all = full.manifest.gemms!;
  expect(kept.map((g) => g.m)).toEqual(kept.map(() => 1));
  expect(kept.length).toBeLessThan(all.length);
  expect([...new Set(kept.map((g) => g.unit))]).toEqual([...new Set(all.map((g) => g.unit))]);
  for (const g of kept) expect(g).toEqual(all.find((x) => x.kernel === g.kernel));
  // Every kept kernel's text is the full compile's (the reduction struct too), and nothing else is there.
  for (const source of new Set(kept.map((g) => g.source))) {
    const blocks = kernelBlocks(ar.files.get(source)!);
    const ofSource = kept.filter((g) => g.source === source);
    expect(blocks.length).toBe(2 * ofSource.length + (ofSource[0]!.rowStatsKernel ? 1 : 0));
    for (const b of blocks) expect(kernelBlocks(full.files.get(source)!)).toContain(b);
    expect(ar.files.get(source)!).toContain(/struct Reduction \{[\s\S]*?\};/.exec(full.files.get(source)!)![0]);
  }
  // sm_90a: the AR step's token tile, the full compile's split-K, symbol and family choice.
  const sm90a = ar.manifest.gemmsSm90a!, allSm90a = full.manifest.gemmsSm90a!;
  expect(sm90a.map((u) => u.kernels.map((k) => k.tileT))).toEqual(sm90a.map(() => [8]));
  for (const u of sm90a) {
    const f = allSm90a.find((x) => x.unit === u.unit)!;
    expect({ ...u, kernels: [] }).toEqual({ ...f, kernels: [] });
    expect(u.kernels).toEqual(f.kernels.filter((k) => k.tileT === 8));
    for (const b of kernelBlocks(ar.files.get(u.source)!)) expect(kernelBlocks(full.files.get(u.source)!)).toContain(b);
  }
  // What was left out, named: with what was kept, the full compile's kernels.
  const omitted = ar.manifest.omittedGemms!;
  expect(omitted.filter((o) => o.m !== undefined).map((o) => o.kernel).sort()).toEqual(all.filter((g) => g.m !== 1).map((g) => g.kernel).sort());
  expect(omitted.filter((o) => o.tileT !== undefined).map((o) => o.kernel).sort()).toEqual(allSm90a.flatMap((u) => u.kernels.filter((k) => k.tileT !== 8).map((k) => k.symbol)).sort());
  expect(full.manifest.omittedGemms).toBeUndefined();
});

/** The full compile's manifest with a filtered compile's GEMMs (attention complete, so a runner takes it). */
function withGemmsOf(base: Manifest, filtered: Manifest, o: { omitted?: boolean; noChoice?: boolean } = {}): Manifest {
  const sm90a = (m: Manifest) => m.gemmsSm90a?.map(({ heuristic: _, ...u }) => u);
  return { ...base, gemms: filtered.gemms, ...(o.noChoice ? { gemmsSm90a: sm90a(filtered) } : { gemmsSm90a: filtered.gemmsSm90a }), ...(o.omitted ? { omittedGemms: filtered.omittedGemms } : {}) };
}

test('each kept decode step launches the same kernels as over the full compile, on mma.sync and on sm_90a', () => {
  for (const kinds of [['ar'], ['tidar_k2'], ['tidar_k4', 'ar']]) {
    const filtered = generateModel(spec, { arches: [...arches], variants: kinds }).manifest;
    expect(filtered.gemms!.length).toBeLessThan(full.manifest.gemms!.length);
    // noChoice: every unit on sm_90a (a manifest without the family choice), so the sm_90a kernels are the ones picked.
    for (const noChoice of [false, true]) {
      const base = noChoice ? withGemmsOf(full.manifest, full.manifest, { noChoice }) : full.manifest;
      for (const kind of kinds) {
        const want = recordStep(spec, kind, 40, { manifest: base }).launches;
        const got = recordStep(spec, kind, 40, { manifest: withGemmsOf(full.manifest, filtered, { noChoice }) }).launches;
        expect(got.map((l) => l.kernel)).toEqual(want.map((l) => l.kernel));
        expect(got).toEqual(want);
        if (noChoice) expect(got.some((l) => l.kernel.includes('_sm90a_'))).toBe(true);
      }
    }
  }
});

test('a runner whose step kinds need a left-out GEMM kernel is refused, naming them and the compile option', () => {
  const want = 'the compiled kernels lack GEMM kernels of step kinds this model runs (left out by `tidarc compile --variant`: compile without it) (steps = tidar_k2,tidar_k4,prefill_c64,block_k2,block_k4); allowed: kernels with every GEMM of tidar_k2, tidar_k4, ar, prefill_c64, block_k2, block_k4';
  const manifest = withGemmsOf(full.manifest, ar.manifest, { omitted: true });
  expect(() => checkNeededVariants(spec, manifest)).toThrow(want);
  expect(() => new GpuModelRunner(spec, undefined as never, undefined as never, '/kernels', manifest, 64)).toThrow(`/kernels: ${want}`);
  // An AR-only model needs only what the filter kept.
  expect(() => checkNeededVariants({ draftLengths: [] }, { ...manifest, variants: manifest.variants.filter((v) => v.name === 'ar' || v.name === 'prefill_c64') })).toThrow(/steps = prefill_c64\)/);
  expect(() => checkNeededVariants(spec, full.manifest)).not.toThrow();
});
