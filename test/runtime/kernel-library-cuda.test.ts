/**
 * The kernel library on the cuda backend (issue 13 item 5), through the generated entry points:
 * the tiny model compiled with k = 4 (CPU library, and each variant's .emu.so beside its
 * .fatbin path), loaded from a scratch project as a user would (`import { load } from
 * '../kernels/index.js'`, node_modules/tidarc a link to this package) in a child process whose
 * $TIDARC_LIBCUDA is the emulated driver (the driver is chosen once per process). tidarK4 on
 * cuda must match the cpu backend within the kernels' tolerance with the split-KV rule's own
 * choice (> 1 here: 132 emulated SMs, few CTAs) and with splits 1, sync and async; a bad input
 * is the same one-line error on both backends, and 'auto' picks cuda when the driver loads the
 * kernels. Needs: g++, the native addon and the built dist/ (`npm run build:ts`). [gpu]: the same
 * checks on the real driver with fatbins nvcc built for the device (`npm run test:gpu`).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { findCxx, findNvcc } from '../../src/build/toolchain.js';
import type { ArchName } from '../../src/codegen/arch.js';
import { emulateCompiledDir } from '../../src/emulate/emulated-driver.js';
import { EMU_TOLERANCE, LSE_TOLERANCE } from '../../src/emulate/emulate-variant.js';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { CudaDevice } from '../../src/runtime/cuda/device.js';
import { loadNative } from '../../src/runtime/native.js';
import { randomAttentionInputs } from '../../src/runtime/reference.js';
import { decode } from '../../src/util/dtype.js';
import { sharedEmulatedDriver } from '../helpers/emulated-driver.js';

const exec = promisify(execFile);
const repo = resolve(import.meta.dirname, '..', '..');
const cxx = await findCxx();
// Where this process's driver is a GPU's (the emulated one is chosen in the child only).
const gpu = !process.env['TIDARC_LIBCUDA'] && loadNative().cudaStatus().available && (await findNvcc()).found;
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-library-cuda-'));
const seconds: Record<string, number> = {};
afterAll(() => {
  console.log(`kernel library on cuda: ${Object.entries(seconds).map(([k, s]) => `${k} ${s.toFixed(1)} s`).join(', ')}`);
  rmSync(scratch, { recursive: true, force: true });
});

async function timed<T>(what: string, job: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await job();
  seconds[what] = (performance.now() - t0) / 1000;
  return result;
}

const VARIANT = 'tidar_k4';
const PREFIX = [450, 37]; // 8 and 1 KV tiles of 64: the split rule (splits.ts) splits the longest prefix
const CAPACITY = 460;

/** Runs every call on both backends, prints one JSON object: per backend, per call, o bits, lse, splits or the error. */
const CHILD = `import { load, variants } from '../kernels/index.js';
import { readFileSync } from 'node:fs';
const c = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const u16 = (a) => Uint16Array.from(a);
const inputs = { batch: c.batch, cacheCapacity: c.cacheCapacity, prefixLen: c.prefixLen, q: u16(c.q), kCache: u16(c.kCache), vCache: u16(c.vCache), kStep: u16(c.kStep), vStep: u16(c.vStep) };
const out = {};
for (const backend of ['cpu', 'cuda', 'auto']) {
  const k = load({ backend });
  const show = (r) => ({ o: [...r.o], lse: [...r.lse].map(String), splits: r.splits });
  const error = (f) => { try { f(); return null; } catch (e) { return { name: e.name, code: e.code, message: e.message }; } };
  out[backend] = {
    backend: k.backend,
    split: show(k.tidarK4(inputs)),
    unsplit: show(k.tidarK4({ ...inputs, splits: 1 })),
    async: show(await k.tidarK4Async({ ...inputs, splits: 2 })),
    badQ: error(() => k.tidarK4({ ...inputs, q: inputs.q.subarray(1) })),
    badPrefix: error(() => k.tidarK4({ ...inputs, prefixLen: [c.cacheCapacity + 1, 0] })),
    variants: Object.keys(variants).length,
  };
  k.close();
}
console.log(JSON.stringify(out));
`;

interface Result { o: number[]; lse: string[]; splits: number }
interface Report { backend: string; split: Result; unsplit: Result; async: Result; badQ: unknown; badPrefix: unknown }

/** The child's reports for a compiled directory, run with `env` (which chooses the driver). */
async function runCalls(kernels: string, env: NodeJS.ProcessEnv): Promise<{ reports: Record<'cpu' | 'cuda' | 'auto', Report>; rowsPerSequence: number; headDim: number }> {
  const project = join(dirname(kernels), 'project');
  mkdirSync(join(project, 'node_modules'), { recursive: true });
  writeFileSync(join(project, 'package.json'), '{ "name": "project", "version": "1.0.0", "type": "module" }\n');
  symlinkSync(repo, join(project, 'node_modules', 'tidarc'), 'dir');
  writeFileSync(join(project, 'check.js'), CHILD);
  const manifest = JSON.parse(readFileSync(join(kernels, 'manifest.json'), 'utf8')) as { variants: { name: string; steps: number; shape: { qHeads: number; kvHeads: number; headDim: number; dtype: 'bf16' } }[] };
  const v = manifest.variants.find((x) => x.name === VARIANT)!;
  const inputs = randomAttentionInputs({ ...v.shape, batch: 2, n: v.steps, cacheCapacity: CAPACITY, prefixLen: PREFIX, seed: 13 });
  const call = { batch: 2, cacheCapacity: CAPACITY, prefixLen: PREFIX, ...Object.fromEntries(Object.entries(inputs.bits).map(([k, a]) => [k, [...a]])) };
  writeFileSync(join(project, 'call.json'), JSON.stringify(call));
  const { stdout } = await timed('calls', () => exec(process.execPath, [join(project, 'check.js'), join(project, 'call.json')], { cwd: project, env, maxBuffer: 64 << 20, timeout: 600_000 }));
  return { reports: JSON.parse(stdout.trim().split('\n').pop()!) as Record<'cpu' | 'cuda' | 'auto', Report>, rowsPerSequence: v.steps * v.shape.qHeads, headDim: v.shape.headDim };
}

