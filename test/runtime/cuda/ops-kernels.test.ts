/**
 * The GPU operators (templates/cuda/tidarc_ops.cu): on the SIMT emulator against the plain C++
 * references of runtime/emu/ops_check.cpp (one JSON line per check), including the matmul
 * property TiDAR relies on (a row's result does not depend on `rows`), the 16-bit activations
 * the cuda step graph stores for a GEMM (bitwise the rounding of the float32 output; matmul's
 * 16-bit x bitwise its float32 widening), and through nvcc for
 * sm_80 and sm_90 with no spills. Tagged: a C++ compiler; nvcc (skipped where absent).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePtxasReport, type PtxasByArch } from '../../../src/build/ptxas.js';
import { findCxx, findNvcc } from '../../../src/build/toolchain.js';
import { ARCHES } from '../../../src/codegen/arch.js';
import { nvccFlags } from '../../../src/codegen/generate.js';
import { packageRoot } from '../../../src/util/paths.js';
import { compileWith, EMU_FLAGS, EMU_KERNEL_FLAGS, emulatorIncludeFlags, emulatorSourceDir } from '../../../src/emulate/emulator-build.js';
import { sharedEmulatorRuntime } from '../../helpers/emulated-driver.js';

const exec = promisify(execFile);
const cxx = await findCxx();
const nvcc = await findNvcc();
const root = packageRoot();
const OPS_SOURCE = join(root, 'templates', 'cuda', 'tidarc_ops.cu');
/** One kernel per struct of tidarc_ops_abi.h: tidarc_op_<name>. */
const OPS = ['embed', 'rmsnorm', 'matmul', 'silu_mul', 'gelu', 'rope_pack', 'to_float', 'kv_commit', 'row_stats'] as const;
/** And the sampling and decode-step tail kernels, which test/runtime/cuda/gpu-sampling.test.ts checks. */
const COMPILED_OPS = [...OPS, 'sample', 'accept', 'verify', 'draft_rows', 'next_drafts', 'kv_commit_layers', 'abi_version'] as const;
/** Kernels allowed a stack frame, and why (it is not a spill). */
const STACK_FRAME_REASON: Partial<Record<(typeof COMPILED_OPS)[number], string>> = {
  rope_pack: 'double cos/sin of a large angle reduce it (Payne-Hanek) through a small local array',
};

interface Check {
  readonly op: string;
  readonly case: string;
  readonly maxError: number;
  readonly ok: boolean;
  readonly mismatches?: number;
}
const checks: Check[] = [];
const findings: unknown[] = [];
let exitCode: number | string | undefined;
const dir = mkdtempSync(join(tmpdir(), 'tidarc-ops-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!cxx.found)('GPU operators on the emulator', () => {
  beforeAll(async () => {
    if (!cxx.found) return;
    const emu = emulatorSourceDir();
    const runtime = await sharedEmulatorRuntime();
    const exe = join(dir, 'ops_check');
    await compileWith(cxx.tool.path, [
      ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${join(root, 'templates', 'cuda')}`,
      '-include', 'tidarc_emu.h', '-x', 'c++', OPS_SOURCE, join(emu, 'ops_check.cpp'), '-x', 'none', ...runtime, '-o', exe,
    ], 'the GPU operators and ops_check.cpp');
    let stdout: string;
    try {
      ({ stdout } = await exec(exe, [], { maxBuffer: 64 << 20 }));
      exitCode = 0;
    } catch (e) {
      // Exit 1: a check failed or the emulator found something; 70: a fault. The lines say which.
      const err = e as { stdout?: string; code?: number | string };
      stdout = err.stdout ?? '';
      exitCode = err.code;
    }
    for (const line of stdout.trim().split('\n').filter(Boolean)) {
      const rec = JSON.parse(line) as Record<string, unknown>;
      if (typeof rec['op'] === 'string') checks.push(rec as unknown as Check);
      else findings.push(rec);
    }
  }, 600_000);

  test.for(OPS)('%s matches the C++ reference on every case', (op) => {
    const mine = checks.filter((c) => c.op === op);
    expect(mine.length, `checks of ${op}`).toBeGreaterThan(0);
    for (const c of mine) expect(c.ok, `${op} ${c.case}: maxError ${c.maxError}`).toBe(true);
  });

  test('matmul: a row computed alone equals the same row inside 17 rows, bit for bit', () => {
    const property = checks.filter((c) => c.op === 'matmul' && c.case.startsWith('row-independence'));
    expect(property.length).toBeGreaterThanOrEqual(4);
    for (const c of property) expect(c.mismatches, c.case).toBe(0);
  });

  test('matmul: every output equals one fma chain in k order, then bias, then the old out', () => {
    for (const c of checks.filter((c) => c.op === 'matmul')) expect(c.mismatches, c.case).toBe(0);
  });

  test('16-bit activations: rmsnorm, silu_mul, gelu store exactly round(float32 out); matmul reads 16-bit x as its float32 widening', () => {
    const sixteen = checks.filter((c) => / == round\(out float32\)| == x float32 of the same values/.test(c.case));
    expect(sixteen.map((c) => `${c.op} ${c.case}`).sort()).toEqual([
      ...['gelu count 1000', 'rmsnorm rows 3, cols 130, bf16 weight', 'silu_mul count 1000'].flatMap((n) => ['bf16', 'fp16'].map((f) => `${n}, out ${f} == round(out float32)`)),
      ...['bf16', 'fp16'].map((f) => `matmul x ${f} == x float32 of the same values, rows 17, n 70, k 130, bias, row_ids`),
    ].sort());
    for (const c of sixteen) expect(c.mismatches, c.case).toBe(0);
  });

  test('every check passed, no emulator findings, exit code 0', () => {
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(findings.filter((f) => (f as { finding?: string }).finding !== undefined || (f as { fatal?: boolean }).fatal)).toEqual([]);
    expect(exitCode).toBe(0);
  });
});

describe.skipIf(!nvcc.found)('GPU operators through nvcc sm_80 + sm_90', () => {
  let report: PtxasByArch = {};
  beforeAll(async () => {
    if (!nvcc.found) return;
    const { stderr } = await exec(nvcc.tool.path, [...nvccFlags([ARCHES.sm_80, ARCHES.sm_90]), '-o', join(dir, 'tidarc_ops.fatbin'), OPS_SOURCE], {
      maxBuffer: 64 << 20,
    });
    report = parsePtxasReport(stderr);
  }, 600_000);

  test.for(COMPILED_OPS)('tidarc_op_%s compiles without spills', (op) => {
    for (const arch of ['sm_80', 'sm_90']) {
      const r = report[arch]?.[`tidarc_op_${op}`];
      expect(r, `${arch} tidarc_op_${op}`).toBeDefined();
      expect(r!.spillStoreBytes + r!.spillLoadBytes, `${arch} tidarc_op_${op} spills`).toBe(0);
      if (STACK_FRAME_REASON[op] === undefined) expect(r!.stackBytes, `${arch} tidarc_op_${op} stack`).toBe(0);
      expect(r!.registers).toBeLessThanOrEqual(255);
    }
  });
});
