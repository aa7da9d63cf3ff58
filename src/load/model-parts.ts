/**
 * A checkpoint's runtime parts without a decoding loop: spec, tokenizer, weights, compiled
 * kernels, and Runners (CPU: ModelRunner; CUDA: GpuModelRunner) over caches of a chosen
 * capacity. loadModel builds its decoding
 * API on these; tools that drive ModelRunner and Decoder themselves (bench-step) use them too.
 */
import { TidarcError } from '../errors.js';
import { cachedKernels } from '../build/kernel-cache.js';
import type { ModelSpec } from '../ir/model.js';
import { type Checkpoint, loadCheckpoint } from '../model/checkpoint.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { ARCH_NAMES, type ArchName } from '../codegen/arch.js';
import { TARGETS } from '../codegen/targets.js';
import { type Backend, type BackendChoice, checkBackendChoice } from '../codegen/target.js';
import type { TileOverrides } from '../codegen/input-key.js';
import { type CudaMachine, cudaTuneMeta } from '../tune/cuda-meta.js';
import { cpuTuneMeta } from '../tune/meta.js';
import { loadTunedGemms, loadTunedTiles, runArches } from '../tune/apply.js';
import type { GemmOverrides } from '../codegen/gemm-plan.js';
import { findNvcc } from '../build/toolchain.js';
import { CudaDevice } from '../runtime/cuda/device.js';
import type { Manifest } from '../codegen/manifest.js';
import { EMULATED_DEVICE_PREFIX, buildEmulatedCudaModules } from '../emulate/emulated-modules.js';
import { GpuModelRunner, uploadWeights } from '../runtime/cuda/gpu-runner.js';
import { type ProgrammaticLaunchDecision, programmaticLaunchFor } from '../runtime/cuda/pdl.js';
import { probedDecision } from '../runtime/cuda/pdl-probe.js';
import { CAPACITY_QUANTUM, RunnerPool, type RunnerPoolStats } from './runner-pool.js';
import type { HostMemory } from './host-memory.js';
import { hostPreflight } from './host-memory-now.js';
import { type GenerationPlan, checkGeneration } from '../runtime/cuda/step-scratch.js';
import { type LoadFit, checkRunnerFits, cudaFitChoice, loadFit, runnerBytes, weightBytes } from '../runtime/cuda/device-memory.js';
import { type KernelLibrary, openKernelLibrary } from '../runtime/kernel-library.js';
import { loadNative } from '../runtime/native.js';
import { ModelRunner, type Runner } from '../runtime/model/forward.js';
import { KvCache } from '../runtime/model/kv-cache.js';
import { modelWeights, type ModelWeights } from '../runtime/model/weights.js';
import { runEvery } from '../util/run-every.js';

export type { Backend, BackendChoice };

export interface LoadOptions {
  readonly backend?: BackendChoice;
  /** CPU threads (default: all). */
  readonly threads?: number;
  /** Where compiled kernels are cached (default: $TIDARC_CACHE or ~/.cache/tidarc). */
  readonly cacheDir?: string;
  /** A `tidarc tune` database: compile with its tiles and use its per-shape call parameters (as `compile --tuned`). */
  readonly tuned?: string;
  /**
   * Progress lines (a first use compiles the kernels: what, how many of how many). Default:
   * stderr when it is a terminal, else nowhere (a library stays out of logs and pipes).
   */
  readonly log?: (line: string) => void;
  /**
   * The mask token TiDAR feeds, when config.json names none (or to replace its own): the CLI's
   * --mask-token. Without one the model decodes in AR mode only.
   */
  readonly maskTokenId?: number;
  /**
   * cuda: each decode step kind is captured once as a CUDA graph and replayed (default true);
   * false launches every kernel from the host (comparison, debugging). The cpu backend has no
   * graphs and ignores it.
   */
  readonly graphs?: boolean;
  /**
   * cuda: launch the kernels with programmatic dependent launch (PDL: each kernel's CTAs are
   * scheduled while its predecessor finishes) where it is safe: the compiled kernels' manifest
   * says they keep the PDL contract, the device is sm_90+ and runs SASS built for its major, and
   * the driver has cuLaunchKernelEx (runtime/cuda/pdl.ts). Default: on where allowed; false: off
   * (the CLI's --no-pdl). true where it is not allowed is not an error: the model runs without
   * PDL, and `pdl.why` says why. The cpu backend ignores it.
   */
  readonly pdl?: boolean;
  /**
   * cuda: fold the RMSNorms into the GEMMs around them (their epilogues write the normed
   * activations and scale by 1 / rms; 2 launches fewer a layer) where allowed: a bf16 model
   * whose compiled GEMMs have the fold-norms epilogues. Default: on where allowed; false: off
   * (the CLI's --no-fold-norms). The rounding point moves, so tokens may differ from an
   * unfolded run; greedy TiDAR still equals greedy AR. The cpu backend ignores it.
   */
  readonly foldNorms?: boolean;
}

