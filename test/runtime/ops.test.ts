// CPU transformer operators (src/runtime/ops.ts, runtime/src/ops_cpu.cc) against plain
// float64 TypeScript references. Needs: the addon built by `npm run build:native` (the
// argument checks at the end need nothing).
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { decode, encode, fromBf16Bits, fromFp16Bits, toBf16Bits, toFp16Bits } from '../../src/util/dtype.js';
import * as ops from '../../src/runtime/ops.js';
import type { RopeScaling, WeightDType, WeightMatrix } from '../../src/runtime/ops.js';
import { seededRandom, type Rng } from '../../src/util/random.js';

const available = ops.cpuOpsAvailable();
const DTYPES: readonly WeightDType[] = ['bf16', 'fp16', 'f32'];

function randomF32(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

/** A random weight matrix and its exact float values (what the kernels decode). */
function randomWeight(rng: Rng, dtype: WeightDType, rows: number, cols: number, scale = 0.5): { w: WeightMatrix; values: Float32Array } {
  const raw = randomF32(rng, rows * cols, scale);
  if (dtype === 'f32') return { w: { data: raw, dtype, rows, cols }, values: raw };
  const bits = encode(dtype, raw);
  return { w: { data: bits, dtype, rows, cols }, values: decode(dtype, bits) };
}

const bitsOf = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

/**
 * Float64 x W^T + b, and for each element a bound on an fp32 evaluation's error: a sum of K
 * products in 16 lanes rounds at most ceil(K/16) + 4 times along any path (plus the product
 * and the bias), each by at most 2^-24 of the magnitudes involved.
 */
function referenceMatmul(x: Float32Array, w: Float32Array, bias: Float32Array | null, T: number, K: number, N: number) {
  const out = new Float64Array(T * N);
  const bound = new Float64Array(T * N);
  const rounds = Math.ceil(K / 16) + 6;
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = x[t * K + k]! * w[n * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      const b = bias === null ? 0 : bias[n]!;
      out[t * N + n] = s + b;
      bound[t * N + n] = rounds * 2 ** -24 * (a + Math.abs(b)) + 1e-30;
    }
  }
  return { out, bound };
}

function expectWithin(got: Float32Array, want: Float64Array, bound: Float64Array | ((i: number) => number), what: string): void {
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const b = typeof bound === 'function' ? bound(i) : bound[i]!;
    const r = Math.abs(got[i]! - want[i]!) / b;
    if (!(r <= worst)) {
      worst = r;
      at = i;
    }
  }
  expect(worst, `${what}: worst at ${at}: got ${got[at]}, want ${want[at]}`).toBeLessThanOrEqual(1);
}

