/**
 * A generation's device memory priced before its prefill (src/runtime/cuda/step-scratch.ts), on
 * a recording stand-in for the device that counts the runner's own allocations, with the real
 * decode loop (Decoder over GpuModelRunner, steps to the runner's capacity):
 *   - a new runner's peak beyond the weights is generationNeed's total (K/V cache + the larger of
 *     prefill and decode steps), byte for byte, for AR, TiDAR k = 2 greedy and sampled and k = 4
 *     with a beta mix, on an sm_90 compile (mma GEMMs) and an sm_90a one on a 9.0 device (the
 *     sm_90a GEMMs' split-K scratch); the runner's held slots are the price's step slots;
 *   - a reused runner needs only its prefill (the steps' scratch held), and uses exactly that;
 *   - the decision (checkGenerationFits, checkGeneration): fits; refused with one error naming the
 *     step kind and figures; the smaller draft length, capacity or AR that fits.
 * Needs: nothing.
 */
import { describe, expect, test } from 'vitest';
import type { ArchName } from '../../../src/codegen/arch.js';
import { generateModel } from '../../../src/codegen/generate.js';
import { GpuModelRunner, uploadWeights } from '../../../src/runtime/cuda/gpu-runner.js';
import { type GenerationPlan, checkGeneration, checkGenerationFits, generationNeed, generationPrice, stepKindName } from '../../../src/runtime/cuda/step-scratch.js';
import { Decoder } from '../../../src/runtime/model/decoder.js';
import { smallSpec } from '../../helpers/random-model.js';
import { recorder, shapeOnlyWeights } from './fixtures/decode-scratch.js';

const spec = smallSpec('step-scratch', [2, 4]);
const NEVER = spec.vocabSize - 1;
const PROMPT = 60;

function setup(arch: ArchName) {
  const { manifest } = generateModel(spec, { arches: [arch] });
  const d = recorder(arch);
  const weights = uploadWeights(d.device, spec, shapeOnlyWeights(spec), manifest);
  return { d, weights, manifest, ctx: { spec, manifest, kernelsDir: '/kernels', device: d.device, weights } };
}

/** A generation of `plan` on `runner` to its capacity (the recorder accepts one token a step); returns the peak bytes beyond what was live before. */
function generate(d: ReturnType<typeof recorder>, runner: GpuModelRunner, plan: GenerationPlan, temperature: number, beta: number): number {
  const before = d.bytes();
  d.peakSince();
  const dec = new Decoder(runner, { mode: plan.mode, draft: plan.draft, temperature, topP: 1, trustAr: beta, seed: 0 }, NEVER, NEVER);
  dec.prefill(Array.from({ length: PROMPT }, (_, i) => i + 3));
  const k = plan.mode === 'tidar' ? plan.draft : 0;
  while (runner.cache.length + 2 * k + 2 < runner.cache.shape.capacity) dec.step();
  return d.peakSince() - before;
}

const CASES = [['ar', 2, 0, 1], ['tidar', 2, 0, 1], ['tidar', 2, 0.8, 1], ['tidar', 4, 0, 0.5]] as const;

describe('the price is what the decode loop allocates', () => {
  test.each(['sm_90', 'sm_90a'] as const)('%s: new and reused runners, AR, k = 2 greedy and sampled, k = 4 with a mix', (arch) => {
    const { d, weights, manifest, ctx } = setup(arch);
    const capacity = 256;
    for (const [mode, draft, temperature, beta] of CASES) {
      const plan: GenerationPlan = { mode, draft, sampled: temperature > 0, mix: beta < 1, neverEmit: NEVER, promptTokens: PROMPT };
      const name = stepKindName(plan);
      const price = generationPrice(ctx, plan, capacity);
      const runner = new GpuModelRunner(spec, d.device, weights, '/kernels', manifest, capacity);
      // The runner's construction counts too (its K/V cache): measure from before it.
      const fresh = generationNeed(spec, price, capacity);
      const peak = generate(d, runner, plan, temperature, beta) + fresh.kvCache;
      expect(peak, name).toBe(fresh.total);
      expect(fresh.steps, name).toBeGreaterThan(0);
      expect(Object.fromEntries(runner.heldScratch()), name).toEqual(Object.fromEntries(price.steps));
      // Reused: the steps' scratch is held; the generation needs its prefill, and takes exactly that.
      runner.reset();
      const again = generationNeed(spec, price, capacity, { capacity, slots: runner.heldScratch() });
      expect(again.kvCache, name).toBe(0);
      expect(again.steps, name).toBe(0);
      expect(again.total, name).toBe(price.prefill);
      expect(generate(d, runner, plan, temperature, beta), name).toBe(price.prefill);
      runner.close();
    }
    // The sm_90a compile runs its layer GEMMs on the sm_90a kernels: their scratch is in the price.
    if (arch === 'sm_90a') expect([...generationPrice(ctx, { mode: 'tidar', draft: 4, sampled: false, mix: false, promptTokens: PROMPT }, capacity).steps.keys()].some((k) => k.startsWith('step sm_90a GEMM'))).toBe(manifest.gemmsSm90a!.some((u) => u.splitK > 1));
  }, 60_000);

  test('a generation that stops early meets fewer prefixes: the price (split-KV over every prefix to the capacity) is an upper bound', () => {
    const { d, weights, manifest, ctx } = setup('sm_90');
    const capacity = 1024;
    const plan: GenerationPlan = { mode: 'tidar', draft: 4, sampled: false, mix: false, neverEmit: NEVER, promptTokens: PROMPT };
    const runner = new GpuModelRunner(spec, d.device, weights, '/kernels', manifest, capacity);
    const before = d.bytes();
    d.peakSince();
    const dec = new Decoder(runner, { mode: 'tidar', draft: 4, temperature: 0, topP: 1, trustAr: 1, seed: 0 }, NEVER, NEVER);
    dec.prefill(Array.from({ length: PROMPT }, (_, i) => i + 3));
    for (let i = 0; i < 3; i++) dec.step();
    const peak = d.peakSince() - before;
    const price = generationPrice(ctx, plan, capacity);
    const need = generationNeed(spec, price, capacity);
    expect(peak).toBeLessThanOrEqual(need.total);
    // Only the split-KV slots may differ, each held at most at its price.
    const held = runner.heldScratch();
    for (const [slot, bytes] of price.steps) {
      if (slot.startsWith('step split-KV')) expect(held.get(slot) ?? 0, slot).toBeLessThanOrEqual(bytes);
      else expect(held.get(slot), slot).toBe(bytes);
    }
    runner.close();
  });

  test('a reused runner that ran another kind grows by the new kind only', () => {
    const { d, weights, manifest, ctx } = setup('sm_90');
    const runner = new GpuModelRunner(spec, d.device, weights, '/kernels', manifest, 256);
    const greedy: GenerationPlan = { mode: 'tidar', draft: 2, sampled: false, mix: false, neverEmit: NEVER, promptTokens: PROMPT };
    generate(d, runner, greedy, 0, 1);
    runner.reset();
    const sampled = { ...greedy, sampled: true };
    const need = generationNeed(spec, generationPrice(ctx, sampled, 256), 256, { capacity: 256, slots: runner.heldScratch() });
    // Its logits (2 rows x vocab, fp32) are what the greedy steps did not hold.
    expect(need.steps).toBe(2 * spec.vocabSize * 4);
    const held = d.bytes();
    const peak = generate(d, runner, sampled, 0.8, 1);
    expect(peak).toBe(need.total);
    expect(d.bytes() - held).toBe(need.steps);
    runner.close();
  });
});

