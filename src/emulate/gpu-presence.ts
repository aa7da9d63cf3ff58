/**
 * `tidarc emulate --on gpu` on a machine without a GPU or driver: one error that says so,
 * instead of every variant failing its check with the CUDA runtime's message and Infinity
 * errors against the NaN-poisoned output.
 *
 * Two checks, cheapest first: before anything is built, the driver API probe of the native
 * addon (libcuda.so.1 and cuInit; skipped when the addon is not built); after the runs, when
 * every harness stopped at its first CUDA call with an error that names the device or the
 * driver rather than a kernel (the harness links the CUDA runtime, which reaches the real
 * driver whatever $TIDARC_LIBCUDA says).
 */
import { TidarcError } from '../errors.js';
import { loadNative } from '../runtime/native.js';

/** cudaGetErrorString texts that mean there is nothing to run on (errors 3, 35, 46, 100, 802-804). */
const NO_DEVICE: readonly RegExp[] = [
  /driver version is insufficient/i,
  /no CUDA-capable device/i,
  /initialization error/i,
  /busy or unavailable/i,
  /system not yet initialized/i,
  /unsupported display driver/i,
  /forward compatibility was attempted/i,
];

function noGpu(reason: string): TidarcError {
  return new TidarcError('unsupported', `there is no usable GPU or CUDA driver here (${reason})`, {
    field: '--on', value: 'gpu', allowed: 'emulator on this machine (the same checks on the CPU); gpu needs an NVIDIA GPU and its driver',
  });
}

/** Throws when the driver probe says there is no GPU; silent when the addon cannot tell. */
export function checkGpuPresent(): void {
  let status: { available: boolean; reason: string };
  try {
    status = loadNative().cudaStatus();
  } catch {
    return; // no addon: the harnesses' own first CUDA call tells (gpuMissingIn)
  }
  if (!status.available) throw noGpu(status.reason);
}

export interface HarnessOutcome {
  readonly completed: boolean;
  readonly findings: readonly { readonly kind: string; readonly message: string }[];
}

/** The error to report instead of the rows when every run stopped on a missing device or driver. */
export function gpuMissingIn(rows: readonly HarnessOutcome[]): TidarcError | undefined {
  if (rows.length === 0) return undefined;
  const reasons = rows.map((r) => (r.completed ? undefined : r.findings.find((f) => f.kind === 'cuda-error' && NO_DEVICE.some((p) => p.test(f.message)))?.message));
  if (reasons.some((m) => m === undefined)) return undefined;
  // "q: CUDA driver version is insufficient ..." -> the runtime's words, without the harness's step.
  return noGpu(reasons[0]!.replace(/^[^:]*: /, ''));
}
