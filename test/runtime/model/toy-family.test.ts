/**
 * A model family added in one place (test/helpers/toy-family.ts: llama attention, a bias-free
 * GELU MLP) runs on every backend without touching the runners: its checkpoint (written from
 * the family table's tensor names) goes through ModelRunner on the CPU and GpuModelRunner on
 * the emulated CUDA driver, each in a child process (the driver is chosen per process). Both
 * give the logits of a plain float64 forward written here, which rounds where the runtime's
 * contract rounds (q, k, v after RoPE and the attention output to bf16): the CPU within float32
 * accumulation error; the cuda backend, whose linears read bf16 inputs (the op before each
 * stores its output rounded: the step graph declares them u16, step-rewrite.ts), against
 * the same forward with those roundings within 2^-6 of the logits' scale; and both backends
 * pick the same token in every row.
 * Needs: a C++ compiler (the CPU kernels, the emulated driver).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import type { ModelSpec } from '../../../src/ir/model.js';
import { expectedTensors } from '../../../src/model/checkpoint.js';
import { type Tensor, serializeSafetensors } from '../../../src/model/safetensors.js';
import { fromBf16Bits, toBf16Bits } from '../../../src/util/dtype.js';
import { seededRandom } from '../../../src/util/random.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { registerToyFamily, toySpec } from '../../helpers/toy-family.js';

const exec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-toy-family-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

registerToyFamily();
const { spec } = toySpec();
const PROMPT = [3, 141, 59, 26, 5];

/** Random bf16 tensors under the family table's names (norms 1 + noise so they matter). */
function writeCheckpoint(dir: string): Map<string, Float64Array> {
  const rng = seededRandom(13);
  const tensors: Record<string, Tensor> = {};
  const values = new Map<string, Float64Array>();
  for (const t of expectedTensors(spec)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    const bits = toBf16Bits(Float64Array.from({ length: n }, () => (t.role === 'norm' ? 1 + 0.1 * rng.normal() : 0.1 * rng.normal())));
    tensors[t.name] = { dtype: 'BF16', shape: t.shape, data: bits };
    values.set(t.name, Float64Array.from(fromBf16Bits(bits)));
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.safetensors'), serializeSafetensors(tensors));
  return values;
}

const bf16 = (x: number): number => fromBf16Bits(toBf16Bits([x]))[0]!;

/**
 * Plain float64 forward of the toy model over `ids` at positions 0..n-1 (causal); logits of
 * every row. `gemm16`: the inputs of every linear rounded to bf16, as the cuda step graph stores
 * them (q|k|v, o, down, lm_head on the generated GEMMs; up on tidarc_op_matmul, which no GEMM
 * role covers, reads the same 16-bit h).
 */
function referenceLogits(w: Map<string, Float64Array>, s: ModelSpec, ids: readonly number[], gemm16: boolean): number[][] {
  const { hiddenSize: H, queryHeads: Hq, kvHeads: Hkv, headDim: D, intermediateSize: I, vocabSize: V } = s;
  const W = (name: string) => w.get(name)!;
  const linear = (x: number[], m: Float64Array, n: number, k: number) => Array.from({ length: n }, (_, r) => x.reduce((acc, v, c) => acc + v * m[r * k + c]!, 0));
  const rmsnorm = (x: number[], g: Float64Array) => {
    const inv = 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + s.rmsNormEps);
    return x.map((v, i) => g[i]! * (v * inv));
  };
  const rope = (x: number[], pos: number) => x.map((v, i) => {
    const j = i % D, half = D / 2, f = j % half;
    const angle = Math.fround(pos * Math.fround(s.ropeTheta ** (-(2 * f) / D)));  // ops.rope: the float32 product
    const pair = x[i - j + (j < half ? j + half : j - half)]!;
    return j < half ? v * Math.cos(angle) - pair * Math.sin(angle) : v * Math.cos(angle) + pair * Math.sin(angle);
  });
  const g = (x: number[]) => (gemm16 ? x.map(bf16) : x);
  const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
  let x = ids.map((id) => Array.from(W('model.embed_tokens.weight').subarray(id * H, (id + 1) * H)));
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    const h = x.map((r) => rmsnorm(r, W(`${p}input_layernorm.weight`)));
    const q = h.map((r, t) => rope(linear(g(r), W(`${p}self_attn.q_proj.weight`), Hq * D, H), t).map(bf16));
    const k = h.map((r, t) => rope(linear(g(r), W(`${p}self_attn.k_proj.weight`), Hkv * D, H), t).map(bf16));
    const v = h.map((r) => linear(g(r), W(`${p}self_attn.v_proj.weight`), Hkv * D, H).map(bf16));
    const o = q.map((qr, t) => Array.from({ length: Hq * D }, (_, i) => {
      const head = Math.floor(i / D), kvh = Math.floor(head / (Hq / Hkv));
      const scores = Array.from({ length: t + 1 }, (_, u) => qr.slice(head * D, (head + 1) * D).reduce((a, qv, d) => a + qv * k[u]![kvh * D + d]!, 0) / Math.sqrt(D));
      const m = Math.max(...scores), e = scores.map((sc) => Math.exp(sc - m)), z = e.reduce((a, b) => a + b, 0);
      return bf16(e.reduce((a, pu, u) => a + (pu / z) * v[u]![kvh * D + (i % D)]!, 0));
    }));
    x = x.map((r, t) => linear(o[t]!, W(`${p}self_attn.o_proj.weight`), H, Hq * D).map((y, i) => r[i]! + y));
    const h2 = x.map((r) => rmsnorm(r, W(`${p}post_attention_layernorm.weight`)));
    x = x.map((r, t) => linear(g(linear(g(h2[t]!), W(`${p}mlp.up_proj.weight`), I, H).map(gelu)), W(`${p}mlp.down_proj.weight`), H, I).map((y, i) => r[i]! + y));
  }
  return x.map((r) => linear(g(rmsnorm(r, W('model.norm.weight'))), w.get('lm_head.weight') ?? W('model.embed_tokens.weight'), V, H));
}

