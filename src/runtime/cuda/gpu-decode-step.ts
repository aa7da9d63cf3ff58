/**
 * The device side of a decode step past the forward (runner: GpuModelRunner.decodeStep): what
 * its one upload carries, the tail it launches and the one download that comes back.
 *
 *   upload (pinned -> `inputs`): the sampling setup and RNG step (TidarcSampleParams, 32
 *     bytes: temperature, top-k, top-p, seed, beta, step), then int32 words: ids [T],
 *     positions [T], prefix length [1], verify drafts [R], verify rows [R], candidate rows
 *     [R x C without a mix: every n's next-draft rows, n = 1 .. R], mix rows [R when
 *     beta < 1]. The setup is data, not a launch argument: one captured graph per step kind
 *     and bucket serves every request's temperature, top-k, top-p, seed and beta.
 *   tail: lm_head of the verify rows -> logits [R, V], row_stats (lse); beta < 1: the same for
 *     the mix rows; greedy: verify (argmax without the never-emitted token, draft == argmax),
 *     else sample (temperature, top-k, top-p, lossless acceptance with residual); accept ->
 *     emitted = [n, tokens...]; TiDAR: draft_rows (rows stride * n + offset + s), their
 *     lm_head, row_stats and argmax -> next drafts; kv_commit_layers of rows [0, n) at the
 *     prefix length, every layer in one launch (the runner's table of each layer's buffers).
 *     Greedy TiDAR on row statistics without a mix reads lm_head's weights once (1.24 GB for
 *     Qwen3-8B, ~0.29 ms on an H200): its one pass covers the verify rows and every n's
 *     candidate rows, and next_drafts picks the accepted n's argmax and lse from it. A row's
 *     statistics do not depend on the other rows of its launch (the GEMMs' contract), so the
 *     drafts are those of a pass over their rows alone. Sampled steps and beta mixes keep two
 *     passes: their verify rows need fp32 logits, and one pass would write R x C x V more floats.
 *     So do steps of more than ONE_PASS_MAX_CANDIDATES candidate rows (k = 16: 240).
 *     Greedy without a beta mix, on a GEMM with the row statistics epilogue: lm_head gives each
 *     row's argmax, max and lse from its tiles (the never-emitted token -inf by a bias row), and
 *     verify reads the argmax: no [R, V] or [C, V] fp32 logits are written or read (for k = 16
 *     and V = 151,936, 2 x 9.7 MB written and read again per step). Logits buffers are
 *     allocated by the first step that needs them (sampling, a mix), never in a capture: that
 *     step's kind warms up first.
 *   download (`out`, 32-bit words): emitted [1 + R], next drafts [C], lse of the mix rows
 *     [R or 0], of the next-draft rows [C], of the verify rows [R] (last: in one pass the
 *     candidate rows' lse follows it in device memory, not downloaded).
 * Sizes are fixed per step kind, so one set of buffers serves every step and bucket of a kind
 * (a captured graph holds their addresses: they live until the runner closes). They are
 * stepIoSizes and stepTailPlan's, which a generation's price reads before its prefill
 * (step-scratch.ts).
 */
import { TidarcError } from '../../errors.js';
import type { DeviceStepInput } from '../model/forward.js';
import type { CudaDevice, DeviceBuffer, PinnedBuffer } from './device.js';
import type { GemmRowScale, GpuGemms } from './gpu-gemm.js';
import { runLinear } from './gpu-op-table.js';
import { type GpuMatrix, type GpuOps, SAMPLE_PARAMS_BYTES, packSampleParams } from './gpu-ops.js';

/** A view of `bytes` at byte `at` of buf (not an allocation: never freed on its own). */
const view = (buf: DeviceBuffer, at: number, bytes: number, label: string): DeviceBuffer => ({ ptr: buf.ptr + at, bytes: Math.max(bytes, 1), label });

/**
 * The most candidate rows (R x C) one lm_head pass takes on: each costs 2 flops per weight
 * element (2 bytes), so past about peak flops / bandwidth rows (mma.sync bf16 on an H100 / H200:
 * 395 TFLOP/s / 4.3 TB/s = 92; A100 156) they cost more than reading the weights again. 64 keeps
 * k <= 8 (56 rows) in one pass; bench:step predicts k = 16 (240 rows) slower in one (Qwen3-8B,
 * L = 4096: 2.19x AR against 2.13x).
 */
