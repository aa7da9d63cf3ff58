/**
 * A generated CPU library through openKernelLibrary, at the edges of its numbers:
 * - cacheCapacity 0 (nothing cached yet, e.g. the first step) runs: it used to fail as
 *   "a null pointer", since an empty typed array has no data pointer;
 * - a direct native call asking for 2000 threads starts no more than the machine's hardware
 *   threads (it used to start 2000 persistent ones; the library API refuses it, see
 *   attention-checks.test.ts).
 * Only the `ar` variant is built (about 2 s of g++). Needs: g++ and the native addon.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateModel } from '../../src/codegen/generate.js';
import { stepVisibility } from '../../src/ir/mask.js';
import { causal } from '../../src/ir/mask-builders.js';
import { decode } from '../../src/util/dtype.js';
import { type KernelLibrary, openKernelLibrary } from '../../src/runtime/kernel-library.js';
import { loadNative, nativeAddonPath } from '../../src/runtime/native.js';
import { randomAttentionInputs, referenceAttention } from '../../src/runtime/reference.js';
import { modelForShape } from '../helpers/models.js';

const root = join(import.meta.dirname, '..', '..');
const addonBuilt = existsSync(nativeAddonPath(root));
const hasGxx = spawnSync('g++', ['--version']).status === 0;
const SHAPE = { dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 1 } as const;
const LIBRARY = 'cpu/libtidarc_ar.so';

describe.skipIf(!addonBuilt || !hasGxx)('a generated CPU library at the edges of its numbers', () => {
  let dir: string;
  let lib: KernelLibrary;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tidarc-kernel-library-'));
    const { files, manifest } = generateModel(modelForShape(SHAPE, [2]), { arches: ['sm_80'] });
    for (const [name, text] of files) {
      if (!name.startsWith('cpu/')) continue;
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
    const cc = spawnSync('g++', ['-std=c++17', '-O1', '-shared', '-fPIC', '-pthread', 'cpu/ar.cpp', 'cpu/tidarc_cpu_library.cpp', '-o', LIBRARY], { cwd: dir, encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`g++ failed:\n${cc.stderr}`);
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, build: { cpu: { library: LIBRARY } } }));
    lib = openKernelLibrary(dir, { backend: 'cpu' });
  }, 120_000);

  afterAll(() => {
    lib?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  test('cacheCapacity 0: the step attends to itself alone, sync and async', async () => {
    const inputs = randomAttentionInputs({ ...SHAPE, batch: 2, n: 1, cacheCapacity: 0, prefixLen: [0, 0], seed: 3 });
    const table = stepVisibility(causal(1));
    const want = referenceAttention({ ...inputs.shape, prefixLen: inputs.prefixLen, ...inputs.values, visible: (tq, tk) => table[tq + tk] === 1 });
    const call = { batch: 2, cacheCapacity: 0, prefixLen: inputs.prefixLen, ...inputs.bits, threads: 1 };
    for (const got of [lib.run('ar', call), await lib.runAsync('ar', call)]) {
      const o = decode(SHAPE.dtype, got.o);
      // One visible key: o is its value row exactly, lse its scaled score.
      for (let i = 0; i < o.length; i++) expect(o[i]).toBeCloseTo(want.o[i]!, 2);
      for (let r = 0; r < want.lse.length; r++) expect(got.lse[r]).toBeCloseTo(want.lse[r]!, 4);
    }
  });

  test('runAsync equals run bitwise: per-sequence prefixes, split-KV, caches plain or shared', async () => {
    // runAsync copies only the cache slots each sequence reads, into caches of capacity
    // max(prefixLen) (or uses shared ones in place); the tail holds NaN, so a stray slot shows.
    const inputs = randomAttentionInputs({ ...SHAPE, batch: 3, n: 1, cacheCapacity: 100, prefixLen: [5, 0, 77], seed: 4 });
    const toShared = (a: Uint16Array): Uint16Array => {
      const s = new Uint16Array(new SharedArrayBuffer(a.byteLength));
      s.set(a);
      return s;
    };
    for (const splits of [1, 3]) {
      const call = { batch: 3, cacheCapacity: 100, prefixLen: inputs.prefixLen, ...inputs.bits, splits, threads: 2 };
      const want = lib.run('ar', call);
      expect(Array.from(want.lse).every(Number.isFinite)).toBe(true);
      for (const c of [call, { ...call, kCache: toShared(call.kCache), vCache: toShared(call.vCache) }]) {
        const got = await lib.runAsync('ar', c);
        expect(got.o).toEqual(want.o);
        expect(got.lse).toEqual(want.lse);
      }
    }
  });

  test.skipIf(!existsSync('/proc/self/task'))('2000 threads asked of the library directly start at most the hardware threads', () => {
    const native = loadNative(nativeAddonPath(root));
    const v = lib.manifest.variants.find((x) => x.name === 'ar')!;
    const handle = native.openLibrary(join(dir, LIBRARY));
    try {
      // 2 x 1024 work items, so that nothing but the thread count limits the pool.
      const batch = 2;
      const splits = 1024;
      const cap = 4;
      const rows = batch * v.steps * SHAPE.qHeads;
      const args = {
        q: new Uint16Array(rows * SHAPE.headDim), kCache: new Uint16Array(batch * cap * SHAPE.headDim), vCache: new Uint16Array(batch * cap * SHAPE.headDim),
        kStep: new Uint16Array(batch * SHAPE.headDim), vStep: new Uint16Array(batch * SHAPE.headDim), prefixLen: Int32Array.of(cap, cap),
        o: new Uint16Array(rows * SHAPE.headDim), lse: new Float32Array(rows), workspace: new Float32Array(splits * rows * (SHAPE.headDim + 1)),
        batch, cacheCapacity: cap, numSplits: splits, numThreads: 0,
      };
      native.runAttention(handle, v.symbols.cpu, args); // the pool at its full size: every hardware thread
      const before = readdirSync('/proc/self/task').length;
      native.runAttention(handle, v.symbols.cpu, { ...args, numThreads: 2000 });
      const started = readdirSync('/proc/self/task').length - before;
      // 0 expected; 2 of slack for a helper thread V8 or libuv may start meanwhile (was 2000 - hardware).
      expect(started).toBeLessThanOrEqual(2);
    } finally {
      native.closeLibrary(handle);
    }
  });

  // Where the driver is usable, test/runtime/kernel-library-cuda.test.ts runs the cuda backend.
  test.skipIf(loadNative().cudaStatus().available)('without a usable CUDA driver: auto runs the cpu kernels and says why; cuda is one error naming the backend', () => {
    const auto = openKernelLibrary(dir);
    expect(auto.backend).toBe('cpu');
    expect(auto.backendReason).toMatch(/^CUDA not used: \S/);
    auto.close();
    expect(() => openKernelLibrary(dir, { backend: 'cuda' })).toThrow(/^the cuda backend cannot run here: [^\n]+ \(backend = cuda\); allowed: auto, cpu$/);
  });
});
