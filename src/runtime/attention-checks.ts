/**
 * Checks of the numbers an attention call takes (batch, cacheCapacity, prefixLen, splits,
 * threads), shared by the kernel library and the reference. Every value is checked as given,
 * before any conversion: Int32Array.from would turn 2^32 + 5 into 5, NaN into 0 and 1.9 into 1,
 * and a kernel would then run on numbers nobody asked for.
 */
import { TidarcError } from '../errors.js';

/** The ABI's sizes and lengths are int32 (templates/common/tidarc_abi.h). */
export const INT32_MAX = 2 ** 31 - 1;
/** Split-KV partitions of one call. */
export const MAX_SPLITS = 1024;
/**
 * CPU threads of one call: the bound of the CLI's --threads (run, bench-step, tune), so that a
 * value the CLI accepts is never refused here. A kernel library runs at most its machine's
 * hardware threads (more are clamped there, and by the addon's operators); this bound turns a
 * typo (20000) into an error naming the field.
 */
export const MAX_CPU_THREADS = 1024;

export function invalidAttentionInput(field: string, value: unknown, allowed: string): never {
  // As written in source: NaN and Infinity (JSON would say null), a string in quotes.
  const shown = typeof value === 'number' ? String(value) : typeof value === 'string' ? JSON.stringify(value) : value;
  throw new TidarcError('invalid-argument', 'invalid attention input', { field, value: shown, allowed });
}

/** An integer in [min, max]; anything else (NaN, 1.9, '3', 2^32 + 5) names the field. */
export function checkInteger(field: string, value: unknown, min: number, max: number = INT32_MAX): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    invalidAttentionInput(field, value, `an integer from ${min} to ${max}`);
  }
  return value;
}

/** prefixLen: batch integers in [0, cacheCapacity], as the Int32Array the ABI takes. */
export function checkPrefixLen(prefixLen: unknown, batch: number, cacheCapacity: number): Int32Array {
  if (!(prefixLen instanceof Int32Array) && !Array.isArray(prefixLen)) {
    const kind = prefixLen === null ? 'null' : typeof prefixLen === 'object' ? `a ${prefixLen.constructor?.name ?? 'object'}` : typeof prefixLen;
    throw new TidarcError('invalid-argument', 'invalid attention input', { field: 'prefixLen', value: kind, allowed: 'an Int32Array or an array of integers' });
  }
  const values = prefixLen as ArrayLike<unknown>;
  if (values.length !== batch) invalidAttentionInput('prefixLen.length', values.length, `batch (${batch})`);
  const out = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    const L = values[b];
    if (typeof L !== 'number' || !Number.isInteger(L) || L < 0 || L > cacheCapacity) {
      invalidAttentionInput(`prefixLen[${b}]`, L, `an integer from 0 to cacheCapacity (${cacheCapacity})`);
    }
    out[b] = L;
  }
  return out;
}
