/**
 * A model runner needs every step kind of its model: over kernels that lack one (a filtered
 * compile, `tidarc compile --variant`) it is refused when made, in one line naming what is
 * missing, on both backends. (The CPU runner over a real filtered compile: cpu-backend.test.ts.)
 */
import { expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { GpuModelRunner } from '../../../src/runtime/cuda/gpu-runner.js';
import { checkNeededVariants } from '../../../src/runtime/model/needed-variants.js';
import { smallSpec } from '../../helpers/random-model.js';

const spec = smallSpec('needed', [2, 4]);

test('kernels that hold every step kind pass; a filtered compile is refused naming what it left out', () => {
  expect(() => checkNeededVariants(spec, generateModel(spec, { arches: ['sm_80'] }).manifest)).not.toThrow();
  const { manifest } = generateModel(spec, { arches: ['sm_80'], variants: ['tidar_k2', 'ar'] });
  expect(manifest.omittedVariants).toEqual(['tidar_k4', 'block_k2', 'block_k4', 'prefill_c64']);
  const want = 'the compiled kernels lack variants this model runs (left out by `tidarc compile --variant`: compile without it) (variants = tidar_k4,prefill_c64,block_k2,block_k4); allowed: kernels with tidar_k2, tidar_k4, ar, prefill_c64, block_k2, block_k4';
  expect(() => checkNeededVariants(spec, manifest)).toThrow(want);
  // The cuda runner checks before it touches the device or the weights (neither exists here).
  expect(() => new GpuModelRunner(spec, undefined as never, undefined as never, '/kernels', manifest, 64)).toThrow(`/kernels: ${want}`);
});

test('kernels compiled for other draft lengths (no filter) are refused without the --variant hint', () => {
  const { manifest } = generateModel(spec, { arches: ['sm_80'], drafts: [2] });
  expect(manifest.omittedVariants).toBeUndefined();
  expect(() => checkNeededVariants(spec, manifest)).toThrow(/^the compiled kernels lack variants this model runs \(variants = tidar_k4,block_k4\); allowed: /);
});
