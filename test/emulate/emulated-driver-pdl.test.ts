/**
 * cuLaunchKernelEx on the emulated CUDA driver (runtime/emu/fake_cuda.cpp): fixtures/pdl_driver_client.cpp
 * loads libcuda.so.1 as the runtime does and launches fixtures/pdl_kernels.cu's two kernels. With
 * CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1 the launch is programmatic: the kernel
 * that reads its input before grid_dependency_wait fails (CUDA_ERROR_LAUNCH_FAILED, a "pdl"
 * finding on stderr), the one that waits first runs clean; value 0, no attributes, or
 * cuLaunchKernel run the early reader clean. Any other attribute id, a null config or attribute
 * list, a zero grid, `extra` and shared memory past the default without the opt-in are
 * CUDA_ERROR_INVALID_VALUE. Captured into a graph, the launch keeps its flag: the replay of the
 * early reader's programmatic launch fails with its finding, a plain capture of it replays clean.
 * Tagged: g++.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { buildEmulatedModule, emulatedModulePath } from '../../src/emulate/emulated-driver.js';
import { emulatorSourceDir } from '../../src/emulate/emulator-build.js';
import { packageRoot } from '../../src/util/paths.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-driver-pdl-'));
const fixtures = join(packageRoot(), 'test', 'emulate', 'fixtures');
let checks: { check: string; got: number; want: number }[] = [];
/** The driver's stderr lines (findings, failed launches) per case of the client. */
const stderrOf = new Map<string, string[]>();
let done = false, stderrText = '';

afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  if (!cxx.found) return;
  const library = await sharedEmulatedDriver();
  const module = join(root, 'pdl_kernels.fatbin');  // never written: the driver loads its .emu.so
  await buildEmulatedModule(join(fixtures, 'pdl_kernels.cu'), emulatedModulePath(module),
    ['tidarc_test_pdl_early', 'tidarc_test_pdl_waits'].map((name) => ({ name, argsType: 'TidarcAttentionArgs' })));
  const client = join(root, 'pdl_driver_client');
  await exec(cxx.tool.path, ['-std=c++17', '-O1', `-I${join(packageRoot(), 'runtime', 'src', 'cuda')}`, `-I${emulatorSourceDir()}`,
    `-I${join(packageRoot(), 'templates', 'common')}`, join(fixtures, 'pdl_driver_client.cpp'), '-o', client, '-ldl']);
  const { stdout, stderr } = await exec(client, [library, module], { timeout: 120_000 });
  stderrText = stderr;
  const lines = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { check?: string; got: number; want: number; done?: boolean });
  done = lines.at(-1)?.done === true;
  checks = lines.filter((l) => l.check !== undefined) as typeof checks;
  let at = '';
  for (const line of stderr.split('\n').filter((l) => l.startsWith('{'))) {
    const rec = JSON.parse(line) as { case?: string };
    if (rec.case !== undefined) at = rec.case, stderrOf.set(at, []);
    else stderrOf.get(at)?.push(line);
  }
}, 600_000);

type Finding = { finding: string; kernel: string; message: string };
const findingsOf = (name: string): Finding[] => (stderrOf.get(name) ?? []).filter((l) => l.startsWith('{"finding"')).map((l) => JSON.parse(l) as Finding);

describe.skipIf(!cxx.found)('cuLaunchKernelEx on the emulated driver', () => {
  test('every check of the client holds', () => {
    expect(done, stderrText).toBe(true);
    for (const c of checks) expect(c.got, c.check).toBe(c.want);
    expect(checks.length).toBe(25);
  });

  test.for(['pdl-early', 'graph-pdl-early'])('%s: the programmatic launch of the early reader fails with "pdl" findings', (name) => {
    const findings = findingsOf(name);
    expect(findings.length).toBeGreaterThan(0);
    expect(findings.every((f) => f.finding === 'pdl' && f.kernel === 'tidarc_test_pdl_early')).toBe(true);
    expect(findings[0]!.message).toMatch(/^tidarc_test_pdl_early: a plain load of 4 bytes at byte 0 of 'dev#\d+' .* before this thread's grid_dependency_wait, in a programmatic launch/);
    expect(stderrOf.get(name)!.some((l) => l.includes('"failed_launch":"tidarc_test_pdl_early"') && l.includes('"programmatic":true'))).toBe(true);
  });

  test.for(['plain-early', 'pdl-waits', 'refused', 'graph-plain-early', 'graph-pdl-waits'])('%s: the driver prints nothing', (name) => {
    expect(stderrOf.get(name)).toEqual([]);
  });
});
