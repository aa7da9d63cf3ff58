/**
 * The decoding loops of docs/tidar.md, for one sequence:
 *   - TiDAR: one prefill forward (causal prompt + one trailing block of k mask tokens), then
 *     one forward per step with the decode-step mask; verification mixes AR and diffusion
 *     logits with beta (1 = lossless), accepts drafts greedily or by lossless speculative
 *     sampling, commits the accepted drafts' K/V (never a mask token's), and takes the next
 *     drafts from block a with d[0] := the AR token.
 *   - AR: the same machinery with one new token a forward.
 * Each yield is the tokens one forward made final, in order.
 */
import { TidarcError } from '../../errors.js';
import { positions as maskPositions } from '../../ir/mask.js';
import { tidarDecode } from '../../ir/mask-builders.js';
import { type Rng, seededRandom } from '../../util/random.js';
import { type AttentionSchedule, type DeviceStepInput, type ForwardPass, NonFiniteLogits, type Runner } from './forward.js';
import { argmax, distribution, mixLogits, sample, type SamplingOptions, verifyDraft } from './sampling.js';
import { AR_VARIANT, blockVariantName, tidarVariantName } from '../../codegen/variant-name.js';

export interface DecodeOptions extends SamplingOptions {
  readonly mode: 'tidar' | 'ar';
  readonly draft: number;
  /** beta of the verifier mix; 1 trusts the AR head (lossless). */
  readonly trustAr: number;
  readonly seed: number;
}

export interface StepRecord {
  /** Tokens this forward made final. */
  readonly tokens: readonly number[];
  /** TiDAR steps: drafts accepted (a, 1..k); prefill and AR: undefined. */
  readonly accepted?: number;
  readonly ms: number;
  readonly attentionMs: number;
}

export class Decoder {
  private readonly rng: Rng;
  private drafts: number[] = [];
  /** Position offsets of the decode-step tokens (built once: the mask depends only on k). */
  private readonly stepOffsets: readonly number[];
  /** Decode steps run so far (the prefill is step 0), for errors. */
  private steps = 0;

  /**
   * maskTokenId is what the mask slots are fed; neverEmit (the checkpoint's mask token, when it
   * names one) is never made final nor drafted: its logit counts as -inf for AR and TiDAR alike,
   * so greedy TiDAR still equals greedy AR and sampling follows the AR distribution without it.
   */
  constructor(
    private readonly runner: Runner,
    private readonly opts: DecodeOptions,
    private readonly maskTokenId: number,
    private readonly neverEmit?: number,
  ) {
    this.rng = seededRandom(opts.seed);
    this.stepOffsets = opts.mode === 'tidar' ? maskPositions(tidarDecode(opts.draft), 0) : [];
  }

  private get greedy(): boolean {
    return this.opts.temperature === 0;
  }

  /** Picks a token from one row of target logits. */
  private pick(logits: Float32Array): number {
    const row = this.withoutMask(logits);
    return this.greedy ? argmax(row) : sample(distribution(row, this.opts), this.rng);
  }

  /** A logits row with the never-emitted token at -inf (a copy: the runner's rows stay as they are). */
  private withoutMask(logits: Float32Array): Float32Array {
    if (this.neverEmit === undefined) return logits;
    const row = Float32Array.from(logits);
    row[this.neverEmit] = -Infinity;
    return row;
  }

  /** The pass's argmax of each row, the runner's own unless it is the never-emitted token (then from the full row). */
  private best(r: ForwardPass, rows: readonly number[]): number[] {
    const best = r.argmax(rows);
    if (this.neverEmit === undefined || !best.includes(this.neverEmit)) return best;
    return best.map((t, i) => (t === this.neverEmit ? argmax(this.withoutMask(r.logits([rows[i]!])[0]!)) : t));
  }

  prefill(prompt: readonly number[]): StepRecord {
    this.steps = 0;
    return this.naming(() => this.runPrefill(prompt));
  }

  /**
   * prefill() with `pause` awaited between the forward's ops where the runner can (passAsync):
   * a long prompt's prefill then lets signals, timers and I/O run while it computes.
   */
  async prefillAsync(prompt: readonly number[], pause: () => Promise<void>): Promise<StepRecord> {
    this.steps = 0;
    const t0 = performance.now();
    const p = this.startPrefill(prompt);
    let r: ForwardPass;
    try {
      r = this.runner.passAsync ? await this.runner.passAsync(p.ids, p.pos, p.schedule, pause) : this.runner.pass(p.ids, p.pos, p.schedule);
    } catch (e) {
      return this.naming(() => { throw e; });
    }
    return this.naming(() => this.endPrefill(p.S, r, t0));
  }

