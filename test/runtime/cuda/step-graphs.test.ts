/**
 * The decode-step graph cache (src/runtime/cuda/step-graphs.ts) on a recording stand-in for the
 * device: a key runs launch by launch once (warm-up), is captured on its second run and replayed
 * after; freeing a buffer that was live at a capture (grown scratch the graph may read) makes
 * the graph stale, so the next run captures again, while freeing one allocated after it (a later
 * sequence's prefill scratch on a reused runner) keeps it; a reallocation during the capture
 * discards the graph and runs the step directly; a runner holds at most MAX_GRAPHS graphs, the
 * least recently run destroyed first; graphs off always runs directly. Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { TidarcError } from '../../../src/errors.js';
import type { CudaDevice, DeviceBuffer, GraphRef } from '../../../src/runtime/cuda/device.js';
import { MAX_GRAPHS, StepGraphs, trackBuffers } from '../../../src/runtime/cuda/step-graphs.js';

function fakeDevice() {
  const log: string[] = [];
  let next = 1;
  const device = {
    free: (b: DeviceBuffer) => void log.push(`free ${b.label}`),
    alloc: (bytes: number, label: string): DeviceBuffer => ({ ptr: next++ * 256, bytes, label }),
    capture: (label: string, record: () => void): GraphRef => {
      log.push(`capture ${label}`);
      record();
      log.push('end capture');
      return { handle: next++, label, kernels: 0, programmaticKernels: 0, uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0 };
    },
    launchGraph: (g: GraphRef) => void log.push(`launch graph ${g.handle}`),
    destroyGraph: (g: GraphRef) => void log.push(`destroy graph ${g.handle}`),
  } as unknown as CudaDevice;
  return { device, log };
}

describe('step graphs', () => {
  test('warm-up, capture, then replays', () => {
    const { device, log } = fakeDevice();
    const graphs = new StepGraphs(trackBuffers(device), true);
    const record = () => void log.push('record');
    expect([1, 2, 3, 4].map(() => graphs.run('ar', record))).toEqual(['warm-up', 'captured', 'replayed', 'replayed']);
    expect(log).toEqual(['record', 'capture decode step ar', 'record', 'end capture', 'launch graph 1', 'launch graph 1', 'launch graph 1']);
    expect(graphs.size).toBe(1);
  });

  test('each key (step kind, split bucket) has its own graph', () => {
    const { device } = fakeDevice();
    const graphs = new StepGraphs(trackBuffers(device), true);
    const runs = ['a', 'b', 'a', 'b', 'a', 'b'].map((k) => graphs.run(k, () => undefined));
    expect(runs).toEqual(['warm-up', 'warm-up', 'captured', 'captured', 'replayed', 'replayed']);
    expect(graphs.size).toBe(2);
  });

  test('freeing a buffer that was live at the capture makes the graph stale: destroyed and captured again', () => {
    const { device, log } = fakeDevice();
    const counter = trackBuffers(device);
    const graphs = new StepGraphs(counter, true);
    const workspace = counter.device.alloc(16, 'GEMM workspace');
    graphs.run('ar', () => undefined);
    graphs.run('ar', () => undefined);
    counter.device.free(workspace);
    log.length = 0;
    expect(graphs.run('ar', () => undefined)).toBe('captured');
    expect(log).toEqual(['destroy graph 2', 'capture decode step ar', 'end capture', 'launch graph 3']);
    expect(graphs.run('ar', () => undefined)).toBe('replayed');
  });

  test('freeing a buffer allocated after the capture (a later prefill on a reused runner) keeps the graph', () => {
    const { device, log } = fakeDevice();
    const ledger = trackBuffers(device);
    const graphs = new StepGraphs(ledger, true);
    graphs.run('ar', () => undefined);
    graphs.run('ar', () => undefined);
    const prefill = ledger.device.alloc(4096, 'x [70 tokens]');
    expect(ledger.liveBytes()).toBe(4096);
    ledger.device.free(prefill);
    expect(ledger.liveBytes()).toBe(0);
    log.length = 0;
    expect(graphs.run('ar', () => undefined)).toBe('replayed');
    expect(log).toEqual(['launch graph 1']);
    // A free the ledger did not see allocated may be anything a graph reads: stale.
    ledger.device.free({ ptr: 1, bytes: 16, label: 'foreign' });
    expect(graphs.run('ar', () => undefined)).toBe('captured');
  });

  test(`a runner keeps at most ${MAX_GRAPHS} graphs: the least recently run is destroyed first`, () => {
    const { device, log } = fakeDevice();
    const graphs = new StepGraphs(trackBuffers(device), true);
    const keys = Array.from({ length: MAX_GRAPHS + 1 }, (_, i) => `bucket ${i}`);
    for (const k of keys) graphs.run(k, () => undefined);
    for (const k of keys.slice(0, MAX_GRAPHS)) graphs.run(k, () => undefined);
    graphs.run(keys[0]!, () => undefined);  // bucket 0 is now the most recent; bucket 1 the least
    log.length = 0;
    expect(graphs.run(keys[MAX_GRAPHS]!, () => undefined)).toBe('captured');
    expect(graphs.size).toBe(MAX_GRAPHS);
    expect(log.filter((l) => l.startsWith('destroy'))).toHaveLength(1);
    expect(graphs.run(keys[0]!, () => undefined)).toBe('replayed');
    expect(graphs.run(keys[1]!, () => undefined)).toBe('captured');
  });

  test('a reallocation while recording discards the graph and runs the step launch by launch', () => {
    const { device, log } = fakeDevice();
    const counter = trackBuffers(device);
    const graphs = new StepGraphs(counter, true);
    let grow = false;
    const record = () => {
      log.push('record');
      if (grow) counter.device.free(counter.device.alloc(16, 'scratch'));
    };
    graphs.run('ar', record);
    grow = true;
    log.length = 0;
    expect(graphs.run('ar', record)).toBe('warm-up');
    expect(log).toEqual(['capture decode step ar', 'record', 'free scratch', 'end capture', 'destroy graph 2', 'record', 'free scratch']);
    expect(graphs.size).toBe(0);
  });

  test('a capture the driver refuses is one error that names the way around it (graphs off)', () => {
    const { device } = fakeDevice();
    const refusing = { ...device, capture: () => { throw new TidarcError('runtime', 'CUDA: cannot capture decode step ar: cuStreamEndCapture failed: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (901)'); } } as unknown as CudaDevice;
    const graphs = new StepGraphs(trackBuffers(refusing), true);
    graphs.run('ar', () => undefined);
    let message = '';
    try {
      graphs.run('ar', () => undefined);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe('CUDA: cannot capture decode step ar: cuStreamEndCapture failed: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (901); without graphs the step runs launch by launch (graphs = true); allowed: false (--no-graphs on tidarc run and bench-step; loadModel(dir, { graphs: false }))');
  });

  test('graphs off: every step launch by launch, nothing captured', () => {
    const { device, log } = fakeDevice();
    const graphs = new StepGraphs(trackBuffers(device), false);
    expect([1, 2, 3].map(() => graphs.run('ar', () => void log.push('record')))).toEqual(['direct', 'direct', 'direct']);
    expect(log).toEqual(['record', 'record', 'record']);
  });
});
