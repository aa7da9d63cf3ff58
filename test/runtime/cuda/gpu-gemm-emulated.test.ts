/**
 * The mma.sync GEMMs through the runtime (src/runtime/cuda/gpu-gemm.ts) on the emulated CUDA
 * driver at split-K 3 (bf16 197 x 1032: a partial N tile, 17 k tiles in parts of 6, 6 and 5),
 * whose parts are summed inside the one launch on arrival counters the launcher zeroes once:
 * bias and residual add at M = 1 and 20 against float64, the rows of M = 1 bitwise those of
 * M = 20, and the M = 20 launch captured into a CUDA graph and replayed twice giving the direct
 * launch's bits each time (a counter a launch left nonzero would leave the next replay's output
 * unsummed). In a child process: the addon picks its driver once. Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { describeGemms } from '../../../src/codegen/gemm-manifest.js';
import { gemmUnitName } from '../../../src/codegen/gemm-plan.js';
import { buildEmulatedModule, emulatedModulePath } from '../../../src/emulate/emulated-driver.js';
import { encode } from '../../../src/util/dtype.js';
import { packageRoot } from '../../../src/util/paths.js';
import { randomGemmProblem, referenceGemm, worstRatio, writeGemmUnit } from '../../helpers/gemm.js';
import { sharedEmulatedDriver } from '../../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-gpu-gemm-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SHAPE = { n: 197, k: 1032, dtype: 'bf16' as const };
const MS = [1, 20];
const SPLIT = 3;
const problem = randomGemmProblem(SHAPE, Math.max(...MS), 31);

describe.skipIf(!cxx.found)('GpuGemms at split-K 3 on the emulated driver', () => {
  let out: { runs: Record<string, string>; replays: string[] };
  beforeAll(async () => {
    const { source, cudaDir, plans } = writeGemmUnit(root, SHAPE, MS, SPLIT, ['qkv']);
    const entries = describeGemms([{ name: gemmUnitName(SHAPE), shape: SHAPE, roles: ['qkv'], reduction: plans[0]!.reduction, plans }]);
    const [driver] = await Promise.all([
      sharedEmulatedDriver(),
      buildEmulatedModule(source, emulatedModulePath(source.replace(/\.cu$/, '.fatbin')), entries.map((e) => ({ name: e.kernel, argsType: 'TidarcGemmArgs' })), { includeDirs: [cudaDir] }),
    ]);
    writeFileSync(join(root, 'entries.json'), JSON.stringify(entries));
    const x = encode(SHAPE.dtype, problem.x);
    writeFileSync(join(root, 'input.bin'), Buffer.concat([x, problem.w, problem.bias, problem.old].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))));
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'gpu-gemm-child.ts'), root, join(root, 'entries.json'), join(root, 'input.bin'), MS.join(',')], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 64 << 20,
    });
    out = JSON.parse(stdout.trim().split('\n').pop()!) as typeof out;
  }, 300_000);

  const floats = (b64: string) => {
    const b = Buffer.from(b64, 'base64');
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  };

  test.for(MS.map((m) => [m] as const))('M = %i: bias and residual vs float64', ([m]) => {
    const { ref, bound } = referenceGemm(SHAPE, problem, m, SPLIT, { bias: true, accumulate: true });
    expect(worstRatio(floats(out.runs[m]!), ref, bound)).toBeLessThanOrEqual(1);
  });

  test('row 0 bitwise the same at M = 1 and 20', () => {
    // One decode per array: a small base64 decode lives in Node's shared pool, and a second decode
    // of the same text may land elsewhere in it (its byteOffset is not the first's).
    const row0 = (m: number) => { const f = floats(out.runs[m]!); return new Uint32Array(f.buffer, f.byteOffset, SHAPE.n); };
    expect(row0(20)).toEqual(row0(1));
  });

  test('a captured launch replayed twice: each replay bitwise the direct launch', () => {
    expect(out.replays).toHaveLength(2);
    for (const r of out.replays) expect(r).toBe(out.runs[20]);
  });
});
