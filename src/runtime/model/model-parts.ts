/**
 * A checkpoint's runtime parts without a decoding loop: spec, tokenizer, weights, compiled
 * kernels, and ModelRunners over caches of a chosen capacity. loadModel builds its decoding
 * API on these; tools that drive ModelRunner and Decoder themselves (bench-step) use them too.
 */
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TidarcError } from '../../errors.js';
import { compileModel } from '../../build/compile-model.js';
import type { ModelSpec } from '../../ir/model.js';
import { type Checkpoint, loadCheckpoint } from '../../model/checkpoint.js';
import type { Tokenizer } from '../../model/tokenizer.js';
import { type KernelLibrary, openKernelLibrary } from '../kernel-library.js';
import { loadNative } from '../native.js';
import { ModelRunner } from './forward.js';
import { KvCache } from './kv-cache.js';
import { modelWeights, type ModelWeights } from './weights.js';

export type BackendChoice = 'auto' | 'cpu' | 'cuda';

export interface LoadOptions {
  readonly backend?: BackendChoice;
  /** CPU threads (default: all). */
  readonly threads?: number;
  /** Where compiled kernels are cached (default: $TIDARC_CACHE or ~/.cache/tidarc). */
  readonly cacheDir?: string;
  readonly log?: (line: string) => void;
}

export function defaultCacheDir(): string {
  return process.env['TIDARC_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'tidarc');
}

/** The backend that runs, and why (the fallback chain is data: cuda when usable, else cpu). */
export function chooseBackend(choice: BackendChoice): { backend: 'cpu'; reason: string } {
  if (choice !== 'auto' && choice !== 'cpu' && choice !== 'cuda') {
    throw new TidarcError('invalid-argument', 'unknown backend', { field: 'backend', value: choice, allowed: 'auto, cpu, cuda' });
  }
  const cuda = loadNative().cudaStatus();
  if (choice === 'cuda') {
    throw new TidarcError('unsupported', `the cuda backend cannot run models yet: launching the compiled fatbins is not built in this version (CUDA status: ${cuda.reason})`, { field: 'backend', value: choice, allowed: 'auto, cpu' });
  }
  if (choice === 'cpu') return { backend: 'cpu', reason: 'requested' };
  return { backend: 'cpu', reason: cuda.available ? 'CUDA is present but the cuda backend is not built in this version' : `no usable CUDA (${cuda.reason})` };
}

export interface ModelParts {
  readonly spec: ModelSpec;
  readonly tokenizer: Tokenizer;
  readonly weights: ModelWeights;
  readonly kernels: KernelLibrary;
  readonly backend: 'cpu';
  readonly backendReason: string;
  /** CPU threads the operators and kernels are given (0 = all). */
  readonly threads: number;
  /** A runner over a fresh, empty cache of `capacity` tokens. */
  newRunner(capacity: number): ModelRunner;
  close(): void;
}

export interface OpenPartsOptions extends LoadOptions {
  /** Runs on the checkpoint's spec before any kernel is compiled (argument checks that need it). */
  readonly checkSpec?: (spec: ModelSpec) => void;
}

export async function openModelParts(dir: string, options: OpenPartsOptions = {}): Promise<ModelParts> {
  const { backend, reason } = chooseBackend(options.backend ?? 'auto');
  const ckpt: Checkpoint = await loadCheckpoint(dir);
  const spec = ckpt.spec;
  options.checkSpec?.(spec);
  // One compile per distinct spec, reused across processes (an unchanged compile is a no-op).
  const tag = createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 12);
  const kernelsDir = join(options.cacheDir ?? defaultCacheDir(), 'kernels', `${spec.name}-${tag}`);
  await compileModel({ spec, arches: ['sm_80'], outDir: kernelsDir, build: 'cpu', log: options.log ?? (() => undefined) });
  const kernels = openKernelLibrary(kernelsDir, { backend: 'cpu' });
  const weights = modelWeights(ckpt);
  const threads = options.threads ?? 0;
  return {
    spec,
    tokenizer: ckpt.tokenizer,
    weights,
    kernels,
    backend,
    backendReason: reason,
    threads,
    newRunner: (capacity) => new ModelRunner(spec, weights, kernels, new KvCache({ layers: spec.layers, kvHeads: spec.kvHeads, headDim: spec.headDim, capacity }), threads),
    close: () => kernels.close(),
  };
}
