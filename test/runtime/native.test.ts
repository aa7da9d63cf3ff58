// Needs: the addon built by `npm run build:native`, and g++ for the fixture library.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import {
  loadNative,
  nativeAddonPath,
  type KernelCallError,
  type LibraryHandle,
  type NativeAddon,
  type NativeAttentionArgs,
} from '../../src/runtime/native.js';
import { ABI_VERSION, ATTENTION, ATTENTION_ARRAYS, ATTENTION_SCALARS, attentionArrayFields, splitOnly } from '../../src/runtime/cuda/op-abi.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const fixture = join(here, 'fixtures', 'test_kernels.cc');
const addonBuilt = existsSync(nativeAddonPath(root));
const hasGxx = spawnSync('g++', ['--version']).status === 0;

// Shapes compiled into the fixture: n = 2 tokens, 3 query heads, head dim 4.
const N = 2;
const Q_HEADS = 3;
const HEAD_DIM = 4;

test('loadNative says how to build a missing addon', () => {
  const missing = join(tmpdir(), 'no-such-dir', 'tidarc_native.node');
  expect(() => loadNative(missing)).toThrow(TidarcError);
  expect(() => loadNative(missing)).toThrow(/npm rebuild tidarc.*npm run build:native/);
  try {
    loadNative(missing);
  } catch (e) {
    expect((e as TidarcError).code).toBe('runtime');
  }
});