export interface BackendDecision {
  readonly backend: Backend;
  readonly reason: string;
  /** cuda: the device's arch, which the kernels are compiled for. */
  readonly arch?: ArchName;
  /** cuda: the device is the emulated driver's ($TIDARC_LIBCUDA), which loads .emu.so modules. */
  readonly emulated?: boolean;
  /** cuda on a GPU: what decides whether a tuning database's CUDA entries apply here. */
  readonly machine?: CudaMachine;
}

/**
 * The backend that runs, and why. cuda is usable when the driver has a device of a supported
 * arch and device code can be built (nvcc; the emulated driver's modules are built with g++);
 * auto falls back to cpu and says which condition failed; an explicit cuda that is not usable
 * is an error, naming `field` (the CLI: '--backend').
 */
export async function chooseBackend(choice: BackendChoice, field = 'backend'): Promise<BackendDecision> {
  const { decision, device } = await decideBackend(choice, field);
  // The probe's device goes back: a process that only asked holds no context on the GPU.
  device?.close();
  return decision;
}

/**
 * chooseBackend, with the device it opened still open where the decision is cuda (the load
 * preflights and uploads on it: the context is retained once, not once per stage); the caller
 * closes it.
 */
async function decideBackend(choice: BackendChoice, field: string): Promise<{ decision: BackendDecision; device?: CudaDevice }> {
  checkBackendChoice(choice, field);
  if (choice === 'cpu') return { decision: { backend: 'cpu', reason: 'requested' } };
  const why = await cudaUnusable();
  if (typeof why !== 'string') {
    const decision: BackendDecision = { backend: 'cuda', reason: `${choice === 'cuda' ? 'requested' : 'CUDA is usable'}: ${why.summary}`, arch: why.arch, emulated: why.emulated === true, ...(why.machine ? { machine: why.machine } : {}) };
    return { decision, device: why.device };
  }
  if (choice === 'cuda') throw new TidarcError('unsupported', `the cuda backend cannot run here: ${why}`, { field, value: choice, allowed: 'auto, cpu' });
  return { decision: { backend: 'cpu', reason: `no usable CUDA (${why})` } };
}

