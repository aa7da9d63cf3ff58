/**
 * A programmatic launch (PDL) the driver refuses says how to run without PDL: the first run of
 * PDL on a new GPU or driver is where it can fail, and --no-pdl (loadModel pdl: false) is the
 * way around it. On the emulated driver (fixtures/pdl-launch-error-child.ts): the ops module's
 * to_float with a 2048-thread block (CUDA_ERROR_INVALID_VALUE) launched plainly names no PDL;
 * launched programmatically (right after a good launch, where CudaDevice makes it so), alone or
 * inside a capture, its error names --no-pdl. In a child
 * process: the addon picks its driver once per process. Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { packageRoot } from '../../../src/util/paths.js';
import { opsModule } from '../../helpers/ops-module.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-pdl-error-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('a refused programmatic launch on the emulated driver', () => {
  test('names --no-pdl; a refused plain launch does not', async () => {
    const { module, env } = await opsModule(root, 'emulated');
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'pdl-launch-error-child.ts'), module], {
      cwd: packageRoot(), env, maxBuffer: 16 << 20, timeout: 240_000,
    });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as Record<'plain' | 'programmatic' | 'captured' | 'good', string> & { programmaticDriver: boolean };
    expect(out.programmaticDriver).toBe(true);
    expect(out.plain).toMatch(/^CUDA: cannot launch tidarc_op_to_float: .*CUDA_ERROR_INVALID_VALUE/);
    expect(out.plain).not.toMatch(/pdl|programmatic/i);
    for (const m of [out.programmatic, out.captured]) {
      expect(m).toMatch(/^CUDA: cannot launch tidarc_op_to_float programmatically: .*CUDA_ERROR_INVALID_VALUE.*programmatic dependent launch: run again with --no-pdl, or loadModel pdl: false/);
    }
    expect(out.good).toBe('no error');
  }, 300_000);
});
