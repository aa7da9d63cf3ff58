/**
 * GpuOps reads the ops module's TIDARC_OPS_ABI_VERSION (tidarc_op_abi_version) before it
 * launches anything, and refuses a module of another version, or one without the kernel (built
 * before ABI 4), in one line naming the file, the version found and the one expected: a kernel
 * cache built from other templates otherwise read its structs at other offsets (an
 * out-of-bounds in tidarc_op_verify). On the emulated driver, with two one-kernel modules
 * beside the shared ops module. Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { buildEmulatedModule, emulatedModulePath } from '../../../src/emulate/emulated-driver.js';
import { TidarcError } from '../../../src/errors.js';
import { checkOpsAbi } from '../../../src/runtime/cuda/gpu-ops.js';
import { OPS_ABI_VERSION } from '../../../src/runtime/cuda/op-abi.js';
import { packageRoot } from '../../../src/util/paths.js';
import { opsModule } from '../../helpers/ops-module.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-ops-abi-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('checkOpsAbi', () => {
  test('takes this runtime\'s version and refuses another in one line naming the file, what it found and what is allowed', () => {
    expect(() => checkOpsAbi('/k/tidarc_ops.fatbin', OPS_ABI_VERSION)).not.toThrow();
    for (const [found, shown] of [[OPS_ABI_VERSION - 1, String(OPS_ABI_VERSION - 1)], [undefined, 'none']] as const) {
      let err: unknown;
      try {
        checkOpsAbi('/k/tidarc_ops.fatbin', found);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TidarcError);
      const message = (err as Error).message;
      expect(message).not.toContain('\n');
      expect(message).toMatch(new RegExp(`^/k/tidarc_ops\\.fatbin: .*\\(TIDARC_OPS_ABI_VERSION = ${shown}.*\\); allowed: ${OPS_ABI_VERSION}$`));
    }
  });
});

describe.skipIf(!cxx.found)('GpuOps on the emulated driver', () => {
  let out: Record<string, string>;
  let modules: { current: string; old: string; without: string };
  beforeAll(async () => {
    if (!cxx.found) return;
    const { module: current, env } = await opsModule(root, 'emulated');
    // Modules of other templates: one whose tidarc_op_abi_version says 3, one with no such kernel.
    const sources = {
      old: 'extern "C" __global__ void tidarc_op_abi_version(TidarcAbiVersionArgs a) { if (threadIdx.x == 0) a.out[0] = 3; }\n',
      without: 'extern "C" __global__ void tidarc_op_other(TidarcAbiVersionArgs a) { if (threadIdx.x == 0) a.out[0] = 0; }\n',
    };
    const built = await Promise.all(Object.entries(sources).map(async ([name, body]) => {
      const cu = join(root, `${name}.cu`), module = join(root, `${name}.fatbin`);
      writeFileSync(cu, `#include "tidarc_ops_abi.h"\n${body}`);
      const kernel = body.match(/void (\w+)\(/)![1]!;
      await buildEmulatedModule(cu, emulatedModulePath(module), [{ name: kernel, argsType: 'TidarcAbiVersionArgs' }]);
      return module;
    }));
    modules = { current, old: built[0]!, without: built[1]! };
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'ops-abi-child.ts'), current, modules.old, modules.without], {
      cwd: packageRoot(), env, maxBuffer: 16 << 20, timeout: 300_000,
    });
    out = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, string>;
  }, 600_000);

  test('the ops module of these templates loads', () => {
    expect(out[modules.current]).toBe('ok');
  });
  test('a module whose tidarc_op_abi_version says 3 is refused, naming the file, 3 and the version expected', () => {
    expect(out[modules.old]).toBe(`${modules.old}: the GPU operators module was built for another ops ABI; rebuild it (tidarc compile, or clear the kernel cache) (TIDARC_OPS_ABI_VERSION = 3); allowed: ${OPS_ABI_VERSION}`);
  });
  test('a module without tidarc_op_abi_version is refused as older than 4', () => {
    expect(out[modules.without]).toMatch(new RegExp(`^${modules.without.replace(/[.]/g, '\\.')}: .*\\(TIDARC_OPS_ABI_VERSION = none \\(no tidarc_op_abi_version: older than 4\\)\\); allowed: ${OPS_ABI_VERSION}$`));
  });
});