describe.skipIf(!available)('matmul (needs npm run build:native)', () => {
  const shapes = [
    { T: 1, K: 37, N: 1 },
    { T: 273, K: 37, N: 1 },
    { T: 1, K: 64, N: 23 },
    { T: 5, K: 16, N: 20 },
    { T: 6, K: 100, N: 41 },
    { T: 273, K: 130, N: 67 },
    { T: 3, K: 1, N: 7 },
  ];
  const grid = shapes.flatMap((s) => DTYPES.flatMap((dtype) => [true, false].map((bias) => ({ ...s, dtype, bias }))));

  test.for(grid)('T=$T K=$K N=$N $dtype bias=$bias vs float64', ({ T, K, N, dtype, bias }) => {
    const rng = seededRandom(T * 7919 + K * 31 + N);
    const x = randomF32(rng, T * K);
    const { w, values } = randomWeight(rng, dtype, N, K);
    const b = bias ? randomF32(rng, N) : null;
    const out = new Float32Array(T * N).fill(NaN);
    ops.matmul(x, w, b, out);
    const ref = referenceMatmul(x, values, b, T, K, N);
    expectWithin(out, ref.out, ref.bound, 'matmul');
  });

  test('bf16 / fp16 weights decode exactly in the vector body (special values included)', () => {
    // Weight row n holds the special value at k = 0 and zeros elsewhere; x = e0, so out[n] is
    // exactly that value (-0 becomes +0: the lanes start at +0).
    for (const dtype of ['bf16', 'fp16'] as const) {
      const K = 32;
      const special = new Uint16Array([0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x3c00, 0xbc00, 0x3555, 0x7f80, 0xff80, 0x3f80, 0x0080, 0x007f, 0x7e00, 0x7fc0]);
      const bits = new Uint16Array(special.length * K);
      special.forEach((b, n) => (bits[n * K] = b));
      const x = new Float32Array(K);
      x[0] = 1;
      const out = new Float32Array(special.length);
      ops.matmul(x, { data: bits, dtype, rows: special.length, cols: K }, null, out);
      const want = decode(dtype, special);
      special.forEach((b, n) => expect(out[n], `${dtype} 0x${b.toString(16)}`).toBe(want[n]! + 0));
    }
  });

  test.for(DTYPES)('a token row is bitwise the same alone or among 272 others (%s, K = 1000, N = 47)', (dtype) => {
    const rng = seededRandom(42);
    const T = 272;
    const K = 1000; // not a multiple of 16: the lane tail is exercised
    const N = 47; // not a multiple of the 20-row task block or the 5-row tile
    const x = randomF32(rng, T * K);
    const { w } = randomWeight(rng, dtype, N, K);
    const bias = randomF32(rng, N);
    const all = new Float32Array(T * N);
    ops.matmul(x, w, bias, all);
    const allBits = bitsOf(all);
    const one = new Float32Array(N);
    for (let t = 0; t < T; t++) {
      ops.matmul(x.subarray(t * K, (t + 1) * K), w, bias, one);
      expect(bitsOf(one), `row ${t} alone`).toEqual(allBits.subarray(t * N, (t + 1) * N));
    }
    for (const [t0, len] of [[0, 7], [3, 20], [100, 72], [271, 1], [1, 271]] as const) {
      const part = new Float32Array(len * N);
      ops.matmul(x.subarray(t0 * K, (t0 + len) * K), w, bias, part);
      expect(bitsOf(part), `rows ${t0}..${t0 + len - 1}`).toEqual(allBits.subarray(t0 * N, (t0 + len) * N));
    }
    for (const threads of [1, 2, 3]) {
      const again = new Float32Array(T * N);
      ops.matmul(x, w, bias, again, threads);
      expect(bitsOf(again), `threads = ${threads}`).toEqual(allBits);
    }
  });

  test('the same at a model shape (bf16, K = 4096, N = 512, T = 273)', () => {
    const rng = seededRandom(7);
    const T = 273;
    const K = 4096;
    const N = 512;
    const x = randomF32(rng, T * K);
    const { w } = randomWeight(rng, 'bf16', N, K, 0.02);
    const all = new Float32Array(T * N);
    ops.matmul(x, w, null, all);
    const allBits = bitsOf(all);
    for (const [t0, len] of [[0, 1], [4, 1], [5, 1], [272, 1], [5, 20], [200, 72], [1, 272]] as const) {
      const part = new Float32Array(len * N);
      ops.matmul(x.subarray(t0 * K, (t0 + len) * K), w, null, part);
      expect(bitsOf(part), `rows ${t0}..${t0 + len - 1}`).toEqual(allBits.subarray(t0 * N, (t0 + len) * N));
    }
  });

  test.skipIf(process.platform !== 'linux')('the thread pool is created once and reused', () => {
    const threads = (): number => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
    const rng = seededRandom(3);
    const x = randomF32(rng, 8 * 256);
    const { w } = randomWeight(rng, 'bf16', 512, 256);
    const out = new Float32Array(8 * 512);
    ops.matmul(x, w, null, out); // creates the pool if no earlier test did
    const before = threads();
    for (let i = 0; i < 30; i++) ops.matmul(x, w, null, out, 0);
    expect(threads()).toBe(before);
    expect(ops.cpuThreadCount()).toBeGreaterThanOrEqual(1);
  });

  test('empty token batch is a no-op', () => {
    const { w } = randomWeight(seededRandom(1), 'bf16', 3, 8);
    expect(() => ops.matmul(new Float32Array(0), w, null, new Float32Array(0))).not.toThrow();
  });
});

// ---- rope ----------------------------------------------------------------------------------

