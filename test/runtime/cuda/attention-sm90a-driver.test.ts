/**
 * The sm_90a attention through the runtime on the emulated CUDA driver, whose device reports
 * compute capability 9.0: the AttentionLauncher of a compile for sm_90 + sm_90a takes the
 * variant's sm_90a kernel (the selection rule), encodes the KV cache's tensor maps through the
 * addon, packs TidarcAttentionSm90aArgs and launches the module built from the generated
 * .sm90a.cu; O and lse match the float64 reference (prefill chunk, fp16, head dim 64, G = 4:
 * 2 row tiles of 128 rows; prefixes 130 and 17, NaN in the unused cache tail) at splits 1 and 3
 * (the last CTA merges). In a child process: the addon picks its driver once.
 * Tagged: a C++ compiler.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { describeAttentionSm90a, planAttentionSm90a } from '../../../src/codegen/attention-sm90a.js';
import { prefillChunkVariant } from '../../../src/codegen/variant.js';
import { buildEmulatedAttentionSm90aModules } from '../../../src/emulate/attention-sm90a-modules.js';
import { EMU_TOLERANCE, LSE_TOLERANCE } from '../../../src/emulate/emulate-variant.js';
import { packageRoot } from '../../../src/util/paths.js';
import { sharedEmulatedDriver } from '../../helpers/emulated-driver.js';
import { sm90aRunVariant, writeSm90aAttentionUnit } from '../../emulate/attention-sm90a-emu.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const here = dirname(fileURLToPath(import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'tidarc-attn-sm90a-driver-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface ChildOut { kernel: string; cc: number[]; runs: Record<string, { maxError: number; lseMaxError: number }> }
const plan = planAttentionSm90a(prefillChunkVariant({ dtype: 'fp16', headDim: 64, qHeads: 4, kvHeads: 1 }));

describe.skipIf(!cxx.found)('the sm_90a attention through AttentionLauncher on the emulated driver (a 9.0 device)', () => {
  let out: ChildOut;
  beforeAll(async () => {
    writeSm90aAttentionUnit(root, plan);
    // The variant as a compile for sm_90 + sm_90a describes it: its own kernel (unused here) and the sm_90a one.
    const v = { ...sm90aRunVariant(plan), name: plan.variant.name, symbols: { cuda: plan.variant.symbol, cpu: '' }, sources: { cuda: `cuda/${plan.variant.name}.cu`, cpu: '' }, sm90a: describeAttentionSm90a(plan) };
    const [driver] = await Promise.all([sharedEmulatedDriver(), buildEmulatedAttentionSm90aModules(root, { variants: [v] })]);
    writeFileSync(join(root, 'variant.json'), JSON.stringify(v));
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'attention-sm90a-child.ts'), root, join(root, 'variant.json'), '1,3'], {
      cwd: packageRoot(), env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 64 << 20,
    });
    out = JSON.parse(stdout.trim().split('\n').pop()!) as ChildOut;
  }, 300_000);

  test('the 9.0 device takes the sm_90a kernel', () => {
    expect({ kernel: out.kernel, cc: out.cc }).toEqual({ kernel: plan.symbol, cc: [9, 0] });
  });

  test.for([1, 3])('splits %i: O and lse vs float64', (splits) => {
    const r = out.runs[splits]!;
    expect(r.maxError).toBeLessThanOrEqual(EMU_TOLERANCE.fp16);
    expect(r.lseMaxError).toBeLessThanOrEqual(LSE_TOLERANCE);
  });
});
