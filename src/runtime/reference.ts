/**
 * The float64 reference attention: the definition every kernel (CPU, emulator, CUDA) is
 * checked against. Plain loops in the ABI layouts of templates/common/tidarc_abi.h:
 *   q, o          [batch, n, qHeads, headDim]
 *   kCache/vCache [batch, kvHeads, cacheCapacity, headDim]  (slots [0, prefixLen[b]) are used)
 *   kStep/vStep   [batch, n, kvHeads, headDim]
 *   lse           [batch, n, qHeads]  natural log of the sum of exp(scaled score)
 * Query token tq sees every prefix key (unless prefixVisible is false) and the in-step keys
 * tk with visible(tq, tk). Query head hq reads KV head floor(hq / (qHeads / kvHeads)).
 * A row that sees no key has o = 0 and lse = -Infinity.
 */
import type { AttentionShape } from '../codegen/variant.js';
import { TidarcError } from '../errors.js';
import { checkInteger, checkPrefixLen } from './attention-checks.js';
import { encode, decode, type DType } from '../util/dtype.js';
import { seededRandom } from '../util/random.js';

export type Values = Float64Array | Float32Array;

/** The sizes of one attention call: a variant's head configuration (less its dtype) over a batch and a cache. */
export interface AttentionCallShape extends Omit<AttentionShape, 'dtype'> {
  readonly batch: number;
  /** In-step tokens per sequence. */
  readonly n: number;
  readonly cacheCapacity: number;
}

export interface ReferenceProblem extends AttentionCallShape {
  prefixLen: Int32Array | readonly number[];
  q: Values;
  kCache: Values;
  vCache: Values;
  kStep: Values;
  vStep: Values;
  /** In-step visibility: may query token tq attend to in-step key token tk? */
  visible: (tq: number, tk: number) => boolean;
  /** Whether in-step queries see the committed prefix (default true). */
  prefixVisible?: boolean;
  /** Score scale (default 1 / sqrt(headDim)). */
  scale?: number;
}

export interface ReferenceResult {
  o: Float64Array;
  lse: Float64Array;
}

function fail(field: string, value: unknown, allowed: string): never {
  throw new TidarcError('invalid-argument', 'invalid reference attention input', {
    field,
    value,
    allowed,
  });
}

function checkShape(s: AttentionCallShape): void {
  for (const f of ['batch', 'n', 'qHeads', 'kvHeads', 'headDim'] as const) checkInteger(f, s[f], 1);
  checkInteger('cacheCapacity', s.cacheCapacity, 0);
  if (s.qHeads % s.kvHeads !== 0) fail('qHeads', s.qHeads, `a multiple of kvHeads (${s.kvHeads})`);
}

/** The same checks as the kernel library's (attention-checks.ts), so both refuse the same calls. */
function checkPrefix(s: AttentionCallShape, prefixLen: unknown): Int32Array {
  return checkPrefixLen(prefixLen, s.batch, s.cacheCapacity);
}

/** Element counts of every tensor of the ABI for a shape. */
export function attentionSizes(s: AttentionCallShape): {
  q: number;
  cache: number;
  step: number;
  lse: number;
} {
  return {
    q: s.batch * s.n * s.qHeads * s.headDim,
    cache: s.batch * s.kvHeads * s.cacheCapacity * s.headDim,
    step: s.batch * s.n * s.kvHeads * s.headDim,
    lse: s.batch * s.n * s.qHeads,
  };
}

