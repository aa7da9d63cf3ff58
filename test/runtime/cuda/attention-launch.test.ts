/**
 * The cuda launcher issues ONE launch per attention call, split-KV included (every CTA merges a
 * slice of the previous row group's partials; no _combine kernel), on the grid of attention-grid.ts,
 * and hands every split launch the same zeroed counters (splits x rows of them): allocated once,
 * filled with 0 on the stream, grown (a fresh zeroed buffer) only when a call needs more.
 * On a recording device: nothing is loaded or run.
 */
import { describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import { AttentionLauncher } from '../../../src/runtime/cuda/attention-launch.js';
import type { CudaDevice, DeviceBuffer } from '../../../src/runtime/cuda/device.js';
import { ATTENTION, layoutOf } from '../../../src/runtime/cuda/op-abi.js';
import { modelForShape } from '../../helpers/models.js';

function recorder() {
  const events: string[] = [];
  const launches: { fn: string; grid: readonly number[]; args: DataView }[] = [];
  let next = 0x1000;
  const device = {
    info: { multiprocessors: 132 },
    arch: 'sm_90',
    kernel: (module: string, name: string) => name,
    alloc: (bytes: number, label: string): DeviceBuffer => {
      events.push(`alloc ${label} ${bytes}`);
      const b = { ptr: next, bytes, label };
      next += 0x10000;
      return b;
    },
    free: (b: DeviceBuffer) => void events.push(`free ${b.label}`),
    fill: (b: DeviceBuffer, byte: number) => void events.push(`fill ${b.label} ${byte}`),
    upload: () => void events.push('upload'),
    launch: (fn: string, grid: readonly number[], _block: readonly number[], _smem: number, args: Uint8Array) => {
      events.push(`launch ${fn.replace(/^tidarc_attn_(\w+?)_bf16.*$/, '$1')}`);
      launches.push({ fn, grid, args: new DataView(args.buffer, args.byteOffset, args.byteLength) });
    },
  } as unknown as CudaDevice;
  return { device, events, launches };
}

describe('AttentionLauncher: split-KV in one launch', () => {
  const { manifest } = generateModel(modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 4, kvHeads: 2 }, [2]), { arches: ['sm_90'] });
  const v = manifest.variants.find((x) => x.name === 'tidar_k2')!;
  const at = layoutOf(ATTENTION).offsets;
  const call = (batch: number, splits: number) => ({ q: 1, kCache: 2, vCache: 3, kStep: 4, vStep: 5, prefixLen: 6, o: 7, lse: 8, batch, cacheCapacity: 512, maxPrefix: 500, splits });

  test('one launch per call; the counters are allocated and zeroed once, shared by every split launch, grown when a call needs more', () => {
    const { device, events, launches } = recorder();
    const launcher = new AttentionLauncher(device, '/kernels', manifest);
    launcher.launch(v, call(1, 3));
    launcher.launch(v, call(1, 2));
    launcher.launch(v, call(1, 1));
    const rows = (batch: number) => batch * v.steps * v.shape.qHeads;
    expect(events).toEqual([
      `alloc split-KV workspace ${3 * rows(1) * 65 * 4}`, `alloc split-KV counters ${3 * rows(1) * 4}`, 'fill split-KV counters 0', 'launch tidar_k2',
      'launch tidar_k2',
      'launch tidar_k2',
    ]);
    // Splits > 1: (row groups + 1, 1, splits), the split schedule's G S compute items and S merge-only CTAs; one split: (row tiles, batch x KV heads, 1).
    const groups = v.launch.rowTiles * v.shape.kvHeads;
    expect(launches.map((l) => l.grid)).toEqual([[groups + 1, 1, 3], [groups + 1, 1, 2], [v.launch.rowTiles, v.shape.kvHeads, 1]]);
    const counters = (i: number) => Number(launches[i]!.args.getBigUint64(at['splitCounters']!, true));
    expect([counters(0), counters(1), counters(2)]).toEqual([counters(0), counters(0), 0]);  // none with one split
    expect(counters(0)).not.toBe(0);
    // A larger batch needs more counters: a fresh buffer, zeroed before its first launch.
    launcher.launch(v, call(4, 3));
    expect(events.slice(6)).toEqual([
      'free split-KV workspace', `alloc split-KV workspace ${3 * rows(4) * 65 * 4}`,
      'free split-KV counters', `alloc split-KV counters ${3 * rows(4) * 4}`, 'fill split-KV counters 0', 'launch tidar_k2',
    ]);
    launcher.close();
    expect(events.slice(-2)).toEqual(['free split-KV workspace', 'free split-KV counters']);
  });
});
