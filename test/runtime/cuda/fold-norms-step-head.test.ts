/**
 * Fold-norms in the decode step's tail (gpu-decode-step.ts recordTail): every lm_head GEMM a
 * step launches reads the final norm's row sums (rowSumsq = h.sumsq over H columns), in each
 * tail the runtime has: greedy TiDAR on the row statistics in one pass, greedy with the next
 * drafts' own second pass (oneHeadPass: false, as past ONE_PASS_MAX_CANDIDATES), sampled (logits
 * through runLinear, then the next drafts' pass), a beta mix (its own lm_head rows) and AR.
 * Why a test of its own: a positive row scale never moves an argmax, so greedy TiDAR == AR and
 * every greedy token test pass with the scale dropped from these launches, while sampling and
 * acceptance would read logits off by each row's rms (the temperature moved per row).
 * Recording stand-in for the device (fixtures/decode-scratch.ts) and the real Decoder; the
 * unfolded runner's lm_head launches (rowSumsq 0) show the check reads the field.
 * Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import { generateModel } from '../../../src/codegen/generate.js';
import type { DeviceBuffer, KernelRef } from '../../../src/runtime/cuda/device.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { GEMM, layoutOf } from '../../../src/runtime/cuda/op-abi.js';
import { Decoder } from '../../../src/runtime/model/decoder.js';
import { smallSpec } from '../../helpers/random-model.js';
import { recorder, shapeOnlyWeights } from './fixtures/decode-scratch.js';

const spec = smallSpec('fold-step-head', [2, 4], { hiddenSize: 192 });
const NEVER = spec.vocabSize - 1;

/** The lm_head GEMM launches of a generation's decode steps (not its prefill): their rowSumsq buffer's label and normCols. */
function headLaunches(o: { mode: 'ar' | 'tidar'; draft: number; temperature: number; beta: number; oneHeadPass?: boolean; foldNorms?: boolean; graphs?: boolean }) {
  const { manifest } = generateModel(spec, { arches: ['sm_80'] });
  const d = recorder('sm_80');
  const labels = new Map<number, string>();
  const dev = d.device as unknown as Record<string, unknown>;
  const alloc = dev['alloc'] as (bytes: number, label: string) => DeviceBuffer;
  dev['alloc'] = (bytes: number, label: string): DeviceBuffer => {
    const b = alloc(bytes, label);
    labels.set(b.ptr, label.split(' [')[0]!);
    return b;
  };
  dev['kernel'] = (module: string, name: string): KernelRef => ({ name, module, handle: 0, maxShared: 0 }) as unknown as KernelRef;
  let stepping = false;
  const launches: { module: string; name: string; args: DataView }[] = [];
  dev['launch'] = (fn: { name: string; module: string }, _g: unknown, _b: unknown, _s: number, args: Uint8Array) => {
    if (stepping) launches.push({ module: fn.module, name: fn.name, args: new DataView(args.buffer, args.byteOffset, args.byteLength) });
  };
  const weights = uploadWeights(d.device, spec, shapeOnlyWeights(spec), manifest);
  // Launch by launch, so every step's tail launches (a captured graph records them once).
  const runner = new GpuModelRunner(spec, d.device, weights, '/kernels', manifest, 256, {
    graphs: o.graphs ?? false, ...(o.oneHeadPass === undefined ? {} : { oneHeadPass: o.oneHeadPass }), ...(o.foldNorms === undefined ? {} : { foldNorms: o.foldNorms }),
  });
  const dec = new Decoder(runner, { mode: o.mode, draft: o.draft, temperature: o.temperature, topP: 1, trustAr: o.beta, seed: 0 }, NEVER, NEVER);
  dec.prefill(Array.from({ length: 20 }, (_, i) => i + 3));
  stepping = true;
  for (let s = 0; s < 3; s++) dec.step();
  const headUnits = manifest.gemms!.filter((g) => g.roles.includes('lm_head')).map((g) => g.unit);
  const at = (name: string): number => layoutOf(GEMM).offsets[name]!;
  const heads = launches.filter((l) => headUnits.some((u) => l.module.includes(u)) && !l.name.endsWith('_row_stats'));
  return {
    folded: runner.graphChoice.foldNorms,
    heads: heads.map((l) => ({ rowSumsq: labels.get(Number(l.args.getBigUint64(at('rowSumsq'), true))) ?? 0, normCols: l.args.getInt32(at('normCols'), true) })),
  };
}

describe('fold-norms: the decode step\'s lm_head launches scale by the final norm', () => {
  const H = spec.hiddenSize;
  test.each([
    ['greedy TiDAR k = 2, one lm_head pass', { mode: 'tidar', draft: 2, temperature: 0, beta: 1 }, 3],
    ['greedy TiDAR k = 4, the next drafts\' own pass', { mode: 'tidar', draft: 4, temperature: 0, beta: 1, oneHeadPass: false }, 6],
    ['sampled TiDAR k = 2 (logits, then the next drafts\' pass)', { mode: 'tidar', draft: 2, temperature: 0.8, beta: 1 }, 6],
    ['sampled TiDAR k = 4 with a beta mix (its own rows)', { mode: 'tidar', draft: 4, temperature: 0.8, beta: 0.5 }, 9],
    ['greedy AR', { mode: 'ar', draft: 0, temperature: 0, beta: 1 }, 3],
  ] as const)('%s', (_name, o, count) => {
    const r = headLaunches(o);
    expect(r.folded).toBe(true);
    expect(r.heads).toHaveLength(count);
    for (const h of r.heads) expect(h).toEqual({ rowSumsq: 'h.sumsq', normCols: H });
  });

  test('with CUDA graphs: the captured tails alike', () => {
    const r = headLaunches({ mode: 'tidar', draft: 4, temperature: 0.8, beta: 0.5, graphs: true });
    expect(r.heads.length).toBeGreaterThanOrEqual(3);
    for (const h of r.heads) expect(h).toEqual({ rowSumsq: 'h.sumsq', normCols: H });
  });

  test('unfolded (foldNorms: false): the same launches carry no row scale', () => {
    const r = headLaunches({ mode: 'tidar', draft: 2, temperature: 0.8, beta: 1, foldNorms: false });
    expect(r.folded).toBe(false);
    expect(r.heads).toHaveLength(6);
    for (const h of r.heads) expect(h).toEqual({ rowSumsq: 0, normCols: 0 });
  });
});
