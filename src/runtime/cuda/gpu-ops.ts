/**
 * The GPU operators of templates/cuda/tidarc_ops.cu as typed calls: each packs its struct
 * (op-abi.ts) and launches with the geometry that the kernel's comment in tidarc_ops_abi.h
 * states. No checks of sizes beyond what the types say: the runner that calls them owns the
 * buffers and their shapes.
 */
import { TidarcError } from '../../errors.js';
import type { CudaDevice, DeviceBuffer, Dim3, KernelRef, LaunchOptions } from './device.js';
import {
  ABI_VERSION_ARGS, ACCEPT, DRAFT_ROWS, DTYPE_CODE, EMBED, GELU, KV_COMMIT, KV_COMMIT_LAYER, KV_COMMIT_LAYERS, MATMUL, NEXT_DRAFTS, RMSNORM, ROPE_PACK, ROW_STATS, SAMPLE, SAMPLE_PARAMS, SILU_MUL, TO_FLOAT,
  VERIFY,
  OPS_ABI_VERSION, ROPE_MAX_NORM_HEADS, type OpName, type StructSchema, layoutOf, opKernelName, packStruct,
} from './op-abi.js';

export type GpuDtype = keyof typeof DTYPE_CODE;

/** A weight on the device in its checkpoint format. */
export interface GpuMatrix {
  readonly buf: DeviceBuffer;
  readonly dtype: GpuDtype;
  readonly rows: number;
  readonly cols: number;
}

/** A device address: `offset` bytes into a buffer. */
export interface At {
  readonly buf: DeviceBuffer;
  readonly offset?: number;
}

const ptr = (a: At | DeviceBuffer | null | undefined): number => (a == null ? 0 : 'ptr' in a ? a.ptr : a.buf.ptr + (a.offset ?? 0));
const blocks = (count: number, per: number): number => Math.max(1, Math.ceil(count / per));

/**
 * Refuses an ops module of another TIDARC_OPS_ABI_VERSION: its kernels would read this
 * runtime's structs at other offsets (a kernel cache built from other templates read out of
 * bounds in tidarc_op_verify). `found`: undefined where the module has no tidarc_op_abi_version.
 */
export function checkOpsAbi(modulePath: string, found: number | undefined): void {
  if (found === OPS_ABI_VERSION) return;
  throw new TidarcError('runtime', 'the GPU operators module was built for another ops ABI; rebuild it (tidarc compile, or clear the kernel cache)', {
    source: modulePath,
    field: 'TIDARC_OPS_ABI_VERSION',
    value: found === undefined ? `none (no ${opKernelName('abi_version')}: older than 4)` : String(found),
    allowed: String(OPS_ABI_VERSION),
  });
}

/** A request's sampling setup and its step's RNG counter (temperature 0: greedy, read only for beta). */
export interface SampleParams {
  readonly step: number;
  readonly seed: number;
  readonly temperature: number;
  readonly topP: number;
  readonly topK?: number;
  readonly beta: number;
}

/** Bytes of TidarcSampleParams (device memory: a step's upload writes them, sample and verify read them). */
export const SAMPLE_PARAMS_BYTES = layoutOf(SAMPLE_PARAMS).size;

/** TidarcSampleParams as bytes, for an upload (or the pinned block a step's upload reads). */
export function packSampleParams(p: SampleParams): Uint8Array {
  return packStruct(SAMPLE_PARAMS, { step: p.step, seed: p.seed, temperature: p.temperature, topP: p.topP, topK: p.topK ?? 0, beta: p.beta });
}

/** The label of the 4-byte buffer GpuOps reads the version through (a test's fake device answers it). */
export const OPS_ABI_BUFFER = 'the ops module\'s ABI version';

export class GpuOps {
  private readonly fns = new Map<string, KernelRef>();

  /**
   * Reads the module's TIDARC_OPS_ABI_VERSION (synchronous: not during a capture) and refuses
   * another. `launch`: how every operator is launched (programmatic where pdl.ts decided so).
   */
  constructor(private readonly device: CudaDevice, private readonly modulePath: string, private readonly launch: LaunchOptions = {}) {
    checkOpsAbi(modulePath, this.readAbiVersion());
  }