/** transformers' inverse frequencies (default, linear, _compute_llama3_parameters) in float64. */
function referenceInvFreq(theta: number, D: number, scaling?: RopeScaling): { inv: Float64Array; bands: Set<string> } {
  const inv = new Float64Array(D / 2);
  const bands = new Set<string>();
  for (let i = 0; i < D / 2; i++) {
    let f = 1 / theta ** ((2 * i) / D);
    if (scaling?.type === 'linear') f /= scaling.factor;
    if (scaling?.type === 'llama3') {
      const low = scaling.lowFreqFactor!;
      const high = scaling.highFreqFactor!;
      const old = scaling.originalMaxPositionEmbeddings!;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < old / high) {
        bands.add('high');
      } else if (wavelen > old / low) {
        bands.add('low');
        f /= scaling.factor;
      } else {
        bands.add('medium');
        const smooth = (old / wavelen - low) / (high - low);
        f = ((1 - smooth) * f) / scaling.factor + smooth * f;
      }
    }
    inv[i] = f;
  }
  return { inv, bands };
}

/**
 * HF's apply_rotary_pos_emb in float32 arithmetic: inv_freq rounded to float32, angle =
 * fp32(pos * inv), cos/sin rounded to float32, q * cos + rotate_half(q) * sin with each
 * product and the sum rounded. `exact` = false keeps everything in float64 instead.
 */
function referenceRope(x: Float32Array, positions: Int32Array, theta: number, D: number, scaling: RopeScaling | undefined, exact: boolean): Float64Array {
  const f = exact ? Math.fround : (v: number) => v;
  const inv = referenceInvFreq(theta, D, scaling).inv.map(f);
  const T = positions.length;
  const heads = x.length / (T * D);
  const out = new Float64Array(x.length);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < D / 2; i++) {
      const angle = f(positions[t]! * inv[i]!);
      const c = f(Math.cos(angle));
      const s = f(Math.sin(angle));
      for (let h = 0; h < heads; h++) {
        const base = (t * heads + h) * D;
        const a = x[base + i]!;
        const b = x[base + i + D / 2]!;
        out[base + i] = f(f(a * c) - f(b * s));
        out[base + i + D / 2] = f(f(b * c) + f(a * s));
      }
    }
  }
  return out;
}

describe.skipIf(!available)('rope (needs npm run build:native)', () => {
  const positions = new Int32Array([0, 1, 17, 4095]);
  const llama3: RopeScaling = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
  const cases: { name: string; theta: number; D: number; scaling?: RopeScaling }[] = [
    { name: 'theta 1e4, D 128', theta: 1e4, D: 128 },
    { name: 'theta 1e6, D 128', theta: 1e6, D: 128 },
    { name: 'theta 1e6, D 64', theta: 1e6, D: 64 },
    { name: 'theta 5e5, D 128, llama3', theta: 5e5, D: 128, scaling: llama3 },
    { name: 'theta 1e4, D 64, linear x4', theta: 1e4, D: 64, scaling: { type: 'linear', factor: 4 } },
  ];

  test.for(cases)('$name at positions 0, 1, 17, 4095 vs HF formula', ({ theta, D, scaling }) => {
    const heads = 3;
    const x = randomF32(seededRandom(D + theta), positions.length * heads * D);
    const got = x.slice();
    ops.rope(got, positions, theta, D, scaling);
    // HF's float32 pipeline: equal up to the last bit of cos/sin/pow in libm vs V8.
    const hf = referenceRope(x, positions, theta, D, scaling, true);
    expectWithin(got, hf, (i) => 2 ** -21 * (Math.abs(x[i]!) + Math.abs(x[i % D < D / 2 ? i + D / 2 : i - D / 2]!)) + 1e-30, 'vs fp32 HF');
    let same = 0;
    for (let i = 0; i < got.length; i++) if (got[i] === hf[i]) same++;
    expect(same / got.length).toBeGreaterThan(0.97);
    // And the real-number formula, within the float32 rounding of the angle (pos * 2^-24).
    const exact = referenceRope(x, positions, theta, D, scaling, false);
    const tol = (i: number): number => {
      const pos = positions[Math.floor(i / (heads * D))]!;
      const mag = Math.abs(x[i]!) + Math.abs(x[i % D < D / 2 ? i + D / 2 : i - D / 2]!);
      return mag * (Math.max(pos, 1) * 2 ** -23 + 2 ** -21);
    };
    expectWithin(got, exact, tol, 'vs float64 formula');
  });

  test('llama3 case covers the high, medium and low frequency bands', () => {
    expect([...referenceInvFreq(5e5, 128, llama3).bands].sort()).toEqual(['high', 'low', 'medium']);
  });

  test('rotate_half pairs (i, i + D/2): x = e0 at position 1 gives (cos 1, 0, sin 1, 0)', () => {
    const x = new Float32Array([1, 0, 0, 0]);
    ops.rope(x, new Int32Array([1]), 1e4, 4);
    expect([...x]).toEqual([Math.fround(Math.cos(1)), 0, Math.fround(Math.sin(1)), 0]);
  });

  test('position 0 is the identity', () => {
    const x = randomF32(seededRandom(5), 2 * 128);
    const got = x.slice();
    ops.rope(got, new Int32Array([0]), 1e6, 128);
    expect(got).toEqual(x);
  });
});

