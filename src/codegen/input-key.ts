/**
 * The key of a compile's inputs: tidarc version, the ModelSpec, the variants asked for,
 * the arches and the templates. Equal keys give byte-identical output, so a compile can
 * tell "nothing to do" without loading the code generator (ts-morph alone takes ~0.8 s).
 */
import { createHash } from 'node:crypto';
import type { ModelSpec } from '../ir/model.js';
import { TIDARC_VERSION } from '../version.js';
import type { ArchName } from './arch.js';
import { templatesDigest } from './templates.js';

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function compileInputKey(spec: ModelSpec, drafts: readonly number[], arches: readonly ArchName[]): string {
  const sortedDrafts = [...new Set(drafts)].sort((a, b) => a - b);
  const uniqueArches = [...new Set(arches)];
  return sha256(JSON.stringify({ generator: TIDARC_VERSION, spec, drafts: sortedDrafts, arches: uniqueArches, templates: templatesDigest() }));
}
