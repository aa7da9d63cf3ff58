/** `tidarc tune --report` over a database holding CPU and GPU entries. */
import { describe, expect, test } from 'vitest';
import type { TuneDb, TuneEntry, TuneMeta } from '../../src/tune/db.js';
import { tuneReport } from '../../src/tune/report.js';

const CPU: TuneMeta = { tidarc: '0.1.0', compiler: 'g++ 12.2.0', backend: 'cpu', device: 'AMD EPYC x 2' };
const H200: TuneMeta = { tidarc: '0.1.0', compiler: 'nvcc 13.0', backend: 'cuda', device: 'NVIDIA H200 x 132 SMs', driver: '580.1' };
const t = (us: number) => ({ medianUs: us, p20Us: us, p80Us: us });
const entry = (variant: string, meta: TuneMeta, heuristicUs: number): TuneEntry => ({
  variant, bucket: 'b1 L4096', best: { warps: 2, tileN: 32, splits: 4 }, bestTiming: t(100), heuristic: { warps: 4, tileN: 64, splits: 2 }, heuristicTiming: t(heuristicUs),
  timed: 30, rejected: [], meta, date: '2026-11-29',
});
const db: TuneDb = { format: 1, entries: {
  'ar bf16 d128 q32/kv8 | b1 L4096': entry('ar bf16 d128 q32/kv8', H200, 105),
  'tidar_k4 bf16 d128 q32/kv8 | b1 L4096': entry('tidar_k4 bf16 d128 q32/kv8', H200, 150),
  'tidar_k4 bf16 d64 q4/kv2 | b1 L4096': entry('tidar_k4 bf16 d64 q4/kv2', { ...CPU, device: 'another CPU x 64' }, 100),
} };

describe('tune --report', () => {
  test('GPU entries read on a machine without that GPU are shown as recorded; the CPU ones are checked against this CPU', () => {
    const text = tuneReport(db, { cpu: CPU });
    expect(text).toContain('heuristic within 10% of the tuned best on 1 of 2 cuda shapes (50%; goal 90%)');
    expect(text).toContain('heuristic within 10% of the tuned best on 0 of 0 cpu shapes');
    expect(text).toMatch(/\| tidar_k4 bf16 d64 q4\/kv2 \| b1 L4096 .* \(stale: device was another CPU x 64, is AMD EPYC x 2\) \|/);
    expect(text).toMatch(/\| tidar_k4 bf16 d128 q32\/kv8 \| b1 L4096 \| w4-n64-s2 \| 150\.0 \| w2-n32-s4 \| 100\.0 \| 1\.50x \|/);
  });
});