describe.skipIf(!addonBuilt || !hasGxx)('native addon (needs npm run build:native and g++)', () => {
  let native: NativeAddon;
  let dir: string;
  const lib = (name: string): string => join(dir, name);

  function compile(out: string, defines: string[] = []): void {
    const args = ['-std=c++17', '-O1', '-shared', '-fPIC', '-pthread', '-I', join(root, 'templates', 'common'),
      ...defines, fixture, '-o', out];
    const r = spawnSync('g++', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`g++ failed for ${out}:\n${r.stderr}`);
  }

  beforeAll(() => {
    native = loadNative(nativeAddonPath(root));
    dir = mkdtempSync(join(tmpdir(), 'tidarc-native-'));
    compile(lib('good.so'));
    compile(lib('wrong_abi.so'), ['-DFIXTURE_ABI_VERSION=999']);
    compile(lib('no_abi.so'), ['-DFIXTURE_NO_ABI']);
  });

  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** Arguments for the fixture's shapes: q has recognisable bits, o is poisoned. */
  function makeArgs(batch: number, prefix: number[]): NativeAttentionArgs {
    const rows = batch * N * Q_HEADS;
    const cacheCapacity = 8;
    return {
      q: Uint16Array.from({ length: rows * HEAD_DIM }, (_, i) => (i * 37 + 1) & 0xffff),
      kCache: new Uint16Array(batch * cacheCapacity * HEAD_DIM).fill(0x1111),
      vCache: new Uint16Array(batch * cacheCapacity * HEAD_DIM).fill(0x2222),
      kStep: new Uint16Array(batch * N * HEAD_DIM).fill(0x3333),
      vStep: new Uint16Array(batch * N * HEAD_DIM).fill(0x4444),
      prefixLen: Int32Array.from(prefix),
      o: new Uint16Array(rows * HEAD_DIM).fill(0xffff),
      lse: new Float32Array(rows).fill(NaN),
      workspace: null,
      batch,
      cacheCapacity,
      numSplits: 1,
      numThreads: 0,
    };
  }

  function withLibrary<T>(path: string, body: (h: LibraryHandle) => T): T {
    const h = native.openLibrary(path);
    try {
      return body(h);
    } finally {
      native.closeLibrary(h);
    }
  }

  async function withLibraryAsync(path: string, body: (h: LibraryHandle) => Promise<void>): Promise<void> {
    const h = native.openLibrary(path);
    try {
      await body(h);
    } finally {
      native.closeLibrary(h);
    }
  }

  test('exports the ABI version of templates/common/tidarc_abi.h', () => {
    expect(native.abiVersion).toBe(ABI_VERSION);
  });

  test('data flows in and out: o = q, lse = prefix_len[b]', () => {
    withLibrary(lib('good.so'), (h) => {
      const args = makeArgs(2, [3, 7]);
      native.runAttention(h, 'tidarc_cpu_test_copy', args);
      expect(args.o).toEqual(args.q);
      expect(Array.from(args.lse)).toEqual([3, 3, 3, 3, 3, 3, 7, 7, 7, 7, 7, 7]);
      // the cached symbol is used again
      const again = makeArgs(1, [5]);
      native.runAttention(h, 'tidarc_cpu_test_copy', again);
      expect(Array.from(again.lse)).toEqual([5, 5, 5, 5, 5, 5]);
    });
  });

  test('every field reaches its place in TidarcAttentionArgs', () => {
    withLibrary(lib('good.so'), (h) => {
      const args = { ...makeArgs(2, [1, 2]), numSplits: 3, numThreads: 5, workspace: new Float32Array(4) };
      args.q[0] = 0xabcd;
      native.runAttention(h, 'tidarc_cpu_test_fields', args);
      expect(Array.from(args.o.subarray(0, 5))).toEqual([0xabcd, 0x1111, 0x2222, 0x3333, 0x4444]);
      expect(Array.from(args.lse.subarray(0, 4))).toEqual([2, 8, 3, 5]);
      expect(args.workspace[0]).toBe(42);
    });
  });

  test('typed-array views with an offset pass their own first element', () => {
    withLibrary(lib('good.so'), (h) => {
      const base = makeArgs(1, [0]);
      const big = new Uint16Array(base.q.length + 3);
      big.set(base.q, 3);
      const args = { ...base, q: big.subarray(3) };
      native.runAttention(h, 'tidarc_cpu_test_copy', args);
      expect(args.o).toEqual(base.q);
    });
  });

  test('non-zero return codes become errors naming the symbol and the meaning', () => {
    withLibrary(lib('good.so'), (h) => {
      const run = (symbol: string, args: NativeAttentionArgs): KernelCallError => {
        try {
          native.runAttention(h, symbol, args);
        } catch (e) {
          return e as KernelCallError;
        }
        throw new Error(`${symbol} did not throw`);
      };
      const prefix = run('tidarc_cpu_test_copy', makeArgs(1, [9]));
      expect(prefix.message).toBe(
        'tidarc_cpu_test_copy returned 2 (TIDARC_ERR_PREFIX: some prefix_len[b] < 0 or > cache_capacity)',
      );
      expect(prefix.code).toBe('TIDARC_ERR_PREFIX');
      expect(prefix.status).toBe(2);
      expect(run('tidarc_cpu_test_copy', { ...makeArgs(1, [0]), numSplits: 2 }).code).toBe('TIDARC_ERR_WORKSPACE');
      expect(run('tidarc_cpu_test_copy', { ...makeArgs(1, [0]), batch: 0 }).message).toMatch(
        /returned 1 \(TIDARC_ERR_ARGS: /,
      );
      expect(run('tidarc_cpu_test_prefix_error', makeArgs(1, [0])).code).toBe('TIDARC_ERR_PREFIX');
      const unknown = run('tidarc_cpu_test_unknown_code', makeArgs(1, [0]));
      expect(unknown.message).toMatch(/tidarc_cpu_test_unknown_code returned 77 \(TIDARC_ERR_UNKNOWN/);
      expect(unknown.status).toBe(77);
    });
  });

  test('an exception escaping a kernel becomes an error, sync and async', async () => {
    await withLibraryAsync(lib('good.so'), async (h) => {
      expect(() => native.runAttention(h, 'tidarc_cpu_test_throw', makeArgs(1, [0]))).toThrow(
        /tidarc_cpu_test_throw threw a C\+\+ exception/,
      );
      await expect(native.runAttentionAsync(h, 'tidarc_cpu_test_throw', makeArgs(1, [0]))).rejects.toThrow(
        /tidarc_cpu_test_throw threw a C\+\+ exception/,
      );
    });
  });

  test('empty caches are an empty argument at cacheCapacity 0, refused otherwise; sync and async', async () => {
    await withLibraryAsync(lib('good.so'), async (h) => {
      const empty = { ...makeArgs(1, [0]), cacheCapacity: 0, kCache: new Uint16Array(0), vCache: new Uint16Array(0) };
      native.runAttention(h, 'tidarc_cpu_test_copy', empty);
      expect(empty.o).toEqual(empty.q);
      const viaAsync = { ...empty, o: new Uint16Array(empty.o.length) };
      await native.runAttentionAsync(h, 'tidarc_cpu_test_copy', viaAsync);
      expect(viaAsync.o).toEqual(empty.q);
      // An empty cache with a capacity, or a zero-length view of a larger buffer, is no data.
      const short = { ...makeArgs(1, [3]), kCache: new Uint16Array(0), vCache: new Uint16Array(64).subarray(0, 0) };
      expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', short)).toThrow(/TIDARC_ERR_ARGS/);
      await expect(native.runAttentionAsync(h, 'tidarc_cpu_test_copy', short)).rejects.toThrow(/TIDARC_ERR_ARGS/);
    });
  });

  test('a missing symbol is a clear error', () => {
    withLibrary(lib('good.so'), (h) => {
      expect(() => native.runAttention(h, 'tidarc_cpu_nope', makeArgs(1, [0]))).toThrow(
        /symbol tidarc_cpu_nope not found in .*good\.so: .*undefined symbol/,
      );
    });
  });

  test('wrong argument types are TypeErrors naming the field', () => {
    withLibrary(lib('good.so'), (h) => {
      const bad = (patch: Record<string, unknown>): NativeAttentionArgs =>
        ({ ...makeArgs(1, [0]), ...patch }) as unknown as NativeAttentionArgs;
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ q: new Float32Array(24) }, /args\.q must be a Uint16Array/],
        [{ kCache: [1, 2] }, /args\.kCache must be a Uint16Array/],
        [{ vStep: undefined }, /args\.vStep must be a Uint16Array/],
        [{ prefixLen: new Uint32Array(1) }, /args\.prefixLen must be an Int32Array/],
        [{ lse: new Float64Array(6) }, /args\.lse must be a Float32Array/],
        [{ workspace: new Uint16Array(4) }, /args\.workspace must be a Float32Array or null/],
        [{ batch: '1' }, /args\.batch must be an integer/],
        [{ numSplits: 1.5 }, /args\.numSplits must be an integer/],
        [{ numThreads: NaN }, /args\.numThreads must be an integer/],
        [{ cacheCapacity: undefined }, /args\.cacheCapacity must be an integer/],
      ];
      for (const [patch, message] of cases) {
        expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', bad(patch))).toThrow(TypeError);
        expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', bad(patch))).toThrow(message);
      }
      expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', null as unknown as NativeAttentionArgs)).toThrow(
        /args must be an object/,
      );
      expect(() => native.runAttention(h, 42 as unknown as string, makeArgs(1, [0]))).toThrow(/symbol must be a string/);
      expect(() => native.runAttention({} as LibraryHandle, 'x', makeArgs(1, [0]))).toThrow(
        /handle must be a library handle returned by openLibrary/,
      );
      expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', bad({ batch: 2 ** 40 }))).toThrow(RangeError);
    });
  });

  test("the addon reads every field of op-abi.ts's attention schema by its name and element type (its tables are generated from it)", () => {
    withLibrary(lib('good.so'), (h) => {
      const jsName = { u16: 'a Uint16Array', i32: 'an Int32Array', f32: 'a Float32Array' } as const;
      const call = (patch: Record<string, unknown>): (() => void) => () =>
        native.runAttention(h, 'tidarc_cpu_test_copy', { ...makeArgs(1, [0]), ...patch } as unknown as NativeAttentionArgs);
      for (const f of attentionArrayFields()) {
        const { elem, role } = ATTENTION_ARRAYS[f];
        const wrong = elem === 'u16' ? new Int32Array(4) : new Uint16Array(4);
        expect(call({ [f]: wrong }), f).toThrow(new RegExp(`^args\\.${f} must be ${jsName[elem]}${splitOnly(role) ? '.* or null' : ''}`));
        if (!splitOnly(role)) expect(call({ [f]: null }), f).toThrow(TypeError);
      }
      for (const f of Object.keys(ATTENTION_SCALARS)) expect(call({ [f]: 0.5 }), f).toThrow(new RegExp(`^args\\.${f} must be an integer`));
      expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', 7 as unknown as NativeAttentionArgs))
        .toThrow(`args must be an object with ${ATTENTION.fields.map(([f]) => f).join(', ')}`);
    });
  });

  test('inconsistent buffer lengths are RangeErrors, caught before the kernel runs', () => {
    withLibrary(lib('good.so'), (h) => {
      const args = makeArgs(2, [0, 0]);
      expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', { ...args, o: new Uint16Array(3) })).toThrow(
        /args\.o has 3 elements but args\.q has 48/,
      );
      expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', { ...args, prefixLen: Int32Array.of(0) })).toThrow(
        /args\.prefixLen has 1 elements but batch is 2/,
      );
      expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', { ...args, vStep: new Uint16Array(1) })).toThrow(
        RangeError,
      );
    });
  });

  test('opening a missing file or a non-tidarc library gives a clear error', () => {
    expect(() => native.openLibrary(lib('missing.so'))).toThrow(
      /cannot open kernel library .*missing\.so: .*No such file or directory/,
    );
    expect(() => native.openLibrary(lib('no_abi.so'))).toThrow(
      /no_abi\.so is not a tidarc kernel library \(no tidarc_abi_version\)/,
    );
    expect(() => native.openLibrary(123 as unknown as string)).toThrow(TypeError);
    // a bare name is a file in the working directory, not a search of the library path
    expect(() => native.openLibrary('libc.so.6')).toThrow(/cannot open kernel library \.\/libc\.so\.6/);
  });

  test('a library of another ABI version is refused', () => {
    expect(() => native.openLibrary(lib('wrong_abi.so'))).toThrow(
      new RegExp(`wrong_abi\\.so was built for tidarc ABI version 999, this runtime expects ${ABI_VERSION}`),
    );
  });

  test('a closed library refuses calls; closing twice is harmless', () => {
    const h = native.openLibrary(lib('good.so'));
    native.closeLibrary(h);
    native.closeLibrary(h);
    expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', makeArgs(1, [0]))).toThrow(/good\.so is closed/);
  });

  test('runAttentionAsync resolves without blocking the event loop', async () => {
    const h = native.openLibrary(lib('good.so'));
    try {
      const args = makeArgs(2, [4, 6]);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const started = Date.now();
      await native.runAttentionAsync(h, 'tidarc_cpu_test_sleep', args);
      clearInterval(timer);
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      expect(ticks).toBeGreaterThan(3);
      expect(args.o).toEqual(args.q);
      expect(Array.from(args.lse)).toEqual([4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6]);
    } finally {
      native.closeLibrary(h);
    }
  });

  test('runAttentionAsync rejects with the kernel error; argument errors throw synchronously', async () => {
    await withLibraryAsync(lib('good.so'), async (h) => {
      await expect(native.runAttentionAsync(h, 'tidarc_cpu_test_copy', makeArgs(1, [99]))).rejects.toThrow(
        /tidarc_cpu_test_copy returned 2 \(TIDARC_ERR_PREFIX/,
      );
      expect(() =>
        native.runAttentionAsync(h, 'tidarc_cpu_test_copy', { ...makeArgs(1, [0]), lse: null } as unknown as NativeAttentionArgs),
      ).toThrow(/args\.lse must be a Float32Array/);
    });
  });

  test('closing during an async call waits for it; arrays stay alive without other references', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // Each input is a view on a large buffer (freed at once when collected), referenced only
    // by the pending native call; the handle is closed and dropped while the call runs.
    const view = (a: Uint16Array): Uint16Array => {
      const big = new Uint16Array(a.length + 100_000);
      big.set(a);
      return big.subarray(0, a.length);
    };
    const expected = makeArgs(1, [2]).q.slice();
    for (let iter = 0; iter < 3; iter++) {
      const pending = (() => {
        const h = native.openLibrary(lib('good.so'));
        const base = makeArgs(1, [2]);
        const args = {
          ...base,
          q: view(base.q),
          kCache: view(base.kCache),
          vCache: view(base.vCache),
          kStep: view(base.kStep),
          vStep: view(base.vStep),
          prefixLen: Int32Array.from([2, ...new Array<number>(100_000).fill(-1)]).subarray(0, 1),
        };
        const promise = native.runAttentionAsync(h, 'tidarc_cpu_test_sleep', args);
        native.closeLibrary(h);
        expect(() => native.runAttention(h, 'tidarc_cpu_test_copy', makeArgs(1, [0]))).toThrow(/is closed/);
        return { promise, o: args.o, lse: args.lse };
      })();
      gc();
      const churn = Array.from({ length: 100 }, () => new Int32Array(50_000).fill(-7));
      gc();
      await pending.promise;
      expect(churn.length).toBe(100);
      expect(pending.o).toEqual(expected);
      expect(Array.from(pending.lse)).toEqual([2, 2, 2, 2, 2, 2]);
    }
  });

  test('several async calls run concurrently on the thread pool', async () => {
    await withLibraryAsync(lib('good.so'), async (h) => {
      const calls = [1, 2, 3, 4].map((L) => {
        const args = makeArgs(1, [L]);
        return native.runAttentionAsync(h, 'tidarc_cpu_test_sleep', args).then(() => args.lse[0]);
      });
      const started = Date.now();
      expect(await Promise.all(calls)).toEqual([1, 2, 3, 4]);
      expect(Date.now() - started).toBeLessThan(4 * 150);
    });
  });

  test('cudaStatus never throws and gives a reason', () => {
    const s = native.cudaStatus();
    expect(typeof s.available).toBe('boolean');
    expect(s.reason.length).toBeGreaterThan(0);
    expect(native.cudaStatus()).toEqual(s);
  });

  test.skipIf(existsSync('/dev/nvidiactl'))('cudaStatus reports unavailable without an NVIDIA driver', () => {
    const s = native.cudaStatus();
    expect(s.available).toBe(false);
    expect(s.reason).toMatch(/libcuda\.so\.1/);
  });
});
