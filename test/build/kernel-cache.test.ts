// The kernel cache: one key per model, tuning and target; concurrent processes compile a new model once.
// Needs: g++ (the CPU library).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { kernelCacheEntry, kernelCacheKey } from '../../src/build/kernel-cache.js';
import { findCxx } from '../../src/build/toolchain.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';

const here = dirname(fileURLToPath(import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-kcache-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const cxx = await findCxx();

test('one key per spec, drafts, tiles, variant filter and target; equal inputs share an entry', () => {
  const spec = smallSpec('keyed', [2, 4]);
  const base = { spec, target: 'cpu' as const, cacheDir: '/c' };
  const key = kernelCacheKey(base);
  expect(kernelCacheKey({ ...base, drafts: [4, 2] })).toBe(key);
  const others = [
    kernelCacheKey({ ...base, drafts: [2] }),
    kernelCacheKey({ ...base, target: 'sm_90' }),
    kernelCacheKey({ ...base, target: 'emulator' }),
    kernelCacheKey({ ...base, tiles: { tidar_k2: { warps: 2, tileN: 32 } } }),
    kernelCacheKey({ ...base, spec: { ...spec, ropeTheta: 20000 } }),
    kernelCacheKey({ ...base, variants: ['tidar_k2', 'ar'] }),
  ];
  expect(new Set([key, ...others]).size).toBe(7);
  expect(kernelCacheKey({ ...base, variants: ['ar', 'tidar_k2', 'ar'] })).toBe(others[5]);
  expect(kernelCacheEntry(base)).toBe(`/c/kernels/keyed-cpu-${key.slice(0, 16)}`);
  expect(kernelCacheEntry({ ...base, target: 'sm_90' })).toMatch(/^\/c\/kernels\/keyed-sm_90-[0-9a-f]{16}$/);
});

describe.skipIf(!cxx.found)('two processes loading a new model at once (needs g++)', () => {
  test('compile its kernels once, and both decode the same tokens', { timeout: 300_000 }, async () => {
    const modelDir = await writeRandomModel(scratch, smallSpec('race', [2], { layers: 1 }), 5);
    const cacheDir = join(scratch, 'cache'), start = join(scratch, 'go');
    const child = (): Promise<{ code: number | null; out: string; err: string }> => new Promise((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'load-and-generate.ts'), modelDir, cacheDir, start]);
      let out = '', err = '';
      p.stdout.on('data', (d: Buffer) => void (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => void (err += d.toString()));
      p.on('exit', (code) => resolve({ code, out, err }));
    });
    const runs = [child(), child()];
    // Both are loaded and polling before either may start, so their compiles would overlap (a fixed
    // sleep was not enough on a loaded CI machine: the second child started after the first had built).
    const ready = () => readdirSync(scratch).filter((f) => f.startsWith('go.ready.')).length;
    while (ready() < 2) await new Promise((r) => setTimeout(r, 50));
    writeFileSync(start, '');
    const results = await Promise.all(runs);
    for (const r of results) expect(r, r.err).toMatchObject({ code: 0, err: '' });
    const [a, b] = results.map((r) => JSON.parse(r.out) as { log: string[]; tokens: number[] });
    const built = (log: string[]) => log.some((l) => /^cpu: cpu\/libtidarc_cpu\.so /.test(l));
    expect([built(a!.log), built(b!.log)].sort()).toEqual([false, true]);
    const waiter = built(a!.log) ? b! : a!;
    expect(waiter.log.some((l) => /^waiting for process \d+ to finish compiling the kernels of race \(cpu\)/.test(l))).toBe(true);
    expect(a!.tokens).toHaveLength(4);
    expect(b!.tokens).toEqual(a!.tokens);
    // One entry, no lock, staging or temp left beside it.
    expect(readdirSync(join(cacheDir, 'kernels'))).toEqual([expect.stringMatching(/^race-cpu-[0-9a-f]{16}$/)]);
    // The CPU entry is the CPU target's compile: C++ only, no CUDA sources planned for a stand-in sm_80.
    const entry = join(cacheDir, 'kernels', readdirSync(join(cacheDir, 'kernels'))[0]!);
    expect(readdirSync(entry).filter((f) => f === 'cpu' || f === 'cuda')).toEqual(['cpu']);
    expect((JSON.parse(readFileSync(join(entry, 'manifest.json'), 'utf8')) as { arches: string[] }).arches).toEqual([]);
  });
});
