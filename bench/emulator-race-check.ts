/**
 * What the emulator's check of plain shared-memory accesses costs (EMU_KERNEL_FLAGS: a call per
 * load and store of the kernel, runtime/emu/emu_memory.cpp): a grid of attention variants like
 * test/emulate/kernels.test.ts's (every row-tile layout, split-KV off and on, batch 3, prefix
 * lengths 17, 0 and 130), each built twice, with the flags and without, and run on the same
 * inputs REPS times each, alternating. Figures are the runs' CPU time (user + system of the
 * emulator processes, from /proc/self/stat), which a loaded machine disturbs less than wall time.
 *
 *   npm run bench:emulator-race        # = tsx bench/emulator-race-check.ts; --only <text>: the variants whose label holds it
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileModel } from '../src/build/compile-model.js';
import { findCxx } from '../src/build/toolchain.js';
import { PREFILL_CHUNK } from '../src/codegen/variant.js';
import { buildEmulatorRuntime, buildVariantEmulator } from '../src/emulate/emulator-build.js';
import { emulateVariant } from '../src/emulate/emulate-variant.js';
import { readManifest } from '../src/runtime/kernel-library.js';
import type { DType, ModelSpec } from '../src/ir/model.js';

const REPS = 3;
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] ?? '' : '';
const GRID: readonly (readonly [{ dtype: DType; headDim: number; qHeads: number; kvHeads: number }, readonly number[], readonly string[]])[] = [
  [{ dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 2 }, [1, 4, 16], ['tidar_k1', 'tidar_k4', 'tidar_k16', 'ar', `prefill_c${PREFILL_CHUNK}`]],
  [{ dtype: 'fp16', headDim: 128, qHeads: 8, kvHeads: 2 }, [4, 16], ['tidar_k4', 'tidar_k16', 'ar']],
];

function spec(s: (typeof GRID)[number][0], drafts: readonly number[]): ModelSpec {
  return {
    name: `bench-${s.dtype}-d${s.headDim}-q${s.qHeads}-kv${s.kvHeads}`, family: 'qwen3', layers: 1, hiddenSize: s.qHeads * s.headDim, queryHeads: s.qHeads, kvHeads: s.kvHeads,
    headDim: s.headDim, intermediateSize: 128, vocabSize: 260, ropeTheta: 10000, rmsNormEps: 1e-6, qkNorm: true, tieEmbeddings: true, dtype: s.dtype, maskTokenId: 259, draftLengths: drafts,
  };
}

/** CPU seconds of this process's reaped children so far (cutime + cstime). */
function childCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;  // fields 16 and 17 of proc(5), in clock ticks (100 a second)
}

const cxx = await findCxx();
if (!cxx.found) throw new Error(`needs a C++ compiler (${cxx.reason})`);
const root = mkdtempSync(join(tmpdir(), 'tidarc-bench-race-'));
try {
  const objects = await buildEmulatorRuntime(cxx.tool.path, join(root, 'runtime'));
  const totals = { off: 0, on: 0 };
  console.log(`load average at start: ${loadavg()[0]!.toFixed(1)}`);
  console.log('variant                         unchecked s   checked s   ratio');
  for (const [i, [shape, drafts, names]] of GRID.entries()) {
    const out = join(root, `shape${i}`);
    await compileModel({ spec: spec(shape, drafts), arches: ['sm_80'], outDir: out, build: 'none', log: () => undefined });
    for (const v of readManifest(out).variants.filter((x) => names.includes(x.name))) {
      const label = `${shape.dtype} d${shape.headDim} G${shape.qHeads / shape.kvHeads} ${v.name}`;
      if (!label.includes(only)) continue;
      const exes = { off: join(out, `${v.name}.off`), on: join(out, `${v.name}.on`) };
      await buildVariantEmulator(cxx.tool.path, join(out, v.sources.cuda), join(out, 'cuda'), v, objects, exes.off, []);
      await buildVariantEmulator(cxx.tool.path, join(out, v.sources.cuda), join(out, 'cuda'), v, objects, exes.on);
      const cpu = { off: 0, on: 0 };
      for (let r = 0; r < REPS; r++) {
        for (const mode of ['off', 'on'] as const) {
          for (const splits of [1, 3]) {
            const before = childCpuSeconds();
            const report = await emulateVariant(exes[mode], v, { batch: 3, prefixLen: [17, 0, 130], splits, seed: 7 }, out);
            cpu[mode] += childCpuSeconds() - before;
            if (!report.ok) throw new Error(`${v.name} (${mode}, splits ${splits}) failed: ${JSON.stringify(report.findings.slice(0, 2))}`);
          }
        }
      }
      totals.off += cpu.off, totals.on += cpu.on;
      console.log(`${label.padEnd(32)}${(cpu.off / REPS).toFixed(2).padStart(11)}${(cpu.on / REPS).toFixed(2).padStart(12)}${(cpu.on / cpu.off).toFixed(3).padStart(8)}`);
    }
  }
  console.log(`${'all'.padEnd(32)}${(totals.off / REPS).toFixed(2).padStart(11)}${(totals.on / REPS).toFixed(2).padStart(12)}${(totals.on / totals.off).toFixed(3).padStart(8)}`);
  console.log(`load average at end: ${loadavg()[0]!.toFixed(1)}; each figure: the CPU seconds of one run at splits 1 and 3, mean of ${REPS}`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
