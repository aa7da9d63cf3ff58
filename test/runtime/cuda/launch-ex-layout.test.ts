/**
 * cuda_driver_api.h declares cuLaunchKernelEx's structs itself (nothing CUDA is needed to build
 * the addon): CUlaunchConfig, CUlaunchAttribute and CUlaunchAttributeValue must be laid out as
 * the toolkit's cuda.h lays them out, member by member, and the attribute id must be cuda.h's
 * value, or the driver reads the stream, the attribute list or its count from the wrong bytes.
 * Compiles a snippet holding both declarations with g++ -fsyntax-only (skipped without cuda.h).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';

const API_DIR = resolve(__dirname, '../../../runtime/src/cuda');

function cudaInclude(): string | undefined {
  const homes = [process.env['CUDA_HOME'], process.env['CUDA_PATH'], '/usr/local/cuda'];
  if (process.env['NVCC']) homes.push(dirname(dirname(process.env['NVCC'])));
  return homes.filter((h): h is string => !!h).map((h) => join(h, 'include')).find((d) => existsSync(join(d, 'cuda.h')));
}

const SNIPPET = `
#include <cstddef>
#include <cuda.h>
#include "cuda_driver_api.h"
namespace t = tidarc_cuda;
#define SAME_TYPE(T) static_assert(sizeof(t::T) == sizeof(::T) && alignof(t::T) == alignof(::T), #T " size/alignment");
#define SAME(T, f) static_assert(offsetof(t::T, f) == offsetof(::T, f), #T "." #f " offset");
SAME_TYPE(CUlaunchConfig) SAME_TYPE(CUlaunchAttribute) SAME_TYPE(CUlaunchAttributeValue)
SAME(CUlaunchConfig, gridDimX) SAME(CUlaunchConfig, gridDimY) SAME(CUlaunchConfig, gridDimZ)
SAME(CUlaunchConfig, blockDimX) SAME(CUlaunchConfig, blockDimY) SAME(CUlaunchConfig, blockDimZ)
SAME(CUlaunchConfig, sharedMemBytes) SAME(CUlaunchConfig, hStream) SAME(CUlaunchConfig, attrs) SAME(CUlaunchConfig, numAttrs)
SAME(CUlaunchAttribute, id) SAME(CUlaunchAttribute, value)
SAME(CUlaunchAttributeValue, programmaticStreamSerializationAllowed)
static_assert(sizeof(::CUlaunchAttributeID) == sizeof(int), "the attribute id is int-sized");
static_assert(t::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION == static_cast<int>(::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION), "attribute id");
// The symbol the binding resolves has cuda.h's parameters (the CU types are the same pointers).
static_assert(sizeof(decltype(&::cuLaunchKernelEx)) == sizeof(void*), "cuLaunchKernelEx is declared");
inline ::CUresult call(const ::CUlaunchConfig* c, ::CUfunction f, void** p, void** e) { return ::cuLaunchKernelEx(c, f, p, e); }
`;

const include = cudaInclude();

describe('cuLaunchKernelEx structs of cuda_driver_api.h', () => {
  test.skipIf(!include)('match the toolkit cuda.h member by member', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidarc-launch-ex-'));
    try {
      const file = join(dir, 'layout.cc');
      writeFileSync(file, SNIPPET);
      let out = '';
      try {
        execFileSync(process.env['CXX'] || 'g++', ['-std=c++17', '-fsyntax-only', `-I${include}`, `-I${API_DIR}`, file], { stdio: 'pipe' });
      } catch (e) {
        out = String((e as { stderr?: Buffer }).stderr ?? e);
      }
      expect(out).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
