/**
 * cuobjdump, the I/O edge of the SASS instruction counts (src/codegen/sass-mix.ts parses what it
 * prints; bench/sass-counts.ts measures the table in src/codegen/sass-counts.ts). The CUDA 13
 * toolkit installed here has nvcc and ptxas but no cuobjdump; the triton wheel ships one
 * (triton/backends/nvidia/bin), so the lookup is: TIDARC_CUOBJDUMP, then PATH, then the
 * toolkit's bin next to nvcc and /usr/local/cuda/bin.
 */
import { execFile } from 'node:child_process';
import { existsSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { ArchSpec } from '../codegen/arch.js';
import { renderCudaVariant } from '../codegen/kernel-source.js';
import type { AttentionPlan } from '../codegen/plan.js';
import { type ClassCounts, countClasses, hotLoop, parseSass } from '../codegen/sass-mix.js';
import { nvccFlags } from '../codegen/targets.js';
import { readTemplateFile } from '../codegen/templates.js';
import { findNvcc, type ToolProbe } from './toolchain.js';

const run = promisify(execFile);

/** How to get a cuobjdump when none is found (the error names it). */
export const CUOBJDUMP_HINT = "python3 -m pip download --no-deps triton -d /tmp/tritonwheel && cd /tmp/tritonwheel && unzip -q -o triton-*.whl 'triton/backends/nvidia/bin/*', then TIDARC_CUOBJDUMP=/tmp/tritonwheel/triton/backends/nvidia/bin/cuobjdump";

async function candidates(): Promise<string[]> {
  const env = process.env['TIDARC_CUOBJDUMP'];
  if (env) return [env];
  const list = ['cuobjdump'];
  const nvcc = await findNvcc();
  if (nvcc.found) {
    const which = nvcc.tool.path.includes('/') ? nvcc.tool.path : await run('sh', ['-c', `command -v ${nvcc.tool.path}`]).then((r) => r.stdout.trim(), () => '');
    if (which) {
      for (const p of [which, existsSync(which) ? realpathSync(which) : which]) list.push(join(dirname(p), 'cuobjdump'));
    }
  }
  list.push('/usr/local/cuda/bin/cuobjdump');
  return [...new Set(list)];
}

/** The first cuobjdump that answers `--version` (its release line), or why none did. */
export async function findCuobjdump(): Promise<ToolProbe> {
  const tried: string[] = [];
  for (const path of await candidates()) {
    try {
      const { stdout } = await run(path, ['--version'], { timeout: 20_000 });
      const version = stdout.split('\n').find((l) => /release/.test(l))?.trim() ?? stdout.trim().split('\n').pop()!.trim();
      return { found: true, tool: { path, version } };
    } catch (e) {
      tried.push(`${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message.split('\n')[0]}`);
    }
  }
  return { found: false, reason: `no cuobjdump (${tried.join('; ')}); get one: ${CUOBJDUMP_HINT}` };
}

/** `cuobjdump -sass` of a cubin or fatbin: every kernel's SASS for every arch it holds. */
export async function dumpSass(cuobjdump: string, binary: string): Promise<string> {
  const { stdout } = await run(cuobjdump, ['-sass', binary], { maxBuffer: 256 << 20 });
  return stdout;
}

/** What one compiled attention plan's hot loop holds, for each arch of the compile. */
export interface MeasuredLoop {
  readonly arch: string;
  readonly counts: ClassCounts;
  /** Loops nested in the hot loop (0 for the attention kernel: its inner loops are unrolled). */
  readonly nested: number;
}

/**
 * Compiles `plan`'s generated source (renderCudaVariant and its headers, as nvcc builds a
 * compile's units) for `arches` into one fatbin in `dir` (a scratch directory holding the
 * headers: writeAttentionHeaders), dumps its SASS and returns the main kernel's hot-loop counts
 * per arch (sass-mix.ts hotLoop).
 */
export async function measureAttentionLoop(plan: AttentionPlan, arches: readonly ArchSpec[], nvcc: string, cuobjdump: string, dir: string, tag: string): Promise<MeasuredLoop[]> {
  const source = join(dir, `${tag}.cu`);
  const binary = join(dir, `${tag}.fatbin`);
  writeFileSync(source, renderCudaVariant(plan, 'sass'));
  await run(nvcc, [...nvccFlags(arches).filter((f) => f !== '-Xptxas' && f !== '-v'), '-o', binary, source], { maxBuffer: 64 << 20 });
  const kernels = parseSass(await dumpSass(cuobjdump, binary)).filter((k) => k.name === plan.variant.symbol);
  return arches.map((a) => {
    const kernel = kernels.find((k) => k.arch === a.name);
    if (!kernel) throw new Error(`cuobjdump printed no ${a.name} SASS for ${plan.variant.symbol}`);
    const hot = hotLoop(kernel);
    if (!hot) throw new Error(`${plan.variant.symbol} (${a.name}) has no loop holding HMMA`);
    return { arch: a.name, counts: countClasses(hot.path), nested: hot.nested.length };
  });
}

/** The headers a rendered attention source includes, into `dir`. */
export function writeAttentionHeaders(dir: string): void {
  for (const [name, template] of [['tidarc_attention.cuh', 'cuda/tidarc_attention.cuh'], ['tidarc_device.cuh', 'cuda/tidarc_device.cuh'], ['tidarc_abi.h', 'common/tidarc_abi.h']] as const) {
    writeFileSync(join(dir, name), readTemplateFile(template));
  }
}
