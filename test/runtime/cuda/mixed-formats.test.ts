/**
 * A checkpoint whose tensors mix formats within a fused matrix, on the cuda backend (emulated
 * driver): the loader takes BF16 or F32 per tensor, and the cuda upload fuses q | k | v and
 * gate | up into one matrix each. Layer 1 here stores q_proj F32 beside BF16 k_proj and v_proj
 * (the upload threw "the fused parts differ in format"), and gate_proj and up_proj F32 while layer
 * 0's are BF16 (the SwiGLU interleave was decided from layer 0 alone: layer 1 would have had no
 * GEMM for its F32 gate | up). The F32 tensors hold the BF16 values exactly, so the logits must
 * match the all-BF16 checkpoint's on the same backend, within what the float32 fallback matmul's
 * other reduction order moves them (2^-6 of their scale, the bound norm-weights.test.ts gives the
 * cuda backend against float64), with the same argmax where the top two are not a near-tie.
 * Needs: a C++ compiler (the emulated driver and modules).
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { expectedTensors } from '../../../src/model/checkpoint.js';
import { type Tensor, readSafetensors, writeSafetensors } from '../../../src/model/safetensors.js';
import { decode } from '../../../src/util/dtype.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';
import { scratchDir } from '../../helpers/scratch.js';

const exec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const cxx = await findCxx();
/** norm-weights.test.ts's spec (qwen3, 2 layers, k = 2): its kernels are in the shared cache. */
const SPEC = smallSpec('cudasmall', [2]);
const PROMPT = [104, 105, 33, 200, 17, 42];
const AS_F32 = ['self_attn.q_proj', 'mlp.gate_proj', 'mlp.up_proj'].map((t) => `model.layers.1.${t}.weight`);

async function cudaLogits(checkpoint: string, driver: string): Promise<number[][]> {
  const child = join(here, '..', 'model', 'fixtures', 'backend-logits-child.ts');
  const { stdout } = await exec(process.execPath, ['--import', 'tsx', child, checkpoint, await sharedKernelCache(), 'cuda', PROMPT.join(','), JSON.stringify(SPEC)],
    { env: { ...process.env, TIDARC_LIBCUDA: driver }, maxBuffer: 64 << 20 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as { prefill: number[][]; step: number[] };
  return [...r.prefill, r.step];
}

const argmax = (row: readonly number[]): number => row.indexOf(Math.max(...row));

describe.skipIf(!cxx.found)('a checkpoint mixing BF16 and F32 within fused matrices, on the cuda backend', () => {
  test('q_proj F32 beside BF16 k/v, and one layer\'s gate/up F32: the logits of the all-BF16 checkpoint', { timeout: 900_000 }, async () => {
    const root = await scratchDir('tidarc-mixed-');
    const bf16 = await writeRandomModel(join(root, 'bf16'), SPEC, 31);
    const mixed = join(root, 'mixed');
    mkdirSync(mixed);
    for (const f of ['config.json', 'tokenizer.json']) copyFileSync(join(bf16, f), join(mixed, f));
    const file = await readSafetensors(join(bf16, 'model.safetensors'));
    const tensors: Record<string, Tensor> = {};
    for (const t of expectedTensors(SPEC)) {
      const x = file.tensor(t.name);
      tensors[t.name] = AS_F32.includes(t.name) ? { dtype: 'F32', shape: x.shape, data: decode('bf16', x.data as Uint16Array) } : x;
    }
    await writeSafetensors(join(mixed, 'model.safetensors'), tensors, { format: 'pt' });
    const driver = await sharedEmulatedDriver();
    const [want, got] = await Promise.all([cudaLogits(bf16, driver), cudaLogits(mixed, driver)]);
    expect(got).toHaveLength(PROMPT.length + 1);
    let argmaxChecked = 0;
    got.forEach((row, t) => {
      const ref = want[t]!;
      const scale = Math.max(...ref.map(Math.abs));
      const err = Math.max(...row.map((v, i) => Math.abs(v - ref[i]!)));
      expect(err / scale, `row ${t}: max |logit difference| ${err} of ${scale}`).toBeLessThan(2 ** -6);
      const [first, second] = [...ref].sort((a, b) => b - a);
      if (first! - second! > 2 * 2 ** -6 * scale) (expect(argmax(row), `row ${t}: argmax`).toBe(argmax(ref)), argmaxChecked++);
    });
    expect(argmaxChecked).toBeGreaterThanOrEqual(PROMPT.length - 1);
  });
});
