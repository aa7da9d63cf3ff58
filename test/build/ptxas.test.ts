import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parsePtxasReport, ptxasOfSource, ptxasPerformanceLosses, ptxasWarnings } from '../../src/build/ptxas.js';
import { findNvcc } from '../../src/build/toolchain.js';

// Real nvcc 13.0 output: sm_80 prints cmem on the "Used" line, sm_90 does not.
const SAMPLE = `ptxas info    : 0 bytes gmem, 132 bytes cmem[3]
ptxas info    : Compiling entry function 'k_combine' for 'sm_80'
ptxas info    : Function properties for k_combine
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 0 barriers, 440 bytes cmem[0]
ptxas info    : Compile time = 72.156 ms
ptxas info    : Compiling entry function 'k' for 'sm_80'
ptxas info    : Function properties for k
    32 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 32 bytes cumulative stack size, 2048 bytes smem, 440 bytes cmem[0]
ptxas info    : Compiling entry function 'k' for 'sm_90'
ptxas info    : Function properties for k
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 178 registers, used 1 barriers
`;

describe('parsePtxasReport', () => {
  const r = parsePtxasReport(SAMPLE);
  test('reads registers, stack, spills, smem and cmem per arch and kernel', () => {
    expect(r['sm_80']!['k_combine']).toEqual({ registers: 40, stackBytes: 0, spillStoreBytes: 0, spillLoadBytes: 0, sharedBytes: 0, constantBytes: 440, barriers: 0 });
    expect(r['sm_80']!['k']).toEqual({ registers: 255, stackBytes: 32, spillStoreBytes: 8, spillLoadBytes: 12, sharedBytes: 2048, constantBytes: 440, barriers: 1 });
    expect(r['sm_90']!['k']).toEqual({ registers: 178, stackBytes: 0, spillStoreBytes: 0, spillLoadBytes: 0, sharedBytes: 0, barriers: 1 });
  });
  test('warns about spills, naming variant, arch and kernel', () => {
    expect(ptxasWarnings('tidar_k16', r)).toEqual(['tidar_k16 (sm_80): k spills 8 bytes stored / 12 loaded with 255 registers']);
  });
  test('empty input gives an empty report', () => {
    expect(parsePtxasReport('')).toEqual({});
  });
  test('picks out the "Potential Performance Loss" lines (nvcc 13.0, the sm_90a attention before its tile 0 was peeled)', () => {
    const c7520 = 'ptxas info    : (C7520) Potential Performance Loss: wgmma.mma_async instructions are serialized due to program dependence on compiler-inserted WG.AR in divergent path in the function \'att\'';
    expect(ptxasPerformanceLosses(SAMPLE)).toEqual([]);
    expect(ptxasPerformanceLosses(SAMPLE + c7520 + '\n')).toEqual(["(C7520) Potential Performance Loss: wgmma.mma_async instructions are serialized due to program dependence on compiler-inserted WG.AR in divergent path in the function 'att'"]);
  });
});

const nvcc = await findNvcc();
describe.skipIf(!nvcc.found)('ptxasOfSource (needs nvcc)', () => {
  test('reads a source named by a path relative to the working directory (nvcc runs in the source directory)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidarc-ptxas-src-'));
    try {
      const source = join(dir, 'k.cu');
      writeFileSync(source, 'extern "C" __global__ void tidarc_test_k(float* x) { x[threadIdx.x] = 1.0f; }\n');
      const report = await ptxasOfSource(nvcc.found ? nvcc.tool.path : '', relative(process.cwd(), source), 'sm_80');
      expect(report['tidarc_test_k']?.registers).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
