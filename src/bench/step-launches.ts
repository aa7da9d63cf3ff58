/**
 * The launches of one decode step as the cuda backend issues them: the real GpuModelRunner
 * (its rewritten step graph, op table, attention launcher, GEMMs and device-side tail) runs
 * decodeStep launch by launch on a device that only records what it is asked to do. So the list
 * is the runtime's own, not a second description of a layer's ops: a fusion, a tail kernel or a
 * per-layer commit the runner adds shows up here (and in step-cost-model.ts's price) at once.
 * Weights are stand-ins of the right shapes (no bytes are held: an 8B model costs nothing), the
 * manifest is the compile's (codegen/generate.ts, pure), and the second of two identical steps
 * is recorded (the first allocates the scratch a warm-up would). Pure: no file or native call.
 */
import { generateModel } from '../codegen/generate.js';
import type { Manifest } from '../codegen/manifest.js';
import { parseVariantName, tidarVariantName } from '../codegen/variant-name.js';
import { TidarcError } from '../errors.js';
import type { ModelSpec } from '../ir/model.js';
import { opWeights } from '../ir/step-graph.js';
import { stepGraph } from '../codegen/step-kinds.js';
import { expectedTensors } from '../model/checkpoint.js';
import type { CudaDevice, DeviceBuffer, Dim3, KernelRef, PinnedBuffer } from '../runtime/cuda/device.js';
import { GpuModelRunner } from '../runtime/cuda/gpu-runner.js';
import type { GpuMatrix } from '../runtime/cuda/gpu-ops.js';
import { OPS_ABI_BUFFER } from '../runtime/cuda/gpu-ops.js';
import { type GpuWeights, foldedNormWeights, loadFolding } from '../runtime/cuda/gpu-weights.js';
import { OPS_ABI_VERSION, type StructSchema, layoutOf } from '../runtime/cuda/op-abi.js';
import type { DeviceStepInput } from '../runtime/model/forward.js';

/** One kernel launch as the runtime issued it: the kernel, its geometry and its packed argument. */
export interface RecordedLaunch {
  readonly kernel: string;
  readonly grid: readonly [number, number, number];
  readonly block: number;
  readonly args: Uint8Array;
}

export interface RecordedStep {
  readonly variant: string;
  readonly tokens: number;
  readonly launches: readonly RecordedLaunch[];
  /** Host -> device and device -> host copies of the step (bytes each). */
  readonly uploads: readonly number[];
  readonly downloads: readonly number[];
}

/** A field of a packed launch argument (op-abi.ts layouts). */
export function argField(s: StructSchema, args: Uint8Array, field: string): number {
  const { offsets } = layoutOf(s);
  const at = offsets[field];
  const type = s.fields.find(([name]) => name === field)?.[1];
  if (at === undefined || type === undefined) throw new TidarcError('runtime', `${s.cName} has no field ${field}`);
  const view = new DataView(args.buffer, args.byteOffset, args.byteLength);
  if (type === 'i32') return view.getInt32(at, true);
  if (type === 'f32') return view.getFloat32(at, true);
  return Number(view.getBigUint64(at, true));
}

/** The download the runner reads the step's result from: one accepted token (the launches do not depend on it). */
const STEP_OUTPUT = 'decode step output';

class RecordingDevice {
  readonly arch: string;
  readonly info: { name: string; major: number; minor: number; multiprocessors: number; maxSharedOptin: number; totalMemory: number; driverVersion: number };
  launches: RecordedLaunch[] = [];
  uploads: number[] = [];
  downloads: number[] = [];
  private next = 0x10000;

  constructor(sms: number) {
    this.arch = 'sm_90';
    this.info = { name: 'recording stand-in (sm_90)', major: 9, minor: 0, multiprocessors: sms, maxSharedOptin: 227 << 10, totalMemory: 141e9, driverVersion: 0 };
  }

  alloc(bytes: number, label: string): DeviceBuffer {
    const b = { ptr: this.next, bytes, label };
    this.next += Math.ceil(Math.max(bytes, 1) / 256) * 256 + 256;
    return b;
  }
  allocPinned(bytes: number, label: string): PinnedBuffer {
    return { buffer: new ArrayBuffer(bytes), bytes, label };
  }
  free(): void {}
  freePinned(): void {}
  fill(): void {}
  copy(): void {}
  upload(b: DeviceBuffer): void {
    this.uploads.push(b.bytes);
  }
  uploadAsync(b: DeviceBuffer, p: PinnedBuffer): void {
    this.uploads.push(Math.min(b.bytes, p.bytes));
  }
  download(b: DeviceBuffer, dst: ArrayBufferView): void {
    this.downloads.push(dst.byteLength);
    if (b.label === OPS_ABI_BUFFER) (dst as Int32Array)[0] = OPS_ABI_VERSION;
    if (b.label === STEP_OUTPUT) (dst as Int32Array)[0] = 1;
  }
  kernel(_module: string, name: string): KernelRef {
    return { name, handle: 0, maxShared: 0 };
  }
  launch(fn: KernelRef, grid: Dim3, block: Dim3, _shared: number, args: Uint8Array): void {
    this.launches.push({ kernel: fn.name, grid: [grid[0], grid[1] ?? 1, grid[2] ?? 1], block: block[0], args: args.slice() });
  }
  encodeTensorMap(): Uint8Array {
    return new Uint8Array(128);
  }
}

/**
 * Stand-ins for the weights the cuda graph reads (shapes only; every buffer is an address), with
 * what uploadWeights decides of the fold (gpu-weights.ts loadFolding: the manifest's flagged roles
 * for a bf16 model, and the float32 norm weights the folded graph reads).
 */
