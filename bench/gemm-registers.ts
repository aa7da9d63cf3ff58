/**
 * ptxas registers of every mma.sync GEMM tile of the search space (src/tune/gemm-space.ts): each
 * (width, rows, warp rows) at split-K 1 and at split-K 2 (the in-launch sum: any count > 1 runs
 * the same code), 3 stages (the stage count only sizes shared memory), for one weight shape
 * (Qwen3-8B o, 4096 x 4096 bf16) at sm_90. Prints the table gemm-space.ts's
 * MEASURED_REGISTERS records, to paste there when the kernel changes. Needs nvcc.
 * The kernels are compiled without the fold-norms code (Reduction::kNormOut / kRowScale false:
 * the code every unit compiled before fold-norms had); `--fold` compiles them as a bf16 o unit
 * now is, with the producer's (gemm-registers.ts says what that moved).
 * Usage: npm run bench:gemm-registers [-- --arch sm_80] [-- --fold]
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parsePtxasReport } from '../src/build/ptxas.js';
import { findNvcc } from '../src/build/toolchain.js';
import { ARCHES, type ArchName } from '../src/codegen/arch.js';
import { GEMM_BLOCK_N, GEMM_NARROW_BLOCK_N, GEMM_THREADS, GEMM_WARPS, type GemmShape, type GemmTile, gemmTarget, gemmTileProblem, planGemm, planReduction } from '../src/codegen/gemm-plan.js';
import { gemmCandidateSymbol, renderGemmUnit } from '../src/codegen/gemm-source.js';
import { readTemplateFile } from '../src/codegen/templates.js';
import { GEMM_BLOCK_M, GEMM_WARPS_M } from '../src/tune/gemm-space.js';

const exec = promisify(execFile);
const archArg = process.argv.indexOf('--arch');
const arch = (archArg > 0 ? process.argv[archArg + 1] : 'sm_90') as ArchName;
const fold = process.argv.includes('--fold');
const nvcc = await findNvcc();
if (!nvcc.found) {
  console.error('bench:gemm-registers needs nvcc');
  process.exit(1);
}
const shape: GemmShape = { n: 4096, k: 4096, dtype: 'bf16' };
const target = gemmTarget([arch]);
// 8 warps (MEASURED), then 4 (MEASURED_4_WARPS).
const tiles: GemmTile[] = GEMM_WARPS.flatMap((warps) => [GEMM_BLOCK_N, GEMM_NARROW_BLOCK_N].flatMap((blockN) => GEMM_BLOCK_M.flatMap((blockM) => GEMM_WARPS_M.map((warpsM) =>
  ({ blockM, warpsM, stages: 3, ...(blockN !== GEMM_BLOCK_N ? { blockN } : {}), ...(warps !== GEMM_THREADS / 32 ? { warps } : {}) }))))).filter((t) => gemmTileProblem(t, target) === null);
const dir = mkdtempSync(join(tmpdir(), 'tidarc-bench-gemm-registers-'));
const { stdout: version } = await exec(nvcc.tool.path, ['--version']);
const rows: string[] = [];
try {
  for (const h of ['tidarc_gemm.cuh', 'tidarc_gemm_abi.h', 'tidarc_device.cuh']) writeFileSync(join(dir, h), readTemplateFile(`cuda/${h}`));
  const bySplit = await Promise.all([1, 2].map(async (splitK) => {
    const reduction = planReduction(shape, target, splitK);
    const plans = tiles.map((t) => planGemm(shape, t.blockM, target, reduction, t));
    const source = join(dir, `split${splitK}.cu`);
    writeFileSync(source, renderGemmUnit(shape, plans, ['o'], 'bench', { candidates: true, fold: { normOut: fold, rowScale: false } }));
    const { stderr } = await exec(nvcc.tool.path, ['-cubin', '-O3', '-std=c++17', '-Xptxas', '-v', ARCHES[arch].gencode, `-I${dir}`, '-o', join(dir, `split${splitK}.cubin`), source], { maxBuffer: 64 << 20 });
    const report = parsePtxasReport(stderr)[arch] ?? {};
    return plans.map((p) => report[gemmCandidateSymbol(p)]!);
  }));
  tiles.forEach((t, i) => {
    const [one, more] = [bySplit[0]![i]!, bySplit[1]![i]!];
    const spills = [one, more].map((r, i) => (r.spillStoreBytes > 0 ? `split-K ${i === 0 ? '1' : '> 1'} spills ${r.spillStoreBytes} bytes` : '')).filter(Boolean);
    const smem = more.sharedBytes > 0 ? [`split-K > 1: ${more.sharedBytes} bytes static shared`] : [];
    const note = [...spills, ...smem].join('; ');
    if (t.warps !== undefined && (i === 0 || tiles[i - 1]!.warps === undefined)) rows.push(`// ${t.warps} warps (MEASURED_4_WARPS):`);
    rows.push(`  [${t.blockN ?? GEMM_BLOCK_N}, ${t.blockM}, ${t.warpsM}, ${one.registers}, ${more.registers}${spills.length > 0 ? ', true' : ''}],${note ? `  // ${note}` : ''}`);
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`// [blockN, blockM, warpsM, split-K 1, split-K > 1, spills] (${arch}, ${version.trim().split('\n').pop()}${fold ? ', the fold-norms producer code compiled in' : ''})`);
console.log(rows.join('\n'));
