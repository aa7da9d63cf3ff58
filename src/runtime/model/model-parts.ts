/**
 * A checkpoint's runtime parts without a decoding loop: spec, weights, compiled kernels, and
 * ModelRunners over caches of a chosen capacity. loadModel builds the same parts inside its
 * closure; tools that drive ModelRunner and Decoder themselves (bench-step) open them here.
 *
 * The kernel cache directory and its key are the ones loadModel uses, so one compile serves
 * both. (If load-model.ts exported its defaultCacheDir and kernel-directory key, this file
 * would import them instead of repeating two lines.)
 */
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { compileModel } from '../../build/compile-model.js';
import type { ModelSpec } from '../../ir/model.js';
import { type Checkpoint, loadCheckpoint } from '../../model/checkpoint.js';
import type { Tokenizer } from '../../model/tokenizer.js';
import { type KernelLibrary, openKernelLibrary } from '../kernel-library.js';
import { ModelRunner } from './forward.js';
import { KvCache } from './kv-cache.js';
import { type LoadOptions, loadModel } from './load-model.js';
import { modelWeights, type ModelWeights } from './weights.js';

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
  const choice = options.backend ?? 'auto';
  if (choice !== 'auto' && choice !== 'cpu') {
    // loadModel owns the backend choice and its reasons: it refuses cuda (and unknown names)
    // before reading anything. Should it ever accept one, these parts still run on the CPU only.
    (await loadModel(dir, { ...options, backend: choice })).close();
  }
  const ckpt: Checkpoint = await loadCheckpoint(dir);
  const spec = ckpt.spec;
  options.checkSpec?.(spec);
  const tag = createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 12);
  const cacheDir = options.cacheDir ?? process.env['TIDARC_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'tidarc');
  const kernelsDir = join(cacheDir, 'kernels', `${spec.name}-${tag}`);
  await compileModel({ spec, arches: ['sm_80'], outDir: kernelsDir, build: 'cpu', log: options.log ?? (() => undefined) });
  const kernels = openKernelLibrary(kernelsDir, { backend: choice === 'cpu' ? 'cpu' : 'auto' });
  const weights = modelWeights(ckpt);
  const threads = options.threads ?? 0;
  return {
    spec,
    tokenizer: ckpt.tokenizer,
    weights,
    kernels,
    backend: 'cpu',
    backendReason: kernels.backendReason,
    threads,
    newRunner: (capacity) => new ModelRunner(spec, weights, kernels, new KvCache({ layers: spec.layers, kvHeads: spec.kvHeads, headDim: spec.headDim, capacity }), threads),
    close: () => kernels.close(),
  };
}
