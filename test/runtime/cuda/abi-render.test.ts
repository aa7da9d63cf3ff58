/**
 * The ABI's one source (op-abi.ts) and the files written from it: the committed headers and the
 * device check's Python module are what the renderer writes now, and Python packs every struct
 * to the same bytes as packStruct (whose offsets op-abi.test.ts checks against g++).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ABI_FILES, renderAttentionArgsHeader, renderAttentionHeader, renderOpsHeader, renderPythonAbi, renderStruct } from '../../../src/runtime/cuda/abi-render.js';
import { ABI_FIELDS } from '../../../src/codegen/manifest.js';
import { generateModel } from '../../../src/codegen/generate.js';
import { ABI_VERSION, ATTENTION, ATTENTION_ARRAYS, GEMM, OPS, attentionArrayFields, cFieldName, layoutOf, packStruct, type StructSchema } from '../../../src/runtime/cuda/op-abi.js';
import { modelForShape } from '../../helpers/models.js';
import { parseVariantName, variantName } from '../../../src/codegen/variant-name.js';

const python = spawnSync('python3', ['-c', 'import struct'], { encoding: 'utf8' }).status === 0;

test('the committed headers and Python module are the renderer\'s output (npx tsx scripts/generate-abi.ts rewrites them)', () => {
  const rendered = { attentionHeader: renderAttentionHeader(), attentionArgsHeader: renderAttentionArgsHeader(), opsHeader: renderOpsHeader(), python: renderPythonAbi() };
  for (const [key, path] of Object.entries(ABI_FILES)) {
    expect(readFileSync(resolve(path), 'utf8'), `${path} differs from op-abi.ts: run npx tsx scripts/generate-abi.ts`).toBe(rendered[key as keyof typeof rendered]);
  }
});

test("the manifest's description of the attention argument names the schema's fields and version, in order", () => {
  // codegen sits below the runtime and cannot import op-abi.ts: this keeps manifest.ts from drifting.
  expect(ABI_FIELDS.map((f) => f.name)).toEqual(ATTENTION.fields.map(([f]) => cFieldName(f)));
  const { manifest } = generateModel(modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 1 }, [2]), { arches: ['sm_80'] });
  expect(manifest.abiVersion).toBe(ABI_VERSION);
  expect(manifest.abi.struct).toBe(ATTENTION.cName);
});

test("the header's layout comment gives every array its extent in ATTENTION_ARRAYS", () => {
  const doc = ATTENTION.doc!.split('\n').map((l) => l.trim());
  for (const f of attentionArrayFields()) {
    const dims = ATTENTION_ARRAYS[f].extent.map((d) => (d === 'headDim + 1' ? '(head_dim + 1)' : cFieldName(d)));
    const line = doc.find((l) => l.startsWith(`${cFieldName(f)} `));
    expect(line, f).toContain(ATTENTION_ARRAYS[f].role === 'scratch' ? dims.join(' * ') : `[${dims.join(', ')}]`);
  }
});

test('a field added to a schema is in its header, with its C type and note', () => {
  const s: StructSchema = { ...OPS.embed, fields: [...OPS.embed.fields, ['scaleBy', 'f32', { note: 'new' }]] };
  expect(renderStruct(s)).toContain('  float scale_by;');
  expect(renderStruct(s)).toMatch(/ {2}float scale_by; +\/\* new \*\//);
  expect(renderAttentionHeader()).toContain('  const int32_t* prefix_len;');
});

describe.skipIf(!python)('the Python packing (needs python3)', () => {
  test('packs every struct to packStruct\'s bytes, and its size is the layout\'s', () => {
    const schemas: StructSchema[] = [ATTENTION, GEMM, ...Object.values(OPS)];
    const cases = schemas.map((s) => {
      // Distinct values per field; f32 fields get a fraction, i32 a negative number.
      const values = Object.fromEntries(s.fields.map(([f, type], i) => [f, type === 'f32' ? i + 0.5 : type === 'i32' ? -(i + 1) : 0x1000 * (i + 1)]));
      return { s, values };
    });
    const script = [
      'import json, sys',
      "sys.path.insert(0, 'scripts/device-check')",
      'import tidarc_abi',
      'structs = {s.c_name: s for s in vars(tidarc_abi).values() if isinstance(s, tidarc_abi.Struct)}',
      'for c in json.loads(sys.stdin.read()):',
      "    s = structs[c['name']]",
      "    print(c['name'], s.size, s.pack(**c['values']).hex())",
    ].join('\n');
    const input = JSON.stringify(cases.map(({ s, values }) => ({ name: s.cName, values: Object.fromEntries(Object.entries(values).map(([f, v]) => [cFieldName(f), v])) })));
    const printed = execFileSync('python3', ['-c', script], { input, encoding: 'utf8' }).trim().split('\n');
    expect(printed).toEqual(cases.map(({ s, values }) => `${s.cName} ${layoutOf(s).size} ${Buffer.from(packStruct(s, values)).toString('hex')}`));
  });

  test("spells variant names as variant-name.ts's constructor does (the device check's lists use them)", () => {
    const script = [
      'import sys',
      "sys.path.insert(0, 'scripts/device-check')",
      'from tidarc_abi import AR_VARIANT, block_variant, prefill_variant, tidar_variant',
      'print(AR_VARIANT)',
      'for n in (1, 4, 16, 64):',
      '    print(tidar_variant(n), block_variant(n), prefill_variant(n))',
    ].join('\n');
    const printed = execFileSync('python3', ['-c', script], { encoding: 'utf8' }).trim().split('\n');
    const ts = [1, 4, 16, 64].map((n) => [variantName({ kind: 'tidar', draft: n }), variantName({ kind: 'block', draft: n }), variantName({ kind: 'prefill', chunk: n })].join(' '));
    expect(printed).toEqual([variantName({ kind: 'ar' }), ...ts]);
    for (const name of printed.flatMap((l) => l.split(' '))) expect(parseVariantName(name), name).toBeDefined();
  });
});
