/**
 * Turning logits into tokens: temperature and top-p, and the lossless acceptance of a
 * deterministic draft (speculative sampling with a point-mass proposal q = delta(draft)):
 * accept with probability p(draft); otherwise sample from p with the draft removed. The
 * emitted token then has exactly the distribution p, whatever the draft was.
 */
import type { Rng } from '../../util/random.js';

export interface SamplingOptions {
  /** 0 = greedy (argmax). */
  readonly temperature: number;
  /** Nucleus: keep the smallest set of tokens whose probability reaches topP. */
  readonly topP: number;
  /** Keep only the topK most likely tokens (ties to the lower id) before topP; 0 or absent: all. */
  readonly topK?: number;
}

/** The target distribution p over the vocabulary from one row of logits. */
export function distribution(logits: Float32Array, opts: SamplingOptions): Float64Array {
  const V = logits.length;
  const p = new Float64Array(V);
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < V; i++) {
    p[i] = Math.exp((logits[i]! - max) / opts.temperature);
    sum += p[i]!;
  }
  for (let i = 0; i < V; i++) p[i]! /= sum;
  const topK = opts.topK ?? 0;
  if (topK > 0 && topK < V) {
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
    let kept = 0;
    for (let r = 0; r < V; r++) {
      if (r < topK) kept += p[order[r]!]!;
      else p[order[r]!] = 0;
    }
    for (let i = 0; i < V; i++) p[i]! /= kept;
  }
  if (opts.topP < 1) {
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
    let mass = 0, keep = 0;
    while (keep < V && mass < opts.topP) mass += p[order[keep++]!]!;
    for (let r = keep; r < V; r++) p[order[r]!] = 0;
    for (let i = 0; i < V; i++) p[i]! /= mass;
  }
  return p;
}

export function sample(p: Float64Array, rng: Rng, exclude = -1): number {
  const total = exclude >= 0 ? 1 - p[exclude]! : 1;
  let u = rng.next() * total;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (i === exclude || p[i] === 0) continue;
    last = i;
    u -= p[i]!;
    if (u < 0) return i;
  }
  return last;  // rounding left u a hair above 0: the last candidate
}

/** Lossless verification of a deterministic draft: [accepted, token to emit if rejected]. */
export function verifyDraft(p: Float64Array, draft: number, rng: Rng): { accepted: boolean; correction: number } {
  if (rng.next() < p[draft]!) return { accepted: true, correction: draft };
  return { accepted: false, correction: sample(p, rng, draft) };
}

/** verify = beta * ar + (1 - beta) * diffusion (docs/tidar.md's verifier mix). */
export function mixLogits(ar: Float32Array, diffusion: Float32Array, beta: number): Float32Array {
  if (beta === 1) return ar;
  const out = new Float32Array(ar.length);
  for (let i = 0; i < ar.length; i++) out[i] = beta * ar[i]! + (1 - beta) * diffusion[i]!;
  return out;
}

export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}
