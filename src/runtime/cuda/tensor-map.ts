/**
 * Tensor maps (CUtensorMap, cuTensorMapEncodeTiled) for the sm_90a kernels' TMA loads: the
 * layout of each map as data, written once here (sm90aGemmMaps), checked against the driver's
 * rules before the driver sees it, so a bad map is one clear error naming the field, the value
 * and what is allowed rather than CUDA_ERROR_INVALID_VALUE. The encoding itself is the
 * driver's (the addon's cuda.encodeTensorMap; the emulated driver's for tests). Pure but for
 * encodeTensorMap.
 */
import { TidarcError } from '../../errors.js';
import { GEMM_BLOCK_K, type GemmShape } from '../../codegen/gemm-plan.js';
import { SM90A_BLOCK_W } from '../../codegen/gemm-sm90a.js';
import type { DType } from '../../util/dtype.js';

export type Swizzle = 0 | 32 | 64 | 128;

/** A tiled map of 16-bit elements: dims and box innermost first; strides in bytes for dims 1.. */
export interface TensorMapLayout {
  readonly dtype: DType;
  readonly dims: readonly number[];
  readonly strides: readonly number[];
  readonly box: readonly number[];
  readonly swizzle: Swizzle;
}

/** The addon's encoder (runtime/src/cuda/cuda_napi.cc); absent from an addon built before it. */
export interface NativeTensorMaps {
  encodeTensorMap?(dtype: DType, address: number, dims: readonly number[], strides: readonly number[], box: readonly number[], swizzle: number): Uint8Array;
}

const ELEMENT_BYTES = 2;
export const TENSOR_MAP_BYTES = 128;

/** The driver's rules (CUDA driver API, cuTensorMapEncodeTiled), each a TidarcError naming `what`'s field. */
export function checkTensorMap(layout: TensorMapLayout, address: number, what: string): TensorMapLayout {
  const bad = (field: string, value: unknown, allowed: string, why: string): never => {
    throw new TidarcError('invalid-argument', `tensor map of ${what}: ${why}`, { field, value, allowed });
  };
  const rank = layout.dims.length;
  if (rank < 2 || rank > 5) bad('dims', layout.dims.join('x'), '2 to 5 dimensions', 'wrong rank');
  if (layout.box.length !== rank) bad('box', layout.box.join('x'), `${rank} sizes, one per dimension`, 'the box has another rank than the tensor');
  if (layout.strides.length !== rank - 1) bad('strides', layout.strides.join(','), `${rank - 1} byte strides (dimensions 1..${rank - 1})`, 'wrong number of strides');
  if (!Number.isInteger(address) || address <= 0 || address % 16 !== 0) bad('address', address, 'a multiple of 16', 'the global address is not 16-byte aligned');
  for (const [i, d] of layout.dims.entries()) if (!Number.isInteger(d) || d < 1 || d > 2 ** 32) bad(`dims[${i}]`, d, '1 to 2^32', 'a dimension out of range');
  for (const [i, b] of layout.box.entries()) if (!Number.isInteger(b) || b < 1 || b > 256) bad(`box[${i}]`, b, '1 to 256 elements', 'a box dimension out of range');
  for (const [i, s] of layout.strides.entries()) if (!Number.isInteger(s) || s % 16 !== 0 || s <= 0 || s >= 2 ** 40) bad(`strides[${i}]`, s, 'a multiple of 16 bytes below 2^40', 'a stride the TMA unit cannot address');
  const inner = layout.box[0]! * ELEMENT_BYTES;
  if (inner % 16 !== 0) bad('box[0]', layout.box[0], 'a multiple of 8 16-bit elements (16 bytes)', "the box's inner row is not whole 16-byte chunks");
  if (layout.swizzle !== 0 && inner > layout.swizzle) bad('box[0]', layout.box[0], `at most ${layout.swizzle / ELEMENT_BYTES} elements (the ${layout.swizzle}B swizzle span)`, "the box's inner row is wider than its swizzle span");
  return layout;
}

/**
 * The two maps of an sm_90a GEMM launch (tidarc_gemm_sm90a_abi.h): W [N, K] in boxes of 64 k x
 * the kernel's weight rows (blockW: 64 or 128, the manifest's) and x [rows, K] in boxes of 64 k x the token tile, both 128B-swizzled (one
 * 128-byte k row per box row, what the wgmma descriptors of tidarc_gemm_sm90a.cuh read).
 */
export function sm90aGemmMaps(shape: GemmShape, rows: number, tileT: number, blockW = SM90A_BLOCK_W): { readonly w: TensorMapLayout; readonly x: TensorMapLayout } {
  const rowBytes = shape.k * ELEMENT_BYTES;
  return {
    w: { dtype: shape.dtype, dims: [shape.k, shape.n], strides: [rowBytes], box: [GEMM_BLOCK_K, blockW], swizzle: 128 },
    x: { dtype: shape.dtype, dims: [shape.k, rows], strides: [rowBytes], box: [GEMM_BLOCK_K, tileT], swizzle: 128 },
  };
}

/** The map's 128 bytes from the driver, after checkTensorMap. */
export function encodeTensorMap(native: NativeTensorMaps, layout: TensorMapLayout, address: number, what: string): Uint8Array {
  checkTensorMap(layout, address, what);
  if (native.encodeTensorMap === undefined) throw new TidarcError('unsupported', 'the native addon predates tensor maps (npm run build:native)', { field: 'addon' });
  return native.encodeTensorMap(layout.dtype, address, layout.dims, layout.strides, layout.box, layout.swizzle);
}
