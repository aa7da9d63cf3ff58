/**
 * What the cuda runner keeps after the prefill (src/runtime/cuda/gpu-runner.ts releasePrefill),
 * on a recording stand-in for the device and a real compile's manifest: a 70-token prompt's
 * activations (two 64-row chunks), its lm_head scratch and the GEMM scratch it grew are freed
 * by the sequence's first decode step, which allocates only its own (smaller) buffers; later
 * steps free nothing (a free would make their graphs stale). A runner reset for another sequence
 * (a model's runner pool) keeps its step graphs: the next sequence's prefill scratch is freed
 * by its first step without making them stale, so that step replays its graph; the runner's
 * own ledger of device bytes matches the device's. A greedy TiDAR step takes its verify and
 * draft rows' argmax from lm_head's row statistics: no logits buffer exists, row_stats never
 * runs, the never-emitted token is -inf through a bias row, and lm_head runs once (verify and
 * every candidate draft row; next_drafts picks the accepted n's), twice with oneHeadPass false;
 * a sampled step allocates the logits it draws from and keeps the drafts' own pass. Needs:
 * nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { AR_VARIANT } from '../../../src/codegen/variant-name.js';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import type { CudaDevice, DeviceBuffer, GraphRef, KernelRef, PinnedBuffer } from '../../../src/runtime/cuda/device.js';
import { OPS_ABI_BUFFER } from '../../../src/runtime/cuda/gpu-ops.js';
import { OPS_ABI_VERSION } from '../../../src/runtime/cuda/op-abi.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { modelWeights } from '../../../src/runtime/model/weights.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-runner-scratch-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Tracks live allocations and graphs; a decode step's download reads "1 token accepted". */
function recorder() {
  const live = new Map<number, DeviceBuffer>();
  const freed: string[] = [];
  const graphs: string[] = [];
  const launched: string[] = [];
  const uploads: string[] = [];
  let next = 0x10000;
  const device = {
    capture: (label: string, record: () => void): GraphRef => (record(), graphs.push(`capture ${label}`), { handle: graphs.length, label, kernels: 0, programmaticKernels: 0, uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0 }),
    launchGraph: (g: GraphRef) => void graphs.push(`launch ${g.label}`), destroyGraph: (g: GraphRef) => void graphs.push(`destroy ${g.label}`),
    info: { multiprocessors: 132 }, arch: 'sm_80',
    alloc: (bytes: number, label: string): DeviceBuffer => {
      const b = { ptr: next, bytes, label };
      next += Math.ceil(bytes / 256) * 256 + 256;
      live.set(b.ptr, b);
      return b;
    },
    free: (b: DeviceBuffer) => void (live.delete(b.ptr) && freed.push(b.label)),
    allocPinned: (bytes: number, label: string): PinnedBuffer => ({ buffer: new ArrayBuffer(bytes), bytes, label }),
    freePinned: () => undefined, fill: () => undefined, copy: () => undefined, upload: (b: DeviceBuffer) => void uploads.push(b.label), uploadAsync: () => undefined,
    download: (b: DeviceBuffer, dst: ArrayBufferView) => void ((b.label === 'decode step output' && ((dst as Int32Array)[0] = 1)) || (b.label === OPS_ABI_BUFFER && ((dst as Int32Array)[0] = OPS_ABI_VERSION))),
    kernel: (_module: string, name: string): KernelRef => ({ name, handle: 0, maxShared: 0 }),
    launch: (fn: KernelRef) => void launched.push(fn.name),
  } as unknown as CudaDevice;
  const bytes = (): number => [...live.values()].reduce((n, b) => n + b.bytes, 0);
  return { device, live, freed, graphs, launched, uploads, bytes };
}

test("a prefill's activations, lm_head and GEMM scratch are freed by the first decode step; later steps free nothing", async () => {
  const spec = smallSpec('scratch', [2]);
  const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 4)));
  const { manifest } = generateModel(spec, { arches: ['sm_80'] });
  const d = recorder();
  const runner = new GpuModelRunner(spec, d.device, uploadWeights(d.device, spec, weights, manifest), '/kernels', manifest, 256, { graphs: false });
  const S = 70;
  const ids = Int32Array.from({ length: S }, (_, i) => i);
  const before = d.bytes();
  const r = runner.pass(ids, ids, { kind: 'prefill', promptTokens: S });
  r.argmax([S - 1]);
  runner.cache.length = S;
  const afterPrefill = d.bytes();
  const prefillLabels = [...d.live.values()].map((b) => b.label).filter((l) => l.endsWith(`[${S} tokens]`));
  expect(prefillLabels.length).toBeGreaterThan(10);
  const step = () => runner.decodeStep({ variant: AR_VARIANT, ids: Int32Array.of(5), positions: Int32Array.of(runner.cache.length), verifyRows: [0], verifyDrafts: [-1], sampling: { temperature: 0, topP: 1, beta: 1, seed: 0 }, rngStep: 1 });
  step();
  // Every buffer of the 70-token pass is gone, and so is the lm_head and GEMM scratch it used.
  expect([...d.live.values()].filter((b) => b.label.endsWith(`[${S} tokens]`))).toEqual([]);
  expect(d.freed).toEqual(expect.arrayContaining([...prefillLabels, 'lm_head logits', expect.stringMatching(/^GEMM workspace/)]));
  const afterStep = d.bytes();
  expect(afterPrefill - afterStep).toBeGreaterThan((afterPrefill - before) / 2);
  d.freed.length = 0;
  step();
  step();
  expect(d.freed).toEqual([]);
  expect(runner.cache.length).toBe(S + 3);
  runner.close();
});

