/**
 * What the emulator's Hopper checks cost on the sm_90a attention (test/emulate/attention-sm90a's
 * heaviest case: k = 16, bf16, head dim 128, G = 4, batch 3, prefixes 17, 0 and 130, splits 1
 * and 3): the harness built with and without EMU_KERNEL_FLAGS (the plain shared-memory race
 * check, runtime/emu/emu_memory.cpp), run REPS times each, alternating. With --old <dir>, a
 * second emulator (the runtime/emu and templates/common of an older checkout, e.g.
 * `git archive <rev> runtime/emu templates | tar -x -C <dir>`) runs the same kernel unchecked,
 * for a before/after of the runtime's own checks (every build then runs that checkout's kernel
 * headers, which both emulators can run). Figures are CPU seconds of the emulator
 * processes (/proc/self/stat), which a loaded machine disturbs less than wall time.
 *
 *   npm run bench:emulator-hopper [-- --old <dir>]   # = tsx bench/emulator-hopper-check.ts
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { findCxx } from '../src/build/toolchain.js';
import { planAttentionSm90a } from '../src/codegen/attention-sm90a.js';
import { tidarDecodeVariant } from '../src/codegen/variant.js';
import { EMU_FLAGS, EMU_KERNEL_FLAGS, EMU_RUNTIME_SOURCES, compileWith } from '../src/emulate/emulator-build.js';
import { emulateVariant } from '../src/emulate/emulate-variant.js';
import { packageRoot } from '../src/util/paths.js';
import { sm90aRunVariant, writeSm90aAttentionUnit } from '../test/emulate/attention-sm90a-emu.js';

const REPS = 3;
const argAfter = (flag: string) => process.argv.includes(flag) ? process.argv[process.argv.indexOf(flag) + 1] : undefined;
const old = argAfter('--old');

function childCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

const cxx = await findCxx();
if (!cxx.found) throw new Error(`needs a C++ compiler (${cxx.reason})`);
const root = mkdtempSync(join(tmpdir(), 'tidarc-bench-hopper-'));
try {
  const plan = planAttentionSm90a(tidarDecodeVariant(16, { dtype: 'bf16', headDim: 128, qHeads: 4, kvHeads: 1 }));
  const unit = writeSm90aAttentionUnit(join(root, 'unit'), plan);
  // With --old, every emulator runs the older checkout's kernel headers (the newer emulator runs
  // an older kernel; not the reverse: a newer kernel may use primitives the older one lacks).
  if (old) for (const h of readdirSync(unit.cudaDir)) if (existsSync(join(old, 'templates', 'cuda', h))) copyFileSync(join(old, 'templates', 'cuda', h), join(unit.cudaDir, h));
  const harness = join(packageRoot(), 'test', 'emulate', 'fixtures', 'attention_sm90a_main.cpp');
  /** The emulator of checkout `base` (its runtime/emu, templates/common) with the harness. */
  const build = async (base: string, exe: string, kernelFlags: readonly string[]) => {
    const includes = ['runtime/emu', 'runtime/emu/include', 'templates/common'].map((d) => `-I${join(base, d)}`);
    const objDir = join(root, `rt-${exe}`);
    mkdirSync(objDir, { recursive: true });
    const objects = await Promise.all(EMU_RUNTIME_SOURCES.map(async (src) => {
      const obj = join(objDir, src.replace(/\.cpp$/, '.o'));
      await compileWith(cxx.tool.path, [...EMU_FLAGS, ...includes, '-c', join(base, 'runtime', 'emu', src), '-o', obj], src);
      return obj;
    }));
    const path = join(root, exe);
    await compileWith(cxx.tool.path, [...EMU_FLAGS, ...kernelFlags, ...includes, `-I${unit.cudaDir}`, '-include', 'tidarc_emu.h',
      `-DTIDARC_SM90A_UNIT="${unit.source}"`, `-DTIDARC_SM90A_KERNEL=${plan.symbol}`, `-DTIDARC_SM90A_TILE_N=${plan.tileN}`,
      '-x', 'c++', harness, '-x', 'none', ...objects, '-o', path], exe);
    return path;
  };
  const exes: Record<string, string> = {
    unchecked: await build(packageRoot(), 'unchecked', []),
    checked: await build(packageRoot(), 'checked', EMU_KERNEL_FLAGS),
    ...(old ? { old: await build(old, 'old', []) } : {}),
  };
  const cpu: Record<string, number> = Object.fromEntries(Object.keys(exes).map((k) => [k, 0]));
  console.log(`load average at start: ${loadavg()[0]!.toFixed(1)}`);
  for (let r = 0; r < REPS; r++) {
    for (const [mode, exe] of Object.entries(exes)) {
      for (const splits of [1, 3]) {
        const before = childCpuSeconds();
        const report = await emulateVariant(exe, sm90aRunVariant(plan), { batch: 3, prefixLen: [17, 0, 130], splits, seed: 21 }, root);
        cpu[mode]! += childCpuSeconds() - before;
        if (!report.ok) throw new Error(`${mode}, splits ${splits} failed: ${JSON.stringify(report.findings.slice(0, 2))}`);
      }
    }
  }
  for (const [mode, s] of Object.entries(cpu)) console.log(`${mode.padEnd(10)} ${(s / REPS).toFixed(2)} s  (${(s / cpu['unchecked']!).toFixed(3)} of unchecked)`);
  console.log(`load average at end: ${loadavg()[0]!.toFixed(1)}; each figure: the CPU seconds of the runs at splits 1 and 3 of ${plan.symbol}, mean of ${REPS}`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
