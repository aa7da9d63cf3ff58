/**
 * Why the fused SwiGLU epilogue equals the unfused MLP bit for bit on a GPU too, where the
 * emulator cannot show it: nvcc contracts `1.0f + expf(-g)` into an fma with expf's last
 * product (the emulator, on libm, adds after a rounded expf), so equality needs both kernels to
 * compile silu to the same instructions. The PTX of tidarc_op_silu_mul (tidarc_ops.cu) and of a
 * gate_up GEMM's SwiGLU epilogue (tidarc_gemm.cuh), for sm_80 and sm_90: every silu in the GEMM
 * is the silu_mul sequence, instruction for instruction with the same data flow (registers
 * renamed in order of appearance), ex2.approx through the contracted fma, div.rn and the product
 * with up. The device check compares their outputs on the GPU itself (gemm.py bitwiseUnfused).
 * Tagged: nvcc (skipped where nvcc is absent).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { findNvcc } from '../../src/build/toolchain.js';
import { packageRoot } from '../../src/util/paths.js';
import { writeGemmUnit } from '../helpers/gemm.js';

const exec = promisify(execFile);
const nvcc = await findNvcc();
const dir = mkdtempSync(join(tmpdir(), 'tidarc-swiglu-ptx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function ptx(source: string, arch: string, includeDir: string): Promise<string> {
  const out = join(dir, `${arch}-${source.replace(/\W/g, '_')}.ptx`);
  await exec(nvcc.found ? nvcc.tool.path : 'nvcc', ['-ptx', '-O3', '-std=c++17', `-arch=${arch}`, `-I${includeDir}`, '-o', out, source], { maxBuffer: 64 << 20 });
  return readFileSync(out, 'utf8');
}

/**
 * Each silu in `text` (an `ex2.approx` whose next two arithmetic instructions end in a div.rn):
 * the 17 instructions before the ex2 (expf's range reduction, from -g), the ex2, those two
 * (1 + e as an fma, g / (1 + e)) and the mul.f32 that takes the quotient, registers renamed
 * r0, r1, ... in order of appearance.
 */
function silus(text: string): string[] {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('//'));
  const out: string[] = [];
  lines.forEach((line, i) => {
    if (!line.startsWith('ex2.approx')) return;
    const after = lines.slice(i + 1).filter((l) => /^(fma|div|add|mul|sub)\.[a-z.]*f32/.test(l)).slice(0, 2);
    const quotient = /^div\.rn\.f32\s+(%f\d+)/.exec(after[1] ?? '')?.[1];
    // The row statistics epilogue's exp(x - max) has no quotient: not a silu.
    if (quotient === undefined) return;
    const product = lines.slice(i + 1).find((l) => l.startsWith('mul.f32') && quotient !== undefined && (l.includes(`${quotient};`) || l.includes(`${quotient},`)));
    const window = [...lines.slice(i - 17, i + 1), ...after, product ?? '(no product)'];
    const names = new Map<string, string>();
    out.push(window.map((l) => l.replace(/%[a-z]+\d+/g, (r) => names.get(r) ?? (names.set(r, `r${names.size}`), `r${names.size - 1}`))).join('\n'));
  });
  return out;
}

describe.skipIf(!nvcc.found)('SwiGLU: the epilogue and tidarc_op_silu_mul compile silu alike', () => {
  const templates = join(packageRoot(), 'templates', 'cuda');
  for (const arch of ['sm_80', 'sm_90']) test(arch, async () => {
    // gate | up of I = 64 (N = 128: one N tile), split-K 1, M = 1 and 20.
    const { source, cudaDir } = writeGemmUnit(join(dir, arch), { n: 128, k: 256, dtype: 'bf16' }, [1, 20], 1, ['gate_up']);
    const [ops, gemm] = await Promise.all([ptx(join(templates, 'tidarc_ops.cu'), arch, templates), ptx(source, arch, cudaDir)]);
    const opsText = ops.slice(ops.indexOf('.entry tidarc_op_silu_mul'));
    const [reference] = silus(opsText.slice(0, opsText.indexOf('\n}')));
    expect(reference).toMatch(/ex2\.approx\.ftz\.f32[^\n]*\nfma\.rn\.f32 [^\n]*0f3F800000;\ndiv\.rn\.f32[^\n]*\nmul\.f32/);
    const fused = silus(gemm);
    // Two kernels (M = 1, 20), each with its fragments' silus unrolled.
    expect(fused.length).toBeGreaterThanOrEqual(8);
    for (const s of fused) expect(s).toBe(reference);
  }, 300_000);
});
