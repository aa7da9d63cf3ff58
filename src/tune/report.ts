/**
 * What a tuning database says, for people and for the compiler. Pure.
 *   - tuneReport: per shape, the heuristic default against the tuned best, and the share of
 *     shapes where the heuristic is within 10% of the best (issue 6's goal: 90%); then the GEMM
 *     entries of the device check's search, per unit and M;
 *   - tuneSvg: the same as bars;
 *   - tunedTiles: the tile each variant of a model compiles with under `compile --tuned`.
 */
import { type ArchName, type TileConfig, parseTileKey, tileKey } from '../codegen/arch.js';
import type { CallParams } from '../codegen/call-params.js';
import type { TileOverrides, VariantTuning } from '../codegen/input-key.js';
import type { ModelSpec } from '../ir/model.js';
import { type GemmTuneEntry, type TileBest, type TuneDb, type TuneEntry, type TuneMeta, staleness, variantKey } from './db.js';
import { type GemmTile, gemmTileName } from '../codegen/gemm-plan.js';
import { parseVariantName, variantSteps } from '../codegen/variant-name.js';
import { variantsForModel } from '../codegen/variant.js';
import type { MaskKind } from '../ir/mask.js';
import { sm90aKernelOf } from '../codegen/attention-kernel-choice.js';
import { asMeasuredOnCuda, configKey, infeasible, type TuneShape } from './space.js';
import { chooseGemmKernel, gemmSpaceProblem } from './gemm-space.js';

/** The heuristic counts as good on a shape when within this factor of the tuned best. */
export const HEURISTIC_SLACK = 1.1;

export interface ReportRow {
  readonly variant: string;
  readonly bucket: string;
  readonly heuristic: string;
  readonly heuristicUs: number;
  readonly best: string;
  readonly bestUs: number;
  /** heuristic time / best time (1 = the heuristic is the best). */
  readonly ratio: number;
  readonly backend: TuneMeta['backend'];
  readonly stale: string | null;
}

/**
 * The database's rows; `meta` is this machine's, per backend: an entry of a backend with a meta
 * is checked against it (stale ones are marked, not counted); one without (a GPU's entries read
 * on a machine without it) is shown as recorded.
 */
export function reportRows(db: TuneDb, meta: Partial<Record<TuneMeta['backend'], TuneMeta>> = {}): ReportRow[] {
  return Object.values(db.entries).map((e) => ({
    variant: e.variant, bucket: e.bucket,
    heuristic: configKey(e.heuristic), heuristicUs: e.heuristicTiming.medianUs,
    best: configKey(e.best), bestUs: e.bestTiming.medianUs,
    ratio: e.heuristicTiming.medianUs / e.bestTiming.medianUs,
    backend: e.meta.backend,
    stale: meta[e.meta.backend] ? staleness(e.meta, meta[e.meta.backend]!) : null,
  }));
}

