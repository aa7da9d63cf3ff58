/**
 * CPU operators of a decoder-only transformer forward (Qwen2/Qwen3/Llama), called per layer by
 * the orchestrator. Typed, size-checked wrappers around the addon's `cpuOps`
 * (runtime/src/ops_cpu.cc): every size or type mismatch is a TidarcError('invalid-argument')
 * naming the argument, checked before any native code runs; a native failure is a
 * TidarcError('runtime'), never a crash.
 *
 * Activations are Float32Array, row-major [tokens, features]. Weights stay in the checkpoint's
 * format: bf16 or fp16 bit patterns (Uint16Array) or float32, HF layout [out, in].
 *
 * matmul's summation order is fixed per output element (16 fma lanes over k, a fixed tree, then
 * the bias), whatever T, the thread count or the block a thread takes: a token's row is
 * bitwise the same computed alone or with 271 others. lmHead's logits are the same numbers.
 */
import { TidarcError } from '../errors.js';
import type { RopeScaling } from '../ir/model.js';
import { loadNative } from './native.js';

export type { RopeScaling };

export type WeightDType = 'bf16' | 'fp16' | 'f32';

/**
 * A weight vector in the checkpoint's format: bf16/fp16 bit patterns in a Uint16Array, or
 * float32 values in a Float32Array (checked at run time against `dtype`).
 */
export interface WeightData {
  readonly data: Uint16Array | Float32Array;
  readonly dtype: WeightDType;
}

/** A weight matrix, HF layout: rows = out_features (or vocabulary), cols = in_features. */
export interface WeightMatrix extends WeightData {
  readonly rows: number;
  readonly cols: number;
}

/**
 * Where lmHead writes, one entry per requested row; a missing array is allocated. `logits`:
 * a Float32Array [rows.length, vocab] to fill, `true` to allocate one, otherwise none is kept.
 */
export interface LmHeadOutputs {
  readonly argmax?: Int32Array;
  readonly maxLogit?: Float32Array;
  readonly lse?: Float32Array;
  readonly logits?: Float32Array | boolean | null;
}

export interface LmHeadResult {
  /** Vocabulary id of the first maximum (a NaN logit counts as the maximum, like torch). */
  readonly argmax: Int32Array;
  readonly maxLogit: Float32Array;
  /** Natural-log log-sum-exp of the row's logits. */
  readonly lse: Float32Array;
  /** [rows.length, vocab], when asked for. */
  readonly logits: Float32Array | null;
}

/** The addon's positional functions (see runtime/src/ops_cpu.cc); use the wrappers below. */
export interface NativeCpuOps {
  matmul(x: Float32Array, w: Uint16Array | Float32Array, dtype: WeightDType, rows: number, cols: number,
    bias: Float32Array | null, out: Float32Array, threads: number): void;
  rmsnorm(x: Float32Array, w: Uint16Array | Float32Array, dtype: WeightDType, eps: number, out: Float32Array): void;
  rmsnormHeads(x: Float32Array, w: Uint16Array | Float32Array, dtype: WeightDType, eps: number): void;
  rope(x: Float32Array, positions: Int32Array, theta: number, headDim: number, scaling: 0 | 1 | 2,
    factor: number, lowFreqFactor: number, highFreqFactor: number, originalMaxPositionEmbeddings: number): void;
  ropeInvFreq(out: Float32Array, theta: number, headDim: number, scaling: 0 | 1 | 2,
    factor: number, lowFreqFactor: number, highFreqFactor: number, originalMaxPositionEmbeddings: number): void;
  siluMul(gate: Float32Array, up: Float32Array, out: Float32Array, threads: number): void;
  addInPlace(x: Float32Array, y: Float32Array): void;
  embed(ids: Int32Array, table: Uint16Array | Float32Array, dtype: WeightDType, rows: number, cols: number,
    out: Float32Array): void;
  toBf16(x: Float32Array, out: Uint16Array): void;
  toFp16(x: Float32Array, out: Uint16Array): void;
  lmHead(x: Float32Array, w: Uint16Array | Float32Array, dtype: WeightDType, rows: number, cols: number,
    rowIds: Int32Array, argmax: Int32Array, maxLogit: Float32Array, lse: Float32Array,
    logits: Float32Array | null, threads: number): void;
  /** Threads of the addon's pool, the calling thread included (= hardware threads). */
  threadCount(): number;
}

let cached: NativeCpuOps | undefined;

