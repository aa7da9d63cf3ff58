/**
 * The PDL contract in the compiled code (docs: programmatic dependent launch): nvcc -ptx of the
 * GPU operators (tidarc_ops.cu), two GEMM units (one the lm_head's, with its row-statistics merge
 * entry) and an attention variant of generated/tiny for sm_90,
 * and of an sm_90a GEMM unit (tiny) and an sm_90a attention variant (Qwen3-8B tidar_k8: tiny has
 * none) rendered as a compile for sm_90a renders them. In every .entry (src/build/ptx-order.ts):
 * griddepcontrol.wait comes before the first global access of any kind (ld/st/atom/red global or
 * generic, cp.async, TMA), nothing branches or calls around it, launch_dependents follows it; the
 * GEMMs issue their weight prefetch (prefetch.global.L2, a line a thread) before the wait. For
 * sm_80 the same sources have no griddepcontrol and no L2 prefetch at all (the primitives are
 * empty there, so such a binary must never be launched with the attribute). PTX only (no ptxas):
 * about 10 s of nvcc. Tagged: nvcc (skipped where nvcc is absent).
 * Then the SASS ptxas makes of the sm_90 / sm_90a sources (where a cuobjdump is found,
 * src/build/sass.ts: TIDARC_CUOBJDUMP, PATH, the toolkit; skipped otherwise): in every kernel
 * ACQBULK (griddepcontrol.wait) comes before any global access, nothing branches past it, PREEXIT
 * follows it (checkSassPdlOrder): ptxas, not only nvcc's front end, keeps the order (~15 s); each
 * GEMM kernel prefetches (CCTL.E.PF2) before ACQBULK with no R2UR there (the lane-serialising
 * loop ptxas wraps around a bulk prefetch of a per-thread address).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { checkPdlOrder, checkSassPdlOrder } from '../../src/build/ptx-order.js';
import { parseSass } from '../../src/codegen/sass-mix.js';
import { dumpSass, findCuobjdump } from '../../src/build/sass.js';
import { findNvcc } from '../../src/build/toolchain.js';
import { generateModel } from '../../src/codegen/generate.js';
import { parseModelJson } from '../../src/ir/model-validate.js';
import { packageRoot } from '../../src/util/paths.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const cuobjdump = await findCuobjdump();
const root = packageRoot();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-pdl-ptx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TINY = join(root, 'generated', 'tiny', 'cuda');
// gemm_bf16_n260_k256: tiny's lm_head (N 260: a partial last N tile), the one unit with the
// row-statistics merge entry (<unit>_row_stats, tidarc_gemm.cu.hbs's rowStats branch).
const SM90_SOURCES = ['tidarc_ops.cu', 'gemm_bf16_n256_k256.cu', 'gemm_bf16_n260_k256.cu', 'tidar_k2.cu'];

/** A compile for sm_90a of an example, written under dir/<name>: its sm_90a units are in no generated/ directory. */
function writeSm90aCompile(name: string): string {
  const spec = parseModelJson(readFileSync(join(root, 'examples', `${name}.json`), 'utf8'));
  const out = join(dir, name);
  for (const [rel, text] of generateModel(spec, { arches: ['sm_90', 'sm_90a'] }).files) {
    if (!rel.startsWith('cuda/')) continue;
    mkdirSync(dirname(join(out, rel)), { recursive: true });
    writeFileSync(join(out, rel), text);
  }
  return join(out, 'cuda');
}

const sm90aCompiles = new Map<string, string>();
/** writeSm90aCompile once per example (both tests use them). */
const sm90aCompile = (name: string): string => sm90aCompiles.get(name) ?? (sm90aCompiles.set(name, writeSm90aCompile(name)), sm90aCompiles.get(name)!);

/** The sm_90 and sm_90a sources both tests compile: tiny's at sm_90, an sm_90a GEMM and Qwen3-8B's sm_90a tidar_k8. */
function hopperJobs(): { source: string; arch: string; include: string }[] {
  const tinyA = sm90aCompile('tiny');
  const qwenA = sm90aCompile('qwen3-8b');
  return [
    ...SM90_SOURCES.map((s) => ({ source: join(TINY, s), arch: 'sm_90', include: TINY })),
    { source: join(tinyA, 'gemm_bf16_n256_k256_sm90a.cu'), arch: 'sm_90a', include: tinyA },
    { source: join(qwenA, 'tidar_k8.sm90a.cu'), arch: 'sm_90a', include: qwenA },
  ];
}

