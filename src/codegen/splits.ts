/**
 * Split-KV heuristic (FA2/FA3's rule): when the work items of a launch cannot fill the machine,
 * split the prefix. The machine runs `sms * ctasPerSm` work items at once (the kernel's real
 * residency, src/codegen/occupancy.ts; 1 a SM when unknown, which under-fills a GPU whose SMs
 * hold 2 or 3). Wave efficiency of s splits = work / (waves * slots); take the fewest splits
 * whose efficiency is within 85% of the best, so the last wave is not a tail. Only split counts
 * that leave no split empty are eligible: the kernel gives each split ceil(tiles / s) tiles, so
 * e.g. 64 tiles in 15 splits are 13 splits of 5 and 2 idle CTAs (FA2's is_split_eligible).
 */
export function chooseSplits(workItems: number, sms: number, prefixTiles: number, maxSplits = 64, ctasPerSm = 1): number {
  const slots = sms * Math.max(1, Math.floor(ctasPerSm));
  const limit = Math.max(1, Math.min(maxSplits, prefixTiles));
  if (workItems >= 0.8 * slots || limit === 1) return 1;
  const perSplit = (s: number): number => Math.ceil(prefixTiles / s);
  const eligible = (s: number): boolean => s === 1 || perSplit(s) !== perSplit(s - 1);
  const efficiency = (s: number): number => {
    const work = workItems * s;
    return work / (Math.ceil(work / slots) * slots);
  };
  let best = 0;
  for (let s = 1; s <= limit; s++) if (eligible(s)) best = Math.max(best, efficiency(s));
  for (let s = 1; s <= limit; s++) if (eligible(s) && efficiency(s) >= 0.85 * best) return s;
  return 1;
}
