/**
 * What scripts/device-check/runtime_check.mjs (the device check's runtime part) reports, and the
 * invariants each of its runs must hold: greedy TiDAR == greedy AR, no more NFEs than AR, and the
 * TiDAR run's committed cache equal to the AR run's (layer 0 bitwise, deeper layers within bf16
 * rounding, over more slots than the tokens made) with nothing written past the committed length.
 * One checker for the GPU run (emulated-backend.test.ts [gpu]) and the dry run on the emulated
 * driver (device-check.test.ts), so the dry run proves the GPU test's checker too.
 */
import { expect } from 'vitest';

export interface RuntimeCheckRun {
  prompt: string; draft: number; equal: boolean; ar: number[]; tidar: number[]; arNfe: number; tidarNfe: number;
  comparedSlots: number; layer0Differing: number; maxRelDiff: number; writtenPastLength: number;
}

export interface RuntimeCheckReport {
  /** Absent where the model did not load (then `error` says why). */
  backend: string;
  reason: string;
  /** The loads' `cuda: ...` log lines (the memory preflight's figures, the weights on the device, PDL). */
  loadLines?: string[];
  /** Whether the kernels ran with programmatic dependent launch, and why (not) (Model.pdl); null where the model has none. */
  pdl?: { on: boolean; why: string } | null;
  runs: RuntimeCheckRun[];
  /**
   * The same check once more with PDL off (loadModel pdl: false), where PDL was on: its runs (samePdlOn: AR and TiDAR tokens
   * equal PDL on's), the (prompt, k) the budget left out, and whether every run's tokens equal PDL on's (null: none ran);
   * or only `skipped` (why not) where PDL was not on.
   */
  pdlOff?: {
    pdl?: { on: boolean; why: string } | null; runs?: (RuntimeCheckRun & { samePdlOn: boolean; ok: boolean })[];
    skipped?: string | { prompt: string; draft: number }[]; skippedWhy?: string; tokensEqual?: boolean | null; ok?: boolean | null;
    /** What PDL off threw; afterFailure: run in a child process after the PDL-on pass threw (nothing to compare). */
    error?: string; afterFailure?: boolean;
  };
  /** What the PDL-on pass (or the load) threw, in one line. */
  error?: string[];
  /** After a throw: whether PDL is the likely cause (PDL off passed in a fresh process) or not. */
  diagnosis?: string;
  ok: boolean;
}

export function expectRuntimeInvariants(runs: readonly RuntimeCheckRun[], tokens: number): void {
  for (const r of runs) {
    const what = `k=${r.draft} prompt ${JSON.stringify(r.prompt)}`;
    expect(r.ar, what).toHaveLength(tokens);
    expect(r.tidar, what).toEqual(r.ar);
    expect(r.tidarNfe, what).toBeLessThanOrEqual(r.arNfe);
    expect(r.comparedSlots, what).toBeGreaterThan(tokens);
    expect(r.layer0Differing, what).toBe(0);
    expect(r.maxRelDiff, what).toBeLessThan(2 ** -6);
    expect(r.writtenPastLength, what).toBe(0);
  }
}
