/**
 * A device-check.json with host times for bench:step --compare / --overheads' host part (step-host.ts):
 * scripts/step-compare-fixture.ts's document (made-up GPU steps) with each measured run given a
 * bench-step figure {medianMs, hostMs, launchesPerStep} whose hostMs is BUILT from known constants:
 *   graphs and --no-pdl runs: hostStepS + 1 graph launch x hostGraphLaunchS (the upload is a node of the graph)
 *   launch by launch:         hostStepS + launches x hostLaunchS + UPLOADS x hostCopyS
 * so the derivation must give hostStepS back. UPLOADS and DOWNLOADS are what the runtime issues a
 * decode step (gpu-runner.ts step: one uploadAsync of the pinned inputs, one download of the output),
 * written here by hand: the cost model's own count (StepPrediction.uploads) must agree.
 */
import { buildStepCompareFixture } from '../../scripts/step-compare-fixture.js';

export const UPLOADS = 1;
export const DOWNLOADS = 1;
/** overheads-sample.json's call constants (the fixture's overheads section). */
export const SAMPLE_CALLS = { hostLaunchS: 4.2e-6, hostGraphLaunchS: 3e-6, hostCopyS: 3.5e-6 } as const;

export interface HostBuild {
  /** The decoder's own host time a step built into the graphs (and --no-pdl) runs and the launch-by-launch runs, s. */
  readonly graphsS: number;
  readonly launchesS: number;
  readonly calls?: { readonly hostLaunchS: number; readonly hostGraphLaunchS: number; readonly hostCopyS: number };
  /** hostMs = share x medianMs for these runs instead ('model/prefix/step/run'). */
  readonly share?: Readonly<Record<string, number>>;
}

type Row = Record<string, unknown> & { model: string; prefix: number; step: string; predicted: { launchesPerStep: number } };

/** buildStepCompareFixture's document, made once (its predictions take a second or two). */
let base: Record<string, unknown> | undefined;

/** The fixture with a `tidarc` figure per measured run (e2e.py table_rows' shape), its host times built from `b`. */
export type HostCheck = Record<string, unknown> & { e2e: Record<string, unknown> & { rows: Row[] }; overheads: Record<string, unknown> & { measured: Record<string, unknown> } };

export function hostFixture(b: HostBuild): HostCheck {
  const doc = structuredClone(base ??= buildStepCompareFixture()) as HostCheck;
  const c = b.calls ?? SAMPLE_CALLS;
  for (const r of doc.e2e.rows) {
    const fig = (run: 'graphs' | 'launches' | 'noPdl', medianMs: unknown): Record<string, number> | null => {
      if (typeof medianMs !== 'number') return null;
      const graphs = run !== 'launches';
      const launches = graphs ? 1 : r.predicted.launchesPerStep;
      const share = b.share?.[`${r.model}/${r.prefix}/${r.step}/${run}`];
      const hostS = share !== undefined ? share * medianMs * 1e-3
        : (graphs ? b.graphsS + c.hostGraphLaunchS : b.launchesS + launches * c.hostLaunchS + UPLOADS * c.hostCopyS);
      return { medianMs, hostMs: hostS * 1e3, launchesPerStep: launches, gpuMs: medianMs };
    };
    r.tidarc = { graphs: fig('graphs', r.tidarcGraphsMs), launches: fig('launches', r.tidarcLaunchesMs), noPdl: fig('noPdl', r.tidarcNoPdlMs) };
  }
  return doc;
}
