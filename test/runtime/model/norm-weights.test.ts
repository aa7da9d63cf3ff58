/**
 * Every norm weight of a Qwen3 model, on both backends, against a plain float64 forward written
 * here: the test helpers' random model (writeRandomModel: norm weights 1 + N(0, 0.2^2), distinct per
 * tensor and element) through the CPU's ModelRunner and the cuda backend's GpuModelRunner on the
 * emulated driver (fixtures/backend-logits-child.ts, one child process per backend: the driver is chosen
 * per process), 6 prefill rows and an AR step. The forward applies each layer's input and
 * post-attention RMSNorm, q_norm and k_norm per head before RoPE, and the final norm, each with its
 * own weight, so a backend, or the step graph both backends run (src/ir), that drops a norm weight,
 * swaps q_norm and k_norm or reads another layer's norm moves the logits off it (by 0.02 to 0.35
 * of the logits' scale for such hand mutants in cpu-op-table.ts and gpu-op-table.ts); with all-ones
 * norms (initModel's default) none of them is visible. The other tests on the helper's models compare
 * a backend with itself (TiDAR with AR, graphs on with off, ...), which no such bug changes;
 * qk-norm-backends.test.ts compares the head norms across backends. Bounds as toy-family.test.ts: the
 * CPU (float32 between the contract's bf16 roundings of q, k, v after RoPE and the attention
 * output) within 2e-3 of the logits' scale; the cuda backend, whose linears read bf16 inputs,
 * against the forward with those roundings within 2^-6; the same argmax in every row whose top two
 * logits are not within twice that bound. The cuda backend runs twice: with its norms folded
 * into the GEMMs (the default for bf16: fold-norms) and without (foldNorms: false); both hold the
 * bound (the test prints each one's worst error).
 * Needs: a C++ compiler (the CPU kernels, the emulated driver).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import type { ModelSpec } from '../../../src/ir/model.js';
import { readSafetensors } from '../../../src/model/safetensors.js';
import { fromBf16Bits, toBf16Bits } from '../../../src/util/dtype.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const exec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-norm-weights-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** emulated-backend.test.ts's spec (qwen3, q/k norms, 2 layers): its kernels are in the shared cache. */
const SPEC = smallSpec('cudasmall', [2]);
const PROMPT = [104, 105, 33, 200, 17, 42];
const STEP_TOKEN = 7;

const bf16 = (x: number): number => fromBf16Bits(toBf16Bits([x]))[0]!;

async function weightsOf(dir: string): Promise<Map<string, Float64Array>> {
  const file = await readSafetensors(join(dir, 'model.safetensors'));
  return new Map(file.names().map((n) => [n, Float64Array.from(fromBf16Bits(file.tensor(n).data as Uint16Array))]));
}

/**
 * Float64 Qwen3 forward over `ids` at positions 0..n-1 (causal); logits of every row. q, k, v
 * (after the head norms and RoPE) and the attention output are rounded to bf16 as the runtime's
 * contract does; `gemm16`: every linear's input too, as the cuda step graph stores them.
 */
function referenceLogits(w: Map<string, Float64Array>, s: ModelSpec, ids: readonly number[], gemm16: boolean): number[][] {
  const { hiddenSize: H, queryHeads: Hq, kvHeads: Hkv, headDim: D, intermediateSize: I, vocabSize: V } = s;
  const W = (name: string): Float64Array => {
    const t = w.get(name);
    if (!t) throw new Error(`no tensor ${name}`);
    return t;
  };
  const linear = (x: number[], m: Float64Array, n: number, k: number): number[] => Array.from({ length: n }, (_, r) => x.reduce((acc, v, c) => acc + v * m[r * k + c]!, 0));
  const rmsnorm = (x: number[], g: Float64Array): number[] => {
    const inv = 1 / Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + s.rmsNormEps);
    return x.map((v, i) => g[i]! * (v * inv));
  };
  /** RMSNorm of each head's D values with the same [D] weight. */
  const headNorm = (x: number[], g: Float64Array): number[] => x.flatMap((_, i) => (i % D === 0 ? rmsnorm(x.slice(i, i + D), g) : []));
  const rope = (x: number[], pos: number): number[] => x.map((v, i) => {
    const j = i % D, half = D / 2, f = j % half;
    const angle = Math.fround(pos * Math.fround(s.ropeTheta ** (-(2 * f) / D))); // ops.rope: the float32 product
    const pair = x[i - j + (j < half ? j + half : j - half)]!;
    return j < half ? v * Math.cos(angle) - pair * Math.sin(angle) : v * Math.cos(angle) + pair * Math.sin(angle);
  });
  const g = (x: number[]): number[] => (gemm16 ? x.map(bf16) : x);
  const silu = (v: number): number => v / (1 + Math.exp(-v));
  let x = ids.map((id) => Array.from(W('model.embed_tokens.weight').subarray(id * H, (id + 1) * H)));
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    const h = x.map((r) => g(rmsnorm(r, W(`${p}input_layernorm.weight`))));
    const q = h.map((r, t) => rope(headNorm(linear(r, W(`${p}self_attn.q_proj.weight`), Hq * D, H), W(`${p}self_attn.q_norm.weight`)), t).map(bf16));
    const k = h.map((r, t) => rope(headNorm(linear(r, W(`${p}self_attn.k_proj.weight`), Hkv * D, H), W(`${p}self_attn.k_norm.weight`)), t).map(bf16));
    const v = h.map((r) => linear(r, W(`${p}self_attn.v_proj.weight`), Hkv * D, H).map(bf16));
    const o = q.map((qr, t) => Array.from({ length: Hq * D }, (_, i) => {
      const head = Math.floor(i / D), kvh = Math.floor(head / (Hq / Hkv));
      const scores = Array.from({ length: t + 1 }, (_, u) => qr.slice(head * D, (head + 1) * D).reduce((a, qv, d) => a + qv * k[u]![kvh * D + d]!, 0) / Math.sqrt(D));
      const m = Math.max(...scores), e = scores.map((sc) => Math.exp(sc - m)), z = e.reduce((a, b) => a + b, 0);
      return bf16(e.reduce((a, pu, u) => a + (pu / z) * v[u]![kvh * D + (i % D)]!, 0));
    }));
    x = x.map((r, t) => linear(o[t]!, W(`${p}self_attn.o_proj.weight`), H, Hq * D).map((y, i) => r[i]! + y));
    const h2 = x.map((r) => g(rmsnorm(r, W(`${p}post_attention_layernorm.weight`))));
    x = x.map((r, t) => {
      const gate = linear(h2[t]!, W(`${p}mlp.gate_proj.weight`), I, H);
      const up = linear(h2[t]!, W(`${p}mlp.up_proj.weight`), I, H);
      return linear(g(gate.map((a, i) => silu(a) * up[i]!)), W(`${p}mlp.down_proj.weight`), H, I).map((y, i) => r[i]! + y);
    });
  }
  return x.map((r) => linear(g(rmsnorm(r, W('model.norm.weight'))), w.get('lm_head.weight') ?? W('model.embed_tokens.weight'), V, H));
}

