/**
 * runAsync while the caller detaches or shrinks a buffer of the running call: a correct result
 * or a clear error, never a crash. Before, the addon kept the typed arrays referenced but not
 * their memory, and these calls segfaulted or corrupted the heap. The calls run in a child
 * process (fixtures/async-buffers-child.ts) so that a crash is a signal seen here.
 * Needs: the addon built by `npm run build:native`, and g++ for the fixture library.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { nativeAddonPath } from '../../src/runtime/native.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const addonBuilt = existsSync(nativeAddonPath(root));
const hasGxx = spawnSync('g++', ['--version']).status === 0;

describe.skipIf(!addonBuilt || !hasGxx)('runAsync with buffers changed during the call', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tidarc-async-buffers-'));
    const cc = spawnSync('g++', ['-std=c++17', '-O1', '-shared', '-fPIC', '-pthread', '-I', join(root, 'templates', 'common'),
      join(here, 'fixtures', 'test_kernels.cc'), '-o', join(dir, 'fixture.so')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`g++ failed:\n${cc.stderr}`);
    // A compile output as openKernelLibrary reads it, with one variant of the fixture's shapes.
    const variant = { name: 'sleep', steps: 2, rows: 6, shape: { qHeads: 3, kvHeads: 1, headDim: 4 }, plan: { rowTiles: 1, tileN: 64 }, symbols: { cpu: 'tidarc_cpu_test_sleep' } };
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ variants: [variant], build: { cpu: { library: 'fixture.so' } } }));
  });

  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  test('each call gives the right result or one clear error; the process survives', () => {
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--expose-gc', join(here, 'fixtures', 'async-buffers-child.ts'), dir], {
      cwd: root, encoding: 'utf8', timeout: 60_000,
    });
    expect({ signal: child.signal, status: child.status, stderr: child.stderr }).toEqual({ signal: null, status: 0, stderr: '' });
    const results = new Map(child.stdout.trim().split('\n').map((line) => {
      const r = JSON.parse(line) as { name: string; outcome: string; o?: number[]; q?: number[]; lse?: number[]; field?: string; type?: string; code?: string; message?: string };
      return [r.name, r];
    }));
    expect(results.size).toBe(8);

    // An input changed during the call: the kernel works on what it was given at the call.
    for (const name of ['detach q', 'shrink q', 'shrink o and grow it back']) {
      const r = results.get(name)!;
      expect(r.outcome, name).toBe('ok');
      expect(r.o, name).toEqual(r.q);
      expect(r.lse, name).toEqual(new Array(6).fill(5));
    }
    // An output that cannot take its result: the promise rejects naming it, nothing is written.
    for (const [name, field] of [['detach o', 'outputs.o'], ['shrink o', 'outputs.o'], ['detach lse', 'outputs.lse'], ['shrink lse', 'outputs.lse']]) {
      const r = results.get(name!)!;
      expect(r, name).toMatchObject({ outcome: 'error', type: 'TidarcError', code: 'runtime', field });
      expect(r.message).toMatch(new RegExp(`^an output buffer was detached or resized while runAsync ran; its result was not written \\(${field}\\)`));
    }
    // Shared memory is used in place: the kernel saw the write made after the call.
    const shared = results.get('shared q written during the call')!;
    expect(shared.outcome).toBe('ok');
    expect(shared.o).toEqual(new Array(24).fill(7));
  }, 60_000);
});