// ---- norms and elementwise ---------------------------------------------------------------

describe.skipIf(!available)('rmsnorm, siluMul, addInPlace, embed, toBf16/toFp16 (needs npm run build:native)', () => {
  function referenceRmsnorm(x: Float32Array, w: Float32Array, eps: number): Float64Array {
    const H = w.length;
    const out = new Float64Array(x.length);
    for (let t = 0; t < x.length / H; t++) {
      let ss = 0;
      for (let h = 0; h < H; h++) ss += x[t * H + h]! ** 2;
      const inv = 1 / Math.sqrt(ss / H + eps);
      for (let h = 0; h < H; h++) out[t * H + h] = w[h]! * x[t * H + h]! * inv;
    }
    return out;
  }
  const relBound = (want: Float64Array, ulps: number) => (i: number) => ulps * 2 ** -24 * Math.abs(want[i]!) + 1e-37;

  test.for(DTYPES.flatMap((dtype) => [1e-6, 0.5].map((eps) => ({ dtype, eps }))))('rmsnorm $dtype eps=$eps (H = 37, T = 9)', ({ dtype, eps }) => {
    const rng = seededRandom(11);
    const H = 37;
    const x = randomF32(rng, 9 * H, 0.3);
    const { w, values } = randomWeight(rng, dtype, 1, H, 1);
    const want = referenceRmsnorm(x, values, eps);
    const out = new Float32Array(x.length);
    ops.rmsnorm(x, w, eps, out);
    expectWithin(out, want, relBound(want, 4), 'rmsnorm');
    ops.rmsnorm(x, w, eps, x); // out aliases x
    expect(x).toEqual(out);
  });

  test('rmsnorm: eps matters for small rows and keeps a zero row finite', () => {
    const x = new Float32Array([1e-3, -1e-3, 2e-3, 0, 0, 0, 0, 0]);
    const w = { data: new Float32Array([1, 1, 1, 1]), dtype: 'f32' as const };
    const small = new Float32Array(8);
    const large = new Float32Array(8);
    ops.rmsnorm(x, w, 1e-6, small);
    ops.rmsnorm(x, w, 1e-2, large);
    expectWithin(small, referenceRmsnorm(x, w.data, 1e-6), relBound(referenceRmsnorm(x, w.data, 1e-6), 4), 'eps 1e-6');
    expectWithin(large, referenceRmsnorm(x, w.data, 1e-2), relBound(referenceRmsnorm(x, w.data, 1e-2), 4), 'eps 1e-2');
    expect(Math.abs(large[0]!)).toBeLessThan(Math.abs(small[0]!) / 10);
    expect([...small.subarray(4)]).toEqual([0, 0, 0, 0]);
  });

  test('rmsnormHeads normalises every head_dim slice with w[D]', () => {
    const rng = seededRandom(12);
    const D = 16;
    const x = randomF32(rng, 5 * 4 * D);
    const { w, values } = randomWeight(rng, 'bf16', 1, D, 1);
    const want = referenceRmsnorm(x, values, 1e-6);
    const got = x.slice();
    ops.rmsnormHeads(got, w, 1e-6);
    expectWithin(got, want, relBound(want, 4), 'rmsnormHeads');
  });

  test('siluMul and addInPlace vs float64 (large enough to use the pool)', () => {
    const rng = seededRandom(13);
    const n = 100_003;
    const gate = randomF32(rng, n, 4);
    gate[0] = -100;
    gate[1] = 100;
    gate[2] = 0;
    const up = randomF32(rng, n);
    const out = new Float32Array(n);
    ops.siluMul(gate, up, out);
    const want = Float64Array.from(gate, (g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
    expectWithin(out, want, relBound(want, 8), 'siluMul');
    const x = up.slice();
    ops.addInPlace(x, gate);
    expect(x).toEqual(Float32Array.from(up, (u, i) => u + gate[i]!));
  });

  test.for(DTYPES)('embed (%s) copies decoded rows', (dtype) => {
    const rng = seededRandom(14);
    const { w, values } = randomWeight(rng, dtype, 50, 9, 1);
    const ids = new Int32Array([0, 49, 7, 7]);
    const out = new Float32Array(ids.length * 9);
    ops.embed(ids, w, out);
    const want = new Float32Array(out.length);
    ids.forEach((id, t) => want.set(values.subarray(id * 9, (id + 1) * 9), t * 9));
    expect(out).toEqual(want);
  });

  test('embed decodes every bf16 and fp16 pattern exactly', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const ids = Int32Array.from({ length: 65536 }, (_, i) => i);
    const out = new Float32Array(65536);
    ops.embed(ids, { data: all, dtype: 'bf16', rows: 65536, cols: 1 }, out);
    expect(bitsOf(out)).toEqual(Uint32Array.from(all, (b) => b << 16));
    ops.embed(ids, { data: all, dtype: 'fp16', rows: 65536, cols: 1 }, out);
    const want = fromFp16Bits(all);
    for (let i = 0; i < 65536; i++) {
      if (!Object.is(out[i], want[i]) && !(Number.isNaN(out[i]) && Number.isNaN(want[i]))) {
        throw new Error(`fp16 0x${i.toString(16)}: got ${out[i]}, want ${want[i]}`);
      }
    }
  });

  test('embed refuses an id outside the vocabulary (TS check and native check)', () => {
    const { w } = randomWeight(seededRandom(15), 'bf16', 10, 4);
    const out = new Float32Array(8);
    for (const bad of [-1, 10]) {
      expect(() => ops.embed(new Int32Array([3, bad]), w, out)).toThrow(TidarcError);
      expect(() => ops.embed(new Int32Array([3, bad]), w, out)).toThrow(/ids\[1\]/);
      expect(() => ops.loadCpuOps().embed(new Int32Array([3, bad]), w.data, 'bf16', 10, 4, out)).toThrow(/outside the vocabulary/);
    }
  });

  test('toBf16 / toFp16 round to nearest even like dtype.ts (random patterns and edges)', () => {
    const rng = seededRandom(16);
    const n = 200_000;
    const bits = new Uint32Array(n);
    for (let i = 0; i < n; i++) bits[i] = Math.floor(rng.next() * 2 ** 32);
    const edges = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x477fe000, 0x477fefff, 0x477ff000, 0x477ff001,
      0x47800000, 0x38800000, 0x387fffff, 0x33800000, 0x33800001, 0x337fffff, 0x33000000, 0x00000001, 0x3f808000, 0x3f818000, 0x3f80ffff, 0x7f7fffff];
    const x = new Float32Array(n + edges.length);
    const xBits = bitsOf(x);
    xBits.set(bits);
    xBits.set(edges, n);
    // Near-tie fp16 values: mantissas that end in exactly half an fp16 ulp.
    for (let i = 0; i < 1000; i++) xBits[i] = (xBits[i]! & 0xffffe000) | 0x1000;
    const bf = new Uint16Array(x.length);
    const fp = new Uint16Array(x.length);
    ops.toBf16(x, bf);
    ops.toFp16(x, fp);
    expect(bf).toEqual(toBf16Bits(x));
    expect(fp).toEqual(toFp16Bits(x));
    // Values that are already bf16 / fp16 convert to themselves (NaNs aside: decoding to a JS
    // number drops their sign).
    const notNaN = (bits: Uint16Array, values: Float32Array): Uint16Array => bits.filter((_, i) => !Number.isNaN(values[i]));
    for (const [to, from, got] of [[ops.toBf16, fromBf16Bits, bf], [ops.toFp16, fromFp16Bits, fp]] as const) {
      const values = from(got);
      const again = new Uint16Array(values.length);
      to(values, again);
      expect(notNaN(again, values)).toEqual(notNaN(got, values));
    }
  });
});

