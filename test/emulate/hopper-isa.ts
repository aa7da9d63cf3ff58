/**
 * The PTX ISA's Hopper layouts, written from its tables and figures (not from the emulator's
 * C++): the TMA swizzle patterns ("Swizzling Modes"), the wgmma shared-memory canonical layouts
 * (CuTe shapes and strides of "Canonical Layouts"), the matrix descriptor's bit fields, and the
 * register fragments of wgmma .m64nNk16 (A and the accumulators). For 16-bit elements.
 */

export type Span = 0 | 32 | 64 | 128;
export type Major = 'K' | 'MN';

/**
 * "Swizzling Modes": row r of the table (the 128-byte line r of a pattern) lists, at each
 * 16-byte position of the line, the chunk of the unswizzled line stored there.
 */
const SWIZZLE_TABLES: Record<Exclude<Span, 0>, readonly (readonly number[])[]> = {
  32: [[0, 1, 2, 3, 4, 5, 6, 7], [1, 0, 3, 2, 5, 4, 7, 6]],
  64: [[0, 1, 2, 3, 4, 5, 6, 7], [1, 0, 3, 2, 5, 4, 7, 6], [2, 3, 0, 1, 6, 7, 4, 5], [3, 2, 1, 0, 7, 6, 5, 4]],
  128: [
    [0, 1, 2, 3, 4, 5, 6, 7], [1, 0, 3, 2, 5, 4, 7, 6], [2, 3, 0, 1, 6, 7, 4, 5], [3, 2, 1, 0, 7, 6, 5, 4],
    [4, 5, 6, 7, 0, 1, 2, 3], [5, 4, 7, 6, 1, 0, 3, 2], [6, 7, 4, 5, 2, 3, 0, 1], [7, 6, 5, 4, 3, 2, 1, 0],
  ],
};

/** Where byte `offset` (from a pattern's start) of the unswizzled data lies once swizzled. */
export function swizzledByte(offset: number, span: Span): number {
  if (span === 0) return offset;
  const table = SWIZZLE_TABLES[span];
  const line = Math.floor(offset / 128), chunk = Math.floor(offset / 16) % 8;
  return line * 128 + table[line % table.length]!.indexOf(chunk) * 16 + (offset % 16);
}

// ---- CuTe layouts: a nested shape and stride; a coordinate is split colexicographically ----
type Tuple = number | readonly Tuple[];
function flatten(t: Tuple): number[] {
  return typeof t === 'number' ? [t] : t.flatMap(flatten);
}
/** Offset of the 1-D index `i` within one mode (shape, stride) of a layout. */
function modeOffset(i: number, shape: Tuple, stride: Tuple): number {
  const s = flatten(shape), d = flatten(stride);
  let off = 0;
  for (let k = 0; k < s.length; k++) {
    off += (i % s[k]!) * d[k]!;
    i = Math.floor(i / s[k]!);
  }
  return off;
}

/**
 * "Canonical Layouts" (T = 8 elements of 16 bits = 128 bits; LBO, SBO in elements here): mode 0
 * runs along M or N, mode 1 along K. m and k (the repeat counts) are left open: a coordinate
 * past the inner extents simply continues into them.
 */
function canonical(major: Major, span: Span, lbo: number, sbo: number): { shape: [Tuple, Tuple]; stride: [Tuple, Tuple] } {
  const T = 8, big = 1 << 20;
  if (major === 'MN') {
    if (span === 0) return { shape: [[T, 1, big], [8, big]], stride: [[1, T, sbo], [T, lbo]] };
    const s = span / 16;  // 2, 4 or 8 chunks of T elements along MN
    return { shape: [[T, s, big], [8, big]], stride: [[1, T, lbo], [s * T, sbo]] };
  }
  if (span === 0) return { shape: [[8, big], [T, big]], stride: [[T, sbo], [1, lbo]] };
  return { shape: [[8, big], [T, big]], stride: [[(span / 16) * T, sbo], [1, T]] };
}

/** Byte offset, from the matrix start, of element (i along M or N, j along K) in shared memory. */
export function canonicalByte(major: Major, span: Span, lboBytes: number, sboBytes: number, i: number, j: number): number {
  const { shape, stride } = canonical(major, span, lboBytes / 2, sboBytes / 2);
  return 2 * (modeOffset(i, shape[0], stride[0]) + modeOffset(j, shape[1], stride[1]));
}

/** "Matrix Descriptor Format". */
export function descriptor(startByte: number, lboBytes: number, sboBytes: number, span: Span): bigint {
  const enc = (x: number) => BigInt((x & 0x3ffff) >> 4);
  const layout = span === 128 ? 1n : span === 64 ? 2n : span === 32 ? 3n : 0n;
  return enc(startByte) | (enc(lboBytes) << 16n) | (enc(sboBytes) << 32n) | (layout << 62n);
}

// ---- register fragments (Figures "WGMMA .m64nNk16 register fragment layout") -----------------
const warpOf = (t: number) => Math.floor(t / 32);
const groupID = (t: number) => Math.floor((t % 32) / 4);
const threadInGroup = (t: number) => t % 4;

/** Accumulator d_i of thread t: [row, column]. Columns come in blocks of 8, four values each. */
export function accElement(t: number, i: number): [number, number] {
  const block = Math.floor(i / 4), c = i % 4;
  return [16 * warpOf(t) + groupID(t) + (c >= 2 ? 8 : 0), 8 * block + 2 * threadInGroup(t) + (c % 2)];
}

/** A in registers: a_i, i = 0..7 (two per 32-bit register) of thread t: [row, k]. */
export function aElement(t: number, i: number): [number, number] {
  const row = 16 * warpOf(t) + groupID(t) + ([2, 3, 6, 7].includes(i) ? 8 : 0);
  return [row, 2 * threadInGroup(t) + (i % 2) + (i >= 4 ? 8 : 0)];
}