test('a runner reset for the next sequence keeps its step graphs: the new prefill frees only its own buffers and the first step replays', async () => {
  const spec = smallSpec('scratch', [2]);
  const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 4)));
  const { manifest } = generateModel(spec, { arches: ['sm_80'] });
  const d = recorder();
  const gpuWeights = uploadWeights(d.device, spec, weights, manifest);
  const weightBytes = d.bytes();
  const runner = new GpuModelRunner(spec, d.device, gpuWeights, '/kernels', manifest, 256);
  const sequence = (S: number): (string | undefined)[] => {
    const ids = Int32Array.from({ length: S }, (_, i) => i);
    runner.pass(ids, ids, { kind: 'prefill', promptTokens: S }).argmax([S - 1]);
    runner.cache.length = S;
    return [1, 2, 3].map((n) => {
      runner.decodeStep({ variant: AR_VARIANT, ids: Int32Array.of(5), positions: Int32Array.of(runner.cache.length), verifyRows: [0], verifyDrafts: [-1], sampling: { temperature: 0, topP: 1, beta: 1, seed: 0 }, rngStep: n });
      return runner.lastStepLaunch;
    });
  };
  // Prefixes 130..132 span three KV tiles of 64 keys, which the split rule splits 3 ways (1 way up to 128 keys).
  expect(sequence(130)).toEqual(['warm-up', 'captured', 'replayed']);
  runner.reset();
  expect(runner.cache.length).toBe(0);
  expect(runner.deviceBytes).toBe(d.bytes() - weightBytes);
  d.graphs.length = 0;
  // Another prompt length in the same split-KV bucket (prefixes 150..152 span three KV tiles too).
  expect(sequence(150)).toEqual(['replayed', 'replayed', 'replayed']);
  runner.reset();
  // A 1-token prompt: the AR step's token count (the prefill must not free the step's workspace), another bucket.
  expect(sequence(1)).toEqual(['warm-up', 'captured', 'replayed']);
  runner.reset();
  expect(sequence(1)).toEqual(['replayed', 'replayed', 'replayed']);
  expect(d.graphs.filter((g) => g.startsWith('destroy'))).toEqual([]);
  runner.close();
  expect(d.bytes()).toBe(weightBytes);
});

test("a greedy step's lm_head rows come from one GEMM with row statistics: no [rows, vocab] logits; a sampled step has them and two passes", async () => {
  const spec = smallSpec('scratch', [2]);
  const weights = modelWeights(await loadCheckpoint(await writeRandomModel(root, spec, 4)));
  const { manifest } = generateModel(spec, { arches: ['sm_80'] });
  const lmHead = manifest.gemms!.find((g) => g.roles.includes('lm_head'))!;
  expect(lmHead.rowStatsKernel).toBeDefined();
  const d = recorder();
  const gpuWeights = uploadWeights(d.device, spec, weights, manifest);
  let runner = new GpuModelRunner(spec, d.device, gpuWeights, '/kernels', manifest, 256, { graphs: false });
  const k = 2, never = spec.vocabSize - 1;
  const step = (sampling: { temperature: number; topP: number; beta: number; seed: number; neverEmit: number }, n: number) => {
    d.launched.length = 0;
    runner.decodeStep({
      variant: `tidar_k${k}`, ids: new Int32Array(k + k * k), positions: Int32Array.from({ length: k + k * k }, (_, i) => runner.cache.length + i),
      verifyRows: [0, 1], verifyDrafts: [7, -1], nextDrafts: { stride: k, offset: 1, count: k - 1 }, sampling, rngStep: n,
    });
    return [...d.launched];
  };
  const greedy = step({ temperature: 0, topP: 1, beta: 1, seed: 0, neverEmit: never }, 1);
  const logitsBuffers = () => [...d.live.values()].map((b) => b.label).filter((l) => l.includes('logits'));
  expect(logitsBuffers()).toEqual([]);
  expect(greedy).not.toContain('tidarc_op_row_stats');
  // One lm_head pass (one row-statistics merge) over the verify and every candidate row; the next drafts picked from it.
  expect(greedy.filter((n) => n === lmHead.rowStatsKernel)).toHaveLength(1);
  expect(greedy.filter((n) => n === 'tidarc_op_next_drafts')).toHaveLength(1);
  expect(greedy).not.toContain('tidarc_op_draft_rows');
  expect(d.uploads).toContain(`lm_head never-emit bias (token ${never})`);
  const sampled = step({ temperature: 0.8, topP: 0.9, beta: 1, seed: 3, neverEmit: never }, 2);
  expect(logitsBuffers()).toEqual(['decode step logits']);
  expect(sampled).toContain('tidarc_op_sample');
  expect(sampled).toContain('tidarc_op_row_stats');
  // The next drafts are argmaxes: row statistics even in a sampled step, in their own pass after acceptance.
  expect(sampled.filter((n) => n === lmHead.rowStatsKernel)).toHaveLength(1);
  expect(sampled).toContain('tidarc_op_draft_rows');
  expect(sampled).not.toContain('tidarc_op_next_drafts');
  runner.close();
  // oneHeadPass false: the greedy step's verify rows, then the next drafts' own pass (the two-pass step one-head-pass.test.ts compares with).
  runner = new GpuModelRunner(spec, d.device, gpuWeights, '/kernels', manifest, 256, { graphs: false, oneHeadPass: false });
  const twoPasses = step({ temperature: 0, topP: 1, beta: 1, seed: 0, neverEmit: never }, 1);
  expect(twoPasses.filter((n) => n === lmHead.rowStatsKernel)).toHaveLength(2);
  expect(twoPasses).toContain('tidarc_op_draft_rows');
  expect(twoPasses).not.toContain('tidarc_op_next_drafts');
  runner.close();
});
