/**
 * A model's decoding loop (load-model.ts stream / generate) lets the event loop run between
 * decode steps: each forward is synchronous, and an async generator resumes on microtasks only,
 * so without a macrotask turn per step no timer, I/O callback or signal handler ran until the last
 * token (`tidarc run` ignored Ctrl-C for the whole generation, and went on after `| head` closed
 * its stdout). Needs: g++ and the native addon.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type Model, loadModel } from '../../src/load/load-model.js';
import { sharedKernelCache } from '../helpers/emulated-driver.js';
import { sharedSmallSpec, writeRandomModel } from '../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-stream-loop-'));
let model: Model;

beforeAll(async () => {
  // sharedSmallSpec: its kernels compile once for the files that load it.
  const dir = await writeRandomModel(root, sharedSmallSpec(), 11);
  model = await loadModel(dir, { backend: 'cpu', cacheDir: await sharedKernelCache(), threads: 1 });
}, 600_000);

afterAll(() => {
  model?.close();
  rmSync(root, { recursive: true, force: true });
});

test.for(['ar', 'tidar'] as const)('%s: a callback queued after the first chunk runs before its last chunk', async (mode) => {
  // Queued once the prefill's chunk is in: only the decode steps' turns can run it early (the
  // prefill's own turns are the last test's).
  let chunks = 0;
  let firedAt = -1;
  for await (const chunk of model.stream({ prompt: 'hello', maxTokens: 24, mode, draft: 2, stopAtEos: false })) {
    if (chunk.tokens.length > 0 && chunks++ === 0) {
      setImmediate(() => {
        firedAt = chunks;
      });
    }
  }
  expect(chunks).toBeGreaterThan(2);
  expect(firedAt).toBeGreaterThanOrEqual(1);
  expect(firedAt).toBeLessThan(chunks);
});

test('generate: a timer set before it fires while it decodes', async () => {
  const ticks: number[] = [];
  const timer = setInterval(() => ticks.push(Date.now()), 0);
  try {
    const r = await model.generate({ prompt: 'hello', maxTokens: 24, mode: 'ar', stopAtEos: false });
    expect(r.tokens).toHaveLength(24);
    // Resolving the promise takes microtasks only: every tick came from inside the decoding loop.
    expect(ticks.length).toBeGreaterThan(0);
  } finally {
    clearInterval(timer);
  }
});

test('a long prompt\'s prefill lets the event loop run between its ops (was: one synchronous forward)', async () => {
  // 640 prompt tokens: 10 prefill chunks of 64 rows, each layer's attention over all of them.
  const prompt = Array.from({ length: 640 }, (_, i) => (i * 7919) % model.spec.vocabSize);
  let ticks = 0;
  let on = true;
  const tick = (): void => {
    ticks++;
    if (on) setImmediate(tick);
  };
  setImmediate(tick);
  const stream = model.stream({ prompt, maxTokens: 2, mode: 'tidar', draft: 2, stopAtEos: false });
  try {
    const first = await stream.next();  // the prefill, and its first token
    expect(first.done).toBe(false);
    // Every op of the prefill's forward but the last is followed by a macrotask turn.
    expect(ticks).toBeGreaterThan(2 * model.spec.layers);
  } finally {
    on = false;
    await stream.return(undefined as never);
  }
});