async function runChild(backend: 'cpu' | 'cuda', checkpoint: string, env: NodeJS.ProcessEnv): Promise<{ prefill: number[][]; step: number[] }> {
  // The kernels (cpu and emulated cuda) come from the tests' shared cache: built once per checkout.
  const { stdout } = await exec(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'backend-logits-child.ts'), checkpoint, await sharedKernelCache(), backend, PROMPT.join(','), 'toy'], { env, maxBuffer: 64 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

function expectClose(got: readonly number[], want: readonly number[], what: string, tolerance: number): void {
  const scale = Math.max(...want.map(Math.abs));
  const err = Math.max(...got.map((g, i) => Math.abs(g - want[i]!)));
  expect(err / scale, `${what}: max |logit error| ${err} of max |logit| ${scale}`).toBeLessThan(tolerance);
  expect(got.indexOf(Math.max(...got)), `${what}: argmax`).toBe(want.indexOf(Math.max(...want)));
}

describe.skipIf(!cxx.found)('a toy family (GELU MLP) registered in one place', () => {
  test('runs on the CPU backend and the emulated cuda driver, both equal to a float64 forward', { timeout: 900_000 }, async () => {
    const checkpoint = join(root, 'toy');
    const w = writeCheckpoint(checkpoint);
    const driver = await sharedEmulatedDriver();
    const [cpu, gpu] = await Promise.all([
      runChild('cpu', checkpoint, process.env),
      runChild('cuda', checkpoint, { ...process.env, TIDARC_LIBCUDA: driver }),
    ]);
    const rows = (r: { prefill: number[][]; step: number[] }) => [...r.prefill, r.step];
    // The CPU computes in float32 between the contract's bf16 roundings: float32 accumulation error.
    const ref = referenceLogits(w, spec, [...PROMPT, 7], false);
    rows(cpu).forEach((row, t) => expectClose(row, ref[t]!, `cpu row ${t}`, 2e-3));
    // The cuda backend's linears read bf16 inputs (rounded once, to nearest even, by the op that
    // wrote them): the same reference with those roundings, within 2^-6 of the logits' scale (the
    // bound of the cuda backend's cache check, emulated-backend.test.ts). Against the float32
    // CPU each such input differs by at most 2^-9 relative, so a logit by at most 2^-9 of the
    // sum of |x w| over its inputs per linear, compounded through the layers: far below 2^-6 of
    // the logits' scale for these small models, and the argmax agrees (below).
    const ref16 = referenceLogits(w, spec, [...PROMPT, 7], true);
    rows(gpu).forEach((row, t) => expectClose(row, ref16[t]!, `cuda (emulated) row ${t}`, 2 ** -6));
    // And the two backends pick the same token in every row.
    const argmax = (row: readonly number[]) => row.indexOf(Math.max(...row));
    expect(rows(gpu).map(argmax)).toEqual(rows(cpu).map(argmax));
  });
});