  /** The module's tidarc_op_abi_version, or undefined where it has none (built before ABI 4). */
  private readAbiVersion(): number | undefined {
    try {
      this.device.kernel(this.modulePath, opKernelName('abi_version'));
    } catch (e) {
      if (e instanceof TidarcError && e.details.value === 'CUDA_ERROR_NOT_FOUND') return undefined;
      throw e;
    }
    const out = this.device.alloc(4, OPS_ABI_BUFFER);
    try {
      // A plain launch whatever `launch` says: a probe with nothing before it to overlap (and a module of another ABI may predate the PDL contract).
      this.run('abi_version', ABI_VERSION_ARGS, { out: out.ptr }, [1], 32, {});
      const found = new Int32Array(1);
      this.device.download(out, found);
      return found[0];
    } finally {
      this.device.free(out);
    }
  }

  private run<F extends string>(name: OpName, s: StructSchema<F>, values: Readonly<Partial<Record<F, number>>>, grid: Dim3, block: number, launch: LaunchOptions = this.launch): void {
    let fn = this.fns.get(name);
    if (!fn) this.fns.set(name, (fn = this.device.kernel(this.modulePath, opKernelName(name))));
    this.device.launch(fn, grid, [block], 0, packStruct(s, values), launch);
  }

  embed(ids: DeviceBuffer, table: GpuMatrix, out: DeviceBuffer, rows: number): void {
    this.run('embed', EMBED, { ids: ids.ptr, table: table.buf.ptr, out: out.ptr, rows, cols: table.cols, vocab: table.rows, dtype: DTYPE_CODE[table.dtype] }, [rows], 256);
  }

  /** out[r] = w * x[r] / rms(x[r]) for `rows` rows of w.cols * w.rows features, stored as outDtype (out may be x when f32). */
  rmsnorm(x: DeviceBuffer, w: GpuMatrix, eps: number, out: DeviceBuffer, rows: number, outDtype: GpuDtype = 'f32'): void {
    this.run('rmsnorm', RMSNORM, { x: x.ptr, w: w.buf.ptr, out: out.ptr, rows, cols: w.rows * w.cols, eps, dtype: DTYPE_CODE[w.dtype], outDtype: DTYPE_CODE[outDtype] }, [rows], 256);
  }

  /** out[r] = x[row(r)] w^T + bias (+ out[r] when accumulate); x of xDtype. */
  matmul(x: DeviceBuffer, w: GpuMatrix, bias: DeviceBuffer | null, out: DeviceBuffer, rows: number, o: { rowIds?: DeviceBuffer; accumulate?: boolean; xDtype?: GpuDtype } = {}): void {
    this.run('matmul', MATMUL, {
      x: x.ptr, w: w.buf.ptr, bias: ptr(bias), rowIds: ptr(o.rowIds), out: out.ptr,
      rows, n: w.rows, k: w.cols, dtype: DTYPE_CODE[w.dtype], accumulate: o.accumulate ? 1 : 0, xDtype: DTYPE_CODE[o.xDtype ?? 'f32'],
    }, [blocks(w.rows, 64), blocks(rows, 16)], 256);
  }

  /** out = silu(gate) * up over `count` floats, stored as outDtype (out may be gate when f32). */
  siluMul(gate: DeviceBuffer, up: DeviceBuffer, out: DeviceBuffer, count: number, outDtype: GpuDtype = 'f32'): void {
    this.run('silu_mul', SILU_MUL, { gate: gate.ptr, up: up.ptr, out: out.ptr, count, outDtype: DTYPE_CODE[outDtype] }, [blocks(count, 256)], 256);
  }

  /** out = gelu(x) (tanh form) over `count` floats, stored as outDtype (out may be x when f32). */
  gelu(x: DeviceBuffer, out: DeviceBuffer, count: number, outDtype: GpuDtype = 'f32'): void {
    this.run('gelu', GELU, { x: x.ptr, out: out.ptr, count, outDtype: DTYPE_CODE[outDtype] }, [blocks(count, 256)], 256);
  }

