/**
 * The argument struct of the sm_90a attention (templates/cuda/tidarc_attention_sm90a_abi.h):
 * the KV cache's two tensor maps, then the sm_80 kernel's TidarcAttentionArgs unchanged, and
 * the maps' layout as data (checked by tensor-map.ts before the driver encodes them). Pure.
 */
import type { AttentionShape } from '../../codegen/variant.js';
import { TENSOR_MAP_BYTES, type TensorMapLayout } from './tensor-map.js';

/** Head-dim columns of one TMA box: one 128-byte swizzle row of 16-bit elements. */
const BOX_COLUMNS = 64;
const ELEMENT_BYTES = 2;

/**
 * The map of a KV cache [batch][kvHeads][capacity][D] as the kernel reads it: a 3D tensor
 * {D, capacity, batch * kvHeads}, boxes of 64 columns x tileN keys of one (sequence, KV head),
 * 128B-swizzled. Keys past capacity land as zeros; the kernel loads tiles with keys past the
 * prefix (its tail) without TMA, zero-filled, so stale slots never reach P V.
 */
export function sm90aCacheMap(shape: Pick<AttentionShape, 'dtype' | 'headDim' | 'kvHeads'>, batch: number, cacheCapacity: number, tileN: number): TensorMapLayout {
  const row = shape.headDim * ELEMENT_BYTES;
  return { dtype: shape.dtype, dims: [shape.headDim, cacheCapacity, batch * shape.kvHeads], strides: [row, cacheCapacity * row], box: [BOX_COLUMNS, tileN, 1], swizzle: 128 };
}

/** TidarcAttentionSm90aArgs: k_cache's map, v_cache's map, TidarcAttentionArgs, padded to the struct's 64-byte alignment. */
export function packAttentionSm90aArgs(kMap: Uint8Array, vMap: Uint8Array, a: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil((2 * TENSOR_MAP_BYTES + a.length) / 64) * 64);
  out.set(kMap, 0), out.set(vMap, TENSOR_MAP_BYTES), out.set(a, 2 * TENSOR_MAP_BYTES);
  return out;
}
