/**
 * The struct layouts the CUDA backend packs (src/runtime/cuda/op-abi.ts) against the C headers
 * the kernels are compiled with: g++ prints sizeof and every offsetof.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { ATTENTION, OP_SCHEMAS, layoutOf, packStruct, RMSNORM } from '../../../src/runtime/cuda/op-abi.js';

const cxx = await findCxx();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-op-abi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The C names of a schema's fields: camelCase -> snake_case, our `pad` -> `pad_`. */
function cField(name: string): string {
  return name === 'pad' ? 'pad_' : name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

describe.skipIf(!cxx.found)('op-abi layouts match the headers', () => {
  const schemas = [...OP_SCHEMAS, ATTENTION];
  test('sizeof and offsetof of every field', () => {
    const lines = schemas.flatMap((s) => [
      `std::printf("%s size %zu\\n", "${s.cName}", sizeof(${s.cName}));`,
      ...s.fields.map(([f]) => `std::printf("%s %s %zu\\n", "${s.cName}", "${f}", offsetof(${s.cName}, ${cField(f)}));`),
    ]);
    const src = join(dir, 'layout.cpp');
    writeFileSync(src, `#include <cstddef>\n#include <cstdio>\n#include "tidarc_abi.h"\n#include "tidarc_ops_abi.h"\nint main() {\n${lines.join('\n')}\n}\n`);
    const exe = join(dir, 'layout');
    execFileSync(cxx.found ? cxx.tool.path : 'g++', ['-std=c++17', '-I', resolve('templates/common'), '-I', resolve('templates/cuda'), src, '-o', exe]);
    const printed = execFileSync(exe, { encoding: 'utf8' }).trim().split('\n');
    const expected = schemas.flatMap((s) => {
      const l = layoutOf(s);
      return [`${s.cName} size ${l.size}`, ...s.fields.map(([f]) => `${s.cName} ${f} ${l.offsets[f]}`)];
    });
    expect(printed).toEqual(expected);
  });
});

describe('packStruct', () => {
  test('writes little-endian fields at their offsets', () => {
    const b = packStruct(RMSNORM, { x: 0x1234_5678_9a, w: 8, out: 16, rows: 3, cols: 64, eps: 1e-6, dtype: 0, outDtype: 1 });
    const v = new DataView(b.buffer);
    expect(b.length).toBe(48);
    expect(v.getInt32(40, true)).toBe(1);
    expect(v.getBigUint64(0, true)).toBe(0x1234_5678_9an);
    expect(v.getInt32(24, true)).toBe(3);
    expect(v.getFloat32(32, true)).toBeCloseTo(1e-6, 12);
  });
  test('refuses a missing field, a fractional int and a negative pointer', () => {
    expect(() => packStruct(RMSNORM, { x: 1, w: 1, out: 1, rows: 1, cols: 1, eps: 1 })).toThrow(/TidarcRmsNormArgs.dtype is missing/);
    expect(() => packStruct(RMSNORM, { x: 1, w: 1, out: 1, rows: 1.5, cols: 1, eps: 1, dtype: 0, outDtype: 2 })).toThrow(/rows = 1.5/);
    expect(() => packStruct(RMSNORM, { x: -1, w: 1, out: 1, rows: 1, cols: 1, eps: 1, dtype: 0, outDtype: 2 })).toThrow(/x = -1/);
  });
});
