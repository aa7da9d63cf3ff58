/**
 * The device check's e2e part (scripts/device-check/e2e.py) prints what it measures beside what
 * the step cost model predicted (issue 16: "predicted before"): the bundle carries
 * e2e_predictions.json, the predictions for the very models the part builds (e2e_cost.py
 * gpu_models / dry_models; test/bench/device-check-e2e.test.ts checks the specs are equal) at its
 * prefixes, every step kind, on the H200 with assumed registers (no ptxas in prepare's path), on the
 * kernels `tidarc bench-step` takes there (the kernel cache builds sm_90 and sm_90a for a 9.0 device);
 * and the same on each machine of predicted-machines.ts under `byMachine` (the check takes its GPU's).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_PREDICTED, byMachine } from './predicted-machines.js';
import type { ModelSpec } from '../ir/model.js';
import { SM90A_RECORDED_REGISTERS, type StepRegisters } from './step-cost-model.js';
import { type E2ePredictions, e2ePredictions, qwen3Shape } from './step-report.js';

/** e2e_cost.py EIGHT_B_LAYERS: the 8B shape keeps this many of its 36 layers. */
export const E2E_EIGHT_B_LAYERS = 4;
export const E2E_PREDICTIONS = 'e2e_predictions.json';

/** e2e_cost.py gpu_models() and dry_models(), as specs. */
export function e2eModels(dry: boolean): { specs: ModelSpec[]; prefixes: number[] } {
  if (dry) {
    return { specs: [{ ...qwen3Shape('e2e-tiny', 2, 128, 4, 2, 64, 256, 260, [2], true), maskTokenId: 259, maxPositionEmbeddings: 4096, ropeTheta: 10000 }], prefixes: [16] };
  }
  return {
    specs: [qwen3Shape('qwen3-0.6b-shape', 28, 1024, 16, 8, 128, 3072, 151936, [4, 8, 16], true),
      qwen3Shape(`qwen3-8b-shape-${E2E_EIGHT_B_LAYERS}l`, E2E_EIGHT_B_LAYERS, 4096, 32, 8, 128, 12288, 151936, [4, 8, 16], false)],
    prefixes: [1024, 4096],
  };
}

/** Without ptxas: at most 128 registers for a GEMM (what ptxas reports for them at sm_90), 255 for attention (its worst). */
export const E2E_REGISTERS: StepRegisters = { gemm: () => 128, attention: () => 255, sm90a: SM90A_RECORDED_REGISTERS, source: 'assumed: 128 a GEMM thread, 255 an attention thread, the sm_90a kernels as ptxas reported (prepare runs no ptxas for this)' };

/** e2e_predictions.json: the H200's predictions, and every machine's (the H200's again among them) by key. */
export type E2eBundlePredictions = E2ePredictions & { readonly byMachine: Readonly<Record<string, Pick<E2ePredictions, 'machine' | 'models'>>> };

export async function writeE2ePredictions(outDir: string, dry: boolean): Promise<E2eBundlePredictions> {
  const { specs, prefixes } = e2eModels(dry);
  const each = byMachine((machine) => e2ePredictions(specs, prefixes, machine, E2E_REGISTERS, 'sm_90a'));
  // The record's own fields are the default machine's (the H200, the one the planner plans for): computed once, above.
  const p: E2eBundlePredictions = {
    ...each[DEFAULT_PREDICTED.key]!,
    byMachine: Object.fromEntries(Object.entries(each).map(([key, q]) => [key, { machine: q.machine, models: q.models }])),
  };
  await writeFile(join(outDir, E2E_PREDICTIONS), `${JSON.stringify(p, null, 1)}\n`);
  return p;
}