/** The addon's CPU operators; throws TidarcError('runtime') saying how to build them. */
export function loadCpuOps(): NativeCpuOps {
  if (cached !== undefined) return cached;
  const ops = (loadNative() as unknown as { cpuOps?: NativeCpuOps }).cpuOps;
  if (ops === undefined) {
    throw new TidarcError('runtime', 'the native addon has no CPU operators (built before they existed); rebuild it with `npm run build:native`');
  }
  cached = ops;
  return ops;
}

/** Whether the CPU operators can be loaded (the addon is built and has them). */
export function cpuOpsAvailable(): boolean {
  try {
    loadCpuOps();
    return true;
  } catch {
    return false;
  }
}

/** Threads the operators use for `threads = 0`: the hardware threads. */
export function cpuThreadCount(): number {
  return loadCpuOps().threadCount();
}

// ---- checks ---------------------------------------------------------------------------------

function bad(op: string, field: string, value: unknown, allowed: string): never {
  throw new TidarcError('invalid-argument', `${op}: invalid argument`, { field, value, allowed });
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

function f32(op: string, field: string, v: unknown): Float32Array {
  if (!(v instanceof Float32Array)) bad(op, field, typeName(v), 'a Float32Array');
  return v;
}

function i32(op: string, field: string, v: unknown): Int32Array {
  if (!(v instanceof Int32Array)) bad(op, field, typeName(v), 'an Int32Array');
  return v;
}

function u16(op: string, field: string, v: unknown): Uint16Array {
  if (!(v instanceof Uint16Array)) bad(op, field, typeName(v), 'a Uint16Array');
  return v;
}

function length(op: string, field: string, actual: number, expected: number, what: string): void {
  if (actual !== expected) bad(op, `${field}.length`, actual, `${what} = ${expected}`);
}

function count(op: string, field: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) bad(op, field, v, `an integer >= ${min}`);
  return v;
}

function threadsArg(op: string, v: number | undefined): number {
  return v === undefined ? 0 : count(op, 'threads', v, 0);
}

function finite(op: string, field: string, v: unknown, min: number, inclusive: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (inclusive ? v < min : v <= min)) {
    bad(op, field, v, `a finite number ${inclusive ? '>=' : '>'} ${min}`);
  }
  return v;
}

function weightData(op: string, field: string, w: WeightData): WeightData {
  if (typeof w !== 'object' || w === null) bad(op, field, typeName(w), 'an object { data, dtype }');
  if (w.dtype === 'f32') f32(op, `${field}.data`, w.data);
  else if (w.dtype === 'bf16' || w.dtype === 'fp16') u16(op, `${field}.data`, w.data);
  else bad(op, `${field}.dtype`, (w as { dtype: unknown }).dtype, "'bf16', 'fp16' or 'f32'");
  return w;
}

function weightMatrix(op: string, field: string, w: WeightMatrix, minRows: number): WeightMatrix {
  weightData(op, field, w);
  count(op, `${field}.rows`, w.rows, minRows);
  count(op, `${field}.cols`, w.cols, 1);
  length(op, `${field}.data`, w.data.length, w.rows * w.cols, `${field}.rows * ${field}.cols`);
  return w;
}

/** x.length / cols, an error naming x unless it divides. */
function tokens(op: string, x: Float32Array, cols: number, what: string): number {
  if (x.length % cols !== 0) bad(op, 'x.length', x.length, `a multiple of ${what} = ${cols}`);
  return x.length / cols;
}