/** The checks, on a compiled directory that `setup` prepares for the driver its env chooses. */
function describeOnCuda(name: string, skip: boolean, setup: () => Promise<{ kernels: string; env: NodeJS.ProcessEnv }>): void {
  describe.skipIf(skip)(name, () => {
    let reports: Record<'cpu' | 'cuda' | 'auto', Report>;
    let rowsPerSequence: number, headDim: number;

    beforeAll(async () => {
      const { kernels, env } = await setup();
      ({ reports, rowsPerSequence, headDim } = await runCalls(kernels, env));
    }, 900_000);

    /** Largest |a - b| of the decoded outputs, and of the lse (equal infinities count 0). */
    const diff = (a: Result, b: Result) => {
      const oa = decode('bf16', Uint16Array.from(a.o)), ob = decode('bf16', Uint16Array.from(b.o));
      let o = 0, lse = 0;
      for (let i = 0; i < oa.length; i++) o = Math.max(o, Number.isNaN(oa[i]! - ob[i]!) ? Infinity : Math.abs(oa[i]! - ob[i]!));
      for (let i = 0; i < a.lse.length; i++) {
        const x = Number(a.lse[i]), y = Number(b.lse[i]);
        lse = Math.max(lse, x === y ? 0 : Number.isNaN(x - y) ? Infinity : Math.abs(x - y));
      }
      return { o, lse, rows: a.lse.length };
    };

    test('load({ backend: "cuda" }).tidarK4 matches the cpu backend within the kernels\' tolerance, split (the rule\'s choice) and unsplit', () => {
      expect(reports.cuda.backend).toBe('cuda');
      expect(reports.cpu.backend).toBe('cpu');
      expect(reports.cuda.split.splits).toBeGreaterThan(1);
      expect(reports.cuda.unsplit.splits).toBe(1);
      expect(reports.cuda.async.splits).toBe(2);
      for (const call of ['split', 'unsplit', 'async'] as const) {
        const d = diff(reports.cuda[call], reports.cpu.unsplit);
        expect(d.rows, call).toBe(2 * rowsPerSequence);
        expect(d.o, call).toBeLessThanOrEqual(EMU_TOLERANCE.bf16);
        expect(d.lse, call).toBeLessThanOrEqual(LSE_TOLERANCE);
      }
      // Not vacuous: the outputs are not all zeros, and the two sequences differ.
      expect(reports.cuda.split.o.some((b) => b !== 0)).toBe(true);
      const perSequence = rowsPerSequence * headDim;
      expect(reports.cuda.split.o.slice(0, perSequence)).not.toEqual(reports.cuda.split.o.slice(perSequence));
    });

    test('a bad input is the same one-line error on cuda as on cpu', () => {
      for (const bad of ['badQ', 'badPrefix'] as const) {
        expect(reports.cuda[bad], bad).toEqual(reports.cpu[bad]);
        expect(reports.cuda[bad], bad).toMatchObject({ name: 'TidarcError', code: 'invalid-argument' });
      }
      expect((reports.cuda.badQ as { message: string }).message).toMatch(/^q has the wrong size/);
      expect((reports.cuda.badQ as { message: string }).message).not.toContain('\n');
    });

    test('"auto" picks cuda when the driver loads every variant\'s kernels', () => {
      expect(reports.auto.backend).toBe('cuda');
      expect(diff(reports.auto.split, reports.cuda.split)).toMatchObject({ o: 0, lse: 0 });
    });
  });
}

describeOnCuda('a compiled directory on the cuda backend (emulated driver)', !cxx.found, async () => {
  const kernels = join(scratch, 'emulated', 'kernels');
  const spec = await loadModelSpecFile(join(repo, 'examples', 'tiny.json'));
  await timed('compile', () => compileModel({ spec, drafts: [4], arches: ['sm_90'], outDir: kernels, build: 'cpu', log: () => undefined }));
  const driver = await timed('driver', sharedEmulatedDriver);
  await timed('modules', () => emulateCompiledDir(kernels, { jobs: 2 }));
  return { kernels, env: { ...process.env, TIDARC_LIBCUDA: driver } };
});

describeOnCuda('[gpu] a compiled directory on the cuda backend (the GPU)', !gpu, async () => {
  const kernels = join(scratch, 'gpu', 'kernels');
  const spec = await loadModelSpecFile(join(repo, 'examples', 'tiny.json'));
  const device = CudaDevice.open(0);
  await timed('compile', () => compileModel({ spec, drafts: [4], arches: [device.arch as ArchName], outDir: kernels, build: 'all', log: () => undefined }));
  const env = { ...process.env };
  delete env['TIDARC_LIBCUDA'];
  return { kernels, env };
});
