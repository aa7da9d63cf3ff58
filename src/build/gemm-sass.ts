/**
 * The mma.sync GEMM's hot loop from cuobjdump (src/build/sass.ts runs the tools; sass-mix.ts
 * parses and classifies): compiles candidate kernels of one weight shape as one unit (the
 * generated source, renderGemmUnit with candidates, as bench:gemm-registers builds it) for the
 * given arches into one fatbin and returns each kernel's hot-loop counts per arch. What
 * bench:sass-counts measures src/codegen/gemm-sass-counts.ts with.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ArchSpec } from '../codegen/arch.js';
import type { GemmPlan } from '../codegen/gemm-plan.js';
import { gemmCandidateSymbol, renderGemmUnit } from '../codegen/gemm-source.js';
import { countClasses, hotLoop, parseSass } from '../codegen/sass-mix.js';
import { nvccFlags } from '../codegen/targets.js';
import { readTemplateFile } from '../codegen/templates.js';
import { dumpSass, type MeasuredLoop } from './sass.js';

const run = promisify(execFile);

/** The headers a rendered GEMM unit includes, into `dir`. */
export function writeGemmHeaders(dir: string): void {
  for (const h of ['tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_device.cuh']) writeFileSync(join(dir, h), readTemplateFile(`cuda/${h}`));
}

/**
 * `plans` (one weight shape and reduction, distinct tiles) compiled as one unit for `arches` in
 * `dir` (writeGemmHeaders'), each kernel's hot loop (the k-tile loop) counted per arch, in the
 * plans' order.
 */
export async function measureGemmLoops(plans: readonly GemmPlan[], arches: readonly ArchSpec[], nvcc: string, cuobjdump: string, dir: string, tag: string): Promise<MeasuredLoop[][]> {
  const source = join(dir, `${tag}.cu`);
  const binary = join(dir, `${tag}.fatbin`);
  writeFileSync(source, renderGemmUnit(plans[0]!.shape, plans, ['o'], 'sass', { candidates: true }));
  await run(nvcc, [...nvccFlags(arches).filter((f) => f !== '-Xptxas' && f !== '-v'), `-I${dir}`, '-o', binary, source], { maxBuffer: 64 << 20 });
  const kernels = parseSass(await dumpSass(cuobjdump, binary));
  return plans.map((p) => {
    const symbol = gemmCandidateSymbol(p);
    return arches.map((a) => {
      const kernel = kernels.find((k) => k.arch === a.name && k.name === symbol);
      if (!kernel) throw new Error(`cuobjdump printed no ${a.name} SASS for ${symbol}`);
      const hot = hotLoop(kernel);
      if (!hot) throw new Error(`${symbol} (${a.name}) has no loop holding HMMA`);
      return { arch: a.name, counts: countClasses(hot.path), nested: hot.nested.length };
    });
  });
}
