/**
 * A Qwen3-style model's q/k head norms on both backends: the CPU runs the base graph's headNorm
 * ops (ops.rmsnormHeads), the cuda backend (emulated driver) runs them inside rope_pack
 * (src/ir/step-rewrite.ts fuseHeadNorms). Random bf16 weights with norm weights far from 1
 * (initModel's are all 1, which would hide a dropped or misplaced norm weight), a 5-token prefill
 * and an AR step: every row's logits agree within 2^-6 of the logits' scale (the cuda backend's
 * linears read bf16-rounded inputs, the CPU's float32: the same bound as toy-family.test.ts and
 * the cuda cache check) and pick the same token. Dropping rope_pack's norm weight multiply, or
 * taking the other head kind's weight, moves the logits by far more (see the report of the
 * change that added this test). Needs: a C++ compiler (the CPU kernels, the emulated driver).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { expectedTensors } from '../../../src/model/checkpoint.js';
import { type Tensor, serializeSafetensors } from '../../../src/model/safetensors.js';
import { toBf16Bits } from '../../../src/util/dtype.js';
import { seededRandom } from '../../../src/util/random.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { smallSpec } from '../../helpers/random-model.js';

const exec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-qk-norm-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** emulated-backend.test.ts's spec (qwen3, qk-norm): its emulated kernels are in the shared cache. */
const SPEC = smallSpec('cudasmall', [2]);
const PROMPT = [3, 141, 59, 26, 5];

function writeCheckpoint(dir: string): void {
  const rng = seededRandom(29);
  const tensors: Record<string, Tensor> = {};
  for (const t of expectedTensors(SPEC)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const values = Float64Array.from({ length: n }, () => (t.role === 'norm' ? 1 + 0.4 * rng.normal() : 0.1 * rng.normal()));
    tensors[t.name] = { dtype: 'BF16', shape: t.shape, data: toBf16Bits(values) };
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.safetensors'), serializeSafetensors(tensors));
}

async function runChild(backend: 'cpu' | 'cuda', checkpoint: string, env: NodeJS.ProcessEnv): Promise<{ prefill: number[][]; step: number[] }> {
  const args = [join(here, 'fixtures', 'backend-logits-child.ts'), checkpoint, await sharedKernelCache(), backend, PROMPT.join(','), JSON.stringify(SPEC)];
  const { stdout } = await exec(process.execPath, ['--import', 'tsx', ...args], { env, maxBuffer: 64 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

describe.skipIf(!cxx.found)('qwen3 q/k head norms: the CPU\'s headNorm ops and the cuda backend\'s fused rope_pack', () => {
  test('the same logits (within 2^-6 of their scale) and the same token in every row: 5 prefill rows and an AR step', { timeout: 900_000 }, async () => {
    expect(SPEC.qkNorm).toBe(true);
    const checkpoint = join(root, 'qwen3');
    writeCheckpoint(checkpoint);
    const driver = await sharedEmulatedDriver();
    const [cpu, gpu] = await Promise.all([runChild('cpu', checkpoint, process.env), runChild('cuda', checkpoint, { ...process.env, TIDARC_LIBCUDA: driver })]);
    const rows = (r: { prefill: number[][]; step: number[] }): number[][] => [...r.prefill, r.step];
    const argmax = (row: readonly number[]): number => row.indexOf(Math.max(...row));
    rows(gpu).forEach((row, t) => {
      const want = rows(cpu)[t]!;
      const scale = Math.max(...want.map(Math.abs));
      const err = Math.max(...row.map((g, i) => Math.abs(g - want[i]!)));
      expect(err / scale, `row ${t}: max |logit difference| ${err} of max |logit| ${scale}`).toBeLessThan(2 ** -6);
    });
    expect(rows(gpu).map(argmax)).toEqual(rows(cpu).map(argmax));
  });
});