// ---- lm_head -------------------------------------------------------------------------------

describe.skipIf(!available)('lmHead (needs npm run build:native)', () => {
  const T = 30;
  const H = 64;
  const V = 1000; // several 240-row vocabulary blocks, the last one partial

  function setup(dtype: WeightDType, seed = 21) {
    const rng = seededRandom(seed);
    const x = randomF32(rng, T * H);
    const { w } = randomWeight(rng, dtype, V, H, 0.3);
    return { x, w };
  }

  test.for(DTYPES)('%s: argmax, max and lse vs a full softmax of the same logits', (dtype) => {
    const { x, w } = setup(dtype);
    const rows = new Int32Array([0, 29, 5, 5, 17]);
    const res = ops.lmHead(x, w, rows, { logits: true });
    const logits = res.logits!;
    // The logits are matmul's numbers, bitwise.
    const full = new Float32Array(T * V);
    ops.matmul(x, w, null, full);
    rows.forEach((row, r) => expect(bitsOf(logits.subarray(r * V, (r + 1) * V))).toEqual(bitsOf(full.subarray(row * V, (row + 1) * V))));
    rows.forEach((_, r) => {
      const l = logits.subarray(r * V, (r + 1) * V);
      let best = 0;
      for (let v = 1; v < V; v++) if (l[v]! > l[best]!) best = v;
      let s = 0;
      for (let v = 0; v < V; v++) s += Math.exp(l[v]! - l[best]!);
      expect(res.argmax[r]).toBe(best);
      expect(res.maxLogit[r]).toBe(l[best]);
      expect(Math.abs(res.lse[r]! - (l[best]! + Math.log(s)))).toBeLessThan(2e-6 * Math.max(1, Math.abs(res.lse[r]!)));
    });
    // Without logits: the same results; one row alone and one thread: the same too.
    const lean = ops.lmHead(x, w, rows);
    expect(lean.logits).toBeNull();
    expect(lean.argmax).toEqual(res.argmax);
    expect(bitsOf(lean.lse)).toEqual(bitsOf(res.lse));
    const alone = ops.lmHead(x, w, new Int32Array([17]), {}, 1);
    expect(alone.argmax[0]).toBe(res.argmax[4]);
    expect(bitsOf(alone.lse)[0]).toBe(bitsOf(res.lse)[4]);
    expect(bitsOf(alone.maxLogit)[0]).toBe(bitsOf(res.maxLogit)[4]);
  });

  test('writes into the given buffers', () => {
    const { x, w } = setup('bf16');
    const out = { argmax: new Int32Array(2).fill(-7), maxLogit: new Float32Array(2), lse: new Float32Array(2), logits: new Float32Array(2 * V) };
    const res = ops.lmHead(x, w, new Int32Array([1, 2]), out);
    expect(res.argmax).toBe(out.argmax);
    expect(res.logits).toBe(out.logits);
    expect([...out.argmax].every((a) => a >= 0 && a < V)).toBe(true);
  });

  test('ties go to the first maximum; NaN counts as the maximum (torch.argmax)', () => {
    const x = new Float32Array(2 * 4).fill(1);
    const data = new Float32Array(V * 4).fill(0.1);
    data.fill(2, 10 * 4, 11 * 4); // rows 10 and 700: the same largest logit (8)
    data.fill(2, 700 * 4, 701 * 4);
    const res = ops.lmHead(x, { data, dtype: 'f32', rows: V, cols: 4 }, new Int32Array([0, 1]));
    expect([...res.argmax]).toEqual([10, 10]);
    expect([...res.maxLogit]).toEqual([8, 8]);
    expect(res.lse[0]).toBeCloseTo(8 + Math.log(2 + (V - 2) * Math.exp(0.4 - 8)), 5);
    data[333 * 4] = NaN;
    data[900 * 4] = NaN;
    const nan = ops.lmHead(x, { data, dtype: 'f32', rows: V, cols: 4 }, new Int32Array([0]));
    expect(nan.argmax[0]).toBe(333);
    expect(nan.maxLogit[0]).toBeNaN();
    expect(nan.lse[0]).toBeNaN();
  });

  test('a one-word vocabulary: lse = the logit', () => {
    const x = new Float32Array([1, 2, 3]);
    const res = ops.lmHead(x, { data: new Float32Array([0.5, 0.25, -1]), dtype: 'f32', rows: 1, cols: 3 }, new Int32Array([0]));
    expect(res.argmax[0]).toBe(0);
    expect(res.lse[0]).toBe(-2);
  });
});

