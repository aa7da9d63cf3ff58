// The kernel cache's entries share one emulated GPU operators' module (g++ takes seconds over
// tidarc_ops.cu): its directory is named by what its build reads, the operators' sources (the .cu
// and the headers beside it that it includes), not the model's own units. Needs nothing; the build itself is
// covered by test/runtime/cuda/emulated-backend.test.ts (two entries, one module).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { sharedOpsDir } from '../../src/emulate/emulated-modules.js';
import { scratchDir } from '../helpers/scratch.js';

async function kernelsDir(files: Record<string, string>): Promise<string> {
  const dir = await scratchDir('tidarc-emu-ops-');
  mkdirSync(join(dir, 'cuda'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, 'cuda', name), text);
  return dir;
}

test('entries with the same operator sources share a directory; a changed header, another emulator key or cache do not', async () => {
  const ops = { 'tidarc_ops.cu': '#include "tidarc_ops_abi.h"\n', 'tidarc_ops_abi.h': 'struct A {};\n', 'tidarc_device.cuh': '// device\n' };
  // Two models: their own units (variants, GEMMs) and modules differ, the operators' sources do not.
  const a = await kernelsDir({ ...ops, 'tidar_k2.cu': '// model a\n', 'ar.emu.so': 'a' });
  const b = await kernelsDir({ ...ops, 'tidar_k2.cu': '// model b\n', 'gemm_bf16_n256_k128.cu': '// b\n' });
  const shared = join(a, 'shared');
  const dirA = await sharedOpsDir(a, shared, 'k1');
  expect(dirA).toMatch(new RegExp(`^${shared.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/emulated-ops-[0-9a-f]{16}$`));
  expect(await sharedOpsDir(b, shared, 'k1')).toBe(dirA);
  expect(await sharedOpsDir(a, shared, 'k2')).not.toBe(dirA);
  expect(await sharedOpsDir(a, join(b, 'shared'), 'k1')).toBe(join(b, 'shared', dirA.split('/').pop()!));
  const c = await kernelsDir({ ...ops, 'tidarc_ops_abi.h': 'struct A { int x; };\n' });
  expect(await sharedOpsDir(c, shared, 'k1')).not.toBe(dirA);
  const d = await kernelsDir({ ...ops, 'tidarc_ops.cu': '#include "tidarc_ops_abi.h"\n// edited\n' });
  expect(await sharedOpsDir(d, shared, 'k1')).not.toBe(dirA);
});

test('headers the operators do not include (an sm_90a entry\'s Hopper headers, another device header) leave the directory as it is; one included through another header does not', async () => {
  const ops = { 'tidarc_ops.cu': '#include <stdint.h>\n  #  include "tidarc_ops_abi.h" // the ABI\n', 'tidarc_ops_abi.h': '#include "tidarc_abi_base.h"\n', 'tidarc_abi_base.h': 'struct B {};\n' };
  const plain = await kernelsDir({ ...ops, 'tidarc_device.cuh': '// device\n' });
  const hopper = await kernelsDir({ ...ops, 'tidarc_device.cuh': '// device, edited\n', 'tidarc_hopper.cuh': '// wgmma\n', 'tidarc_attention_sm90a_abi.h': 'struct S {};\n' });
  const shared = join(plain, 'shared');
  expect(await sharedOpsDir(hopper, shared, 'k1')).toBe(await sharedOpsDir(plain, shared, 'k1'));
  const nested = await kernelsDir({ ...ops, 'tidarc_abi_base.h': 'struct B { int y; };\n' });
  expect(await sharedOpsDir(nested, shared, 'k1')).not.toBe(await sharedOpsDir(plain, shared, 'k1'));
});
