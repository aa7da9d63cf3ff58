// emulateDirectory links the emulator runtime objects it is given (runtimeObjects) instead of
// compiling its own (a g++ run per source, per call): a caller that emulates several directories
// (test/emulate/kernels.test.ts, a directory per shape) builds them once. Tagged: g++.
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import { emulateDirectory } from '../../src/emulate/emulate-dir.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { modelForShape } from '../helpers/models.js';
import { scratchDir } from '../helpers/scratch.js';

const cxx = await findCxx();

test.skipIf(!cxx.found)('the given runtime objects are the ones linked', async () => {
  const dir = join(await scratchDir('tidarc-emu-dir-runtime-'), 'tiny');
  await compileModel({ spec: modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 1 }, []), arches: ['sm_80'], outDir: dir, build: 'none', log: () => undefined });
  const options = { variants: ['ar'], batch: 1, prefix: [5], splits: [1], seed: 1, log: () => undefined };
  await expect(emulateDirectory(dir, { ...options, runtimeObjects: ['/nonexistent/emu_runtime.o'] })).rejects.toThrow(/\/nonexistent\/emu_runtime\.o/);
  const [row] = await emulateDirectory(dir, { ...options, runtimeObjects: await sharedEmulatorRuntime() });
  expect(row!.completed).toBe(true);
  expect(row!.maxError).toBeLessThanOrEqual(row!.tolerance);
}, 300_000);