async function ptx(source: string, arch: string, includeDir: string): Promise<string> {
  const out = join(dir, `${arch}-${source.replace(/\W/g, '_')}.ptx`);
  await exec(nvcc.found ? nvcc.tool.path : 'nvcc', ['-ptx', '-O3', '-std=c++17', `-arch=${arch}`, `-I${includeDir}`, '-o', out, source], { maxBuffer: 64 << 20 });
  return readFileSync(out, 'utf8');
}

describe.skipIf(!nvcc.found)('PDL order in nvcc PTX', () => {
  test('sm_90 and sm_90a: every entry waits before its first global access; GEMMs prefetch weights first; sm_80: no griddepcontrol', async () => {
    const jobs = [...hopperJobs(), ...SM90_SOURCES.map((s) => ({ source: join(TINY, s), arch: 'sm_80', include: TINY }))];
    const texts = await runPool(jobs, 2, (j) => ptx(j.source, j.arch, j.include));
    const problems: string[] = [];
    let entries = 0;
    let rowStatsEntries = 0;
    jobs.forEach((j, i) => {
      const hopper = j.arch !== 'sm_80';
      const checked = checkPdlOrder(texts[i]!, hopper);
      expect(checked.length, `${j.arch} ${j.source}: entries`).toBeGreaterThan(0);
      entries += checked.length;
      for (const e of checked) {
        problems.push(...e.problems.map((p) => `${j.arch} ${e.name}: ${p}`));
        if (hopper) expect(e.firstAccess, `${e.name} accesses global memory`).toBeDefined();
      }
      const lines = texts[i]!.split('\n');
      if (!hopper) expect(/cp\.async\.bulk\.prefetch|prefetch\.global/.test(texts[i]!), `${j.source} at sm_80`).toBe(false);
      else if (/gemm_bf16_n\d+_k\d+(_sm90a)?\.cu$/.test(j.source)) {
        // Each GEMM entry's prefetch sits between its start and its wait (the row-statistics merge
        // reads no weights: it has none).
        for (const e of checked) {
          if (e.name.endsWith('_row_stats')) {
            rowStatsEntries++;
            continue;
          }
          const start = lines.findIndex((l) => new RegExp(`\\.entry\\s+${e.name}\\b`).test(l));
          expect(lines.slice(start, e.waitLine! - 1).some((l) => l.includes('prefetch.global.L2')), `${e.name} prefetches before its wait`).toBe(true);
        }
      }
    });
    expect(problems).toEqual([]);
    expect(rowStatsEntries, 'the lm_head row-statistics entry at sm_90').toBe(1);
    expect(entries).toBeGreaterThan(2 * 16);  // the operators alone are 16 entries at each arch
  }, 120_000);

  test.skipIf(!cuobjdump.found)('SASS (ptxas): ACQBULK before every global access of every sm_90 / sm_90a kernel, PREEXIT after it', async () => {
    const jobs = hopperJobs();
    const tool = cuobjdump.found ? cuobjdump.tool.path : 'cuobjdump';
    const texts = await runPool(jobs, 2, async (j) => {
      const out = join(dir, `${j.arch}-${j.source.replace(/\W/g, '_')}.cubin`);
      await exec(nvcc.found ? nvcc.tool.path : 'nvcc', ['-cubin', '-O3', '-std=c++17', `-arch=${j.arch}`, `-I${j.include}`, '-o', out, j.source], { maxBuffer: 64 << 20 });
      return dumpSass(tool, out);
    });
    const problems: string[] = [];
    let kernels = 0;
    let gemmKernels = 0;
    jobs.forEach((j, i) => {
      const checked = checkSassPdlOrder(texts[i]!);
      expect(checked.length, `${j.arch} ${j.source}: kernels`).toBeGreaterThan(0);
      kernels += checked.length;
      for (const e of checked) problems.push(...e.problems.map((p) => `${e.arch} ${e.name}: ${p}`));
      for (const k of parseSass(texts[i]!)) {
        if (!/^tidarc_gemm_/.test(k.name) || k.name.endsWith('_row_stats')) continue;
        gemmKernels++;
        const prologue = k.instructions.slice(0, k.instructions.findIndex((x) => x.opcode.startsWith('ACQBULK')));
        expect(prologue.some((x) => x.opcode === 'CCTL.E.PF2'), `${k.name} prefetches weight lines before ACQBULK`).toBe(true);
        expect(prologue.filter((x) => /^(R2UR|UBLKPF)/.test(x.opcode)).map((x) => x.opcode), `${k.name}: no lane-serialised prefetch loop`).toEqual([]);
      }
    });
    expect(problems).toEqual([]);
    expect(gemmKernels, 'GEMM kernels checked for their prefetch').toBeGreaterThan(2);
    expect(kernels).toBeGreaterThan(16 + 9);  // the operators, two GEMM units, a variant, ...
  }, 180_000);
});
