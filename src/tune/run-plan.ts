/**
 * How long parts of a tuning run take, and which tiles a budget can afford: the cost model
 * behind `tidarc tune --budget` and its ETA. Pure: times come in as measurements.
 *
 * A configuration costs what the protocol of tune-cpu.ts calls it: a correctness call, a
 * warm-up call, then MIN_REPS calls or as many as fill MIN_TIME_MS (at least MIN_CALLS); the
 * confirmation times the CONFIRM_TOP fastest and the heuristic again, CONFIRM_ROUNDS rounds of a
 * tenth of that. A shape adds its fixed part (input sets, the float64 reference), measured.
 * Tiles compile in parallel batches of one per core, each batch about as long as one compile.
 */
import { tileKey as archTileKey } from '../codegen/arch.js';
import type { AttentionConfig } from './space.js';

export interface Protocol {
  readonly minReps: number;
  readonly minTimeMs: number;
  readonly minCalls: number;
  readonly confirmTop: number;
  readonly confirmRounds: number;
}

export interface Tile {
  readonly warps: number;
  readonly tileN: number;
}

/** arch.ts tileKey: the CPU's tiles have neither rows a warp nor stages (`w4-n64`). */
export const tileKey = (t: Tile): string => archTileKey(t);

/** Timed calls of one sweep over a configuration whose call takes callMs. */
function sweepCalls(callMs: number, reps: number, timeMs: number, minCalls: number): number {
  return Math.max(minCalls, Math.min(reps, Math.ceil(timeMs / Math.max(callMs, 1e-6))));
}

/** Milliseconds a shape's search takes: its fixed part, `configs` configurations, the confirmation. */
export function shapeMs(p: { readonly callMs: number; readonly fixedMs: number; readonly configs: number }, protocol: Protocol): number {
  const sweep = (2 + sweepCalls(p.callMs, protocol.minReps, protocol.minTimeMs, protocol.minCalls)) * p.callMs;
  const round = sweepCalls(p.callMs, protocol.minReps / protocol.confirmRounds, protocol.minTimeMs / protocol.confirmRounds, protocol.minCalls) * p.callMs;
  const finalists = Math.min(protocol.confirmTop + 1, p.configs);
  return p.fixedMs + p.configs * sweep + finalists * protocol.confirmRounds * round;
}

/**
 * The order in which tiles are compiled: the default tile first (the heuristic's, always
 * needed), then the tiles most of the shapes still to tune can use, nearest the default first.
 */
export function tileOrder(shapes: readonly (readonly AttentionConfig[])[], defaultTile: Tile): Tile[] {
  const uses = new Map<string, { tile: Tile; shapes: number }>();
  for (const candidates of shapes) {
    for (const key of new Set(candidates.map(tileKey))) {
      const c = candidates.find((x) => tileKey(x) === key)!;
      const u = uses.get(key) ?? { tile: { warps: c.warps, tileN: c.tileN }, shapes: 0 };
      uses.set(key, { ...u, shapes: u.shapes + 1 });
    }
  }
  const distance = (t: Tile): number => Math.abs(Math.log2(t.warps / defaultTile.warps)) + Math.abs(Math.log2(t.tileN / defaultTile.tileN));
  return [...uses.values()]
    .sort((a, b) => (tileKey(a.tile) === tileKey(defaultTile) ? -1 : tileKey(b.tile) === tileKey(defaultTile) ? 1 : 0) || b.shapes - a.shapes || distance(a.tile) - distance(b.tile) || (tileKey(a.tile) < tileKey(b.tile) ? -1 : 1))
    .map((u) => u.tile);
}

/**
 * The tiles to compile for a shape within `leftMs`: whole batches of `cores` new tiles, in
 * order, while the compiles and the shape's search over the tiles then at hand fit.
 */
export function affordableTiles(p: {
  readonly needed: readonly Tile[];
  readonly configsOn: (tiles: readonly Tile[]) => number;
  readonly compiledTiles: readonly Tile[];
  readonly cores: number;
  readonly batchMs: number;
  readonly searchMs: (configs: number) => number;
  readonly leftMs: number;
}): Tile[] {
  let chosen: Tile[] = [];
  for (let i = 0; i < p.needed.length; i += p.cores) {
    const next = [...chosen, ...p.needed.slice(i, i + p.cores)];
    const cost = Math.ceil(next.length / p.cores) * p.batchMs + p.searchMs(p.configsOn([...p.compiledTiles, ...next]));
    if (cost > p.leftMs) break;
    chosen = next;
  }
  return chosen;
}
