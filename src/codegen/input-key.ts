/**
 * The key of a compile's inputs: tidarc version, the ModelSpec, the variants asked for,
 * the targets (targets.ts) and the templates (recorded in manifest.json). With the same generator code
 * (generatorDigest, kept in the output's .tidarc-stamp, not in manifest.json because it
 * differs between the .ts sources and the compiled .js) equal keys give byte-identical
 * output, so a compile can tell "nothing to do" without loading the code generator.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelSpec } from '../ir/model.js';
import { sha256, sha256Hasher } from '../util/hash.js';
import { TIDARC_VERSION } from '../version.js';
import type { CallParams } from './call-params.js';
import type { GemmOverrides } from './gemm-plan.js';
import type { Backend } from './target.js';
import type { TargetName } from './targets.js';
import { templatesDigest } from './templates.js';

let generatorCode: string | undefined;

/**
 * sha256 over the generator's own code (this directory, ../ir and ../util, .ts or compiled .js):
 * a changed code generator must never be mistaken for an unchanged compile, even when
 * the version number did not move.
 */
export function generatorDigest(): string {
  if (generatorCode !== undefined) return generatorCode;
  const here = dirname(fileURLToPath(import.meta.url));
  const hash = sha256Hasher();
  for (const dir of [here, join(here, '..', 'ir'), join(here, '..', 'util')]) {
    for (const name of readdirSync(dir).filter((n) => /\.(ts|js)$/.test(n) && !n.endsWith('.d.ts')).sort()) {
      hash.update(`${name}\n`);
      hash.update(readFileSync(join(dir, name)));
    }
  }
  generatorCode = hash.digest();
  return generatorCode;
}

export function compileInputKey(spec: ModelSpec, drafts: readonly number[], targets: readonly TargetName[], tiles: TileOverrides = {}, gemms: GemmOverrides = {}, variants?: readonly string[]): string {
  const sortedDrafts = [...new Set(drafts)].sort((a, b) => a - b);
  const sortedTargets = [...new Set(targets)].sort();
  const sortedTiles = Object.fromEntries(Object.entries(tiles).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  // Untuned compiles keep the key they always had.
  const tuned = Object.keys(sortedTiles).length > 0 ? { tiles: sortedTiles } : {};
  const sortedGemms = Object.fromEntries(Object.entries(gemms).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const tunedGemms = Object.keys(sortedGemms).length > 0 ? { gemms: sortedGemms } : {};
  // A compile of every variant (no filter) keeps the key it always had.
  const picked = variants === undefined ? {} : { variants: [...new Set(variants)].sort() };
  return sha256(JSON.stringify({ version: TIDARC_VERSION, spec, drafts: sortedDrafts, targets: sortedTargets, templates: templatesDigest(), ...tuned, ...tunedGemms, ...picked }));
}

/** What `tidarc compile --tuned` sets for a variant: tidarc tune's tile, and its best call parameters per shape bucket. */
export interface VariantTuning {
  readonly warps: number;
  readonly tileN: number;
  /** Rows a row warp owns (16 or 32); absent: the planner's rule (plan.ts rowTileOf). */
  readonly warpRows?: 16 | 32;
  /** cp.async stages (2 or 3); absent: the planner's rule (plan.ts defaultStages). */
  readonly stages?: 2 | 3;
  /** Per shape bucket (`b1 L4096`), the split-KV count and CPU threads measured fastest with this tile. */
  readonly calls?: Readonly<Record<string, CallParams>>;
  /** Where the calls were measured: they apply to that backend only (`cpu` calls never set a GPU's splits). */
  readonly measuredOn?: { readonly backend: Backend; readonly device: string };
  /**
   * The kernel the search measured faster on a 9.0 device where the variant has an sm_90a one:
   * 'sm_90' keeps the tile's mma.sync kernel there, 'sm_90a' takes the sm_90a kernel (the calls
   * are then its split counts). Absent: the selection rule alone (sm_90a where compiled).
   */
  readonly kernel?: 'sm_90' | 'sm_90a';
}

/** Per variant name, the tuning that replaces the arch's default tile (and the per-call heuristic). */
export type TileOverrides = Readonly<Record<string, VariantTuning>>;
