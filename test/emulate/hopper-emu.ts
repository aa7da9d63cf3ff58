/**
 * Builds and runs test/emulate/fixtures/hopper_main.cpp (the Hopper GEMM tile and one-primitive
 * kernels on the SIMT emulator) for hopper*.test.ts, and the GEMM's float64 reference.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, emulatorIncludeFlags } from '../../src/emulate/emulator-build.js';
import { type DType, decode, encode } from '../../src/util/dtype.js';
import { packageRoot } from '../../src/util/paths.js';
import { seededRandom } from '../../src/util/random.js';

const exec = promisify(execFile);
export const FIXTURES = join(packageRoot(), 'test', 'emulate', 'fixtures');
export const GEMM_KERNEL = join(FIXTURES, 'hopper_gemm_tile.cu');

/** Links the harness with `kernel` (the GEMM tile source, or a mutated copy) into `exe`, race
 *  instrumented (EMU_KERNEL_FLAGS); `gemmOnly` leaves out the one-primitive modes (tma, wgmma),
 *  a third of the build time. */
export async function buildHopperHarness(cxx: string, kernel: string, runtimeObjects: readonly string[], exe: string, gemmOnly = false): Promise<void> {
  await exec(cxx, [
    ...EMU_FLAGS, ...EMU_KERNEL_FLAGS, ...emulatorIncludeFlags(), `-I${join(packageRoot(), 'templates', 'cuda')}`, '-include', 'tidarc_emu.h',
    `-DTIDARC_HOPPER_KERNEL="${kernel}"`, ...(gemmOnly ? ['-DTIDARC_HOPPER_GEMM_ONLY'] : []), '-x', 'c++', join(FIXTURES, 'hopper_main.cpp'), '-x', 'none', ...runtimeObjects, '-o', exe,
  ], { maxBuffer: 64 << 20 });
}

export interface HopperRun {
  readonly out: Buffer;
  readonly completed: boolean;
  /** Findings per kind (every one counted) and the first messages. */
  readonly counts: Record<string, number>;
  readonly messages: string[];
}

/** A Hopper harness's JSON lines: findings per kind, their first messages, and whether the launch completed. */
export function parseHarnessReport(stdout: string): Omit<HopperRun, 'out'> {
  const counts: Record<string, number> = {}, messages: string[] = [];
  let completed = false;
  for (const line of stdout.trim().split('\n')) {
    const rec = JSON.parse(line) as { finding?: string; message?: string; count?: string; n?: number; done?: boolean; completed?: boolean };
    if (rec.count !== undefined) counts[rec.count] = rec.n!;
    if (rec.finding !== undefined) messages.push(`${rec.finding}: ${rec.message}`);
    if (rec.done) completed = rec.completed!;
  }
  return { completed, counts, messages };
}

export async function runHopper(exe: string, args: readonly string[], outPath: string): Promise<HopperRun> {
  const { stdout } = await exec(exe, [...args, outPath], { maxBuffer: 64 << 20 });
  return { out: readFileSync(outPath), ...parseHarnessReport(stdout) };
}

export interface GemmCase {
  readonly kernel: 'bf16_n64' | 'fp16_n128x2';
  readonly dtype: DType;
  readonly m: number;
  readonly n: number;
  readonly k: number;
}

/** Random A [m, k] and B [n, k] in the 16-bit type, written for the harness; the float64
 *  reference A B^T and a rigorous bound for K float32 roundings of the running magnitude. */
export function gemmProblem(c: GemmCase, dir: string, seed: number): { input: string; ref: Float64Array; bound: Float64Array } {
  const rng = seededRandom(seed);
  const a = encode(c.dtype, Array.from({ length: c.m * c.k }, () => rng.normal()));
  const b = encode(c.dtype, Array.from({ length: c.n * c.k }, () => rng.normal()));
  const input = join(dir, `gemm-${c.kernel}.bin`);
  writeFileSync(input, Buffer.concat([Buffer.from(a.buffer), Buffer.from(b.buffer)]));
  const af = decode(c.dtype, a), bf = decode(c.dtype, b);
  const ref = new Float64Array(c.m * c.n), bound = new Float64Array(c.m * c.n);
  for (let r = 0; r < c.m; r++) {
    for (let col = 0; col < c.n; col++) {
      let s = 0, mag = 0;
      for (let i = 0; i < c.k; i++) {
        const t = af[r * c.k + i]! * bf[col * c.k + i]!;
        s += t, mag += Math.abs(t);
      }
      ref[r * c.n + col] = s;
      bound[r * c.n + col] = 1.01 * (c.k + 2) * 2 ** -24 * mag + 1e-30;
    }
  }
  return { input, ref, bound };
}

export function gemmArgs(c: GemmCase, input: string): string[] {
  return ['gemm', c.kernel, String(c.m), String(c.n), String(c.k), input];
}
