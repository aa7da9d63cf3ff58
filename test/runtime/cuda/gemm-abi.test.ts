/**
 * The GEMM argument struct the cuda backend packs (src/runtime/cuda/op-abi.ts GEMM) against
 * templates/cuda/tidarc_gemm_abi.h, the header the generated GEMMs are compiled with: g++ prints
 * sizeof and every offsetof. Tagged: a C++ compiler.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { GEMM, GEMM_NO_NORM, layoutOf, packStruct } from '../../../src/runtime/cuda/op-abi.js';

const cxx = await findCxx();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-gemm-abi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cField = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

const base = { x: 16, w: 32, bias: 0, rowIds: 0, out: 48, out2: 64, out3: 80, workspace: 0, tileStats: 0, tileArgmax: 0, rowArgmax: 96, rowMax: 0, rowLse: 112, rows: 20, accumulate: 1, seg1: 4096, seg2: 5120, epilogue: 2, splitCounters: 144, ...GEMM_NO_NORM };

describe.skipIf(!cxx.found)('TidarcGemmArgs', () => {
  test('sizeof and offsetof of every field match the header; version 6 (the fold-norms fields after split_counters)', () => {
    const lines = [
      `std::printf("version %d\\n", TIDARC_GEMM_ABI_VERSION);`,
      `std::printf("size %zu\\n", sizeof(TidarcGemmArgs));`,
      ...GEMM.fields.map(([f]) => `std::printf("%s %zu\\n", "${f}", offsetof(TidarcGemmArgs, ${cField(f)}));`),
    ];
    const src = join(dir, 'layout.cpp');
    writeFileSync(src, `#include <cstddef>\n#include <cstdio>\n#include "tidarc_gemm_abi.h"\nint main() {\n${lines.join('\n')}\n}\n`);
    const exe = join(dir, 'layout');
    execFileSync(cxx.found ? cxx.tool.path : 'g++', ['-std=c++17', '-I', resolve('templates/cuda'), src, '-o', exe]);
    const l = layoutOf(GEMM);
    expect(execFileSync(exe, { encoding: 'utf8' }).trim().split('\n')).toEqual(['version 6', `size ${l.size}`, ...GEMM.fields.map(([f]) => `${f} ${l.offsets[f]}`)]);
    expect(l.size).toBe(184);  // 13 pointers, 5 int32, padded to 8, split_counters, 4 pointers, 2 int32 and a float, padded to 8
  });
  test('packs pointers as 64-bit and the segment bounds and epilogue as int32; split_counters last', () => {
    const b = packStruct(GEMM, base);
    const v = new DataView(b.buffer);
    expect([v.getBigUint64(40, true), v.getBigUint64(80, true), v.getBigUint64(96, true), v.getInt32(104, true), v.getInt32(112, true), v.getInt32(116, true), v.getInt32(120, true), v.getBigUint64(128, true)]).toEqual([64n, 96n, 112n, 20, 4096, 5120, 2, 144n]);
    expect([...b.subarray(136)].every((x) => x === 0)).toBe(true);  // GEMM_NO_NORM: every fold-norms field 0
  });
  test('packs the fold-norms fields: four pointers, sumsq_chunks and norm_cols as int32, norm_eps as float32', () => {
    const b = packStruct(GEMM, { ...base, normWeight: 200, normOut: 208, normSumsq: 216, rowSumsq: 224, sumsqChunks: 16, normCols: 1024, normEps: 1e-6 });
    const v = new DataView(b.buffer);
    expect([v.getBigUint64(136, true), v.getBigUint64(144, true), v.getBigUint64(152, true), v.getBigUint64(160, true), v.getInt32(168, true), v.getInt32(172, true), v.getFloat32(176, true)])
      .toEqual([200n, 208n, 216n, 224n, 16, 1024, Math.fround(1e-6)]);
    expect(b.length).toBe(184);
  });
});