export const ONE_PASS_MAX_CANDIDATES = 64;

/** The shape of one step kind: tokens, verify rows, mix rows, next-draft rows. */
export interface StepShape {
  readonly tokens: number;
  readonly rows: number;
  readonly mixRows: number;
  readonly nextRows: number;
}

export function stepShape(input: DeviceStepInput): StepShape {
  const rows = input.verifyRows.length;
  if (rows < 1 || input.verifyDrafts.length !== rows || (input.mixRows !== undefined && input.mixRows.length !== rows)) {
    throw new TidarcError('runtime', `decode step: ${rows} verify rows, ${input.verifyDrafts.length} drafts and ${input.mixRows?.length ?? 0} mix rows (they must match)`);
  }
  return { tokens: input.ids.length, rows, mixRows: input.mixRows?.length ?? 0, nextRows: input.nextDrafts?.count ?? 0 };
}

/**
 * What of the sampling decides which kernels a step launches and which buffers it reads: greedy
 * (row statistics, verify) or sampled (logits, sample), and the never-emitted token (the model's
 * mask token, fixed per model: a launch argument and greedy lm_head's bias row). A beta mix is
 * in the step's shape (its mix rows). Temperature, top-k, top-p, seed, beta and the RNG step
 * are uploaded data (TidarcSampleParams), not part of a graph's key.
 */
export function samplingSetup(input: DeviceStepInput): string {
  const s = input.sampling;
  return `${s.temperature === 0 ? 'greedy' : 'sampled'} e${s.neverEmit ?? -1}`;
}

/** A step kind's key: its variant and shape (the runner keeps one DeviceStepIo per key). */
export function stepShapeKey(variant: string, shape: StepShape): string {
  return `${variant} T${shape.tokens} r${shape.rows}/${shape.mixRows}/${shape.nextRows}`;
}

/** The device bytes of a step kind's fixed I/O buffers (DeviceStepIo's constructor allocates exactly these; pinned memory not counted). */
export function stepIoSizes(shape: StepShape) {
  const { tokens: T, rows: R, mixRows: M, nextRows: C } = shape;
  const candidates = M === 0 && R * C <= ONE_PASS_MAX_CANDIDATES ? R * C : 0;
  const inWords = SAMPLE_PARAMS_BYTES / 4 + 2 * T + 1 + 2 * R + candidates + M;
  const outWords = 1 + R + C + M + C + R;
  const most = Math.max(R + candidates, C, 1);
  return { candidates, inWords, outWords, inputs: inWords * 4, outAll: (outWords + candidates) * 4, nextRowIds: Math.max(C, 1) * 4, tokens: R * 4, accepted: R * 4, argmax: most * 4, maxLogit: most * 4 };
}

/** What a step's tail launches and the buffers it allocates on first use (recordTail follows it; the decode loop's price sums it). */
export interface StepTailPlan {
  /** The verify rows' lm_head on the GEMM's row statistics (no logits). */
  readonly rowStats: boolean;
  /** Verify and candidate rows in one lm_head pass. */
  readonly once: boolean;
  /** Lazily allocated buffers by label: fp32 logits, the never-emit bias row. */
  readonly lazy: ReadonlyMap<string, number>;
}

/**
 * The tail of a step of `shape` and sampling setup: greedy (temperature 0) or not, the
 * never-emitted token, and whether the lm_head GEMM has row statistics for these weights
 * (GpuGemms.hasRowStats() && covers('lm_head', W)).
 */
export function stepTailPlan(shape: StepShape, vocab: number, o: { readonly greedy: boolean; readonly neverEmit?: number | undefined; readonly rowStatsGemm: boolean; readonly oneHeadPass?: boolean }): StepTailPlan {
  const { rows: R, mixRows: M, nextRows: C } = shape;
  const rowStats = o.greedy && M === 0 && o.rowStatsGemm;
  const once = rowStats && stepIoSizes(shape).candidates > 0 && o.oneHeadPass !== false;
  const lazy = new Map<string, number>();
  if (!rowStats) lazy.set('decode step logits', R * vocab * 4);
  if (M > 0) lazy.set('decode step mix logits', M * vocab * 4);
  if (!once && C > 0 && !o.rowStatsGemm) lazy.set('decode step next-draft logits', C * vocab * 4);
  // lm_head's bias row on the row statistics: the verify rows' (rowStats), or the next drafts' own pass.
  const biased = rowStats || (!once && C > 0 && o.rowStatsGemm);
  if (biased && o.neverEmit !== undefined) lazy.set(neverEmitLabel(o.neverEmit), vocab * 4);
  return { rowStats, once, lazy };
}