export function referenceAttention(p: ReferenceProblem): ReferenceResult {
  checkShape(p);
  const prefixLen = checkPrefix(p, p.prefixLen);
  const sizes = attentionSizes(p);
  const expected: Array<[string, Values, number]> = [
    ['q', p.q, sizes.q],
    ['kCache', p.kCache, sizes.cache],
    ['vCache', p.vCache, sizes.cache],
    ['kStep', p.kStep, sizes.step],
    ['vStep', p.vStep, sizes.step],
  ];
  for (const [name, arr, size] of expected) {
    if (arr.length !== size) fail(`${name}.length`, arr.length, `${size} for this shape`);
  }

  const { batch, n, qHeads, kvHeads, headDim: d, cacheCapacity: cap } = p;
  const group = qHeads / kvHeads;
  const scale = p.scale ?? 1 / Math.sqrt(d);
  const prefixVisible = p.prefixVisible ?? true;
  const o = new Float64Array(sizes.q);
  const lse = new Float64Array(sizes.lse);
  // Scores and values of the keys one row sees, reused across rows.
  const scores: number[] = [];
  const valueRows: Array<{ v: Values; base: number }> = [];

  for (let b = 0; b < batch; b++) {
    const L = prefixLen[b]!;
    for (let tq = 0; tq < n; tq++) {
      for (let hq = 0; hq < qHeads; hq++) {
        const h = Math.floor(hq / group);
        const qBase = ((b * n + tq) * qHeads + hq) * d;
        scores.length = 0;
        valueRows.length = 0;

        const addKey = (k: Values, v: Values, base: number): void => {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += p.q[qBase + i]! * k[base + i]!;
          scores.push(dot * scale);
          valueRows.push({ v, base });
        };
        if (prefixVisible) {
          for (let s = 0; s < L; s++) addKey(p.kCache, p.vCache, ((b * kvHeads + h) * cap + s) * d);
        }
        for (let tk = 0; tk < n; tk++) {
          if (p.visible(tq, tk)) addKey(p.kStep, p.vStep, ((b * n + tk) * kvHeads + h) * d);
        }

        const row = (b * n + tq) * qHeads + hq;
        if (scores.length === 0) {
          lse[row] = -Infinity; // o stays 0
          continue;
        }
        let max = -Infinity;
        for (const s of scores) max = Math.max(max, s);
        let sum = 0;
        for (let j = 0; j < scores.length; j++) {
          const w = Math.exp(scores[j]! - max);
          sum += w;
          const { v, base } = valueRows[j]!;
          for (let i = 0; i < d; i++) o[qBase + i] = o[qBase + i]! + w * v[base + i]!;
        }
        for (let i = 0; i < d; i++) o[qBase + i] = o[qBase + i]! / sum;
        lse[row] = max + Math.log(sum);
      }
    }
  }
  return { o, lse };
}

// ---- deterministic random inputs for tests -------------------------------------------

export interface RandomInputOptions extends AttentionCallShape {
  dtype: DType;
  seed: number;
  /** Per-sequence prefix lengths; random in [0, cacheCapacity] when omitted. */
  prefixLen?: Int32Array | readonly number[];
  /** 'normal': N(0, 1) (default); 'uniform': U[-1, 1). */
  distribution?: 'normal' | 'uniform';
  /**
   * Fill cache slots [prefixLen[b], cacheCapacity) with NaN (default true): a kernel that
   * lets an unused slot reach its output (e.g. 0 * NaN in P V) then fails loudly.
   */
  poisonCacheTail?: boolean;
}

export interface AttentionTensors<T> {
  q: T;
  kCache: T;
  vCache: T;
  kStep: T;
  vStep: T;
}

export interface RandomAttentionInputs {
  shape: AttentionCallShape;
  prefixLen: Int32Array;
  /** Bit patterns to hand to a kernel. */
  bits: AttentionTensors<Uint16Array>;
  /** The exact values of `bits`, for referenceAttention. */
  values: AttentionTensors<Float32Array>;
}

export function randomAttentionInputs(opts: RandomInputOptions): RandomAttentionInputs {
  const shape: AttentionCallShape = {
    batch: opts.batch,
    n: opts.n,
    qHeads: opts.qHeads,
    kvHeads: opts.kvHeads,
    headDim: opts.headDim,
    cacheCapacity: opts.cacheCapacity,
  };
  checkShape(shape);
  const rng = seededRandom(opts.seed);
  const prefixLen = checkPrefix(
    shape,
    opts.prefixLen ?? Array.from({ length: shape.batch }, () => rng.int(0, shape.cacheCapacity)),
  );
  const draw = opts.distribution === 'uniform' ? () => rng.uniform(-1, 1) : () => rng.normal();
  const sizes = attentionSizes(shape);
  const make = (size: number): Uint16Array => {
    const raw = new Float64Array(size);
    for (let i = 0; i < size; i++) raw[i] = draw();
    return encode(opts.dtype, raw);
  };
  const bits: AttentionTensors<Uint16Array> = {
    q: make(sizes.q),
    kCache: make(sizes.cache),
    vCache: make(sizes.cache),
    kStep: make(sizes.step),
    vStep: make(sizes.step),
  };
  if (opts.poisonCacheTail ?? true) {
    const nan = opts.dtype === 'bf16' ? 0x7fc0 : 0x7e00;
    const { batch, kvHeads, cacheCapacity: cap, headDim: d } = shape;
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < kvHeads; h++) {
        const start = ((b * kvHeads + h) * cap + prefixLen[b]!) * d;
        const end = ((b * kvHeads + h) * cap + cap) * d;
        bits.kCache.fill(nan, start, end);
        bits.vCache.fill(nan, start, end);
      }
    }
  }
  const values: AttentionTensors<Float32Array> = {
    q: decode(opts.dtype, bits.q),
    kCache: decode(opts.dtype, bits.kCache),
    vCache: decode(opts.dtype, bits.vCache),
    kStep: decode(opts.dtype, bits.kStep),
    vStep: decode(opts.dtype, bits.vStep),
  };
  return { shape, prefixLen, bits, values };
}
