/**
 * The rates bench-step's roofline divides by, measured in the same run as the steps (best of a
 * few repetitions, so the figure is what the machine can do, not what it did under load):
 *   - cpu: a 64 MiB TypedArray copy, and the addon's bf16 matmul at [64, 2048] x [2048, 2048]
 *     on the step's threads;
 *   - cuda: a device-to-device copy (256 MiB, less when the device is small or emulated) and
 *     the compiled GEMM of the largest weight at its largest planned row count (the smallest
 *     on the emulated driver, which has no speed to measure), each timed with CUDA events.
 * Copy rates count the bytes read plus the bytes written.
 */
import { performance } from 'node:perf_hooks';
import type { Manifest } from '../codegen/manifest.js';
import type { CudaDevice } from '../runtime/cuda/device.js';
import { GpuGemms } from '../runtime/cuda/gpu-gemm.js';
import { matmul } from '../runtime/ops.js';
import type { MachinePeaks } from './roofline.js';

const REPS = 5;

function best(reps: number, once: () => number): number {
  let min = Infinity;
  for (let i = 0; i < reps; i++) min = Math.min(min, once());
  return min;
}

export function measureCpuPeaks(threads: number): MachinePeaks {
  const bytes = 64 << 20;
  const src = new Float32Array(bytes / 4).fill(1), dst = new Float32Array(bytes / 4);
  const copyMs = best(REPS, () => {
    const t0 = performance.now();
    dst.set(src);
    return performance.now() - t0;
  });
  const M = 64, N = 2048, K = 2048;
  const x = new Float32Array(M * K).fill(0.5), out = new Float32Array(M * N);
  const w = { data: new Uint16Array(N * K).fill(0x3f80), dtype: 'bf16' as const, rows: N, cols: K };
  const mmMs = best(3, () => {
    const t0 = performance.now();
    matmul(x, w, null, out, threads);
    return performance.now() - t0;
  });
  return {
    copyBytesPerMs: (2 * bytes) / copyMs,
    matmulFlopsPerMs: (2 * M * N * K) / mmMs,
    how: `cpu: a ${bytes >> 20} MiB copy in ${copyMs.toFixed(2)} ms; bf16 matmul ${M}x${K}x${N} in ${mmMs.toFixed(2)} ms (best of ${REPS} and 3)`,
  };
}

export function measureCudaPeaks(device: CudaDevice, kernelsDir: string, manifest: Manifest, emulated: boolean): MachinePeaks {
  const bytes = emulated ? 4 << 20 : Math.min(256 << 20, 2 ** Math.floor(Math.log2(device.info.totalMemory / 8)));
  const a = device.alloc(bytes, 'copy probe source'), b = device.alloc(bytes, 'copy probe destination');
  let copyMs: number;
  try {
    copyMs = best(REPS, () => device.timeGpu(() => device.copy(b, 0, a, 0, bytes)).gpuMs);
  } finally {
    device.free(a);
    device.free(b);
  }
  const gemms = manifest.gemms ?? [];
  const g = [...gemms].sort((p, q) => q.n * q.k - p.n * p.k || q.m - p.m)[0];
  let mm = { ms: NaN, flops: NaN, what: 'no compiled GEMM' };
  if (g) {
    const rows = emulated ? Math.min(...gemms.filter((x) => x.unit === g.unit).map((x) => x.m)) : g.m;
    const ops = new GpuGemms(device, kernelsDir, gemms);
    const x = device.alloc(4 * rows * g.k, 'GEMM probe x'), w = device.alloc(2 * g.n * g.k, 'GEMM probe w'), out = device.alloc(4 * rows * g.n, 'GEMM probe out');
    try {
      device.fill(x, 0);
      device.fill(w, 0);
      const run = () => ops.run(g.roles[0]!, { x, rows, w: { buf: w, dtype: g.dtype, rows: g.n, cols: g.k }, outs: [out] });
      run();  // loads the module, opts in to its shared memory
      const ms = best(emulated ? 1 : REPS, () => device.timeGpu(run).gpuMs);
      mm = { ms, flops: 2 * rows * g.n * g.k, what: `GEMM ${g.unit} at ${rows} rows` };
    } finally {
      ops.close();
      for (const buf of [x, w, out]) device.free(buf);
    }
  }
  return {
    copyBytesPerMs: (2 * bytes) / copyMs,
    matmulFlopsPerMs: mm.flops / mm.ms,
    how: `cuda${emulated ? ' (emulated: not a speed)' : ''}: a ${bytes >> 20} MiB device copy in ${copyMs.toFixed(3)} ms; ${mm.what} in ${mm.ms.toFixed(3)} ms (CUDA events, best of ${emulated ? 1 : REPS})`,
  };
}
