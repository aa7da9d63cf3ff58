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
import { GEMM, layoutOf, packStruct } from '../../../src/runtime/cuda/op-abi.js';

const cxx = await findCxx();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-gemm-abi-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cField = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

describe.skipIf(!cxx.found)('TidarcGemmArgs', () => {
  test('sizeof and offsetof of every field match the header; version 5 (split-K summed in the launch on split_counters)', () => {
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
    expect(execFileSync(exe, { encoding: 'utf8' }).trim().split('\n')).toEqual(['version 5', `size ${l.size}`, ...GEMM.fields.map(([f]) => `${f} ${l.offsets[f]}`)]);
    expect(l.size).toBe(136);  // 13 pointers, 5 int32, padded to 8, then split_counters
  });
  test('packs pointers as 64-bit and the segment bounds and epilogue as int32; split_counters last', () => {
    const b = packStruct(GEMM, { x: 16, w: 32, bias: 0, rowIds: 0, out: 48, out2: 64, out3: 80, workspace: 0, tileStats: 0, tileArgmax: 0, rowArgmax: 96, rowMax: 0, rowLse: 112, rows: 20, accumulate: 1, seg1: 4096, seg2: 5120, epilogue: 2, splitCounters: 144 });
    const v = new DataView(b.buffer);
    expect([v.getBigUint64(40, true), v.getBigUint64(80, true), v.getBigUint64(96, true), v.getInt32(104, true), v.getInt32(112, true), v.getInt32(116, true), v.getInt32(120, true), v.getBigUint64(128, true)]).toEqual([64n, 96n, 112n, 20, 4096, 5120, 2, 144n]);
  });
});