  step(): StepRecord {
    this.steps++;
    return this.naming(() => (this.opts.mode === 'tidar' ? this.tidarStep() : this.arStep()));
  }

  /**
   * Non-finite logits end the run with one error naming the step: a NaN row has no argmax
   * worth emitting, and "accepting" NaN drafts reported garbage as a speed-up.
   */
  private naming(run: () => StepRecord): StepRecord {
    try {
      return run();
    } catch (e) {
      if (!(e instanceof NonFiniteLogits)) throw e;
      const where = this.steps === 0 ? 'the prefill (step 0)' : `decode step ${this.steps}`;
      throw new TidarcError('runtime', `the model produced non-finite logits (log-sum-exp ${String(e.lse)}, row ${e.row}) in ${where}; no tokens are reported from it`, {
        allowed: "finite logits: check the checkpoint's weights and its rope_theta, rope_scaling and rms_norm_eps",
      });
    }
  }

  private runPrefill(prompt: readonly number[]): StepRecord {
    const t0 = performance.now();
    const p = this.startPrefill(prompt);
    return this.endPrefill(p.S, this.runner.pass(p.ids, p.pos, p.schedule), t0);
  }

  /** The prefill's forward input: the prompt, then k mask slots (TiDAR). */
  private startPrefill(prompt: readonly number[]): { S: number; ids: Int32Array; pos: Int32Array; schedule: AttentionSchedule } {
    const cache = this.runner.cache;
    const S = prompt.length;
    const k = this.opts.mode === 'tidar' ? this.opts.draft : 0;
    cache.ensureRoom(S + k);
    const L = cache.length;
    const ids = Int32Array.from([...prompt, ...Array<number>(k).fill(this.maskTokenId)]);
    const pos = Int32Array.from({ length: S + k }, (_, i) => L + i);
    return { S, ids, pos, schedule: { kind: 'prefill', promptTokens: S, ...(k > 0 ? { blockVariant: blockVariantName(k) } : {}) } };
  }

  /** After the prefill's forward: its prompt rows counted in the cache, the first token and drafts. */
  private endPrefill(S: number, r: ForwardPass, t0: number): StepRecord {
    const k = this.opts.mode === 'tidar' ? this.opts.draft : 0;
    this.runner.cache.length += S;
    // d[0] is the AR token after the prompt; d[1..k-1] the argmax of mask slots 1..k-1.
    // Sampled: on the device where the pass can draw there (RNG step 0; decode steps count from 1).
    const first = this.greedy && this.opts.trustAr === 1 ? this.best(r, [S - 1])[0]!
      : !this.greedy && r.sample ? r.sample([S - 1], { ...this.deviceSampling(), rngStep: 0 })[0]!
        : this.pick(r.logits([S - 1])[0]!);
    this.drafts = k > 0 ? [first, ...this.best(r, Array.from({ length: k - 1 }, (_, s) => S + 1 + s))] : [first];
    return { tokens: [first], ms: performance.now() - t0, attentionMs: r.attentionMs };
  }

  /** What every device step shares: the sampling setup and this step's RNG counter. */
  private deviceSampling(): DeviceStepInput['sampling'] {
    const o = this.opts;
    return { temperature: o.temperature, topP: o.topP, ...(o.topK === undefined ? {} : { topK: o.topK }), beta: o.trustAr, seed: o.seed, ...(this.neverEmit === undefined ? {} : { neverEmit: this.neverEmit }) };
  }

  private arStep(): StepRecord {
    const t0 = performance.now();
    const cache = this.runner.cache;
    cache.ensureRoom(1);
    const L = cache.length;
    if (this.runner.decodeStep) {
      const out = this.runner.decodeStep({
        variant: AR_VARIANT, ids: Int32Array.of(this.drafts[0]!), positions: Int32Array.of(L),
        verifyRows: [0], verifyDrafts: [-1], sampling: this.deviceSampling(), rngStep: this.steps,
      });
      this.drafts = [out.tokens[0]!];
      return { tokens: [...out.tokens], ms: performance.now() - t0, attentionMs: 0 };
    }
    const r = this.runner.pass(Int32Array.of(this.drafts[0]!), Int32Array.of(L), { kind: 'step', variant: AR_VARIANT });
    r.commit(1);
    const next = this.greedy ? this.best(r, [0])[0]! : this.pick(r.logits([0])[0]!);
    this.drafts = [next];
    return { tokens: [next], ms: performance.now() - t0, attentionMs: r.attentionMs };
  }

