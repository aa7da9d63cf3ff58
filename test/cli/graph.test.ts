/**
 * `tidarc graph` end to end through the CLI edge: the text graph (identical layers folded,
 * one line per op of each backend's graph), the SVG drawing, --out, and one-line errors.
 * Needs: nothing.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { stepGraph } from '../../src/codegen/step-kinds.js';
import { readModelInput } from '../../src/model/model-input.js';
import { expectWellFormedXml } from '../helpers/well-formed-xml.js';
import { type Run, expectOneErrorLine, runTidarc } from '../helpers/cli.js';

const MODEL = 'models/tidar-tiny-code';
const run = (...argv: string[]): Promise<Run> => runTidarc('graph', ...argv);
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-cli-graph-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('tidarc graph', () => {
  test('text: the cpu graph of tidar_k4, its layers folded as "x L", one line per op', async () => {
    const r = await run(MODEL, '--step', 'tidar_k4');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const { spec } = await readModelInput(MODEL);
    const g = stepGraph(spec, 'tidar_k4', 'cpu');
    expect(r.stdout).toMatch(new RegExp(`^tidar-tiny-code: step tidar_k4 on cpu: 20 tokens, ${spec.layers} layers, ${g.ops.length} ops\\n`));
    expect(r.stdout).toContain(`layers 0..${spec.layers - 1} (x ${spec.layers}):`);
    const opLines = r.stdout.split('\n').filter((l) => /^ {2,4}(embed|rmsnorm|qk-norm|linear|rope|to16|toFloat|attention|swiglu|add) /.test(l));
    expect(opLines).toHaveLength(2 + g.ops.filter((o) => o.layer === 0).length);  // embed + final norm + one layer
    expect(r.stdout).toContain('linear q       h[128] -> q[256]  model.layers.L.self_attn.q_proj.weight [256 x 128], M = 20');
    expect(r.stdout).toContain('lm_head        h rows (verify 0..3, drafts 4a+1..4a+3)');
  });

  test('cuda: the fused graph (qkv, rope_pack, SwiGLU epilogue, accumulating GEMMs) and the prefill launches of block_k4', async () => {
    const r = await run(MODEL, '--step', 'block_k4', '--backend', 'cuda', '--no-fold-norms');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('attention launches: prefill_c64 rows 0..63 (then committed); block_k4 rows 64..67');
    // The GEMMs' inputs are stored 16-bit (u16) by the ops that write them; the residual x stays f32.
    expect(r.stdout).toContain('rmsnorm        x[128] -> h[128 u16]  model.layers.L.input_layernorm.weight');
    expect(r.stdout).toContain('linear qkv     h[128 u16] -> q[256] | k[128] | v[128]  model.layers.L.self_attn.qkv_proj.weight [512 x 128]');
    expect(r.stdout).toMatch(/linear o +o16\[256 u16\] -> \+= x\[128\]/);
    expect(r.stdout).toMatch(/linear gate_up h\[128 u16\] -> gate\[\d+ u16\] \(SwiGLU epilogue, interleave 8\)/);
    expect(r.stdout).toMatch(/linear down +gate\[\d+ u16\] -> \+= x\[128\]/);
    expect(r.stdout).toMatch(/tensors: .*x f32\[68 x 128\], h u16\[68 x 128\]/);
    expect(r.stdout).not.toMatch(/^ +(rope|to16|add|swiglu) /m);
  });

  test('cuda, bf16: the norms folded by default (layer 0\'s input norm kept); --no-fold-norms above', async () => {
    const r = await run(MODEL, '--step', 'tidar_k4', '--backend', 'cuda');
    expect(r.code).toBe(0);
    expect(r.stdout.match(/^ +rmsnorm /gm)).toHaveLength(1);
    expect(r.stdout).toMatch(/^  layer 0:\n    rmsnorm        x\[128\] -> h\[128 u16\]  model\.layers\.L\.input_layernorm\.weight$/m);
    expect(r.stdout).toMatch(/linear o +o16\[256 u16\] -> \+= x\[128\], folded rmsnorm -> h\[128 u16\], h\.sumsq\[2 f64\]  model\.layers\.L\.post_attention_layernorm\.weight/);
    expect(r.stdout).toMatch(/linear down +gate\[\d+ u16\] -> \+= x\[128\], folded rmsnorm -> h\[128 u16\], h\.sumsq\[2 f64\]  model\.norm\.weight/);
    expect(r.stdout).toMatch(/linear gate_up h\[128 u16\] \(rows scaled by h\.sumsq\[2 f64\]\) -> gate/);
    expect(r.stdout).toMatch(/lm_head +h rows .*\(rows scaled by h\.sumsq\) -> logits/);
    expect(r.stdout).toMatch(/tensors: .*h\.sumsq f64\[20 x 2\]/);
  });

  test('svg to --out: a well-formed drawing of the same lines', async () => {
    const out = join(scratch, 'ar.svg');
    const r = await run(MODEL, '--step', 'ar', '--format', 'svg', '--out', out);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*ar\.svg \(svg, step ar on cpu, \d+ ops\)\n$/);
    const svg = readFileSync(out, 'utf8');
    expectWellFormedXml(svg);
    expect(svg).toContain('layers 0..2 (x 3)');
    expect(svg).toContain('model.layers.L.mlp.down_proj.weight');
  });

  test('errors are one line naming the option, the value and what is allowed', async () => {
    expectOneErrorLine(await run(MODEL, '--step', 'tidar_k3'), '--step', 'tidar_k3', 'tidar_k4', 'ar', 'prefill_c64', 'block_k4');
    expectOneErrorLine(await run(MODEL), '--step', 'a step kind is required');
    expectOneErrorLine(await run(MODEL, '--step', 'ar', '--backend', 'tpu'), '--backend', 'tpu', 'cpu, cuda');
    expectOneErrorLine(await run(MODEL, '--step', 'ar', '--format', 'png'), '--format', 'png', 'text, svg');
  });
});
