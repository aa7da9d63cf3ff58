/**
 * Little's law for the cost models (src/codegen/in-flight-rate.ts): the HBM rate a launch pulls
 * from the bytes its CTAs keep in flight, capped by the copy rate.
 */
import { describe, expect, test } from 'vitest';
import { fillRate, pipelineBytesInFlight } from '../../src/codegen/in-flight-rate.js';
import { H200 } from '../../src/codegen/machine.js';

describe('fillRate', () => {
  test('one CTA on 132 SMs pulls its bytes in flight over the latency, far below the copy rate', () => {
    const f = fillRate(H200, { bytesPerCta: 40_960, ctas: 1, ctasPerSm: 3 });
    expect(f.activeSms).toBe(1);
    expect(f.ctasPerActiveSm).toBe(1);  // an SM holds 3, but the grid has 1
    expect(f.bytesPerS).toBeCloseTo(40_960 / H200.hbmLatencyS, 0);
    expect(f.bytesPerS).toBeLessThan(H200.copyBytesPerS / 50);
    expect(f.underFilled).toBe(true);
  });
  test('a grid that fills every SM with enough bytes in flight reaches the copy rate, no more', () => {
    const f = fillRate(H200, { bytesPerCta: 40_960, ctas: 264, ctasPerSm: 2 });
    expect(f.activeSms).toBe(132);
    expect(f.ctasPerActiveSm).toBe(2);
    expect(f.pulledBytesPerS).toBeCloseTo((264 * 40_960) / H200.hbmLatencyS, 0);
    expect(f.bytesPerS).toBe(H200.copyBytesPerS);
    expect(f.underFilled).toBe(false);
  });
  test('CTAs beyond what the SMs hold at once wait and pull nothing; fewer bytes in flight pull proportionally less', () => {
    const held = fillRate(H200, { bytesPerCta: 8192, ctas: 132, ctasPerSm: 1 });
    expect(fillRate(H200, { bytesPerCta: 8192, ctas: 1000, ctasPerSm: 1 }).pulledBytesPerS).toBe(held.pulledBytesPerS);
    expect(held.underFilled).toBe(true);  // 132 x 8 KB / 700 ns = 1.5 TB/s
    expect(fillRate(H200, { bytesPerCta: 4096, ctas: 132, ctasPerSm: 1 }).pulledBytesPerS).toBeCloseTo(held.pulledBytesPerS / 2, 0);
  });
  test('a pipeline of S stages has S - 1 of them loading', () => {
    expect(pipelineBytesInFlight(6, 8192)).toBe(5 * 8192);
    expect(pipelineBytesInFlight(1, 8192)).toBe(8192);
  });
});