const neverEmitLabel = (token: number): string => `lm_head never-emit bias (token ${token})`;

export class DeviceStepIo {
  readonly pinned: PinnedBuffer;
  readonly inputs: DeviceBuffer;
  readonly out: DeviceBuffer;
  readonly host: Int32Array;
  readonly ids: DeviceBuffer;
  readonly positions: DeviceBuffer;
  readonly prefixLen: DeviceBuffer;
  private readonly params: DeviceBuffer;
  private readonly drafts: DeviceBuffer;
  private readonly verifyRows: DeviceBuffer;
  /** Verify rows ++ candidate rows, and their lse (R + X each): the one lm_head pass's rows. */
  private readonly headRows: DeviceBuffer;
  private readonly headLse: DeviceBuffer;
  private readonly outAll: DeviceBuffer;
  private readonly mixRowIds: DeviceBuffer;
  private readonly emitted: DeviceBuffer;
  private readonly nextDrafts: DeviceBuffer;
  private readonly lse: DeviceBuffer;
  private readonly mixLse: DeviceBuffer;
  private readonly nextLse: DeviceBuffer;
  private readonly scratch: DeviceBuffer[];
  /** Logits and never-emit bias rows by label, allocated on first use. */
  private readonly lazy = new Map<string, DeviceBuffer>();
  private readonly nextRowIds: DeviceBuffer;
  private readonly tokens: DeviceBuffer;
  private readonly accepted: DeviceBuffer;
  private readonly argmax: DeviceBuffer;
  private readonly maxLogit: DeviceBuffer;

  /** Candidate rows uploaded for the one lm_head pass: every n's next-draft rows, R x C (0 with a mix, which needs two passes, or past ONE_PASS_MAX_CANDIDATES). */
  readonly candidates: number;

  constructor(private readonly device: CudaDevice, readonly shape: StepShape, private readonly vocab: number) {
    const { tokens: T, rows: R, mixRows: M, nextRows: C } = shape;
    const z = stepIoSizes(shape);
    const X = (this.candidates = z.candidates);
    const paramWords = SAMPLE_PARAMS_BYTES / 4;
    const inWords = z.inWords;
    this.pinned = device.allocPinned(inWords * 4, 'decode step inputs');
    this.inputs = device.alloc(z.inputs, 'decode step inputs');
    let at = 0;
    const take = (words: number, label: string): DeviceBuffer => {
      const v = view(this.inputs, at * 4, words * 4, label);
      at += words;
      return v;
    };
    this.params = take(paramWords, 'sampling setup and RNG step');
    this.ids = take(T, 'ids');
    this.positions = take(T, 'positions');
    this.prefixLen = take(1, 'prefix length');
    this.drafts = take(R, 'verify drafts');
    this.headRows = view(this.inputs, at * 4, (R + X) * 4, 'verify and candidate rows');
    this.verifyRows = take(R, 'verify rows');
    take(X, 'candidate rows');
    this.mixRowIds = take(M, 'mix rows');
    const outWords = z.outWords;
    this.outAll = device.alloc(z.outAll, 'decode step output');
    this.out = view(this.outAll, 0, outWords * 4, 'decode step output');
    this.host = new Int32Array(outWords);
    at = 0;
    const put = (words: number, label: string): DeviceBuffer => {
      const v = view(this.out, at * 4, words * 4, label);
      at += words;
      return v;
    };
    this.emitted = put(1 + R, 'emitted');
    this.nextDrafts = put(C, 'next drafts');
    this.mixLse = put(M, 'mix lse');
    this.nextLse = put(C, 'next-draft lse');
    this.headLse = view(this.outAll, at * 4, (R + X) * 4, 'verify and candidate lse');
    this.lse = put(R, 'verify lse');
    this.scratch = [
      (this.nextRowIds = device.alloc(z.nextRowIds, 'decode step next-draft rows')),
      (this.tokens = device.alloc(z.tokens, 'decode step tokens')),
      (this.accepted = device.alloc(z.accepted, 'decode step accepted')),
      (this.argmax = device.alloc(z.argmax, 'decode step argmax')),
      (this.maxLogit = device.alloc(z.maxLogit, 'decode step max')),
    ];
  }

