/**
 * The emulated CUDA driver (runtime/emu/fake_cuda.cpp, src/emulate/emulated-driver.ts) seen
 * by a real client: fixtures/driver_client.cpp loads libcuda.so.1 as the runtime does
 * (dlopen RTLD_NOW | RTLD_LOCAL, dlsym of every name of cuda_driver_api.h) and runs a compiled
 * examples/tiny.json attention variant through the driver API; its output is checked against
 * the float64 reference by the same code as `tidarc emulate`. Then the driver's error
 * behaviour: calls before cuInit, missing modules and functions, shared-memory limits, an
 * out-of-bounds and a deadlocked launch (sticky CUDA_ERROR_LAUNCH_FAILED with findings),
 * shared memory (thread_local) across the driver and its modules on two OS threads.
 * Tagged: g++.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { findCxx } from '../../src/build/toolchain.js';
import type { ManifestVariant } from '../../src/codegen/manifest.js';
import { packageRoot } from '../../src/util/paths.js';
import { type EmulatedVariantModule, buildEmulatedModule, emulateCompiledDir, emulatedModulePath, emulatedModuleShim } from '../../src/emulate/emulated-driver.js';
import { emulateVariant } from '../../src/emulate/emulate-variant.js';
import { emulatorSourceDir } from '../../src/emulate/emulator-build.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { readManifest } from '../../src/runtime/kernel-library.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';
import { harnessArgv } from '../../src/emulate/harness-protocol.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-driver-'));
const fixtures = join(packageRoot(), 'test', 'emulate', 'fixtures');
const VARIANT = 'tidar_k2';
const seconds: Record<string, number> = {};
let library: string, module: EmulatedVariantModule, variant: ManifestVariant, client: string, testModule: string;

async function timed<T>(what: string, job: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await job();
  seconds[what] = (performance.now() - t0) / 1000;
  return result;
}

/** The client with the driver and module fixed: what `emulateVariant` runs as a harness. */
function harnessScript(kernel: string): string {
  const path = join(root, `client-${kernel}.sh`);
  writeFileSync(path, `#!/bin/sh\nexec '${client}' --lib '${library}' --module '${module.module}' --kernel ${kernel} "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

beforeAll(async () => {
  if (!cxx.found) return;
  const kernels = join(root, 'tiny');
  const spec = await loadModelSpecFile(join(packageRoot(), 'examples', 'tiny.json'));
  await timed('compile tiny', () => compileModel({ spec, arches: ['sm_90'], outDir: kernels, build: 'none', log: () => undefined }));
  variant = readManifest(kernels).variants.find((v) => v.name === VARIANT)!;
  library = await timed('driver', sharedEmulatedDriver);
  module = (await timed('module', () => emulateCompiledDir(kernels, { variants: [VARIANT], jobs: 1 })))[0]!;
  testModule = join(root, 'driver_kernels.fatbin');  // never written: the driver loads its .emu.so
  await timed('test module', () => buildEmulatedModule(join(fixtures, 'driver_kernels.cu'), emulatedModulePath(testModule),
    [{ name: 'tidarc_test_shared', argsType: 'TidarcAttentionArgs' }, { name: 'tidarc_test_deadlock', argsType: 'TidarcAttentionArgs' }]));
  client = join(root, 'driver_client');
  await timed('client', () => exec(cxx.tool.path, ['-std=c++17', '-O1', `-I${join(packageRoot(), 'runtime', 'src', 'cuda')}`, `-I${emulatorSourceDir()}`,
    `-I${join(packageRoot(), 'templates', 'common')}`, join(fixtures, 'driver_client.cpp'), '-o', client, '-ldl', '-pthread']));
}, 300_000);

afterAll(() => {
  console.log(`emulated driver: ${Object.entries(seconds).map(([k, s]) => `${k} ${s.toFixed(1)} s`).join(', ')}`);
  rmSync(root, { recursive: true, force: true });
});

describe('emulated driver helpers (pure)', () => {
  test('a module path maps to its .emu.so as fake_cuda.cpp does', () => {
    expect(emulatedModulePath('/m/cuda/ar.fatbin')).toBe('/m/cuda/ar.emu.so');
    expect(emulatedModulePath('/m.v2/cuda/ar')).toBe('/m.v2/cuda/ar.emu.so');
  });
  test('the shim declares each kernel and calls it with its struct', () => {
    const shim = emulatedModuleShim([{ name: 'k_b', argsType: 'TidarcAttentionArgs' }, { name: 'k_a', argsType: 'TidarcMatmulArgs' }]);
    expect(shim).toContain('extern "C" void k_a__emu_entry(void* param) { k_a(*static_cast<const TidarcMatmulArgs*>(param)); }');
    expect(shim.indexOf('k_a__emu_entry')).toBeLessThan(shim.indexOf('k_b__emu_entry'));
    expect(() => emulatedModuleShim([{ name: 'bad name', argsType: 'T' }])).toThrow(/not a C identifier/);
    expect(() => emulatedModuleShim([])).toThrow(/at least one kernel/);
  });
});

describe.skipIf(!cxx.found)('a driver API client on the emulated driver', () => {
  test.for([1, 3])('%s split(s): the attention kernel through the driver == the float64 reference', async (splits) => {
    const report = await emulateVariant(harnessScript(variant.symbols.cuda), variant, { batch: 2, prefixLen: [37, 5], splits, seed: 7 + splits }, root);
    expect(report.completed).toBe(true);
    expect(report.maxError).toBeLessThanOrEqual(report.tolerance);
    expect(report.lseMaxError).toBeLessThan(2e-3);
  });

  test('error behaviour, sticky launch failures, shared memory across objects and threads', async () => {
    // Zeros will do: the checks look at results codes and findings, not at values.
    const { steps, shape: { qHeads, kvHeads, headDim } } = variant, batch = 2, capacity = 42;
    const inputs = join(root, 'checks.in');
    // The protocol's input file: q, the caches and the step K/V (zeros), then prefix_len.
    const zeros = new Uint8Array(2 * headDim * batch * (steps * qHeads + 2 * kvHeads * capacity + 2 * steps * kvHeads));
    writeFileSync(inputs, Buffer.concat([zeros, new Uint8Array(Int32Array.from([37, 5]).buffer)]));
    const h = harnessArgv({ variant, batch, cacheCapacity: capacity, splits: 1, inPath: inputs, outPath: join(root, 'checks.out') });
    const { stdout, stderr } = await timed('checks', () => exec(client, ['--lib', library, '--module', module.module, '--kernel', variant.symbols.cuda, '--checks', '--test-module', testModule, ...h]));
    const lines = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { check?: string; got: unknown; want: unknown; done?: boolean });
    expect(lines.at(-1)?.done, stderr).toBe(true);
    const checks = lines.filter((l) => l.check !== undefined);
    for (const c of checks) expect(c.got, c.check).toEqual(c.want);
    expect(checks.map((c) => c.check)).toEqual(expect.arrayContaining([
      'cuMemAlloc before cuInit', 'cuModuleLoad of a missing module', 'cuModuleGetFunction of an unknown name', 'launch with 48 KB + 1 of shared memory',
      'out-of-bounds launch', 'cuMemAlloc after the failure', 'deadlocked launch', 'other thread: wrong shared-memory values', 'main thread: smem_raw offset seen by the driver',
    ]));
    const findings = stderr.split('\n').filter((l) => l.startsWith('{"finding"')).map((l) => JSON.parse(l) as { finding: string; kernel: string; message: string });
    expect(findings.find((f) => f.finding === 'out-of-bounds' && f.kernel === variant.symbols.cuda)?.message).toMatch(/past the end of 'dev#\d+'/);
    expect(findings.find((f) => f.finding === 'barrier')?.kernel).toBe('tidarc_test_deadlock');
  });

  test('the driver library is rebuilt only when its inputs change', async () => {
    const before = statSync(library).mtimeMs;
    expect(await sharedEmulatedDriver()).toBe(library);
    expect(statSync(library).mtimeMs).toBe(before);
  });
});
