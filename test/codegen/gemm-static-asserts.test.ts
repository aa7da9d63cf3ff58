/**
 * tidarc_gemm.cuh refuses at compile time what the planner refuses (gemm-plan.ts): a unit with
 * row statistics (the lm_head) whose kernel is 64 columns wide does not compile, and the error
 * says why (row statistics are per 128-column tile); the same unit with a 128-column kernel
 * does, so the check can pass. g++ checks the syntax of the unchanged source on the emulator's
 * headers (one small call each, no code generated). Tagged: g++.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../src/build/toolchain.js';
import { GEMM_NARROW_BLOCK_N, type GemmShape, type GemmTile, gemmTarget, planGemm, planReduction } from '../../src/codegen/gemm-plan.js';
import { renderGemmUnit } from '../../src/codegen/gemm-source.js';
import { readTemplateFile } from '../../src/codegen/templates.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, emulatorIncludeFlags } from '../../src/emulate/emulator-build.js';
import { GEMM_HEADERS } from '../helpers/gemm.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-gemm-asserts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SHAPE: GemmShape = { n: 200, k: 256, dtype: 'bf16' };

/** g++'s diagnostics for the lm_head unit with one kernel of `tile` ('' when it compiles). */
async function compileLmHead(cxxPath: string, tile: GemmTile): Promise<string> {
  const target = gemmTarget(['sm_90']);
  // Planned without the rowStats option, as a tuned record or a planner bug could: the planner would refuse the narrow tile.
  const plan = planGemm(SHAPE, 16, target, planReduction(SHAPE, target, 1), tile);
  const source = join(dir, `lm_head_${tile.blockN ?? 128}.cu`);
  for (const h of GEMM_HEADERS) writeFileSync(join(dir, h), readTemplateFile(`cuda/${h}`));
  writeFileSync(source, renderGemmUnit(SHAPE, [plan], ['lm_head'], 'test'));
  try {
    await exec(cxxPath, [...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${dir}`, '-include', 'tidarc_emu.h', '-fsyntax-only', '-x', 'c++', source], { maxBuffer: 16 << 20 });
    return '';
  } catch (e) {
    return (e as { stderr?: string }).stderr ?? String(e);
  }
}

describe.skipIf(!cxx.found)('tidarc_gemm.cuh static_asserts', () => {
  if (!cxx.found) return;
  test('a 64-column kernel in a unit with row statistics does not compile, and says why; a 128-column one does', async () => {
    const [narrow, wide] = await Promise.all([compileLmHead(cxx.tool.path, { blockM: 32, warpsM: 2, stages: 3, blockN: GEMM_NARROW_BLOCK_N }), compileLmHead(cxx.tool.path, { blockM: 16, warpsM: 1, stages: 3 })]);
    expect(narrow).toMatch(/static assertion failed: row statistics are per 128-column tile/);
    expect(wide).toBe('');
  }, 60_000);
});
