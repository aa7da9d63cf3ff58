// A kernel cache's entries share the emulated modules they build from the same sources
// (src/emulate/shared-modules.ts): an entry publishes what it built, and another entry whose .cu
// and included headers hash the same copies it in instead of building it; another source, header,
// emulator key or an unrelated header do what they should. Needs nothing (no g++: the libraries
// here are stand-in bytes); test/runtime/cuda/emulated-backend.test.ts builds real ones.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { adoptSharedModules, publishSharedModules, sharedModulePath, sourceInputs } from '../../src/emulate/shared-modules.js';
import { scratchDir } from '../helpers/scratch.js';

async function kernelsDir(files: Record<string, string>): Promise<string> {
  const dir = await scratchDir('tidarc-emu-shared-');
  mkdirSync(join(dir, 'cuda'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, 'cuda', name), text);
  return dir;
}

const SOURCES = {
  'tidar_k2.cu': '#include "tidarc_attention.cuh"\n// k2, tile w4-n64\n', 'ar.cu': '#include "tidarc_attention.cuh"\n// ar\n',
  'gemm_bf16_n128_k256.cu': '#include "tidarc_gemm.cuh"\n// gemm\n', 'tidarc_ops.cu': '// the operators: shared on their own\n',
  'tidarc_attention.cuh': '#include "tidarc_device.cuh"\n// attention\n', 'tidarc_gemm.cuh': '// gemm\n', 'tidarc_device.cuh': '// device\n',
};

test('an entry takes the modules another entry built from the same sources, and builds the rest', async () => {
  const built = await kernelsDir(SOURCES);
  for (const m of ['tidar_k2', 'ar', 'gemm_bf16_n128_k256', 'tidarc_ops']) writeFileSync(join(built, 'cuda', `${m}.emu.so`), `library ${m}`);
  const shared = join(built, 'shared');
  expect(await publishSharedModules(built, shared, 'k1')).toEqual(['ar.cu', 'gemm_bf16_n128_k256.cu', 'tidar_k2.cu']);
  expect(await publishSharedModules(built, shared, 'k1')).toEqual([]);  // held already

  // A tuned entry: tidar_k2's tile changed, and the gemm's header; ar and the operators did not.
  const tuned = await kernelsDir({ ...SOURCES, 'tidar_k2.cu': '#include "tidarc_attention.cuh"\n// k2, tile w2-n32\n', 'tidarc_gemm.cuh': '// gemm, edited\n', 'tidarc_hopper.cuh': '// unrelated\n' });
  expect(await adoptSharedModules(tuned, shared, 'k1')).toEqual(['ar.cu']);
  expect(readFileSync(join(tuned, 'cuda', 'ar.emu.so'), 'utf8')).toBe('library ar');
  for (const m of ['tidar_k2', 'gemm_bf16_n128_k256', 'tidarc_ops']) expect(existsSync(join(tuned, 'cuda', `${m}.emu.so`)), m).toBe(false);
  // Another emulator key (its headers, compiler or flags changed): nothing is taken.
  expect(await adoptSharedModules(await kernelsDir(SOURCES), shared, 'k2')).toEqual([]);
  // A module already there is kept as it is.
  const own = await kernelsDir(SOURCES);
  writeFileSync(join(own, 'cuda', 'ar.emu.so'), 'its own');
  expect(await adoptSharedModules(own, shared, 'k1')).toEqual(['gemm_bf16_n128_k256.cu', 'tidar_k2.cu']);
  expect(readFileSync(join(own, 'cuda', 'ar.emu.so'), 'utf8')).toBe('its own');
});

test('a module\'s key covers its source and the headers it includes, directly or not; no other header', async () => {
  const a = await kernelsDir(SOURCES);
  const cuda = join(a, 'cuda');
  expect(await sourceInputs(cuda, 'tidar_k2.cu')).toEqual(['tidar_k2.cu', 'tidarc_attention.cuh', 'tidarc_device.cuh']);
  const path = await sharedModulePath(cuda, 'tidar_k2.cu', '/s', 'k1');
  expect(path).toMatch(/^\/s\/emulated-modules\/tidar_k2-[0-9a-f]{16}\.emu\.so$/);
  const other = await kernelsDir({ ...SOURCES, 'tidarc_gemm.cuh': '// edited\n', 'tidarc_hopper.cuh': '// new\n' });
  expect(await sharedModulePath(join(other, 'cuda'), 'tidar_k2.cu', '/s', 'k1')).toBe(path);
  const deeper = await kernelsDir({ ...SOURCES, 'tidarc_device.cuh': '// device, edited\n' });
  expect(await sharedModulePath(join(deeper, 'cuda'), 'tidar_k2.cu', '/s', 'k1')).not.toBe(path);
  expect(await sharedModulePath(cuda, 'ar.cu', '/s', 'k1')).not.toBe(path.replace('tidar_k2', 'ar'));
});