  /** Device bytes held now: the fixed buffers, and each lazily allocated one by label (the decode loop's price, step-scratch.ts). */
  heldBytes(): { readonly fixed: number; readonly lazy: ReadonlyMap<string, number> } {
    const fixed = [this.inputs, this.outAll, ...this.scratch].reduce((n, b) => n + b.bytes, 0);
    return { fixed, lazy: new Map([...this.lazy].map(([label, b]) => [label, b.bytes])) };
  }

  /** Writes the step's inputs into the pinned block (the upload reads it when it runs). */
  fill(input: DeviceStepInput, prefix: number): void {
    const s = input.sampling;
    new Uint8Array(this.pinned.buffer, 0, SAMPLE_PARAMS_BYTES).set(packSampleParams({ ...s, step: input.rngStep }));
    const { tokens: T, rows: R, mixRows: M } = this.shape;
    const w = new Int32Array(this.pinned.buffer, SAMPLE_PARAMS_BYTES, this.pinned.bytes / 4 - SAMPLE_PARAMS_BYTES / 4);
    w.set(input.ids, 0);
    w.set(input.positions, T);
    w[2 * T] = prefix;
    w.set(input.verifyDrafts, 1 + 2 * T);
    w.set(input.verifyRows, 1 + 2 * T + R);
    const X = this.candidates, C = this.shape.nextRows;
    const nd = input.nextDrafts;
    for (let n = 1; nd && X > 0 && n <= R; n++) for (let s = 0; s < C; s++) w[1 + 2 * T + 2 * R + (n - 1) * C + s] = nd.stride * n + nd.offset + s;
    if (M > 0) w.set(input.mixRows!, 1 + 2 * T + 2 * R + X);
  }

  /** The in-graph upload of what fill wrote. */
  upload(): void {
    this.device.uploadAsync(this.inputs, this.pinned);
  }

  /** Everything after the forward: lm_head rows, verification, acceptance, next drafts, the commit. */
  recordTail(a: {
    ops: GpuOps; gemms: GpuGemms; lmHead: GpuMatrix; hidden: DeviceBuffer; input: DeviceStepInput;
    /** The graph folded the final norm into the lm_head (gpu-op-table.ts headRowScale). */
    headScale?: { rowScale?: GemmRowScale };
    commit: (count: DeviceBuffer, slot: DeviceBuffer, maxCount: number) => void;
    /** false: the next drafts get their own lm_head pass after acceptance even where one pass serves (a test compares the two). */
    oneHeadPass?: boolean;
  }): void {
    const { ops, gemms, lmHead: W, hidden, input } = a;
    const { rows: R, mixRows: M, nextRows: C } = this.shape;
    const V = W.rows;
    const s = input.sampling;
    const never = s.neverEmit === undefined ? {} : { neverEmit: s.neverEmit };
    const rowStatsGemm = gemms.hasRowStats() && gemms.covers('lm_head', W);
    const plan = stepTailPlan(this.shape, V, { greedy: s.temperature === 0, neverEmit: s.neverEmit, rowStatsGemm, oneHeadPass: a.oneHeadPass !== false });
    const rowStats = plan.rowStats;
    /** lm_head of `n` rows into argmax / max / lse; with logits, the logits [n, V] as well (then row_stats reads them). */
    const head = (rowIds: DeviceBuffer, n: number, lse: DeviceBuffer, logits?: DeviceBuffer): void => {
      if (!logits) {
        const bias = s.neverEmit === undefined ? null : this.neverEmitBias(s.neverEmit, plan);
        gemms.run('lm_head', { x: hidden, rows: n, w: W, bias, rowIds, outs: [], epilogue: 'rowStats', stats: { argmax: this.argmax, max: this.maxLogit, lse }, ...a.headScale });
        return;
      }
      runLinear(gemms, ops, 'lm_head', hidden, n, { whole: W, bias: null, parts: [[W, null, logits]] }, { rowIds, ...a.headScale });
      ops.rowStats(logits, this.argmax, this.maxLogit, lse, n, V);
    };
    const once = plan.once;
    const logits = rowStats ? undefined : this.planned(plan, 'decode step logits');
    if (once) head(this.headRows, R + this.candidates, this.headLse);
    else head(this.verifyRows, R, this.lse, logits);
    const mixLogits = M > 0 ? this.planned(plan, 'decode step mix logits') : undefined;
    if (mixLogits) head(this.mixRowIds, M, this.mixLse, mixLogits);
    const params = { buf: this.params };
    const verdict = { drafts: { buf: this.drafts }, tokens: { buf: this.tokens }, accepted: { buf: this.accepted }, rows: R, vocab: V, ...never };
    if (!logits) {
      ops.verify({ rowArgmax: { buf: this.argmax }, ...verdict });
    } else if (s.temperature === 0) {
      ops.verify({ logits: { buf: logits }, ...(mixLogits ? { mix: { buf: { buf: mixLogits }, params } } : {}), ...verdict });
    } else {
      ops.sample({
        logits: { buf: logits }, ...(mixLogits ? { mix: { buf: mixLogits } } : {}), drafts: this.drafts, params, tokens: this.tokens, accepted: this.accepted,
        rows: R, vocab: V, ...never,
      });
    }
    ops.accept(this.tokens, this.accepted, this.emitted, R);
    if (once) {
      // Row R + (n - 1) * C + s of the pass is next-draft row s of n accepted tokens.
      ops.nextDrafts({ emitted: { buf: this.emitted }, rowArgmax: { buf: this.argmax }, rowLse: { buf: this.headLse }, tokens: { buf: this.nextDrafts }, lse: { buf: this.nextLse }, count: C, stride: C, offset: R - C });
    } else if (C > 0) {
      const nd = input.nextDrafts!;
      ops.draftRows({ buf: this.emitted }, { buf: this.nextRowIds }, C, nd.stride, nd.offset);
      // Drafts are argmaxes whatever the sampling: the row statistics serve them whenever the GEMM has them.
      const nextLogits = rowStatsGemm ? undefined : this.planned(plan, 'decode step next-draft logits');
      head(this.nextRowIds, C, this.nextLse, nextLogits);
      ops.verify({ ...(nextLogits ? { logits: { buf: nextLogits } } : { rowArgmax: { buf: this.argmax } }), tokens: { buf: this.nextDrafts }, rows: C, vocab: V, ...never });
    }
    a.commit(this.emitted, this.prefixLen, R);
  }