  /**
   * RoPE of q and k and the 16-bit pack of q, k and v; with `norm`, each q and k head row first
   * RMS-normed with those [headDim] weights (Qwen3's q_norm / k_norm), as rmsnorm would in place.
   */
  ropePack(a: {
    q: DeviceBuffer; k: DeviceBuffer; v: DeviceBuffer; positions: DeviceBuffer; invFreq: DeviceBuffer;
    qOut: DeviceBuffer; kOut: DeviceBuffer; vOut: DeviceBuffer; rows: number; qHeads: number; kvHeads: number; headDim: number; dtype: 'bf16' | 'fp16';
    norm?: { q: GpuMatrix; k: GpuMatrix; eps: number };
  }): void {
    const n = a.norm;
    if (n) {
      const heads = a.qHeads + a.kvHeads;
      if (heads > ROPE_MAX_NORM_HEADS) throw new TidarcError('unsupported', `rope_pack normalises at most ${ROPE_MAX_NORM_HEADS} q + k heads a token`, { field: 'heads', value: String(heads), allowed: `<= ${ROPE_MAX_NORM_HEADS}` });
      for (const [name, w] of [['q', n.q], ['k', n.k]] as const) {
        if (w.rows * w.cols !== a.headDim) throw new TidarcError('runtime', `the ${name} head norm's weight is not one value per head_dim element`, { field: `${name} norm elements`, value: String(w.rows * w.cols), allowed: String(a.headDim) });
      }
      if (n.q.dtype !== n.k.dtype) throw new TidarcError('unsupported', 'rope_pack reads the q and k head norms in one dtype', { field: 'k norm dtype', value: n.k.dtype, allowed: n.q.dtype });
    }
    this.run('rope_pack', ROPE_PACK, {
      q: a.q.ptr, k: a.k.ptr, v: a.v.ptr, positions: a.positions.ptr, invFreq: a.invFreq.ptr, qOut: a.qOut.ptr, kOut: a.kOut.ptr, vOut: a.vOut.ptr,
      rows: a.rows, qHeads: a.qHeads, kvHeads: a.kvHeads, headDim: a.headDim, outDtype: DTYPE_CODE[a.dtype],
      normDtype: n ? DTYPE_CODE[n.q.dtype] : 0, eps: n ? n.eps : 0, qNorm: n ? n.q.buf.ptr : 0, kNorm: n ? n.k.buf.ptr : 0,
    }, [a.rows], 128);
  }

  toFloat(x: DeviceBuffer, out: DeviceBuffer, count: number, dtype: 'bf16' | 'fp16'): void {
    this.run('to_float', TO_FLOAT, { x: x.ptr, out: out.ptr, count, dtype: DTYPE_CODE[dtype] }, [blocks(count, 256)], 256);
  }

  /** In-step rows [from, from + count) of K/V step buffers into cache slots [slot, slot + count). */
  kvCommit(a: { kStep: At; vStep: At; kCache: DeviceBuffer; vCache: DeviceBuffer; from: number; count: number; slot: number; kvHeads: number; capacity: number; headDim: number }): void {
    if (a.count === 0) return;
    this.run('kv_commit', KV_COMMIT, {
      kStep: ptr(a.kStep), vStep: ptr(a.vStep), kCache: a.kCache.ptr, vCache: a.vCache.ptr,
      from: a.from, count: a.count, slot: a.slot, kvHeads: a.kvHeads, capacity: a.capacity, headDim: a.headDim,
    }, [a.count, a.kvHeads], 64);
  }

  rowStats(logits: DeviceBuffer, argmax: DeviceBuffer, maxLogit: DeviceBuffer, lse: DeviceBuffer, rows: number, cols: number): void {
    this.run('row_stats', ROW_STATS, { logits: logits.ptr, argmax: argmax.ptr, maxLogit: maxLogit.ptr, lse: lse.ptr, rows, cols }, [rows], 256);
  }

  /**
   * Per row of logits [rows, vocab]: temperature, top-k (0 = off), top-p (1 = off), then a draw,
   * or where drafts[r] >= 0 the lossless test of that draft (tokens[r], accepted[r]). `mix`
   * verifies with beta * logits + (1 - beta) * mix. `params`: TidarcSampleParams in device
   * memory (packSampleParams), so a captured graph reads each step's setup and RNG counter.
   */
  sample(a: { logits: At; mix?: At; drafts?: DeviceBuffer; params: At; tokens: DeviceBuffer; accepted: DeviceBuffer; rows: number; vocab: number; neverEmit?: number }): void {
    this.run('sample', SAMPLE, {
      logits: ptr(a.logits), mixLogits: ptr(a.mix), drafts: ptr(a.drafts), params: ptr(a.params), tokens: a.tokens.ptr, accepted: a.accepted.ptr,
      rows: a.rows, vocab: a.vocab, neverEmit: a.neverEmit ?? -1,
    }, [a.rows], 256);
  }

