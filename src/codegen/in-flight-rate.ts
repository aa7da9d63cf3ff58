/**
 * The HBM rate a launch can pull from the loads it keeps in flight (Little's law: rate = bytes
 * in flight / latency), for the cost models: a launch of few CTAs, or of CTAs with shallow
 * pipelines, cannot reach the copy rate however few bytes it moves. Pure.
 *
 *   per CTA     bytesPerCta / latency (Machine.hbmLatencyS): what a pipeline of S stages keeps
 *               in flight is S - 1 stages' HBM bytes (the math reads the last landed stage while
 *               the others load);
 *   per SM      the CTAs it holds at once: min(CTAs per SM, CTAs / active SMs), so a grid
 *               smaller than SMs x CTAs per SM fills fewer slots;
 *   machine     min(copy rate, active SMs x per-SM rate), active SMs = min(SMs, CTAs).
 * The copy rate stays the ceiling: Little's law only says when a launch falls short of it.
 */
import type { Machine } from './machine.js';

export interface InFlight {
  /** HBM bytes one CTA keeps in flight. */
  readonly bytesPerCta: number;
  readonly ctas: number;
  /** CTAs an SM holds at once (occupancy.ts). */
  readonly ctasPerSm: number;
}

export interface FillRate {
  readonly activeSms: number;
  /** CTAs an active SM holds at once, on average. */
  readonly ctasPerActiveSm: number;
  /** What one active SM pulls: its CTAs' bytes in flight over the latency. */
  readonly perSmBytesPerS: number;
  /** Active SMs x per-SM rate: what the bytes in flight alone would pull. */
  readonly pulledBytesPerS: number;
  /** min(copy rate, pulledBytesPerS). */
  readonly bytesPerS: number;
  /** True when the bytes in flight, not the copy rate, bound the launch. */
  readonly underFilled: boolean;
}

export function fillRate(m: Machine, f: InFlight): FillRate {
  const activeSms = Math.min(m.sms, f.ctas);
  const ctasPerActiveSm = Math.min(Math.max(1, f.ctasPerSm), f.ctas / activeSms);
  const perSmBytesPerS = (ctasPerActiveSm * f.bytesPerCta) / m.hbmLatencyS;
  const pulled = activeSms * perSmBytesPerS;
  return { activeSms, ctasPerActiveSm, perSmBytesPerS, pulledBytesPerS: pulled, bytesPerS: Math.min(m.copyBytesPerS, pulled), underFilled: pulled < m.copyBytesPerS };
}

/** The HBM bytes a pipeline of `stages` stages of `hbmBytesPerStage` each keeps in flight (one stage is being read). */
export function pipelineBytesInFlight(stages: number, hbmBytesPerStage: number): number {
  return Math.max(1, stages - 1) * hbmBytesPerStage;
}
