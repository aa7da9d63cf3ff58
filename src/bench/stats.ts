/** Order statistics of repeated timings, shared by the bench scripts. */
export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly p20: number;
  readonly p80: number;
  readonly count: number;
}

/** Linear interpolation between closest ranks (numpy's default). */
function quantile(sorted: readonly number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function summarize(xs: readonly number[]): Summary {
  if (xs.length === 0) throw new Error('summarize: no samples');
  const s = [...xs].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), min: s[0]!, max: s[s.length - 1]!, p20: quantile(s, 0.2), p80: quantile(s, 0.8), count: s.length };
}

/** `median 12.3 (min 11.9, max 13.0) ms` with `digits` decimals. */
export function formatMs(s: Summary, digits = 0): string {
  const f = (x: number): string => x.toFixed(digits);
  return `median ${f(s.median)} ms (min ${f(s.min)}, max ${f(s.max)})`;
}
