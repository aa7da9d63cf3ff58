/**
 * The attention launch's grid: ONE rule for every launcher (the runtime's AttentionLauncher, the
 * emulator harnesses, the device check through tidarc_abi.py, rendered from here by abi-render.ts).
 * With one split, (row tiles, batch x KV heads, 1): blockIdx names the CTA's row group. With S > 1,
 * (G + 1, 1, S) for G = row tiles x batch x KV heads row groups: G S compute items and S merge-only
 * CTAs, whose roles come from a dynamic id (templates/cuda/tidarc_attention.cuh split_work), so
 * that each CTA waits only on CTAs that started before it; every CTA merges a slice of the
 * previous row group's partials (merge_split_slice), the last S the last group's. The split
 * counters it needs, one id counter and one count per row group, fit in the splitCounters array
 * (abi-fields.ts: S x rows >= 2 rows >= G + 1).
 */
export type AttentionGrid = readonly [number, number, number];

export function attentionGrid(rowTiles: number, batchKvHeads: number, splits: number): AttentionGrid {
  return splits === 1 ? [rowTiles, batchKvHeads, 1] : [rowTiles * batchKvHeads + 1, 1, splits];
}

/** The rule as the manifest states it (launch.grid: one expression per dimension). */
export const ATTENTION_GRID_TEXT: readonly string[] = [
  'splits == 1 ? rowTiles : rowTiles * batch * kvHeads + 1',
  'splits == 1 ? batch * kvHeads : 1',
  'splits',
];