  private tidarStep(): StepRecord {
    const t0 = performance.now();
    const k = this.opts.draft;
    const cache = this.runner.cache;
    cache.ensureRoom(k);
    const L = cache.length;
    const ids = Int32Array.from([...this.drafts, ...Array<number>(k * k).fill(this.maskTokenId)]);
    const positions = Int32Array.from(this.stepOffsets, (o) => L + o);
    const beta = this.opts.trustAr;
    // verify[i] checks d[i+1]: AR row i, mixed with block i+1's slot 0 (same position).
    const verifyRows = Array.from({ length: k }, (_, i) => i);
    if (this.runner.decodeStep) {
      // Row k - 1 checks no draft: its token is the bonus when every draft stood. The next
      // drafts: block a's slots 1..k-1 (rows k * a + 1 + s), a = the tokens made final.
      const out = this.runner.decodeStep({
        variant: tidarVariantName(k), ids, positions, verifyRows, verifyDrafts: [...this.drafts.slice(1, k), -1],
        ...(beta === 1 ? {} : { mixRows: verifyRows.map((i) => k * (i + 1)) }),
        ...(k > 1 ? { nextDrafts: { stride: k, offset: 1, count: k - 1 } } : {}),
        sampling: this.deviceSampling(), rngStep: this.steps,
      });
      const a = out.tokens.length;
      this.drafts = [out.tokens[a - 1]!, ...out.nextDrafts];
      return { tokens: [...out.tokens], accepted: a, ms: performance.now() - t0, attentionMs: 0 };
    }
    const r = this.runner.pass(ids, positions, { kind: 'step', variant: tidarVariantName(k) });
    let a = 1;
    let next: number;
    if (this.greedy && beta === 1) {
      const best = this.best(r, verifyRows);
      while (a < k && best[a - 1] === this.drafts[a]) a++;
      next = best[a - 1]!;
    } else {
      const ar = r.logits(verifyRows);
      const diff = beta === 1 ? ar : r.logits(verifyRows.map((i) => k * (i + 1)));
      const verify = ar.map((row, i) => this.withoutMask(mixLogits(row, diff[i]!, beta)));
      if (this.greedy) {
        while (a < k && argmax(verify[a - 1]!) === this.drafts[a]) a++;
        next = argmax(verify[a - 1]!);
      } else {
        next = -1;
        while (a < k) {
          const v = verifyDraft(distribution(verify[a - 1]!, this.opts), this.drafts[a]!, this.rng);
          if (!v.accepted) {
            next = v.correction;
            break;
          }
          a++;
        }
        if (next < 0) next = sample(distribution(verify[k - 1]!, this.opts), this.rng);  // all accepted: the bonus token
      }
    }
    r.commit(a);
    const emitted = [...this.drafts.slice(1, a), next];
    // Next drafts: the AR token, then block a's slots 1..k-1 (positions L + a + s = new L + s).
    this.drafts = [next, ...(k > 1 ? this.best(r, Array.from({ length: k - 1 }, (_, s) => k * a + 1 + s)) : [])];
    return { tokens: emitted, accepted: a, ms: performance.now() - t0, attentionMs: r.attentionMs };
  }
}

export function checkDecodeOptions(o: DecodeOptions, compiledDrafts: readonly number[]): void {
  if (o.mode !== 'tidar' && o.mode !== 'ar') throw new TidarcError('invalid-argument', 'unknown mode', { field: 'mode', value: o.mode, allowed: 'tidar, ar' });
  if (o.mode === 'tidar' && !compiledDrafts.includes(o.draft)) {
    throw new TidarcError('invalid-argument', 'no kernels for this draft length', { field: 'draft', value: o.draft, allowed: compiledDrafts.join(', ') });
  }
  if (!(o.temperature >= 0) || o.temperature > 100) throw new TidarcError('invalid-argument', 'temperature out of range', { field: 'temperature', value: o.temperature, allowed: '0 (greedy) to 100' });
  if (!(o.topP > 0 && o.topP <= 1)) throw new TidarcError('invalid-argument', 'top-p out of range', { field: 'topP', value: o.topP, allowed: '(0, 1]' });
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0 && o.topK < 2 ** 31)) throw new TidarcError('invalid-argument', 'top-k out of range', { field: 'topK', value: o.topK, allowed: 'an integer >= 0 (0: all tokens)' });
  if (!(o.trustAr >= 0 && o.trustAr <= 1)) throw new TidarcError('invalid-argument', 'trust-ar (beta) out of range', { field: 'trustAr', value: o.trustAr, allowed: '[0, 1]' });
}