describe('the decision', () => {
  const device = (freeBytes: number) => ({ name: 'test GPU', freeBytes, totalBytes: 80 * 2 ** 30 });
  const plan: GenerationPlan = { mode: 'tidar', draft: 4, sampled: true, mix: false, promptTokens: PROMPT };
  const need = { total: 3 * 2 ** 20, kvCache: 2 ** 20, prefill: 2 ** 20, steps: 2 * 2 ** 20 };

  test('fits: nothing; refused: one error with the step kind, the figures and what fits', () => {
    expect(() => checkGenerationFits(plan, 4096, need, device(need.total), () => ({}))).not.toThrow();
    expect(() => checkGenerationFits(plan, 4096, need, device(need.total - 2 ** 19), () => ({ draft: 2, capacity: 2048 }))).toThrow(
      'a tidar k=4 sampled generation on a 4096-token runner needs 3.0 MiB more on test GPU (K/V cache 1.0 MiB, prefill 1.0 MiB, decode steps 2.0 MiB: the larger of prefill and decode steps counts) and 2.5 MiB of 80.0 GiB is free; draft length 2 fits (--draft 2); a runner of 2048 tokens fits (shorten the prompt or --max-tokens)',
    );
    // One byte short: the bytes are named (the rounded figures are alike).
    expect(() => checkGenerationFits(plan, 4096, need, device(need.total - 1), () => ({}))).toThrow(`needs 3.0 MiB (${need.total} bytes) more`);
    expect(() => checkGenerationFits(plan, 4096, need, device(0), () => ({}))).toThrow(/ and 0 bytes of 80\.0 GiB is free; free device memory or run with --backend cpu \(draft = 4\)$/);
  });

  test('checkGeneration suggests the smaller draft length, the smaller capacity or AR that fits', () => {
    const { ctx } = setup('sm_90');
    const needOf = (p: GenerationPlan, c: number) => generationNeed(spec, generationPrice(ctx, p, c), c).total;
    const k4 = { ...plan, neverEmit: NEVER };
    const k2 = { ...k4, draft: 2 }, ar = { ...k4, mode: 'ar' as const };
    // Between k = 2's need and k = 4's at 512 tokens: k = 2 fits; AR too.
    expect(needOf(k2, 512)).toBeLessThan(needOf(k4, 512));
    const err = (free: number, c: number) => {
      try {
        checkGeneration(ctx, k4, c, undefined, device(free), 256);
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(err(needOf(k4, 512), 512)).toBe('');
    expect(err(needOf(k2, 512), 512)).toMatch(/is free; draft length 2 fits \(--draft 2\); a runner of 256 tokens fits \(shorten the prompt or --max-tokens\); AR decoding fits \(--mode ar\) \(draft = 4\)$/);
    // k = 4 at 256 tokens fits, k = 2 at 512 does not (the K/V cache of 256 more tokens): the smaller capacity only, then AR.
    const free = Math.max(needOf(k4, 256), needOf(ar, 512));
    expect(free).toBeLessThan(needOf(k2, 512));
    expect(err(free, 512)).toMatch(/is free; a runner of 256 tokens fits \(shorten the prompt or --max-tokens\); AR decoding fits \(--mode ar\) \(draft = 4\)$/);
    // Nothing fits: what to do.
    expect(err(needOf(ar, 256) - 1, 512)).toMatch(/is free; free device memory or run with --backend cpu \(draft = 4\)$/);
  });
});
