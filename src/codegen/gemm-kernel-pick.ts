/**
 * Which compiled kernel of a GEMM unit a launch over `rows` rows takes: the one copy of the rule
 * the runtime launches by (runtime/cuda/gpu-gemm.ts, gpu-gemm-sm90a.ts) and a filtered compile
 * keeps kernels by (gemm-omission.ts), so the two cannot drift apart. Generic over what a kernel
 * is (a manifest entry, a planned row count, a token tile); no order is assumed and nothing is
 * allocated (the runtime asks once a launch). Pure.
 */
import { sm90aTokenTile } from './gemm-sm90a.js';

/**
 * The mma.sync kernel: the one planned for the fewest rows >= rows (each is planned for its m and
 * serves fewer rows with the same k order), else the one planned for the most (it loops its row
 * tiles over any count).
 */
export function pickMmaKernel<K>(kernels: readonly K[], rows: number, m: (k: K) => number): K {
  let fit: K | undefined, most: K | undefined;
  for (const k of kernels) {
    if (m(k) >= rows && (fit === undefined || m(k) < m(fit))) fit = k;
    if (most === undefined || m(k) > m(most)) most = k;
  }
  if (most === undefined) throw new Error('pickMmaKernel: a GEMM unit with no kernels');
  return fit ?? most;
}

/**
 * The sm_90a kernel: the token tile sm90aTokenTile plans for `rows`, else (a filtered or older
 * compile without it) the smallest tile that holds the rows, else the largest (its grid covers any
 * count in tiles).
 */
export function pickSm90aKernel<K>(kernels: readonly K[], rows: number, tileT: (k: K) => number): K {
  const want = sm90aTokenTile(rows);
  let fit: K | undefined, most: K | undefined;
  for (const k of kernels) {
    if (tileT(k) === want) return k;
    if (tileT(k) >= rows && (fit === undefined || tileT(k) < tileT(fit))) fit = k;
    if (most === undefined || tileT(k) > tileT(most)) most = k;
  }
  if (most === undefined) throw new Error('pickSm90aKernel: a GEMM unit with no kernels');
  return fit ?? most;
}
