/**
 * Whether the driver really takes what PDL on does, tried once when a model loads with PDL on
 * (pdl.ts decided it from the manifest, the device and the driver's symbols): a programmatic launch
 * on the stream, and a graph captured with a programmatic edge, instantiated and replayed. A driver
 * that has cuLaunchKernelEx may still refuse the attribute, or a programmatic edge in a capture
 * (graph support for programmatic edges came after cuLaunchKernelEx). Where it refuses, the model
 * runs with plain launches and says why, instead of failing at its first step.
 *
 * The probe's kernel is the ops module's to_float over 0 elements: one CTA that waits for its
 * predecessor and returns. An error after which a plain launch no longer works (a fault, a lost
 * context) is not a refusal: it is thrown.
 */
import { join } from 'node:path';
import type { CudaDevice } from './device.js';
import { GpuOps } from './gpu-ops.js';
import { OPS_MODULE } from './gpu-runner.js';
import type { ProgrammaticLaunchDecision } from './pdl.js';

/** Refused: the driver's error for the first step it refused; accepted: undefined. `modulePath`: the ops module (a kernel directory's OPS_MODULE). */
export function probeProgrammaticLaunch(device: CudaDevice, modulePath: string): string | undefined {
  // Asked programmatic, a launch is made so only after a kernel (CudaDevice.launch): the first launch after
  // the ABI read's download, and the first node of the capture, are plain.
  const ops = new GpuOps(device, modulePath, { programmatic: true });
  const scratch = device.alloc(256, 'PDL probe');
  const empty = (o: GpuOps) => o.toFloat(scratch, scratch, 0, 'bf16');
  // After a fault every call fails: a clean-up's error must not hide the one that says what failed.
  const quietly = (f: () => void): void => {
    try {
      f();
    } catch { /* the context is unusable: the error in flight says why */ }
  };
  let refusal: string | undefined;
  try {
    try {
      empty(ops);
      empty(ops);  // programmatic: the stream's previous operation is a kernel
      const graph = device.capture('PDL probe', () => {
        empty(ops);
        empty(ops);  // a programmatic edge from the node before
      });
      try {
        device.launchGraph(graph);
        device.synchronize();
      } catch (e) {
        quietly(() => device.destroyGraph(graph));
        throw e;
      }
      device.destroyGraph(graph);
    } catch (refused) {
      // A refusal leaves the context usable; anything that broke it is the caller's error.
      try {
        device.synchronize();
        empty(new GpuOps(device, modulePath));
        device.synchronize();
      } catch {
        throw refused;
      }
      refusal = refused instanceof Error ? refused.message : String(refused);
    }
  } catch (e) {
    quietly(() => device.free(scratch));
    throw e;
  }
  device.free(scratch);
  return refusal;
}

/**
 * The decision after the probe: unchanged where PDL was off or the driver took it; off, with the
 * driver's refusal, where not. `modulePath`: the ops module the probe launches (default: the kernel
 * directory's OPS_MODULE, as loadModel has it; the device check's overheads pass the emulator's).
 */
export function probedDecision(decision: ProgrammaticLaunchDecision, device: CudaDevice, kernelsDir: string, modulePath = join(kernelsDir, OPS_MODULE)): ProgrammaticLaunchDecision {
  if (!decision.on) return decision;
  const refused = probeProgrammaticLaunch(device, modulePath);
  if (refused === undefined) return { on: true, why: `${decision.why}; a programmatic launch and a captured programmatic edge ran at load` };
  return { on: false, why: `the driver refused programmatic dependent launch at load (${refused.replace(/ \(programmatic dependent launch: .*\)$/, '')}): the kernels launch plainly` };
}
