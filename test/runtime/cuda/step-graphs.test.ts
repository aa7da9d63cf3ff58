/**
 * The decode-step graph cache (src/runtime/cuda/step-graphs.ts) on a recording stand-in for the
 * device: a key runs launch by launch once (warm-up), is captured on its second run and replayed
 * after; a free on the device (grown scratch a graph may read) makes older graphs stale, so the
 * next run captures again; a reallocation during the capture discards the graph and runs the
 * step directly; graphs off always runs directly. Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { TidarcError } from '../../../src/errors.js';
import type { CudaDevice, DeviceBuffer, GraphRef } from '../../../src/runtime/cuda/device.js';
import { StepGraphs, countFrees } from '../../../src/runtime/cuda/step-graphs.js';

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
      return { handle: next++, label, kernels: 0, uploads: 0, uploadBytes: 0, downloads: 0, downloadBytes: 0 };
    },
    launchGraph: (g: GraphRef) => void log.push(`launch graph ${g.handle}`),
    destroyGraph: (g: GraphRef) => void log.push(`destroy graph ${g.handle}`),
  } as unknown as CudaDevice;
  return { device, log };
}

describe('step graphs', () => {
  test('warm-up, capture, then replays', () => {
    const { device, log } = fakeDevice();
    const graphs = new StepGraphs(countFrees(device), true);
    const record = () => void log.push('record');
    expect([1, 2, 3, 4].map(() => graphs.run('ar', record))).toEqual(['warm-up', 'captured', 'replayed', 'replayed']);
    expect(log).toEqual(['record', 'capture decode step ar', 'record', 'end capture', 'launch graph 1', 'launch graph 1', 'launch graph 1']);
    expect(graphs.size).toBe(1);
  });

  test('each key (step kind, split bucket) has its own graph', () => {
    const { device } = fakeDevice();
    const graphs = new StepGraphs(countFrees(device), true);
    const runs = ['a', 'b', 'a', 'b', 'a', 'b'].map((k) => graphs.run(k, () => undefined));
    expect(runs).toEqual(['warm-up', 'warm-up', 'captured', 'captured', 'replayed', 'replayed']);
    expect(graphs.size).toBe(2);
  });

  test('a free on the device makes the graphs captured before it stale: destroyed and captured again', () => {
    const { device, log } = fakeDevice();
    const counter = countFrees(device);
    const graphs = new StepGraphs(counter, true);
    graphs.run('ar', () => undefined);
    graphs.run('ar', () => undefined);
    counter.device.free(counter.device.alloc(16, 'GEMM workspace'));
    log.length = 0;
    expect(graphs.run('ar', () => undefined)).toBe('captured');
    expect(log).toEqual(['destroy graph 1', 'capture decode step ar', 'end capture', 'launch graph 3']);
    expect(graphs.run('ar', () => undefined)).toBe('replayed');
  });

  test('a reallocation while recording discards the graph and runs the step launch by launch', () => {
    const { device, log } = fakeDevice();
    const counter = countFrees(device);
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
    const graphs = new StepGraphs(countFrees(refusing), true);
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
    const graphs = new StepGraphs(countFrees(device), false);
    expect([1, 2, 3].map(() => graphs.run('ar', () => void log.push('record')))).toEqual(['direct', 'direct', 'direct']);
    expect(log).toEqual(['record', 'record', 'record']);
  });
});