export function tuneReport(db: TuneDb, meta: Partial<Record<TuneMeta['backend'], TuneMeta>> = {}): string {
  const rows = reportRows(db, meta);
  const gemms = gemmReportLines(db, meta.cuda);
  if (rows.length === 0 && gemms.length === 0) return 'the tuning database is empty\n';
  if (rows.length === 0) return `${gemms.join('\n')}\n`;
  const lines = ['| variant | shape | heuristic | us | tuned best | us | heuristic / best |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.variant} | ${r.bucket} | ${r.heuristic} | ${r.heuristicUs.toFixed(1)} | ${r.best} | ${r.bestUs.toFixed(1)} | ${r.ratio.toFixed(2)}x${r.stale ? ` (stale: ${r.stale})` : ''} |`);
  lines.push('');
  for (const backend of ['cpu', 'cuda'] as const) {
    const all = rows.filter((r) => r.backend === backend);
    if (all.length === 0) continue;
    const fresh = all.filter((r) => !r.stale);
    const good = fresh.filter((r) => r.ratio <= HEURISTIC_SLACK).length;
    const stale = all.length - fresh.length;
    lines.push(`heuristic within ${Math.round((HEURISTIC_SLACK - 1) * 100)}% of the tuned best on ${good} of ${fresh.length} ${backend} shapes (${fresh.length ? ((100 * good) / fresh.length).toFixed(0) : 0}%; goal 90%)${stale ? `; ${stale} stale, not counted` : ''}`);
  }
  const sm90a = Object.values(db.entries).filter((e) => e.sm90a);
  if (sm90a.length > 0) {
    lines.push('', 'The sm_90a attention kernel (TMA + wgmma) where the search timed it, against the tuned best:');
    for (const e of sm90a) lines.push(`- ${e.variant} | ${e.bucket}: ${e.sm90a!.medianUs.toFixed(1)} us at ${e.sm90a!.splits} splits vs ${e.bestTiming.medianUs.toFixed(1)} us: ${e.sm90a!.medianUs < e.bestTiming.medianUs ? 'sm_90a' : 'the tile'} is faster`);
  }
  if (gemms.length > 0) lines.push('', ...gemms);
  return `${lines.join('\n')}\n`;
}

/**
 * The GEMM entries (the device check's search): per unit and step row count, what runs without
 * the record against what runs with it, with their times (gemmRunRows: on a raced entry, the
 * 9.0 device's untuned family and split-K against the winner's kernel); then, for the entries
 * whose search raced the two kernel families on a 9.0 device, both families per weight shape
 * (each at the split-K the rule picks for it, summed over the row counts, and per M) and the
 * winner that every M runs.
 * Empty when there are none.
 */
function gemmReportLines(db: TuneDb, meta?: TuneMeta): string[] {
  const all = Object.values(db.gemms ?? {});
  if (all.length === 0) return [];
  // Records of an older search space are one line, not rows: their tiles and splits are not what compile --tuned would use.
  const old = all.filter((e) => gemmSpaceProblem(e) !== null);
  const oldLine = old.length === 0 ? [] : [`${old.length} GEMM record${old.length > 1 ? 's' : ''} ${gemmSpaceProblem(old[0]!)}, ignored by compile --tuned: ${old.map((e) => `${e.unit} (${e.arch}, split-K ${e.splitK})`).join(', ')}`];
  const entries = all.filter((e) => gemmSpaceProblem(e) === null);
  if (entries.length === 0) return oldLine;
  const lines = ['| GEMM | arch | M | heuristic | us | tuned | us | heuristic / tuned |', '|---|---|---|---|---|---|---|---|'];
  for (const e of entries) {
    const stale = meta ? staleness(e.meta, meta) : null;
    for (const r of gemmRunRows(e)) {
      const ratio = r.heuristic && r.tuned ? `${(r.heuristic.us / r.tuned.us).toFixed(2)}x` : '-';
      lines.push(`| ${e.unit} | ${e.arch} | ${r.m} | ${r.heuristic?.what ?? `${r.heuristicWhat}: not timed`} | ${r.heuristic?.us.toFixed(1) ?? '-'} | ${r.tuned?.what ?? 'not timed'} | ${r.tuned?.us.toFixed(1) ?? '-'} | ${ratio}${stale ? ` (stale: ${stale})` : ''} |`);
    }
  }
  const raced = entries.filter((e) => e.kernel !== undefined);
  if (raced.length > 0) {
    lines.push('', 'The kernel families on a 9.0 device (mma.sync against TMA + wgmma), each at the split-K the rule picks for it; one family and split-K run every M of a weight shape:');
    for (const e of raced) lines.push(...familyLines(e));
  }
  return oldLine.length > 0 ? [...lines, '', ...oldLine] : lines;
}

/** One run of a GEMM at one M: what it launched, in words, and its time. */
interface GemmRun {
  readonly what: string;
  readonly us: number;
}

const runWords = (kernel: string | undefined, splitK: number, r: { readonly tile?: GemmTile; readonly tileT?: number }): string =>
  `split-K ${splitK} ${kernel === 'sm_90a' ? `sm_90a t${r.tileT}` : gemmTileName(r.tile!)}`;

/**
 * Per M of a GEMM entry, what a user runs without the record (the heuristic) and with it (tuned).
 * A raced entry (a 9.0 device) compares what that device runs: the heuristic of a compile that
 * builds sm_90a (heuristicSm90a: its family and split-K, which may differ from the sm_90
 * compile's heuristicSplitK) against the record's family and split-K (the sm_90a kernel's time
 * where it won); a raced entry without heuristicSm90a keeps the sm_90 compile's heuristic, and says so.
 * Otherwise the sm_90 compile's mma.sync heuristic against the tuned tile, at the split-K it was
 * timed at (a row's own heuristicSplitK where the search fell back from the heuristic's); a row
 * without one (no heuristic tile timed at that M) has no heuristic side, printed 'not timed'.
 */
export function gemmRunRows(e: GemmTuneEntry): { m: string; heuristicWhat: string; heuristic?: GemmRun; tuned?: GemmRun }[] {
  const tuned: Record<string, GemmRun> = e.kernel === 'sm_90a'
    ? Object.fromEntries(Object.entries(e.sm90a?.rows ?? {}).map(([m, r]) => [m, { what: runWords('sm_90a', e.splitK, r), us: r.timing.medianUs }]))
    : Object.fromEntries(Object.entries(e.rows).map(([m, r]) => [m, { what: runWords('sm_90', e.splitK, { tile: r.best }), us: r.bestTiming.medianUs }]));
  const h = e.heuristicSm90a;
  const heuristicWhat = h ? `split-K ${h.splitK} ${h.kernel === 'sm_90a' ? 'sm_90a' : 'mma.sync'} (${h.arches.join('+')})` : `split-K ${e.heuristicSplitK}`;
  const heuristic: Record<string, GemmRun> = h
    ? Object.fromEntries(Object.entries(h.rows).map(([m, r]) => [m, { what: `${runWords(h.kernel, h.splitK, r)} (${h.arches.join('+')})`, us: r.timing.medianUs }]))
    : Object.fromEntries(Object.entries(e.rows).flatMap(([m, r]) => (r.heuristic && r.heuristicTiming
      ? [[m, { what: `${runWords('sm_90', r.heuristicSplitK ?? e.heuristicSplitK, { tile: r.heuristic })}${e.kernel ? ' (sm_90)' : ''}`, us: r.heuristicTiming.medianUs }]] : [])));
  const ms = [...new Set([...Object.keys(tuned), ...Object.keys(heuristic)])].sort((a, b) => Number(a) - Number(b));
  return ms.map((m) => ({ m, heuristicWhat, ...(heuristic[m] ? { heuristic: heuristic[m] } : {}), ...(tuned[m] ? { tuned: tuned[m] } : {}) }));
}

/**
 * One raced entry: both families, each at the split-K the rule picks for it (the winner's own;
 * the other family's by the same rule over its own times: sm90a.splitK, chooseGemmKernel of
 * mma.sync alone over splitRowsUs, as gemm_tune.py's gemm_entry picks sm90a.splitK, so a split-K
 * the budget cut short is never named against complete ones) with its time summed over M, the
 * winner, then per M both times at those split-Ks.
 */
function familyLines(e: GemmTuneEntry): string[] {
  const at = (totals: Readonly<Record<string, number>> | undefined, splitK: number | undefined): string => {
    if (!totals || Object.keys(totals).length === 0 || splitK === undefined) return 'not timed';
    const us = totals[String(splitK)];
    return us === undefined ? `not timed at split-K ${splitK}` : `${us.toFixed(1)} us at split-K ${splitK}`;
  };
  const rowsUs = e.splitRowsUs;
  const mmaSplit = e.kernel !== 'sm_90a' || !rowsUs ? e.splitK
    : chooseGemmKernel(new Map([['sm_90' as const, new Map(Object.entries(rowsUs).map(([s, ms]) => [Number(s), new Map(Object.entries(ms).map(([m, us]) => [Number(m), us]))]))]]))?.splitK;
  const sm90a = e.sm90a ? at(e.sm90a.splitTotalsUs, e.sm90a.splitK) : 'not raced (the shape has no sm_90a kernel)';
  const head = `- ${e.unit} (${e.arch}): mma.sync ${at(e.splitTotalsUs, mmaSplit)}, sm_90a ${sm90a} (summed over M); winner: ${e.kernel === 'sm_90a' ? 'sm_90a' : 'mma.sync'} at split-K ${e.splitK}`;
  // Per M, each family at the heading's split-K (the times its sum adds up): mma.sync's tiles are recorded at the entry's
  // split-K only, so at another (sm_90a won) its best time there from splitRowsUs.
  const mmaRows: Record<string, string> = mmaSplit === e.splitK
    ? Object.fromEntries(Object.entries(e.rows).map(([m, r]) => [m, `${r.bestTiming.medianUs.toFixed(1)} us (${gemmTileName(r.best)}, split-K ${e.splitK})`]))
    : Object.fromEntries(Object.entries((mmaSplit === undefined ? undefined : rowsUs?.[String(mmaSplit)]) ?? {}).map(([m, us]) => [m, `${us.toFixed(1)} us (split-K ${mmaSplit})`]));
  const ms = [...new Set([...Object.keys(mmaRows), ...Object.keys(e.sm90a?.rows ?? {})])].sort((a, b) => Number(a) - Number(b));
  const perM = ms.map((m) => {
    const w = e.sm90a?.rows[m];
    return `M=${m} mma.sync ${mmaRows[m] ?? '-'} / sm_90a ${w ? `${w.timing.medianUs.toFixed(1)} us (t${w.tileT}, split-K ${e.sm90a!.splitK})` : '-'}`;
  });
  return [head, ...(perM.length > 0 ? [`  ${perM.join('; ')}`] : [])];
}

export function tuneSvg(db: TuneDb): string {
  const rows = reportRows(db);
  const w = 900, left = 330, bar = 10, group = 2 * bar + 8;
  const height = 44 + group * rows.length;
  const max = Math.max(1, ...rows.flatMap((r) => [r.heuristicUs, r.bestUs]));
  const x = (us: number): number => ((w - left - 60) * us) / max;
  const esc = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${height}" font-family="sans-serif" font-size="11">`,
    '<text x="10" y="16" font-size="13">attention call, microseconds: heuristic default (grey) and tuned best (green)</text>'];
  rows.forEach((r, i) => {
    const y = 32 + i * group;
    parts.push(`<text x="10" y="${y + bar + 4}">${esc(`${r.variant} | ${r.bucket}`)}</text>`,
      `<rect x="${left}" y="${y}" width="${x(r.heuristicUs).toFixed(1)}" height="${bar - 1}" fill="#999"/>`,
      `<text x="${(left + x(r.heuristicUs) + 4).toFixed(1)}" y="${y + bar - 1}" font-size="9">${r.heuristicUs.toFixed(0)} ${esc(r.heuristic)}</text>`,
      `<rect x="${left}" y="${y + bar}" width="${x(r.bestUs).toFixed(1)}" height="${bar - 1}" fill="#1b9e77"/>`,
      `<text x="${(left + x(r.bestUs) + 4).toFixed(1)}" y="${y + 2 * bar - 1}" font-size="9">${r.bestUs.toFixed(0)} ${esc(r.best)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/**
 * What each of the model's variants compiles with under `--tuned`: one tile (warps, tileN, and
 * from CUDA entries the rows a warp and the stages: an older entry without them timed 16 and 2) for
 * all its shapes, and per shape bucket the call parameters (splits, threads) measured fastest
 * with that tile. Among the database's fresh entries for the variant (same kernel: mask, dtype,
 * head dim, heads):
 *   - entries that time every tile (byTile): the tile with the least total slowdown against each
 *     shape's tuned best (geometric mean), among the tiles every shape timed (leastSlowdown). A
 *     shape's tuned best is the entry's `best`, what `tidarc tune` reports: on the CPU the winner
 *     of the finalists' re-timing, which byTile's first-pass times need not rank first. One shape,
 *     or shapes that agree on their best, give exactly that tile, and a shape whose best is the
 *     chosen tile gets the best's own call parameters;
 *   - older entries: the tile that wins the most shapes (ties: the one winning the largest prefix).
 * A variant tuned on both backends takes its CUDA entries (the tile matters most on the GPU);
 * the call parameters say which backend they were measured on and apply to that backend only.
 * The CUDA and CPU kernels share one plan, so a tile that static pruning refuses for one of the
 * compile's CUDA arches (shared memory, S fragments on the stack, a 32-row tile ptxas spilled for
 * the variant's mask kind: attention-registers.ts) is not a candidate, even when
 * the CPU tuned it; with none left the variant keeps the arch's tile and `skipped` says why.
 */
export function tunedTiles(db: TuneDb, spec: ModelSpec, variantNames: readonly string[], arches: readonly ArchName[], meta?: TuneMeta): { tiles: TileOverrides; used: Record<string, string>; skipped: string[] } {
  const tiles: Record<string, VariantTuning> = {};
  const used: Record<string, string> = {};
  const skipped: string[] = [];
  const kinds = maskKinds(spec, variantNames);
  for (const name of variantNames) {
    // The variant's rows decide how a tile's warps share it (plan.ts rowTileOf), so what the arches refuse; its mask kind
    // which 32-row tiles ptxas spilled (attention-registers.ts).
    const kind = kinds.get(name);
    const shape: TuneShape = { headDim: spec.headDim, rows: variantSteps(name) * (spec.queryHeads / spec.kvHeads), kvHeads: spec.kvHeads, batch: 1, prefix: 1, ...(kind ? { maskKind: kind } : {}) };
    const problem = (t: Tile): string | undefined =>
      arches.map((a) => infeasible({ ...t, splits: 1 }, shape, 'cuda', a)).find((p) => p !== null) ?? undefined;
    const key = variantKey({ variant: name, dtype: spec.dtype, headDim: spec.headDim, qHeads: spec.queryHeads, kvHeads: spec.kvHeads });
    const fresh = Object.values(db.entries).filter((e: TuneEntry) => e.variant === key && (!meta || staleness(e.meta, meta) === null));
    const backend = fresh.some((e) => e.meta.backend === 'cuda') ? 'cuda' : 'cpu';
    const entries = fresh.filter((e) => e.meta.backend === backend).map((e) => (backend === 'cuda' ? measuredOnCuda(e) : e));
    if (entries.length === 0) continue;
    const pick = entries.every((e) => e.byTile) ? leastSlowdown(entries, problem) : mostWins(entries, problem);
    if (typeof pick === 'string') {
      skipped.push(`${name}: ${pick}; kept the default`);
      continue;
    }
    const tileCalls: Record<string, TileBest> = {};
    for (const e of entries) {
      // The shape's tuned best where it is the chosen tile (its splits and threads won the re-timing), else the tile's fastest first-pass call.
      const b = tileName(e.best) === tileName(pick.tile) ? { splits: e.best.splits, ...(e.best.threads === undefined ? {} : { threads: e.best.threads }), medianUs: e.bestTiming.medianUs } : e.byTile?.[tileName(pick.tile)];
      if (b) tileCalls[e.bucket] = b;
    }
    // A compile with sm_90a: the variant's sm_90a kernel against the chosen tile, where the search timed both.
    const kernel = backend === 'cuda' && arches.includes('sm_90a') ? sm90aChoice(entries, tileCalls) : undefined;
    const chosen = kernel?.kernel === 'sm_90a' ? Object.fromEntries(entries.flatMap((e) => (e.sm90a ? [[e.bucket, e.sm90a] as const] : []))) : tileCalls;
    const calls: Record<string, CallParams> = Object.fromEntries(Object.entries(chosen).map(([bucket, b]) => [bucket, { splits: b.splits, ...(b.threads === undefined ? {} : { threads: b.threads }) }]));
    const device = [...new Set(entries.map((e) => e.meta.device))].join('; ');
    const { warps, tileN, warpRows, stages } = pick.tile;
    tiles[name] = {
      warps, tileN, ...(warpRows === undefined ? {} : { warpRows }), ...(stages === undefined ? {} : { stages }), calls, measuredOn: { backend, device },
      ...(kernel ? { kernel: kernel.kernel } : {}),
    };
    used[name] = `${tileName(pick.tile)} (${pick.why}); ${kernel ? `${kernel.why}; ` : ''}${backend} call parameters for ${count(Object.keys(calls).length, 'shape bucket')}`;
  }
  return { tiles, used, skipped };
}

/** The mask kind of each named variant the model compiles (variantsForModel at the names' draft lengths); a name it does not make has none. */
function maskKinds(spec: ModelSpec, names: readonly string[]): Map<string, MaskKind> {
  const drafts = names.flatMap((n) => {
    const key = parseVariantName(n);
    return key?.kind === 'tidar' || key?.kind === 'block' ? [key.draft] : [];
  });
  return new Map(variantsForModel(spec, drafts.length ? drafts : spec.draftLengths).map((v) => [v.name, v.mask.kind] as const));
}

/**
 * Which kernel a 9.0 device runs for the variant: its sm_90a one where, over the buckets that
 * timed both, its time against the chosen tile's is below 1 on geometric mean (one kernel for
 * every shape: the runtime selects per variant, not per call); undefined where none timed both.
 */
function sm90aChoice(entries: readonly TuneEntry[], tile: Readonly<Record<string, TileBest>>): { kernel: 'sm_90' | 'sm_90a'; why: string } | undefined {
  const both = entries.filter((e) => e.sm90a && tile[e.bucket]);
  if (both.length === 0) return undefined;
  // The compile's cost-model choice applies the same rule to predicted times (attention-kernel-choice.ts).
  const { kernel, ratio } = sm90aKernelOf(both.map((e) => e.sm90a!.medianUs / tile[e.bucket]!.medianUs));
  return { kernel, why: `${ratio < 1 ? 'the sm_90a kernel' : 'the mma.sync tile'} on a 9.0 device (sm_90a / tile time ${ratio.toFixed(2)} on geometric mean over ${count(both.length, 'shape')})` };
}

/** A tuned tile: warps and keys, and on CUDA the rows a warp and the stages it was timed with. */
type Tile = TileConfig & { readonly warps: number };
const tileName = (t: Tile): string => tileKey(t);
const tileOf = (name: string): Tile => parseTileKey(name)!;
const tileOfConfig = (c: Tile): Tile => ({ warps: c.warps, tileN: c.tileN, ...(c.warpRows === undefined ? {} : { warpRows: c.warpRows }), ...(c.stages === undefined ? {} : { stages: c.stages }) });

/** A CUDA entry with its tiles as measured (asMeasuredOnCuda): an older entry's `w4-n64` is `w4r16-n64p2`. */
function measuredOnCuda(e: TuneEntry): TuneEntry {
  return {
    ...e, best: asMeasuredOnCuda(e.best), heuristic: asMeasuredOnCuda(e.heuristic),
    ...(e.byTile ? { byTile: Object.fromEntries(Object.entries(e.byTile).map(([k, b]) => [tileKey(asMeasuredOnCuda(tileOf(k))), b])) } : {}),
  };
}

/** `1 shape`, `2 shapes`. */
const count = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

/**
 * The tile of least geometric-mean slowdown against each shape's tuned best (`best`, what `tidarc
 * tune` reports), among the tiles every shape timed and the compile's arches can run. On a shape
 * the best's tile has none; another tile's is its first-pass time (byTile) against the best tile's
 * first-pass time (one pass, the same moments of the machine), and none below that: on the CPU
 * the best won the re-timing of the first pass's fastest few (tune-cpu.ts searchShape), so a tile
 * the first pass timed faster lost it. Ties go to the tile that is the best of more shapes, then
 * to byTile's order. (A CUDA entry's best is byTile's fastest: the same as against the fastest tile.)
 */
function leastSlowdown(entries: readonly TuneEntry[], problem: (t: Tile) => string | undefined): { tile: Tile; why: string } | string {
  const names = Object.keys(entries[0]!.byTile!).filter((t) => entries.every((e) => e.byTile![t]));
  const fit = names.filter((t) => !problem(tileOf(t)));
  if (fit.length === 0) return `no tile timed for every shape can run on the CUDA arches of this compile${names[0] ? ` (${tileName(tileOf(names[0]))}: ${problem(tileOf(names[0]))})` : ''}`;
  const against = (e: TuneEntry, t: string): number => {
    const bestTile = tileName(e.best);
    if (t === bestTile) return 0;
    // An entry whose byTile lacks its best's tile (a hand-edited file): against its fastest tile, as before the re-timing counted.
    const ref = e.byTile![bestTile]?.medianUs ?? Math.min(...Object.values(e.byTile!).map((b) => b.medianUs));
    return Math.max(0, Math.log(e.byTile![t]!.medianUs / ref));
  };
  const slowdown = (t: string): number => entries.reduce((sum, e) => sum + against(e, t), 0) / entries.length;
  const wins = (t: string): number => entries.filter((e) => tileName(e.best) === t).length;
  const best = fit.reduce((a, b) => (slowdown(b) < slowdown(a) || (slowdown(b) === slowdown(a) && wins(b) > wins(a)) ? b : a));
  // Said as what it is: where the tile is not a shape's best, its slowdown is of first-pass times, floored at 0, so a
  // tile that lost every shape's re-timing can read 0%: the count of shapes it won says so.
  const won = wins(best);
  if (won === entries.length) return { tile: tileOf(best), why: `tune's best over ${count(entries.length, 'shape')}` };
  return { tile: tileOf(best), why: `${((Math.exp(slowdown(best)) - 1) * 100).toFixed(0)}% slower than each shape's tuned best on geometric mean of first-pass times, over ${count(entries.length, 'shape')}; tune's best in ${won}` };
}

function mostWins(entries: readonly TuneEntry[], problem: (t: Tile) => string | undefined): { tile: Tile; why: string } | string {
  const wins = new Map<string, { tile: Tile; count: number; maxPrefix: number }>();
  for (const e of entries) {
    const L = Number(/L(\d+)/.exec(e.bucket)?.[1] ?? 0);
    const w = wins.get(tileName(e.best)) ?? { tile: tileOfConfig(e.best), count: 0, maxPrefix: 0 };
    wins.set(tileName(e.best), { ...w, count: w.count + 1, maxPrefix: Math.max(w.maxPrefix, L) });
  }
  const pick = [...wins.values()].sort((a, b) => b.count - a.count || b.maxPrefix - a.maxPrefix)[0]!;
  const p = problem(pick.tile);
  return p ? `tuned tile ${tileName(pick.tile)} cannot run on the CUDA arches of this compile (${p})` : { tile: pick.tile, why: `best in ${pick.count} of ${entries.length} shapes` };
}
