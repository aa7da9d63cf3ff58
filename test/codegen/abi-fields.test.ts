/**
 * The attention argument's fields have one source (src/codegen/abi-fields.ts): the manifest's
 * abi.fields are derived from the arrays and sizes the runtime packs (op-abi.ts re-exports the
 * same objects), in the words manifest.json has always had. Needs: nothing.
 */
import { expect, test } from 'vitest';
import { ATTENTION_ARRAYS, ATTENTION_SCALARS, attentionArrayFields, cFieldName, manifestAbiFields } from '../../src/codegen/abi-fields.js';
import { ABI_FIELDS } from '../../src/codegen/manifest.js';
import * as opAbi from '../../src/runtime/cuda/op-abi.js';

test("manifest.json's abi.fields are derived from the runtime's own arrays and sizes", () => {
  expect(opAbi.ATTENTION_ARRAYS).toBe(ATTENTION_ARRAYS);
  expect(opAbi.ATTENTION_SCALARS).toBe(ATTENTION_SCALARS);
  expect(ABI_FIELDS).toEqual(manifestAbiFields());
  expect(ABI_FIELDS.map((f) => f.name)).toEqual([...attentionArrayFields(), ...Object.keys(ATTENTION_SCALARS)].map(cFieldName));
  for (const f of attentionArrayFields()) {
    const field = ABI_FIELDS.find((x) => x.name === cFieldName(f))!;
    expect(field.type, f).toBe({ u16: 'dtype*', i32: 'int32*', f32: 'float*' }[ATTENTION_ARRAYS[f].elem]);
    expect(field.note, f).toBe((ATTENTION_ARRAYS[f] as { summary?: string }).summary);
    expect(field.shape!.split(/, | \* /)).toHaveLength(ATTENTION_ARRAYS[f].extent.length);
  }
});

test('the words are what manifest.json says (split_counters: splits x rows since the split schedule of attention-grid.ts)', () => {
  expect(ABI_FIELDS).toEqual([
    { name: 'q', type: 'dtype*', shape: '[batch, steps, qHeads, headDim]', note: 'in-step queries, RoPE applied' },
    { name: 'k_cache', type: 'dtype*', shape: '[batch, kvHeads, cacheCapacity, headDim]' },
    { name: 'v_cache', type: 'dtype*', shape: '[batch, kvHeads, cacheCapacity, headDim]' },
    { name: 'k_step', type: 'dtype*', shape: '[batch, steps, kvHeads, headDim]' },
    { name: 'v_step', type: 'dtype*', shape: '[batch, steps, kvHeads, headDim]' },
    { name: 'prefix_len', type: 'int32*', shape: '[batch]', note: 'cached prefix length L_b <= cacheCapacity' },
    { name: 'o', type: 'dtype*', shape: '[batch, steps, qHeads, headDim]' },
    { name: 'lse', type: 'float*', shape: '[batch, steps, qHeads]', note: 'natural log; -inf for a row that sees no key' },
    { name: 'workspace', type: 'float*', shape: '[splits * batch * steps * qHeads * (headDim + 1)]', note: 'only when splits > 1' },
    { name: 'split_counters', type: 'int32*', shape: '[splits, batch, steps, qHeads]', note: 'only when splits > 1; zero before the first launch, and every launch leaves them zero' },
    { name: 'batch', type: 'int32' },
    { name: 'cache_capacity', type: 'int32' },
    { name: 'num_splits', type: 'int32', note: 'split-KV count >= 1; grid.z' },
    { name: 'num_threads', type: 'int32', note: 'CPU backend threads; 0 = all' },
  ]);
});