  /** A buffer the plan sizes, allocated on first use and kept (its first use is a warm-up step, never a capture). */
  private planned(plan: StepTailPlan, label: string): DeviceBuffer {
    let b = this.lazy.get(label);
    if (b) return b;
    const bytes = plan.lazy.get(label);
    if (bytes === undefined) throw new TidarcError('runtime', `decode step: its tail needs ${label}, which stepTailPlan does not size`);
    this.lazy.set(label, (b = this.device.alloc(bytes, label)));
    return b;
  }

  /** lm_head's bias for greedy row statistics: 0, and -inf at the never-emitted token (its logit counts as -inf). */
  private neverEmitBias(token: number, plan: StepTailPlan): DeviceBuffer {
    const label = neverEmitLabel(token);
    const known = this.lazy.get(label);
    if (known) return known;
    const b = this.planned(plan, label);
    const row = new Float32Array(this.vocab);
    if (token >= 0 && token < this.vocab) row[token] = -Infinity;
    this.device.upload(b, row);
    return b;
  }

  /**
   * The step's result from `out` (downloaded by the caller after the launch): the emitted
   * tokens and next drafts, and each lm_head row's log-sum-exp for the finiteness check.
   */
  read(): { n: number; tokens: number[]; nextDrafts: number[]; lse: { rows: Float32Array; mix: Float32Array; next: Float32Array } } {
    const { rows: R, mixRows: M, nextRows: C } = this.shape;
    const h = this.host;
    const n = h[0]!;
    if (!(n >= 1 && n <= R)) throw new TidarcError('runtime', `decode step: the device accepted ${n} tokens of ${R} verify rows`);
    const f = new Float32Array(h.buffer);
    const lseAt = 1 + R + C;
    return {
      n,
      tokens: [...h.subarray(1, 1 + n)],
      nextDrafts: [...h.subarray(1 + R, 1 + R + C)],
      lse: { mix: f.slice(lseAt, lseAt + M), next: f.slice(lseAt + M, lseAt + M + C), rows: f.slice(lseAt + M + C, lseAt + M + C + R) },
    };
  }

  free(): void {
    for (const b of [this.inputs, this.outAll, ...this.scratch, ...this.lazy.values()]) this.device.free(b);
    this.lazy.clear();
    this.device.freePinned(this.pinned);
  }
}
