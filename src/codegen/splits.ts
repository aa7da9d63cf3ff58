/**
 * Split-KV heuristic (FA3's rule): when the work items of a launch cannot fill the machine,
 * split the prefix. Wave efficiency of s splits = work / (waves * slots); take the fewest
 * splits whose efficiency is within 85% of the best, never more splits than prefix tiles.
 */
export function chooseSplits(workItems: number, slots: number, prefixTiles: number, maxSplits = 64): number {
  const limit = Math.max(1, Math.min(maxSplits, prefixTiles));
  if (workItems >= 0.8 * slots || limit === 1) return 1;
  const efficiency = (s: number): number => {
    const work = workItems * s;
    return work / (Math.ceil(work / slots) * slots);
  };
  let best = 0;
  for (let s = 1; s <= limit; s++) best = Math.max(best, efficiency(s));
  for (let s = 1; s <= limit; s++) if (efficiency(s) >= 0.85 * best) return s;
  return 1;
}
