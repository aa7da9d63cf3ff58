/**
 * Non-finite logits stop a run with an error naming the step (issue 12: a NaN final norm made
 * TiDAR "accept" every draft and report 3.76 tokens per forward on NUL bytes). The lm_head's
 * log-sum-exp is the signal on both backends; here it comes from the CPU operator, and the
 * decoding loop runs over a runner whose hidden states turn NaN or infinite at a chosen pass;
 * the cuda runner's check (row_stats' lse) runs on the emulated driver, through the built CLI
 * (dist/, as the other emulated-driver tests), wherever g++ is.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findCxx } from '../../../src/build/toolchain.js';
import { readSafetensors, serializeSafetensors, type Tensor } from '../../../src/model/safetensors.js';
import { TidarcError } from '../../../src/errors.js';
import { Decoder } from '../../../src/runtime/model/decoder.js';
import { type CacheState, type ForwardPass, NonFiniteLogits, type Runner, checkLogitsFinite } from '../../../src/runtime/model/forward.js';
import type { KvCache } from '../../../src/runtime/model/kv-cache.js';
import * as ops from '../../../src/runtime/ops.js';
import { sharedEmulatedDriver, sharedKernelCache } from '../../helpers/emulated-driver.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const V = 8, H = 4;
/** A tiny lm_head whose argmax depends on the hidden row. */
const head: ops.WeightMatrix = { data: Float32Array.from({ length: V * H }, (_, i) => Math.sin(i)), dtype: 'f32', rows: V, cols: H };

/** A runner over ops.lmHead whose pass number `badPass` (0 = prefill) has `poison` in row `badRow`. */
function fakeRunner(badPass: number, poison: number, badRow = 0): Runner {
  let passes = 0;
  const cache: CacheState = { length: 0, shape: { layers: 1, kvHeads: 1, headDim: 64, capacity: 1000 }, ensureRoom: () => undefined, repeatSlots: () => undefined };
  return {
    spec: smallSpec('fake', [2]),
    cache,
    pass(ids): ForwardPass {
      const hidden = Float32Array.from({ length: ids.length * H }, (_, i) => Math.cos(i + passes));
      if (passes++ === badPass) hidden.fill(poison, badRow * H, badRow * H + 1);
      const run = (rows: readonly number[], logits: boolean) => {
        const r = ops.lmHead(hidden, head, Int32Array.from(rows), { logits });
        checkLogitsFinite(r.lse, rows);
        return r;
      };
      return {
        attentionMs: 0,
        argmax: (rows) => [...run(rows, false).argmax],
        logits: (rows) => {
          const out = run(rows, true).logits!;
          return rows.map((_, i) => out.subarray(i * V, (i + 1) * V));
        },
        commit: (count) => void (cache.length += count),
      };
    },
    hostCache: () => ({}) as KvCache,
    close: () => undefined,
  };
}

function errorOf(fn: () => unknown): TidarcError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TidarcError) return e;
    throw e;
  }
  throw new Error('expected a TidarcError');
}

describe('checkLogitsFinite on the CPU lm_head', () => {
  test.for([NaN, Infinity, -Infinity])('a hidden value of %s makes the row non-finite; finite rows pass', (poison) => {
    const hidden = Float32Array.from({ length: 3 * H }, (_, i) => i / 10);
    expect(() => checkLogitsFinite(ops.lmHead(hidden, head, Int32Array.of(0, 1, 2)).lse, [0, 1, 2])).not.toThrow();
    hidden[H + 2] = poison;
    const r = ops.lmHead(hidden, head, Int32Array.of(0, 2, 1));
    const e = errorOf(() => checkLogitsFinite(r.lse, [0, 2, 1]));
    expect(e).toBeInstanceOf(NonFiniteLogits);
    expect((e as NonFiniteLogits).row).toBe(1);
  });

  test('a row of only -inf logits (no probability anywhere) is non-finite too', () => {
    const w: ops.WeightMatrix = { data: new Float32Array(V * H).fill(-Infinity), dtype: 'f32', rows: V, cols: H };
    const r = ops.lmHead(new Float32Array(H).fill(1), w, Int32Array.of(0));
    expect(() => checkLogitsFinite(r.lse, [0])).toThrow(NonFiniteLogits);
  });
});

describe('the decoding loop stops at the step whose logits are not finite', () => {
  const modes = [
    ['tidar greedy', { mode: 'tidar', draft: 2, temperature: 0, topP: 1, trustAr: 1, seed: 0 }],
    ['tidar sampled', { mode: 'tidar', draft: 2, temperature: 0.8, topP: 0.9, trustAr: 0.5, seed: 1 }],
    ['ar greedy', { mode: 'ar', draft: 2, temperature: 0, topP: 1, trustAr: 1, seed: 0 }],
  ] as const;

  test.for(modes)('%s: NaN in decode step 3', ([, opts]) => {
    const decoder = new Decoder(fakeRunner(3, NaN), opts, 7);
    expect(decoder.prefill([1, 2, 3]).tokens).toHaveLength(1);
    decoder.step();
    decoder.step();
    const e = errorOf(() => decoder.step());
    expect(e.code).toBe('runtime');
    expect(e.message).toMatch(/^the model produced non-finite logits \(log-sum-exp NaN, row 0\) in decode step 3; no tokens are reported from it; allowed: finite logits/);
  });

  test('infinity in the prefill names step 0', () => {
    const decoder = new Decoder(fakeRunner(0, Infinity, 2), { mode: 'tidar', draft: 2, temperature: 0, topP: 1, trustAr: 1, seed: 0 }, 7);
    // Prefill of 3 prompt tokens + 2 mask slots: row 2 is the last prompt row, whose argmax is the first token.
    expect(errorOf(() => decoder.prefill([1, 2, 3])).message).toMatch(/non-finite logits \(log-sum-exp (NaN|Infinity), row 2\) in the prefill \(step 0\)/);
  });
});

const cxx = await findCxx();

describe.skipIf(!cxx.found)('the cuda runner (emulated driver)', () => {
  const root = mkdtempSync(join(tmpdir(), 'tidarc-non-finite-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test('finite weights whose logits overflow: exit 1 naming the prefill, not tokens', { timeout: 300_000 }, async () => {
    const driver = await sharedEmulatedDriver();
    // test/runtime/cuda/emulated-backend.test.ts's spec: its kernels compile once in the shared cache.
    const dir = await writeRandomModel(root, smallSpec('cudasmall', [2]), 4);
    // bf16 0x7f7f = 3.39e38, the largest finite bf16: the final norm's output overflows float32.
    const file = await readSafetensors(join(dir, 'model.safetensors'));
    const tensors: Record<string, Tensor> = {};
    for (const n of file.names()) tensors[n] = file.tensor(n);
    tensors['model.norm.weight'] = { ...tensors['model.norm.weight']!, data: new Uint16Array(tensors['model.norm.weight']!.data.length).fill(0x7f7f) };
    writeFileSync(join(dir, 'model.safetensors'), serializeSafetensors(tensors, file.metadata));
    const r = await promisify(execFile)(process.execPath, [resolve('bin/tidarc.js'), 'run', dir, '--backend', 'cuda', '--prompt', 'hi', '--max-tokens', '4', '--json'], {
      env: { ...process.env, TIDARC_LIBCUDA: driver, TIDARC_CACHE: await sharedKernelCache() },
    }).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^tidarc: error: the model produced non-finite logits \(log-sum-exp (NaN|Infinity), row \d+\) in the prefill \(step 0\)/);
  });
});
