import { expect, test } from 'vitest';
import { AR_VARIANT, parseVariantName, variantName, type VariantKey } from '../../src/codegen/variant-name.js';
import { variantsForModel } from '../../src/codegen/variant.js';
import { modelForShape } from '../helpers/models.js';

test('every name the constructor makes reads back as its key, and the spellings are the manifest ones', () => {
  const keys: VariantKey[] = [{ kind: 'tidar', draft: 4 }, { kind: 'ar' }, { kind: 'block', draft: 16 }, { kind: 'prefill', chunk: 64 }];
  expect(keys.map(variantName)).toEqual(['tidar_k4', 'ar', 'block_k16', 'prefill_c64']);
  for (const key of keys) expect(parseVariantName(variantName(key))).toEqual(key);
  expect(AR_VARIANT).toBe('ar');
});

test('names the scheme does not make are not read as variants', () => {
  for (const name of ['tidar_k0', 'tidar_k04', 'tidar_k', 'AR', 'ar_', 'block_4', 'prefill_c', 'tidar_k4 ', 'xtidar_k4']) expect(parseVariantName(name), name).toBeUndefined();
});

test("every variant a model compiles to is named by the constructor", () => {
  const spec = modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 2 }, [2, 8]);
  const names = variantsForModel(spec).map((v) => v.name);
  expect(names.map((n) => parseVariantName(n)).every((k) => k !== undefined)).toBe(true);
  expect(names.map((n) => variantName(parseVariantName(n)!))).toEqual(names);
});