  /** emitted = [n, tokens[0 .. n)]: n = 1 + the leading accepted rows of sample's output. */
  accept(tokens: DeviceBuffer, accepted: DeviceBuffer, emitted: DeviceBuffer, rows: number): void {
    this.run('accept', ACCEPT, { tokens: tokens.ptr, accepted: accepted.ptr, emitted: emitted.ptr, rows }, [1], 32);
  }
  /**
   * Greedy sample: per row the argmax of the (beta-mixed) logits without neverEmit, or the given
   * rowArgmax (lm_head's row statistics: no logits read); accepted[r] = (drafts[r] is it).
   * With `mix`, beta is TidarcSampleParams.beta in device memory (`params`).
   */
  verify(a: { logits?: At; mix?: { buf: At; params: At }; drafts?: At; tokens: At; accepted?: At; rowArgmax?: At; rows: number; vocab: number; neverEmit?: number }): void {
    this.run('verify', VERIFY, {
      logits: ptr(a.logits), mixLogits: ptr(a.mix?.buf), drafts: ptr(a.drafts), tokens: ptr(a.tokens), accepted: ptr(a.accepted), rowArgmax: ptr(a.rowArgmax),
      params: ptr(a.mix?.params), rows: a.rows, vocab: a.vocab, neverEmit: a.neverEmit ?? -1,
    }, [a.rows], 256);
  }

  /** rowIds[s] = stride * emitted[0] + offset + s, s < count (the rows a step's acceptance selects). */
  draftRows(emitted: At, rowIds: At, count: number, stride: number, offset: number): void {
    this.run('draft_rows', DRAFT_ROWS, { emitted: ptr(emitted), rowIds: ptr(rowIds), count, stride, offset }, [1], 32);
  }

  /**
   * tokens[s] = rowArgmax[i], lse[s] = rowLse[i] with i = stride * emitted[0] + offset + s, s < count:
   * the next drafts out of an lm_head pass over every candidate row, once acceptance chose n.
   */
  nextDrafts(a: { emitted: At; rowArgmax: At; rowLse: At; tokens: At; lse: At; count: number; stride: number; offset: number }): void {
    this.run('next_drafts', NEXT_DRAFTS, {
      emitted: ptr(a.emitted), rowArgmax: ptr(a.rowArgmax), rowLse: ptr(a.rowLse), tokens: ptr(a.tokens), lse: ptr(a.lse), count: a.count, stride: a.stride, offset: a.offset,
    }, [1], 32);
  }

  /**
   * kvCommit of every layer's in-step rows [0, *count) into its cache slots [*slot, ...) in one
   * launch: `table` holds `layers` TidarcKvCommitLayer entries (packKvCommitTable), count and
   * slot are read on the device.
   */
  kvCommitLayers(a: { table: At; layers: number; count: At; slot: At; maxCount: number; kvHeads: number; capacity: number; headDim: number }): void {
    this.run('kv_commit_layers', KV_COMMIT_LAYERS, {
      table: ptr(a.table), count: ptr(a.count), slot: ptr(a.slot), layers: a.layers, maxCount: a.maxCount, kvHeads: a.kvHeads, capacity: a.capacity, headDim: a.headDim,
    }, [a.maxCount, a.kvHeads, a.layers], 64);
  }
}

/** Bytes of one TidarcKvCommitLayer (one layer's entry of kvCommitLayers' table). */
export const KV_COMMIT_LAYER_BYTES = layoutOf(KV_COMMIT_LAYER).size;

/** kvCommitLayers' table as bytes: per layer its in-step K, in-step V, K cache and V cache addresses. */
export function packKvCommitTable(layers: readonly { kStep: DeviceBuffer; vStep: DeviceBuffer; kCache: DeviceBuffer; vCache: DeviceBuffer }[]): Uint8Array {
  const out = new Uint8Array(layers.length * KV_COMMIT_LAYER_BYTES);
  layers.forEach((l, i) => out.set(packStruct(KV_COMMIT_LAYER, { kStep: l.kStep.ptr, vStep: l.vStep.ptr, kCache: l.kCache.ptr, vCache: l.vCache.ptr }), i * KV_COMMIT_LAYER_BYTES));
  return out;
}
