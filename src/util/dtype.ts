/**
 * Exact conversions between JS numbers and the 16-bit float formats of the kernels.
 *
 * Encoding rounds once, to nearest with ties to even, straight from the input value (a
 * float64 for number arrays, a float32 for Float32Array): rounding a double to float32
 * first and then to 16 bits would round twice and be wrong near ties. Overflow gives
 * +-Infinity, tiny values give subnormals or +-0, and every NaN becomes the canonical quiet
 * NaN of the format (0x7fc0 / 0x7e00) with its sign kept. Decoding is exact.
 */
/** The 16-bit float formats of weights, caches and kernels (ModelSpec.dtype). */
export type DType = 'bf16' | 'fp16';

interface Format16 {
  /** Exponent bits and stored mantissa bits. */
  readonly exponentBits: number;
  readonly mantissaBits: number;
}

const BF16: Format16 = { exponentBits: 8, mantissaBits: 7 };
const FP16: Format16 = { exponentBits: 5, mantissaBits: 10 };

/** Exact powers of two 2^-200 .. 2^200, built by doubling (no Math.pow rounding doubts). */
const POW2_OFFSET = 200;
const POW2 = new Float64Array(2 * POW2_OFFSET + 1);
POW2[POW2_OFFSET] = 1;
for (let k = 1; k <= POW2_OFFSET; k++) {
  POW2[POW2_OFFSET + k] = POW2[POW2_OFFSET + k - 1]! * 2;
  POW2[POW2_OFFSET - k] = POW2[POW2_OFFSET - k + 1]! / 2;
}
function pow2(k: number): number {
  return POW2[POW2_OFFSET + k]!;
}

// Views on one 8-byte scratch buffer to read a double's sign and exponent.
const scratchF64 = new Float64Array(1);
const scratchU32 = new Uint32Array(scratchF64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // little-endian: word 1

/** Integer nearest to m >= 0, ties to even; exact because m < 2^53. */
function roundHalfEven(m: number): number {
  const f = Math.floor(m);
  const d = m - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Bits of the 16-bit value nearest to `x` (one rounding, ties to even). */
function encodeScalar(x: number, fmt: Format16): number {
  const m = fmt.mantissaBits;
  const bias = (1 << (fmt.exponentBits - 1)) - 1;
  const expMask = ((1 << fmt.exponentBits) - 1) << m;
  scratchF64[0] = x;
  const hi = scratchU32[HI]!;
  const sign = hi >>> 31 === 1 ? 0x8000 : 0;
  if (Number.isNaN(x)) return sign | expMask | (1 << (m - 1));
  const a = Math.abs(x);
  if (a === Infinity) return sign | expMask;
  const minNormalExp = 1 - bias;
  let magnitude: number;
  if (a < pow2(minNormalExp)) {
    // Subnormal range of the target: a fixed quantum 2^(minNormalExp - m). A result of
    // 2^m is the smallest normal, whose bit pattern is exactly that integer.
    magnitude = roundHalfEven(a / pow2(minNormalExp - m));
  } else {
    // a is a normal double here, so its biased exponent field gives floor(log2(a)).
    const e = ((hi >>> 20) & 0x7ff) - 1023;
    if (e > bias) return sign | expMask; // at least 2^(maxExp + 1): overflows to infinity
    const r = roundHalfEven(a / pow2(e - m)); // in [2^m, 2^(m+1)]
    // A carry out of the mantissa (r = 2^(m+1)) correctly bumps the exponent field.
    magnitude = ((e + bias) << m) + (r - (1 << m));
    if (magnitude >= expMask) magnitude = expMask;
  }
  return sign | magnitude;
}

/** The value of 16-bit pattern `bits` (exact). */
function decodeScalar(bits: number, fmt: Format16): number {
  const m = fmt.mantissaBits;
  const bias = (1 << (fmt.exponentBits - 1)) - 1;
  const expField = (bits >>> m) & ((1 << fmt.exponentBits) - 1);
  const mant = bits & ((1 << m) - 1);
  const sign = bits & 0x8000 ? -1 : 1;
  if (expField === (1 << fmt.exponentBits) - 1) return mant === 0 ? sign * Infinity : NaN;
  if (expField === 0) return sign * mant * pow2(1 - bias - m);
  return sign * (mant + (1 << m)) * pow2(expField - bias - m);
}

function encodeArray(values: ArrayLike<number>, fmt: Format16): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encodeScalar(values[i]!, fmt);
  return out;
}

/** bf16 bits of a float32 by integer rounding of its bit pattern (fast path, exact). */
function bf16FromFloat32(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    if ((b & 0x7fffffff) > 0x7f800000) {
      out[i] = ((b >>> 16) & 0x8000) | 0x7fc0;
    } else {
      out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/** Encodes float32 or float64 values as bf16 bit patterns. */
export function toBf16Bits(values: Float32Array | ArrayLike<number>): Uint16Array {
  return values instanceof Float32Array ? bf16FromFloat32(values) : encodeArray(values, BF16);
}

/** Decodes bf16 bit patterns; exact, since every bf16 value is a float32. */
export function fromBf16Bits(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i]! << 16;
  return out;
}

/** Encodes float32 or float64 values as IEEE fp16 bit patterns. */
export function toFp16Bits(values: Float32Array | ArrayLike<number>): Uint16Array {
  return encodeArray(values, FP16);
}

let fp16Table: Float32Array | undefined;

/** Decodes fp16 bit patterns; exact, through a 65536-entry table built on first use. */
export function fromFp16Bits(bits: Uint16Array): Float32Array {
  if (fp16Table === undefined) {
    fp16Table = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) fp16Table[b] = decodeScalar(b, FP16);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = fp16Table[bits[i]!]!;
  return out;
}

/** Bits of one value in `dtype` (round to nearest even). */
export function encodeScalarBits(dtype: DType, x: number): number {
  return encodeScalar(x, dtype === 'bf16' ? BF16 : FP16);
}

/** Value of one bit pattern of `dtype`. */
export function decodeScalarBits(dtype: DType, bits: number): number {
  return decodeScalar(bits & 0xffff, dtype === 'bf16' ? BF16 : FP16);
}

export function encode(dtype: DType, values: Float32Array | ArrayLike<number>): Uint16Array {
  return dtype === 'bf16' ? toBf16Bits(values) : toFp16Bits(values);
}

export function decode(dtype: DType, bits: Uint16Array): Float32Array {
  return dtype === 'bf16' ? fromBf16Bits(bits) : fromFp16Bits(bits);
}