function standInWeights(spec: ModelSpec, device: RecordingDevice, manifest: Manifest, foldNorms: boolean): GpuWeights {
  const shapes = new Map(expectedTensors(spec).map((t) => [t.name, t.shape]));
  const gateUp = manifest.gemms?.find((g) => g.roles.includes('gate_up'))?.swigluInterleave;
  const graph = stepGraph(spec, 'ar', 'cuda');
  const matrices = new Map<string, GpuMatrix>();
  const biases = new Map<string, DeviceBuffer>();
  const matrix = (name: string, rows: number, cols: number): GpuMatrix => {
    const m = { buf: device.alloc(rows * cols * 2, name), dtype: spec.dtype, rows, cols };
    matrices.set(name, m);
    return m;
  };
  const shaped = (name: string): GpuMatrix => {
    const known = matrices.get(name);
    if (known) return known;
    const s = shapes.get(name) ?? (name === graph.head.weight ? shapes.get('model.embed_tokens.weight') : undefined);
    if (!s) throw new TidarcError('runtime', 'the cuda step graph reads a weight the checkpoint does not have', { field: 'tensor', value: name });
    return matrix(name, s[0]!, s[1] ?? 1);
  };
  for (const op of graph.ops) {
    if (op.kind === 'linear') {
      const parts = op.parts.map((p) => shaped(p.weight));
      if (op.parts.length > 1) matrix(op.weight, parts.reduce((n, m) => n + m.rows, 0), parts[0]!.cols);
      for (const b of [op.bias, ...op.parts.map((p) => p.bias)]) if (b !== undefined) biases.set(b, device.alloc(4 * (shapes.get(b)?.[0] ?? 1), b));
    } else {
      for (const name of opWeights(op)) shaped(name);
    }
  }
  shaped(graph.head.weight);
  const fold = loadFolding(spec, manifest, foldNorms);
  const folding = 'folding' in fold
    ? { foldNorms: fold.folding, normWeights: new Map(foldedNormWeights(spec, fold.folding).map((name) => [name, device.alloc(spec.hiddenSize * 4, `${name} (float32, folded)`)])) }
    : { foldNormsWhy: fold.why };
  return { matrices, biases, invFreq: device.alloc(spec.headDim * 2, 'rope inverse frequencies'), bytes: 0, ...folding, ...(gateUp === undefined ? {} : { gateUpInterleave: gateUp }) };
}

/** The decode step input the decoder builds for a step kind (decoder.ts arStep / tidarStep), greedy. */
function stepInput(spec: ModelSpec, variant: string, prefix: number): DeviceStepInput {
  const key = parseVariantName(variant);
  const sampling = { temperature: 0, topP: 1, beta: 1, seed: 0, neverEmit: spec.maskTokenId };
  if (key?.kind === 'ar') return { variant, ids: Int32Array.of(1), positions: Int32Array.of(prefix), verifyRows: [0], verifyDrafts: [-1], sampling, rngStep: 0 };
  if (key?.kind !== 'tidar') throw new TidarcError('invalid-argument', 'a decode step kind', { field: 'step', value: variant, allowed: `ar or ${tidarVariantName(4)} (a draft length the model has)` });
  const k = key.draft, T = k * (k + 1);
  return {
    variant, ids: new Int32Array(T), positions: Int32Array.from({ length: T }, (_, i) => prefix + (i < k ? i : (i - k) % k)),
    verifyRows: Array.from({ length: k }, (_, i) => i), verifyDrafts: [...Array<number>(k - 1).fill(1), -1],
    ...(k > 1 ? { nextDrafts: { stride: k, offset: 1, count: k - 1 } } : {}), sampling, rngStep: 0,
  };
}

/** The compile's manifest for an sm_90 GPU (what `tidarc compile` writes, without its nvcc figures). */
export function sm90Manifest(spec: ModelSpec): Manifest {
  return generateModel(spec, { arches: ['sm_90'] }).manifest;
}

/**
 * Records one greedy decode step of `variant` at committed prefix `prefix`, launch by launch, as
 * GpuModelRunner.decodeStep issues it on an sm_90 device of `sms` SMs. `manifest` (default: the
 * sm_90 compile's) may carry per-variant occupancy, which the runtime's split-KV rule reads.
 * `foldNorms`: the runner's option (fold-design.md; default: the runtime's, the RMSNorms folded
 * into the GEMMs around them where the manifest's units and the dtype allow it); false: unfolded.
 */
export function recordStep(spec: ModelSpec, variant: string, prefix: number, o: { manifest?: Manifest; sms?: number; foldNorms?: boolean } = {}): RecordedStep {
  const manifest = o.manifest ?? sm90Manifest(spec);
  const device = new RecordingDevice(o.sms ?? 132);
  const dev = device as unknown as CudaDevice;
  const input = stepInput(spec, variant, prefix);
  const runner = new GpuModelRunner(spec, dev, standInWeights(spec, device, manifest, o.foldNorms ?? true), '/kernels', manifest, prefix + input.ids.length + 1, { graphs: false, foldNorms: o.foldNorms ?? true });
  try {
    runner.cache.length = prefix;
    runner.decodeStep(input);  // the warm-up: allocates what the step keeps
    runner.cache.length = prefix;
    device.launches = [], device.uploads = [], device.downloads = [];
    runner.decodeStep(input);
    return { variant, tokens: input.ids.length, launches: device.launches, uploads: device.uploads, downloads: device.downloads };
  } finally {
    runner.close();
  }
}