/** Why cuda cannot run here (the device it opened closed again), or the open device, its arch and a one-line summary when it can. */
async function cudaUnusable(): Promise<string | { device: CudaDevice; arch: ArchName; summary: string; emulated?: boolean; machine?: CudaMachine }> {
  const status = loadNative().cudaStatus();
  if (!status.available) return status.reason;
  let device: CudaDevice;
  try {
    device = CudaDevice.open(0);
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  const unusable = (why: string): string => (device.close(), why);
  try {
    const arch = device.arch;
    if (!(ARCH_NAMES as string[]).includes(arch)) return unusable(`device ${device.info.name} is ${arch}; tidarc compiles for ${ARCH_NAMES.join(', ')}`);
    if (device.info.name.startsWith(EMULATED_DEVICE_PREFIX)) return { device, arch: TARGETS.emulator.device!.name, summary: `${device.info.name} (${status.library}: the SIMT emulator, slow)`, emulated: true };
    const nvcc = await findNvcc();
    if (!nvcc.found) return unusable(`nvcc is needed to build the kernels for ${device.info.name} (${arch}) and was not found: ${nvcc.reason}`);
    const machine = { compiler: nvcc.tool.version, deviceName: device.info.name, multiprocessors: device.info.multiprocessors, driverVersion: device.info.driverVersion };
    return { device, arch: arch as ArchName, summary: `${device.info.name} (${arch}, ${device.info.multiprocessors} SMs), ${status.reason}`, machine };
  } catch (e) {
    if (!device.closed) device.close();
    throw e;
  }
}

export interface ModelParts {
  readonly spec: ModelSpec;
  readonly tokenizer: Tokenizer;
  /** cpu: the weights the operators read. cuda: absent (the host copy is dropped once they are on the device). */
  readonly weights?: ModelWeights;
  /** The mask token TiDAR feeds; undefined: AR mode only (spec.maskTokenId is a placeholder then). */
  readonly maskTokenId: number | undefined;
  readonly backend: Backend;
  readonly backendReason: string;
  /** CPU threads the operators and kernels are given (0 = all). */
  readonly threads: number;
  /** cuda: the device, the compiled kernels and their manifest (bench-step measures the machine with them). */
  readonly cuda?: {
    readonly device: CudaDevice; readonly kernelsDir: string; readonly manifest: Manifest; readonly emulated: boolean;
    /** Whether the runners launch with PDL, and why (not) (LoadOptions.pdl, runtime/cuda/pdl.ts). */
    readonly pdl: ProgrammaticLaunchDecision;
  };
  /** A runner over a fresh, empty cache of `capacity` tokens; close() it when done. */
  newRunner(capacity: number): Runner;
  /** Runners kept between sequences (runner-pool.ts): what `generate` runs on. */
  readonly runners: Runners;
  /** Closes the kept runners, then the rest. */
  close(): void;
}

/** Runners for one sequence each; cuda keeps finished ones for the next sequence (RunnerPool), cpu makes a new one each time. */
export interface Runners {
  /** A runner with an empty cache of at least `capacity` tokens, used by no other sequence; cuda with `plan`: refused before the prefill when the generation's memory does not fit (step-scratch.ts). */
  acquire(capacity: number, plan?: GenerationPlan): Runner;
  /** The sequence is done (failed: its runner is closed, never reused). */
  release(runner: Runner, failed?: boolean): void;
  /** Frees the kept runners (device memory back to the weights). */
  drop(): void;
  readonly stats: RunnerPoolStats;
}

export interface OpenPartsOptions extends LoadOptions {
  /** Runs on the checkpoint's spec before any kernel is compiled (argument checks that need it). */
  readonly checkSpec?: (spec: ModelSpec, checkpoint: Checkpoint) => void;
  /** How errors name maskTokenId (the CLI: '--mask-token'). */
  readonly maskTokenField?: string;
  /** How the backend choice's errors name it (the CLI: '--backend'; default 'backend'). */
  readonly backendField?: string;
  /**
   * The host's memory, which the checkpoint's files (and a cpu runner) must fit in before they are
   * read (host-memory.ts); default: /proc/meminfo (host-memory-now.ts readHostMemory). A reading of undefined: not checked.
   */
  readonly hostMemory?: () => HostMemory | undefined;
}

/**
 * The cuda load's preflight, before anything is compiled or uploaded: the weights (as the
 * checkpoint holds them: an F32 tensor is uploaded as 4-byte elements) and one runner of the
 * least capacity (CAPACITY_QUANTUM tokens) against the device's free memory (device-memory.ts).
 * On `device`, or on device 0 opened for it and closed again.
 */
export function cudaPreflight(spec: ModelSpec, ckpt: Pick<Checkpoint, 'tensors'>, device?: CudaDevice): LoadFit {
  if (!device) {
    const own = CudaDevice.open(0);
    try {
      return cudaPreflight(spec, ckpt, own);
    } finally {
      own.close();
    }
  }
  const { freeBytes, totalBytes } = device.memory();
  const weights = weightBytes(spec, (name) => (ckpt.tensors.get(name)?.dtype === 'F32' ? 4 : 2));
  return loadFit(weights, runnerBytes(spec, CAPACITY_QUANTUM), CAPACITY_QUANTUM, { name: device.info.name, freeBytes, totalBytes });
}

export async function openModelParts(dir: string, options: OpenPartsOptions = {}): Promise<ModelParts> {
  const choice = options.backend ?? 'auto';
  const decided = await decideBackend(choice, options.backendField ?? 'backend');
  // The probe's device (a cuda decision) serves the preflight and the upload. A load that ends any
  // other way than in cuda parts closes it: the process holds no context on a GPU it does not use.
  const device = decided.device;
  try {
    return await openParts(dir, options, choice, decided.decision, device);
  } catch (e) {
    if (device && !device.closed) {
      try {
        device.close();
      } catch {
        // a context the failure left unusable: the load's own error says more
      }
    }
    throw e;
  }
}

async function openParts(dir: string, options: OpenPartsOptions, choice: BackendChoice, decided: BackendDecision, probed: CudaDevice | undefined): Promise<ModelParts> {
  let decision = decided;
  const ckpt: Checkpoint = await loadCheckpoint(dir, {
    ...(options.maskTokenId === undefined ? {} : { maskTokenId: options.maskTokenId }),
    ...(options.maskTokenField === undefined ? {} : { maskTokenField: options.maskTokenField }),
    // The whole checkpoint is read into memory next: a host that cannot hold it is one error now, not an OOM kill minutes later.
    beforeWeights: (spec) => hostPreflight(dir, spec, decision.backend, options.hostMemory),
  });
  const spec = ckpt.spec;
  options.checkSpec?.(spec, ckpt);
  const log = options.log ?? (process.stderr.isTTY ? (line: string) => void process.stderr.write(`${line}\n`) : () => undefined);
  if (decision.backend === 'cuda') {
    // A model the GPU cannot hold: auto runs it on the cpu backend and says why; an explicit cuda is one error (cudaFitChoice).
    const preflight = cudaPreflight(spec, ckpt, probed!);
    const fit = cudaFitChoice(choice === 'cuda' ? 'cuda' : 'auto', preflight, options.backendField);
    log(`cuda: ${preflight.sentence}${fit.backend === 'cpu' ? ': running on the cpu backend' : ''}`);
    if (fit.backend === 'cpu') {
      decision = { backend: 'cpu', reason: fit.reason };
      // The cpu run does not touch the GPU: its context (a few hundred MiB there) goes back now, not at exit.
      probed!.close();
    }
  }
  const weights = modelWeights(ckpt);
  const threads = options.threads ?? 0;
  const tuned = options.tuned === undefined ? undefined : await tunedOverrides(options.tuned, spec, decision, log);
  // One entry per spec, tuning and target, shared across processes (kernel-cache.ts).
  const cache = {
    spec, log, ...(tuned ? { tiles: tuned.tiles } : {}), ...(tuned && Object.keys(tuned.gemms).length > 0 ? { gemms: tuned.gemms } : {}),
    ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
  };
  // No closure below may capture `weights` (or the checkpoint): on cuda they are garbage once uploaded.
  const base = { spec, tokenizer: ckpt.tokenizer, maskTokenId: ckpt.maskTokenId, backend: decision.backend, backendReason: decision.reason, threads };
  if (decision.backend === 'cuda') {
    const arch = decision.arch!;
    // The emulated driver loads .emu.so modules that g++ builds from the same sources; a GPU loads fatbins.
    const compiled = await cachedKernels({ ...cache, target: decision.emulated ? 'emulator' : arch, ...(decision.emulated ? { finish: (dir: string, _compiled: unknown, shared: string) => buildEmulatedCudaModules(dir, log, shared) } : {}) });
    const kernelsDir = compiled.outDir;
    if (!decision.emulated && !compiled.manifest.build?.nvcc) throw new TidarcError('runtime', `the kernels for ${arch} were not built: ${compiled.manifest.build?.nvccMissing ?? 'no nvcc report'}`, { source: kernelsDir });
    const device = probed!;
    let gpuWeights: ReturnType<typeof uploadWeights>, pdl: ProgrammaticLaunchDecision;
    try {
      gpuWeights = uploadWeights(device, spec, weights, compiled.manifest, options.foldNorms === undefined ? {} : { foldNorms: options.foldNorms });
      // Up to 16 MiB of pinned staging need not outlive the load (later uploads are a few bytes a step).
      device.releaseStaging();
      // Decided from the manifest, device and driver, then tried once (pdl-probe.ts): a driver that refuses it runs the model without.
      pdl = probedDecision(programmaticLaunchFor({
        option: options.pdl, manifest: compiled.manifest, computeCapability: [device.info.major, device.info.minor],
        compiledArches: compiled.manifest.arches, driverHasLaunchEx: device.programmaticLaunch,
      }), device, kernelsDir);
    } catch (e) {
      // A load that fails after the device opened gives back what it uploaded (a long-lived process would keep it).
      try {
        device.close();
      } catch {
        // a context the failure left unusable: the load's own error says more
      }
      throw e;
    }
    log(`cuda: ${device.info.name}, weights ${(gpuWeights.bytes / 2 ** 20).toFixed(1)} MiB on the device; PDL ${pdl.on ? 'on' : `off: ${pdl.why}`}`);
    const newRunner = (capacity: number): GpuModelRunner => {
      // A capacity the device cannot hold now is one error with the largest that fits, not an out-of-memory from inside the runner.
      checkRunnerFits(spec, capacity, { name: device.info.name, ...device.memory() }, CAPACITY_QUANTUM, gpuWeights.gateUpInterleave);
      return new GpuModelRunner(spec, device, gpuWeights, kernelsDir, compiled.manifest, capacity, { graphs: options.graphs ?? true, pdl: pdl.on });
    };
    const pool: RunnerPool<GpuModelRunner> = new RunnerPool((capacity) => {
      // The idle runners' memory goes back first when a new runner would not fit beside them.
      try {
        return newRunner(capacity);
      } catch (e) {
        if (!(e instanceof TidarcError && e.details.field === 'capacity') || pool.stats.idle === 0) throw e;
        pool.drop();
        return newRunner(capacity);
      }
    });
    return {
      ...base,
      cuda: { device, kernelsDir, manifest: compiled.manifest, emulated: decision.emulated === true, pdl },
      newRunner,
      runners: {
        acquire: (capacity, plan) => pool.acquire(capacity, plan && ((r, c) => checkGeneration({ spec, manifest: compiled.manifest, kernelsDir, device, weights: gpuWeights }, plan, c, r && { capacity: c, slots: r.heldScratch() }, { name: device.info.name, ...device.memory() }, CAPACITY_QUANTUM))),
        release: (runner, failed) => pool.release(runner as GpuModelRunner, failed),
        drop: () => pool.drop(),
        get stats() {
          return pool.stats;
        },
      },
      close: () => {
        // The device closes even where a runner's close failed (after a kernel fault every free is
        // refused): it frees what the runners left and gives the context back, where a skipped
        // close kept it retained, fault and all, for the next load of the process.
        runEvery([() => pool.close(), () => device.close()]);
      },
    };
  }
  const kernels = openKernelLibrary((await cachedKernels({ ...cache, target: 'cpu' })).outDir, { backend: 'cpu' });
  return cpuParts(base, weights, kernels, options.threads);
}

/** The cpu backend's parts: its runners read the host weights, which therefore live as long as the parts. */
function cpuParts(base: Omit<ModelParts, 'newRunner' | 'runners' | 'close' | 'weights'>, weights: ModelWeights, kernels: KernelLibrary, attentionThreads: number | undefined): ModelParts {
  const { spec, threads } = base;
  const newRunner = (capacity: number): Runner => new ModelRunner(spec, weights, kernels, new KvCache({ layers: spec.layers, kvHeads: spec.kvHeads, headDim: spec.headDim, capacity }), threads, attentionThreads);
  // A cpu runner is a host cache over shared weights: nothing to warm up, so nothing to keep.
  let created = 0;
  return {
    ...base,
    weights,
    newRunner,
    runners: {
      acquire: (capacity) => (created++, newRunner(capacity)),
      release: (runner) => runner.close(),
      drop: () => undefined,
      get stats() {
        return { created, reused: 0, idle: 0, idleBytes: 0 };
      },
    },
    close: () => kernels.close(),
  };
}

/**
 * The tiles and call parameters a tuning database gives this model on this backend: entries
 * measured on this CPU (cpu backend) or on this GPU, driver and nvcc (cuda); on the emulated
 * driver every entry (it has no GPU to match).
 */
async function tunedOverrides(path: string, spec: ModelSpec, decision: BackendDecision, log: (line: string) => void): Promise<{ tiles: TileOverrides; gemms: GemmOverrides }> {
  const meta = decision.backend === 'cpu' ? await cpuTuneMeta() : decision.machine ? cudaTuneMeta(decision.machine) : undefined;
  // The CPU is its own target: its kernels are checked against no GPU's limits.
  const load = { path, field: 'tuned', spec, drafts: spec.draftLengths, arches: decision.arch ? [decision.arch] : [], ...(meta ? { meta } : {}), log };
  // The attention is weighed for every arch the run's kernel cache compiles (an H200: sm_90a's kernel too, tune.py's timings).
  const tiles = loadTunedTiles(decision.arch ? { ...load, arches: runArches(decision.arch) } : load);
  // The GEMMs exist on the cuda backend only, for the arches the run's compile builds them for: a GPU's kernel cache
  // entry (a 9.0 device: sm_90a too, so a record that chose the sm_90a GEMM applies); the emulator's makes sm_90 ones only.
  return { tiles, gemms: decision.backend === 'cuda' && decision.arch ? loadTunedGemms(decision.emulated ? load : { ...load, arches: runArches(decision.arch) }) : {} };
}
