/**
 * The CPU backend's op table: each op of a step graph on the CPU operators (ops.ts, the
 * addon) and attention through the compiled kernel library. The CPU runs the base graph
 * unfused, so these are the float ops in the order the graph lists them.
 */
import type { ModelSpec } from '../../ir/model.js';
import type { OpTable } from '../../ir/step-exec.js';
import { fromFp16Bits } from '../../util/dtype.js';
import type { KernelLibrary } from '../kernel-library.js';
import * as ops from '../ops.js';
import type { KvCache } from './kv-cache.js';
import type { ResolvedLaunch } from './step.js';
import { type ModelWeights, weightOf } from './weights.js';

export type CpuBuffer = Float32Array | Uint16Array | Int32Array;

/** One pass: its buffers by tensor name (the workspace plus ids and positions), launches and timing. */
export interface CpuPass {
  readonly bufs: ReadonlyMap<string, CpuBuffer>;
  readonly tokens: number;
  readonly launches: readonly ResolvedLaunch[];
  attentionMs: number;
}

export interface CpuBackend {
  readonly spec: ModelSpec;
  readonly weights: ModelWeights;
  readonly kernels: KernelLibrary;
  readonly cache: KvCache;
  /** Threads of the operators (0 = all). */
  readonly threads: number;
  /** Threads of attention calls when set, else they choose per call (tuned or heuristic). */
  readonly attentionThreads?: number;
}

const f32 = (p: CpuPass, name: string): Float32Array => p.bufs.get(name) as Float32Array;
const u16 = (p: CpuPass, name: string): Uint16Array => p.bufs.get(name) as Uint16Array;

/** Decodes 16-bit bits into an existing fp32 array. */
function decodeInto(dtype: 'bf16' | 'fp16', bits: Uint16Array, out: Float32Array): void {
  if (dtype === 'bf16') {
    const words = new Uint32Array(out.buffer, out.byteOffset, out.length);
    for (let i = 0; i < bits.length; i++) words[i] = bits[i]! << 16;
  } else {
    out.set(fromFp16Bits(bits));
  }
}

export function cpuOpTable(b: CpuBackend): OpTable<CpuPass> {
  const { spec, weights, threads } = b;
  const W = (name: string) => weightOf(weights, name);
  const bias = (name: string | undefined): Float32Array | null => (name === undefined ? null : (W(name).data as Float32Array));
  return {
    embed: (op, p) => ops.embed(p.bufs.get(op.ids) as Int32Array, W(op.table), f32(p, op.out)),
    rmsnorm: (op, p) => ops.rmsnorm(f32(p, op.x), W(op.weight), spec.rmsNormEps, f32(p, op.out)),
    headNorm: (op, p) => ops.rmsnormHeads(f32(p, op.x), W(op.weight), spec.rmsNormEps),
    linear: (op, p) => {
      for (const part of op.parts) ops.matmul(f32(p, op.x), W(part.weight), bias(part.bias), f32(p, part.out!), threads);
    },
    rope: (op, p) => ops.rope(f32(p, op.x), p.bufs.get('positions') as Int32Array, spec.ropeTheta, spec.headDim, spec.ropeScaling),
    to16: (op, p) => (spec.dtype === 'bf16' ? ops.toBf16 : ops.toFp16)(f32(p, op.x), u16(p, op.out)),
    toFloat: (op, p) => decodeInto(spec.dtype, u16(p, op.x), f32(p, op.out)),
    attention: (op, p) => {
      const t0 = performance.now();
      attention(b, op.layer, u16(p, op.q), u16(p, op.k), u16(p, op.v), p.tokens, p.launches, u16(p, op.out), f32(p, op.lse));
      p.attentionMs += performance.now() - t0;
    },
    swiglu: (op, p) => ops.siluMul(f32(p, op.gate), f32(p, op.up), f32(p, op.out), threads),
    gelu: (op, p) => ops.gelu(f32(p, op.x), f32(p, op.out)),
    add: (op, p) => ops.addInPlace(f32(p, op.x), f32(p, op.y)),
  };
}

/** Attention of every row of the pass into o [T, qHeads, headDim] (model dtype bits), launch by launch. */
function attention(b: CpuBackend, layer: number, q: Uint16Array, k: Uint16Array, v: Uint16Array, T: number, launches: readonly ResolvedLaunch[], o: Uint16Array, lse: Float32Array): void {
  const { queryHeads: Hq, kvHeads: Hkv, headDim: D } = b.spec;
  const cache = b.cache;
  for (const l of launches) {
    // Rows [from, from + rows) of the pass; a shorter tail is zero-padded to the variant's n.
    const n = b.kernels.manifest.variants.find((x) => x.name === l.variant)!.steps;
    // A whole pass that is exactly one launch needs no copies (every decode step).
    const exact = l.from === 0 && l.rows === n && T === n;
    const slice = (src: Uint16Array, width: number) => {
      if (exact) return src;
      const buf = new Uint16Array(n * width);
      buf.set(src.subarray(l.from * width, Math.min(T, l.from + l.rows) * width));
      return buf;
    };
    const r = b.kernels.run(l.variant, {
      batch: 1, cacheCapacity: cache.shape.capacity, prefixLen: [l.prefix],
      q: slice(q, Hq * D), kCache: cache.k[layer]!, vCache: cache.v[layer]!, kStep: slice(k, Hkv * D), vStep: slice(v, Hkv * D),
      ...(b.attentionThreads === undefined ? {} : { threads: b.attentionThreads }),
      ...(exact ? { outputs: { o, lse } } : {}),
    });
    if (!exact) o.set(r.o.subarray(0, l.rows * Hq * D), l.from * Hq * D);
    if (l.commitRows > 0) cache.write(layer, k, v, l.from, l.commitRows, l.prefix);
  }
}
