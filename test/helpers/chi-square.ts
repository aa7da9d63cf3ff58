/**
 * Chi-square tests for the sampling tests: goodness of fit against known probabilities,
 * and homogeneity of two samples. p-values from the regularized upper incomplete gamma
 * function (series below a + 1, Lentz continued fraction above).
 */
function lnGamma(x: number): number {
  const c = [676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  x -= 1;
  let a = 0.99999999999980993;
  const t = x + 7.5;
  for (let i = 0; i < 8; i++) a += c[i]! / (x + i + 1);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Q(a, x) = Gamma(a, x) / Gamma(a). */
function upperGammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  if (x < a + 1) {
    let sum = 1 / a, term = sum;
    for (let n = 1; n < 1000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-15) break;
    }
    return 1 - sum * Math.exp(-x + a * Math.log(x) - lnGamma(a));
  }
  let b = x + 1 - a, c = 1e300, d = 1 / b, h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.exp(-x + a * Math.log(x) - lnGamma(a)) * h;
}

export function chiSquareSf(statistic: number, df: number): number {
  return upperGammaQ(df / 2, statistic / 2);
}

/** Goodness of fit of `counts` to probabilities `p` (categories with p = 0 must have count 0). */
export function goodnessOfFit(counts: readonly number[], p: readonly number[]): { statistic: number; df: number; pValue: number } {
  const n = counts.reduce((a, b) => a + b, 0);
  let statistic = 0, df = -1;
  counts.forEach((c, i) => {
    const e = n * p[i]!;
    if (e === 0) {
      if (c > 0) statistic = Infinity;
      return;
    }
    statistic += (c - e) ** 2 / e;
    df++;
  });
  return { statistic, df, pValue: chiSquareSf(statistic, df) };
}

/**
 * Homogeneity of two samples over the same categories: categories whose pooled expected
 * count is below 5 in either sample are merged into one.
 */
export function homogeneity(a: ReadonlyMap<number, number>, b: ReadonlyMap<number, number>): { statistic: number; df: number; pValue: number } {
  const na = [...a.values()].reduce((x, y) => x + y, 0), nb = [...b.values()].reduce((x, y) => x + y, 0);
  const keys = [...new Set([...a.keys(), ...b.keys()])];
  const cells: [number, number][] = [];
  let restA = 0, restB = 0;
  for (const key of keys) {
    const ca = a.get(key) ?? 0, cb = b.get(key) ?? 0;
    const pooled = (ca + cb) / (na + nb);
    if (pooled * Math.min(na, nb) >= 5) cells.push([ca, cb]);
    else restA += ca, restB += cb;
  }
  if (restA + restB > 0) cells.push([restA, restB]);
  let statistic = 0;
  for (const [ca, cb] of cells) {
    const pooled = (ca + cb) / (na + nb);
    statistic += (ca - na * pooled) ** 2 / (na * pooled) + (cb - nb * pooled) ** 2 / (nb * pooled);
  }
  const df = cells.length - 1;
  return { statistic, df, pValue: df > 0 ? chiSquareSf(statistic, df) : 1 };
}
