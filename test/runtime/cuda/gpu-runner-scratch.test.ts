/**
 * What the cuda runner keeps after the prefill (src/runtime/cuda/gpu-runner.ts releasePrefill),
 * on a recording stand-in for the device and a real compile's manifest: a 70-token prompt's
 * activations (two 64-row chunks), its lm_head scratch and the GEMM scratch it grew are freed
 * by the sequence's first decode step, which allocates only its own (smaller) buffers; later
 * steps free nothing (a free would make their graphs stale). Needs: nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { AR_VARIANT } from '../../../src/codegen/variant-name.js';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import type { CudaDevice, DeviceBuffer, KernelRef, PinnedBuffer } from '../../../src/runtime/cuda/device.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { modelWeights } from '../../../src/runtime/model/weights.js';
import { smallSpec, writeRandomModel } from '../../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-runner-scratch-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Tracks live allocations; a decode step's download reads "1 token accepted". */
function recorder() {
  const live = new Map<number, DeviceBuffer>();
  const freed: string[] = [];
  let next = 0x10000;
  const device = {
    info: { multiprocessors: 132 }, arch: 'sm_80',
    alloc: (bytes: number, label: string): DeviceBuffer => {
      const b = { ptr: next, bytes, label };
      next += Math.ceil(bytes / 256) * 256 + 256;
      live.set(b.ptr, b);
      return b;
    },
    free: (b: DeviceBuffer) => void (live.delete(b.ptr) && freed.push(b.label)),
    allocPinned: (bytes: number, label: string): PinnedBuffer => ({ buffer: new ArrayBuffer(bytes), bytes, label }),
    freePinned: () => undefined, fill: () => undefined, copy: () => undefined, upload: () => undefined, uploadAsync: () => undefined,
    download: (b: DeviceBuffer, dst: ArrayBufferView) => void (b.label === 'decode step output' && ((dst as Int32Array)[0] = 1)),
    kernel: (_module: string, name: string): KernelRef => ({ name, handle: 0, maxShared: 0 }),
    launch: () => undefined,
  } as unknown as CudaDevice;
  const bytes = (): number => [...live.values()].reduce((n, b) => n + b.bytes, 0);
  return { device, live, freed, bytes };
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