function native(op: string, call: (ops: NativeCpuOps) => void): void {
  const ops = loadCpuOps();
  try {
    call(ops);
  } catch (e) {
    throw new TidarcError('runtime', `${op}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

// ---- operators ------------------------------------------------------------------------------

/**
 * out[T, N] = x[T, K] W^T + bias, W = w [N = rows, K = cols]. `threads` = 0 (default): all
 * hardware threads of the addon's pool (created once, reused by every call).
 */
export function matmul(x: Float32Array, w: WeightMatrix, bias: Float32Array | null, out: Float32Array, threads?: number): void {
  const op = 'matmul';
  f32(op, 'x', x);
  weightMatrix(op, 'w', w, 1);
  if (bias !== null) length(op, 'bias', f32(op, 'bias', bias).length, w.rows, 'w.rows');
  f32(op, 'out', out);
  const T = tokens(op, x, w.cols, 'w.cols');
  length(op, 'out', out.length, T * w.rows, 'T * w.rows');
  const th = threadsArg(op, threads);
  native(op, (n) => n.matmul(x, w.data, w.dtype, w.rows, w.cols, bias, out, th));
}

/** Per row of H = w.length: out = w * (x / sqrt(mean(x^2) + eps)); `out` may be `x`. */
export function rmsnorm(x: Float32Array, w: WeightData, eps: number, out: Float32Array): void {
  const op = 'rmsnorm';
  f32(op, 'x', x);
  weightData(op, 'w', w);
  if (w.data.length === 0) bad(op, 'w.data.length', 0, 'at least 1');
  finite(op, 'eps', eps, 0, true);
  f32(op, 'out', out);
  tokens(op, x, w.data.length, 'w.data.length');
  length(op, 'out', out.length, x.length, 'x.length');
  native(op, (n) => n.rmsnorm(x, w.data, w.dtype, eps, out));
}

/** QK-norm: rmsnorm of every head_dim slice of x[T, heads * D] with w[D], in place. */
export function rmsnormHeads(x: Float32Array, w: WeightData, eps: number): void {
  const op = 'rmsnormHeads';
  f32(op, 'x', x);
  weightData(op, 'w', w);
  if (w.data.length === 0) bad(op, 'w.data.length', 0, 'at least 1');
  finite(op, 'eps', eps, 0, true);
  tokens(op, x, w.data.length, 'w.data.length (head dim)');
  native(op, (n) => n.rmsnormHeads(x, w.data, w.dtype, eps));
}

/**
 * RoPE in place on x[T, heads * headDim], HF rotate_half pairs (i, i + headDim/2). Inverse
 * frequencies theta^(-2i/D) (and the scaling) in float64, then rounded to float32; the angle
 * is the float32 product position * inv_freq, as in HF; cos/sin rounded once to float32.
 */
export function rope(x: Float32Array, positions: Int32Array, theta: number, headDim: number, scaling?: RopeScaling): void {
  const op = 'rope';
  f32(op, 'x', x);
  i32(op, 'positions', positions);
  finite(op, 'theta', theta, 0, false);
  count(op, 'headDim', headDim, 2);
  if (headDim % 2 !== 0) bad(op, 'headDim', headDim, 'an even integer');
  const per = positions.length * headDim;
  if (per === 0 ? x.length !== 0 : x.length % per !== 0) {
    bad(op, 'x.length', x.length, `a multiple of positions.length * headDim = ${per}`);
  }
  const [kind, factor, low, high, original] = ropeScalingArgs(op, scaling);
  native(op, (n) => n.rope(x, positions, theta, headDim, kind, factor, low, high, original));
}

/** The float32 inverse frequencies [headDim / 2] that rope() uses (scaling applied). */
export function ropeInvFreq(theta: number, headDim: number, scaling?: RopeScaling): Float32Array {
  const op = 'ropeInvFreq';
  finite(op, 'theta', theta, 0, false);
  count(op, 'headDim', headDim, 2);
  if (headDim % 2 !== 0) bad(op, 'headDim', headDim, 'an even integer');
  const out = new Float32Array(headDim / 2);
  const [kind, factor, low, high, original] = ropeScalingArgs(op, scaling);
  native(op, (n) => n.ropeInvFreq(out, theta, headDim, kind, factor, low, high, original));
  return out;
}

/** RoPE scaling as the addon's positional numbers: kind (0 none, 1 linear, 2 llama3), factor, low, high, original. */
function ropeScalingArgs(op: string, scaling: RopeScaling | undefined): [0 | 1 | 2, number, number, number, number] {
  if (scaling === undefined) return [0, 1, 0, 0, 0];
  if (scaling.type !== 'linear' && scaling.type !== 'llama3') bad(op, 'scaling.type', scaling.type, "'linear' or 'llama3'");
  const factor = finite(op, 'scaling.factor', scaling.factor, 0, false);
  if (scaling.type === 'linear') return [1, factor, 0, 0, 0];
  const low = finite(op, 'scaling.lowFreqFactor', scaling.lowFreqFactor, 0, false);
  const high = finite(op, 'scaling.highFreqFactor', scaling.highFreqFactor, low, false);
  const original = finite(op, 'scaling.originalMaxPositionEmbeddings', scaling.originalMaxPositionEmbeddings, 0, false);
  return [2, factor, low, high, original];
}

/** out = silu(gate) * up = gate / (1 + exp(-gate)) * up; out may be gate or up. */
export function siluMul(gate: Float32Array, up: Float32Array, out: Float32Array, threads?: number): void {
  const op = 'siluMul';
  f32(op, 'gate', gate);
  length(op, 'up', f32(op, 'up', up).length, gate.length, 'gate.length');
  length(op, 'out', f32(op, 'out', out).length, gate.length, 'gate.length');
  const th = threadsArg(op, threads);
  native(op, (n) => n.siluMul(gate, up, out, th));
}

/**
 * out = gelu(x), torch's gelu(approximate='tanh'): 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))),
 * each element in float64 and rounded once to float32 (tidarc_op_gelu's tanhf is within a few
 * float32 roundings of it); `out` may be `x`. Plain TypeScript: only toy families use it.
 */
export function gelu(x: Float32Array, out: Float32Array): void {
  const op = 'gelu';
  f32(op, 'x', x);
  length(op, 'out', f32(op, 'out', out).length, x.length, 'x.length');
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    out[i] = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
  }
}

/** x += y (the residual add). */
export function addInPlace(x: Float32Array, y: Float32Array): void {
  const op = 'addInPlace';
  f32(op, 'x', x);
  length(op, 'y', f32(op, 'y', y).length, x.length, 'x.length');
  native(op, (n) => n.addInPlace(x, y));
}

/** out[t] = table[ids[t]] as float32; every id must be in [0, table.rows). */
export function embed(ids: Int32Array, table: WeightMatrix, out: Float32Array): void {
  const op = 'embed';
  i32(op, 'ids', ids);
  weightMatrix(op, 'table', table, 1);
  f32(op, 'out', out);
  length(op, 'out', out.length, ids.length * table.cols, 'ids.length * table.cols');
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (id < 0 || id >= table.rows) bad(op, `ids[${t}]`, id, `a token id from 0 to ${table.rows - 1}`);
  }
  native(op, (n) => n.embed(ids, table.data, table.dtype, table.rows, table.cols, out));
}

/** bf16 bits of x, rounded to nearest even (NaN -> quiet NaN with the sign kept). */
export function toBf16(x: Float32Array, out: Uint16Array): void {
  const op = 'toBf16';
  f32(op, 'x', x);
  length(op, 'out', u16(op, 'out', out).length, x.length, 'x.length');
  native(op, (n) => n.toBf16(x, out));
}

/** fp16 bits of x, rounded to nearest even (overflow -> inf, NaN -> quiet NaN with the sign). */
export function toFp16(x: Float32Array, out: Uint16Array): void {
  const op = 'toFp16';
  f32(op, 'x', x);
  length(op, 'out', u16(op, 'out', out).length, x.length, 'x.length');
  native(op, (n) => n.toFp16(x, out));
}

/**
 * Fused lm_head over the token rows `rows` of x[T, H] with w[V, H]: per requested row the
 * argmax, the maximum logit and the log-sum-exp, without materialising T x V logits (only
 * rows.length x V when `out.logits` asks for them). Rows may repeat; a row's results depend on
 * neither the other rows nor the thread count.
 */
export function lmHead(x: Float32Array, w: WeightMatrix, rows: Int32Array, out: LmHeadOutputs = {}, threads?: number): LmHeadResult {
  const op = 'lmHead';
  f32(op, 'x', x);
  weightMatrix(op, 'w', w, 1);
  i32(op, 'rows', rows);
  const T = tokens(op, x, w.cols, 'w.cols');
  const R = rows.length;
  if (typeof out !== 'object' || out === null) bad(op, 'out', typeName(out), 'an object { argmax?, maxLogit?, lse?, logits? }');
  const argmax = out.argmax ?? new Int32Array(R);
  const maxLogit = out.maxLogit ?? new Float32Array(R);
  const lse = out.lse ?? new Float32Array(R);
  length(op, 'out.argmax', i32(op, 'out.argmax', argmax).length, R, 'rows.length');
  length(op, 'out.maxLogit', f32(op, 'out.maxLogit', maxLogit).length, R, 'rows.length');
  length(op, 'out.lse', f32(op, 'out.lse', lse).length, R, 'rows.length');
  const want = out.logits ?? null;
  let logits: Float32Array | null = null;
  if (want === true) logits = new Float32Array(R * w.rows);
  else if (want !== false && want !== null) logits = f32(op, 'out.logits', want);
  if (logits !== null) length(op, 'out.logits', logits.length, R * w.rows, 'rows.length * w.rows');
  for (let r = 0; r < R; r++) {
    const row = rows[r]!;
    if (row < 0 || row >= T) bad(op, `rows[${r}]`, row, `a token row from 0 to ${T - 1}`);
  }
  const th = threadsArg(op, threads);
  native(op, (n) => n.lmHead(x, w.data, w.dtype, w.rows, w.cols, rows, argmax, maxLogit, lse, logits, th));
  return { argmax, maxLogit, lse, logits };
}