// ---- argument checks (these run before any native code) -----------------------------------

describe('argument checks name the argument', () => {
  const w: WeightMatrix = { data: new Uint16Array(12), dtype: 'bf16', rows: 3, cols: 4 };
  const x = new Float32Array(8); // T = 2
  const cases: [string, () => unknown, RegExp][] = [
    ['out size', () => ops.matmul(x, w, null, new Float32Array(5)), /out\.length = 5.*T \* w\.rows = 6/],
    ['x not a multiple of K', () => ops.matmul(new Float32Array(7), w, null, new Float32Array(6)), /x\.length = 7/],
    ['bias size', () => ops.matmul(x, w, new Float32Array(2), new Float32Array(6)), /bias\.length = 2/],
    ['weight size', () => ops.matmul(x, { ...w, rows: 4 }, null, new Float32Array(8)), /w\.data\.length = 12/],
    ['dtype vs array', () => ops.matmul(x, { ...w, dtype: 'f32' }, null, new Float32Array(6)), /w\.data = Uint16Array.*Float32Array/],
    ['unknown dtype', () => ops.matmul(x, { ...w, dtype: 'int8' as WeightDType }, null, new Float32Array(6)), /w\.dtype = int8/],
    ['x type', () => ops.matmul(new Float64Array(8) as unknown as Float32Array, w, null, new Float32Array(6)), /x = Float64Array/],
    ['threads', () => ops.matmul(x, w, null, new Float32Array(6), -1), /threads = -1/],
    ['rmsnorm out', () => ops.rmsnorm(x, { data: new Float32Array(4), dtype: 'f32' }, 1e-6, new Float32Array(4)), /out\.length = 4/],
    ['rmsnorm H', () => ops.rmsnorm(x, { data: new Float32Array(3), dtype: 'f32' }, 1e-6, x), /x\.length = 8/],
    ['rmsnorm eps', () => ops.rmsnorm(x, { data: new Float32Array(4), dtype: 'f32' }, -1, x), /eps = -1/],
    ['rmsnormHeads D', () => ops.rmsnormHeads(x, { data: new Uint16Array(3), dtype: 'bf16' }, 1e-6), /x\.length = 8/],
    ['rope headDim odd', () => ops.rope(x, new Int32Array(2), 1e4, 3), /headDim = 3/],
    ['rope x size', () => ops.rope(new Float32Array(12), new Int32Array(2), 1e4, 4), /x\.length = 12.*= 8/],
    ['rope llama3 fields', () => ops.rope(x, new Int32Array(2), 1e4, 4, { type: 'llama3', factor: 8 }), /scaling\.lowFreqFactor/],
    ['rope theta', () => ops.rope(x, new Int32Array(2), 0, 4), /theta = 0/],
    ['siluMul up', () => ops.siluMul(x, new Float32Array(7), x), /up\.length = 7/],
    ['addInPlace y', () => ops.addInPlace(x, new Float32Array(9)), /y\.length = 9/],
    ['embed out', () => ops.embed(new Int32Array([0, 1]), w, new Float32Array(7)), /out\.length = 7/],
    ['embed id', () => ops.embed(new Int32Array([0, 3]), w, new Float32Array(8)), /ids\[1\] = 3.*0 to 2/],
    ['toBf16 out', () => ops.toBf16(x, new Uint16Array(3)), /out\.length = 3/],
    ['toFp16 out type', () => ops.toFp16(x, new Int16Array(8) as unknown as Uint16Array), /out = Int16Array/],
    ['lmHead rows', () => ops.lmHead(new Float32Array(8), { ...w, cols: 4 }, new Int32Array([0, 2])), /rows\[1\] = 2/],
    ['lmHead lse', () => ops.lmHead(x, w, new Int32Array([0]), { lse: new Float32Array(2) }), /out\.lse\.length = 2/],
    ['lmHead logits', () => ops.lmHead(x, w, new Int32Array([0, 1]), { logits: new Float32Array(3) }), /out\.logits\.length = 3.*= 6/],
  ];
  test.for(cases)('%s', ([, call, message]) => {
    let thrown: unknown;
    try {
      call();
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(TidarcError);
    expect((thrown as TidarcError).code).toBe('invalid-argument');
    expect((thrown as TidarcError).message).toMatch(message);
  });
});

describe.skipIf(!available)('the native layer checks sizes too (direct calls throw, never crash)', () => {
  test('wrong sizes and types from a direct call are JS exceptions', () => {
    const n = ops.loadCpuOps();
    const w = new Uint16Array(12);
    expect(() => n.matmul(new Float32Array(8), w, 'bf16', 3, 4, null, new Float32Array(1), 0)).toThrow(RangeError);
    expect(() => n.matmul(new Float32Array(8), w, 'bf16', 4, 4, null, new Float32Array(8), 0)).toThrow(/weight has 12 elements/);
    expect(() => n.matmul(new Float32Array(8), w, 'f32', 3, 4, null, new Float32Array(6), 0)).toThrow(TypeError);
    const shared = new Float32Array(16);
    expect(() => n.matmul(shared.subarray(0, 8), w, 'bf16', 3, 4, null, shared.subarray(4, 10), 0)).toThrow(/overlap/);
    expect(() => n.lmHead(new Float32Array(8), w, 'bf16', 3, 4, new Int32Array([5]), new Int32Array(1), new Float32Array(1), new Float32Array(1), null, 0)).toThrow(/rows\[0\] = 5/);
    expect(() => n.rope(new Float32Array(8), new Int32Array(2), 1e4, 3, 0, 1, 0, 0, 0)).toThrow(/headDim must be even/);
    expect(() => n.rmsnorm(new Float32Array(8), new Float32Array(0), 'f32', 1e-6, new Float32Array(8))).toThrow(/must not be empty/);
  });

  test('a native error surfaces from the wrappers as TidarcError(runtime)', () => {
    // Overlapping out and x pass the TS size checks; the native layer refuses them.
    const shared = new Float32Array(14);
    const w: WeightMatrix = { data: new Uint16Array(12), dtype: 'bf16', rows: 3, cols: 4 };
    let thrown: unknown;
    try {
      ops.matmul(shared.subarray(0, 8), w, null, shared.subarray(2, 8));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(TidarcError);
    expect((thrown as TidarcError).code).toBe('runtime');
    expect((thrown as TidarcError).message).toMatch(/matmul: .*overlap/);
  });
});

describe('ropeInvFreq', () => {
  test('theta^(-2i/D) in float64, rounded once to float32; llama3 scaling divides low frequencies only', () => {
    const plain = ops.ropeInvFreq(10000, 64);
    expect(plain).toHaveLength(32);
    for (let i = 0; i < 32; i++) expect(plain[i]).toBe(Math.fround(1 / 10000 ** ((2 * i) / 64)));
    const scaled = ops.ropeInvFreq(500000, 128, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    const base = ops.ropeInvFreq(500000, 128);
    expect(scaled[0]).toBe(base[0]);                      // high frequency: kept
    expect(scaled[63]).toBe(Math.fround(base[63]! / 32));  // low frequency: divided by factor
    expect(() => ops.ropeInvFreq(10000, 63)).toThrow(/headDim/);
  });
});
