/**
 * The kernel argument structs the CUDA backend launches with, as data: for each struct its C
 * name and fields in declaration order. Layouts follow the C rules (each field at a multiple of
 * its size, the struct padded to its largest field), which is what nvcc and g++ do for these
 * plain structs; test/runtime/cuda/op-abi.test.ts checks every offset against the headers
 * (templates/cuda/tidarc_ops_abi.h, templates/common/tidarc_abi.h) with g++'s offsetof.
 * Pure: no I/O.
 */

/** ptr: a device address (a number; 0 = NULL). */
export type FieldType = 'ptr' | 'i32' | 'f32' | 'i64';

export interface StructSchema<F extends string = string> {
  /** The C type name in the header. */
  readonly cName: string;
  readonly fields: readonly (readonly [F, FieldType])[];
}

const SIZE: Readonly<Record<FieldType, number>> = { ptr: 8, i32: 4, f32: 4, i64: 8 };

function schema<F extends string>(cName: string, fields: readonly (readonly [F, FieldType])[]): StructSchema<F> {
  return { cName, fields };
}

export const EMBED = schema('TidarcEmbedArgs', [['ids', 'ptr'], ['table', 'ptr'], ['out', 'ptr'], ['rows', 'i32'], ['cols', 'i32'], ['vocab', 'i32'], ['dtype', 'i32']]);
export const RMSNORM = schema('TidarcRmsNormArgs', [['x', 'ptr'], ['w', 'ptr'], ['out', 'ptr'], ['rows', 'i32'], ['cols', 'i32'], ['eps', 'f32'], ['dtype', 'i32']]);
export const MATMUL = schema('TidarcMatmulArgs', [
  ['x', 'ptr'], ['w', 'ptr'], ['bias', 'ptr'], ['rowIds', 'ptr'], ['out', 'ptr'],
  ['rows', 'i32'], ['n', 'i32'], ['k', 'i32'], ['dtype', 'i32'], ['accumulate', 'i32'], ['pad', 'i32'],
]);
export const SILU_MUL = schema('TidarcSiluMulArgs', [['gate', 'ptr'], ['up', 'ptr'], ['out', 'ptr'], ['count', 'i64']]);
export const ROPE_PACK = schema('TidarcRopePackArgs', [
  ['q', 'ptr'], ['k', 'ptr'], ['v', 'ptr'], ['positions', 'ptr'], ['invFreq', 'ptr'], ['qOut', 'ptr'], ['kOut', 'ptr'], ['vOut', 'ptr'],
  ['rows', 'i32'], ['qHeads', 'i32'], ['kvHeads', 'i32'], ['headDim', 'i32'], ['outDtype', 'i32'], ['pad', 'i32'],
]);
export const TO_FLOAT = schema('TidarcToFloatArgs', [['x', 'ptr'], ['out', 'ptr'], ['count', 'i64'], ['dtype', 'i32'], ['pad', 'i32']]);
export const KV_COMMIT = schema('TidarcKvCommitArgs', [
  ['kStep', 'ptr'], ['vStep', 'ptr'], ['kCache', 'ptr'], ['vCache', 'ptr'],
  ['from', 'i32'], ['count', 'i32'], ['slot', 'i32'], ['kvHeads', 'i32'], ['capacity', 'i32'], ['headDim', 'i32'],
]);
export const ROW_STATS = schema('TidarcRowStatsArgs', [['logits', 'ptr'], ['argmax', 'ptr'], ['maxLogit', 'ptr'], ['lse', 'ptr'], ['rows', 'i32'], ['cols', 'i32']]);
/** The attention kernels' argument (templates/common/tidarc_abi.h). */
export const ATTENTION = schema('TidarcAttentionArgs', [
  ['q', 'ptr'], ['kCache', 'ptr'], ['vCache', 'ptr'], ['kStep', 'ptr'], ['vStep', 'ptr'], ['prefixLen', 'ptr'], ['o', 'ptr'], ['lse', 'ptr'], ['workspace', 'ptr'],
  ['batch', 'i32'], ['cacheCapacity', 'i32'], ['numSplits', 'i32'], ['numThreads', 'i32'],
]);

/** The generated GEMMs' argument (templates/cuda/tidarc_gemm_abi.h, TIDARC_GEMM_ABI_VERSION 2). */
export const GEMM = schema('TidarcGemmArgs', [
  ['x', 'ptr'], ['w', 'ptr'], ['bias', 'ptr'], ['rowIds', 'ptr'], ['out', 'ptr'], ['out2', 'ptr'], ['out3', 'ptr'], ['workspace', 'ptr'],
  ['rows', 'i32'], ['accumulate', 'i32'], ['seg1', 'i32'], ['seg2', 'i32'],
]);

/** The GPU operators of tidarc_ops.cu: kernel `tidarc_op_<name>` takes the struct. */
export const OPS = {
  embed: EMBED, rmsnorm: RMSNORM, matmul: MATMUL, silu_mul: SILU_MUL,
  rope_pack: ROPE_PACK, to_float: TO_FLOAT, kv_commit: KV_COMMIT, row_stats: ROW_STATS,
} as const;
export type OpName = keyof typeof OPS;
export const OP_SCHEMAS: readonly StructSchema[] = Object.values(OPS);

export function opKernelName(op: OpName): string {
  return `tidarc_op_${op}`;
}

/** Every kernel of tidarc_ops.cu with its argument type (for module builders). */
export function opKernels(): { name: string; argsType: string }[] {
  return (Object.keys(OPS) as OpName[]).map((op) => ({ name: opKernelName(op), argsType: OPS[op].cName }));
}

/** dtype codes of tidarc_ops_abi.h. */
export const DTYPE_CODE = { bf16: 0, fp16: 1, f32: 2 } as const;

export interface Layout {
  readonly offsets: Readonly<Record<string, number>>;
  readonly size: number;
}

export function layoutOf(s: StructSchema): Layout {
  const offsets: Record<string, number> = {};
  let at = 0;
  let align = 1;
  for (const [name, type] of s.fields) {
    const n = SIZE[type];
    at = Math.ceil(at / n) * n;
    offsets[name] = at;
    at += n;
    align = Math.max(align, n);
  }
  return { offsets, size: Math.ceil(at / align) * align };
}

const layouts = new Map<StructSchema, Layout>();

/**
 * The struct's bytes. Every field must be given (pad fields default to 0); a pointer is a
 * non-negative safe integer, an i32 an integer in range, an f32 a number.
 */
export function packStruct<F extends string>(s: StructSchema<F>, values: Readonly<Partial<Record<F, number>>>): Uint8Array {
  let layout = layouts.get(s);
  if (!layout) layouts.set(s, (layout = layoutOf(s)));
  const bytes = new Uint8Array(layout.size);
  const view = new DataView(bytes.buffer);
  for (const [name, type] of s.fields) {
    const v = values[name] ?? (name === 'pad' ? 0 : undefined);
    if (v === undefined) throw new RangeError(`${s.cName}.${name} is missing`);
    const at = layout.offsets[name]!;
    if (type === 'f32') view.setFloat32(at, v, true);
    else if (type === 'i32') {
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`${s.cName}.${name} = ${v} is not a 32-bit integer`);
      view.setInt32(at, v, true);
    } else {
      if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${s.cName}.${name} = ${v} is not a device address or count`);
      view.setBigUint64(at, BigInt(v), true);
    }
  }
  return bytes;
}