async function runChild(backend: 'cpu' | 'cuda' | 'cuda-unfolded', checkpoint: string, env: NodeJS.ProcessEnv): Promise<number[][] & { folded: boolean }> {
  const args = [join(here, 'fixtures', 'backend-logits-child.ts'), checkpoint, await sharedKernelCache(), backend, PROMPT.join(','), JSON.stringify(SPEC)];
  const { stdout } = await exec(process.execPath, ['--import', 'tsx', ...args], { env, maxBuffer: 64 << 20 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as { prefill: number[][]; step: number[]; folded: boolean };
  return Object.assign([...r.prefill, r.step], { folded: r.folded });
}

/** The largest |logit error| of any row over that row's max |logit| (the figure expectClose bounds). */
const worst = (rows: readonly (readonly number[])[], ref: readonly (readonly number[])[]): number => Math.max(...rows.map((row, t) => Math.max(...row.map((v, i) => Math.abs(v - ref[t]![i]!))) / Math.max(...ref[t]!.map(Math.abs))));

const argmax = (row: readonly number[]): number => row.indexOf(Math.max(...row));

/**
 * Within `tolerance` of the reference's scale; the same argmax where the reference's top two
 * logits are more than twice that bound apart (closer, either may win). Returns whether the
 * argmax was checked.
 */
function expectClose(got: readonly number[], want: readonly number[], what: string, tolerance: number): boolean {
  const scale = Math.max(...want.map(Math.abs));
  const err = Math.max(...got.map((v, i) => Math.abs(v - want[i]!)));
  expect(err / scale, `${what}: max |logit error| ${err} of max |logit| ${scale}`).toBeLessThan(tolerance);
  const [first, second] = [...want].sort((a, b) => b - a);
  if (first! - second! <= 2 * tolerance * scale) return false;
  expect(argmax(got), `${what}: argmax`).toBe(argmax(want));
  return true;
}

describe.skipIf(!cxx.found)('norm weights (1 + N(0, 0.2^2)) on both backends against a float64 forward', () => {
  test('input, post-attention, q/k and final norms: 6 prefill rows and an AR step', { timeout: 900_000 }, async () => {
    expect(SPEC.family === 'qwen3' && SPEC.qkNorm && SPEC.layers >= 2).toBe(true);
    const dir = await writeRandomModel(root, SPEC, 31);
    const w = await weightsOf(dir);
    // The helper's norms are not ones: each tensor has its own values (q_norm and k_norm included).
    const norms = [...w.keys()].filter((n) => n.endsWith('norm.weight'));
    expect(norms).toHaveLength(4 * SPEC.layers + 1);
    expect(new Set(norms.map((n) => Array.from(w.get(n)!).join(','))).size).toBe(norms.length);
    const driver = await sharedEmulatedDriver();
    const env = { ...process.env, TIDARC_LIBCUDA: driver };
    const [cpu, gpu, unfolded] = await Promise.all([runChild('cpu', dir, process.env), runChild('cuda', dir, env), runChild('cuda-unfolded', dir, env)]);
    // The cuda default folds this bf16 model's norms into its GEMMs (fold-norms); --no-fold-norms does not.
    expect([gpu.folded, unfolded.folded]).toEqual([true, false]);
    const ids = [...PROMPT, STEP_TOKEN];
    const ref = referenceLogits(w, SPEC, ids, false);
    expect(cpu.filter((row, t) => expectClose(row, ref[t]!, `cpu row ${t}`, 2e-3)).length).toBeGreaterThanOrEqual(ids.length - 2);
    // A row whose top two logits are within twice the bound (a near-tie) skips the argmax; at most two do.
    const ref16 = referenceLogits(w, SPEC, ids, true);
    // Folded, the bf16 rounding moves (round16(gamma * x), the 1 / rms after the sum): the same bound holds.
    for (const [what, rows] of [['cuda (emulated, norms folded)', gpu], ['cuda (emulated, norms not folded)', unfolded]] as const) {
      console.log(`${what}: worst |logit error| / max |logit| against the float64 forward ${worst(rows, ref16).toExponential(3)} (bound ${2 ** -6})`);
      expect(rows.filter((row, t) => expectClose(row, ref16[t]!, `${what} row ${t}`, 2 ** -6)).length).toBeGreaterThanOrEqual(ids.length - 2);
    }
  });
});
