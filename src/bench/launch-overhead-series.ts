/**
 * The overheads part's series (launch-overheads.ts measures them): each a list of lengths N and
 * the median GPU time of N launches, fitted as T(N) = a + s N by least squares, and what makes a
 * fit doubtful (a line that explains too little of its times; a cuGraphLaunch whose host time grows
 * with N, inside the events that bracket it). Pure: numbers in, fits and warning lines out.
 */
import { TidarcError } from '../errors.js';

export type SeriesName = 'graph-E' | 'graph-S' | 'graph-E-pdl' | 'graph-S-pdl' | 'stream-E' | 'copies' | 'graph-E-copy';
export const SERIES_NAMES: readonly SeriesName[] = ['graph-E', 'graph-S', 'graph-E-pdl', 'graph-S-pdl', 'stream-E', 'copies', 'graph-E-copy'];

/** A straight line through (n, seconds): least squares, with its coefficient of determination. */
export interface LineFit {
  readonly slopeS: number;
  readonly interceptS: number;
  readonly r2: number;
}

/** One series: the lengths, the median GPU milliseconds of each, and the fit of T(N) in seconds. */
export interface OverheadSeries extends LineFit {
  readonly n: readonly number[];
  readonly gpuMs: readonly number[];
}

export type OverheadSeriesSet = Readonly<Record<'graph-E' | 'graph-S' | 'stream-E' | 'copies' | 'graph-E-copy', OverheadSeries> & Record<'graph-E-pdl' | 'graph-S-pdl', OverheadSeries | null>>;

/** The host's time in the timed cuGraphLaunch calls of one graph series, per length (median ms), and its fit in seconds. */
export interface GraphLaunchHostFit {
  readonly n: readonly number[];
  readonly hostMs: readonly number[];
  readonly slopeS: number;
  readonly interceptS: number;
}

/** Per graph series that ran: its launches' host time (LaunchOverheads.graphLaunchHost). */
export type GraphLaunchHostFits = Readonly<Partial<Record<SeriesName, GraphLaunchHostFit>>>;

/** Least squares of y on n; r2 = 1 where every y is equal and the line goes through them. */
export function fitLine(n: readonly number[], y: readonly number[]): LineFit {
  if (n.length !== y.length || n.length < 2 || new Set(n).size < 2) {
    throw new TidarcError('runtime', 'a launch overhead series needs at least two distinct lengths', { field: 'n', value: n.join(', ') });
  }
  const k = n.length;
  const mn = n.reduce((a, b) => a + b, 0) / k, my = y.reduce((a, b) => a + b, 0) / k;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < k; i++) {
    sxy += (n[i]! - mn) * (y[i]! - my);
    sxx += (n[i]! - mn) ** 2;
    syy += (y[i]! - my) ** 2;
  }
  const slopeS = sxy / sxx, interceptS = my - slopeS * mn;
  let res = 0;
  for (let i = 0; i < k; i++) res += (y[i]! - interceptS - slopeS * n[i]!) ** 2;
  return { slopeS, interceptS, r2: syy === 0 ? (res === 0 ? 1 : 0) : 1 - res / syy };
}

/** A series from its lengths and median GPU milliseconds. */
export function seriesOf(n: readonly number[], gpuMs: readonly number[]): OverheadSeries {
  return { n: [...n], gpuMs: [...gpuMs], ...fitLine(n, gpuMs.map((ms) => ms / 1e3)) };
}

/** Seconds as microseconds to 3 decimals, with the unit ('0.610 us'): how the series' derivations print a figure. */
export const us = (s: number): string => `${(s * 1e6).toFixed(3)} us`;

/** The median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * A graph series whose cuGraphLaunch host time grows by more than `share` of its GPU slope per node:
 * the events bracket the call, so where the GPU waits for the whole call the slope holds host time.
 */
export function graphHostWarnings(series: OverheadSeriesSet, host: GraphLaunchHostFits, share = 0.1): string[] {
  return (Object.entries(host) as [SeriesName, GraphLaunchHostFit][]).flatMap(([name, h]) => {
    const s = series[name];
    return s && h.slopeS > share * s.slopeS
      ? [`${name}: cuGraphLaunch's host time grows ${us(h.slopeS)} a node (${h.hostMs.map((ms) => ms.toFixed(4)).join(', ')} ms at N = ${h.n.join(', ')}) against the GPU's ${us(s.slopeS)}: the slope may hold host time`]
      : [];
  });
}

/** What makes the fits doubtful: a series whose line explains less than `minR2` of its variance. */
export function fitWarnings(series: OverheadSeriesSet, minR2 = 0.99): string[] {
  return SERIES_NAMES.flatMap((name) => {
    const s = series[name];
    return s && !(s.r2 >= minR2) ? [`${name}: r2 ${s.r2.toFixed(4)} below ${minR2} (times ${s.gpuMs.map((ms) => ms.toFixed(4)).join(', ')} ms at N = ${s.n.join(', ')}): its slope is doubtful`] : [];
  });
}
