/**
 * generated/ holds the sources, manifest and bindings of the bundled examples (`npm run
 * generate`). Regenerating them must give byte-identical files: any codegen change shows
 * up as a reviewable diff, and output stays deterministic.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, test } from 'vitest';
import { STAMP_FILE } from '../../src/build/compile-model.js';
import { MARKER_FILE, markerText } from '../../src/fs/tidarc-dir.js';
import { DEFAULT_ARCHES } from '../../src/cli/commands/compile.js';
import { generateModel } from '../../src/codegen/generate.js';
import { packageRoot } from '../../src/util/paths.js';
import { parseModelJson } from '../../src/ir/model-validate.js';

const root = packageRoot();
const EXAMPLES = ['tiny', 'qwen3-8b', 'qwen2.5-1.5b'];

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path) : [path];
  });
}

describe.for(EXAMPLES)('generated/%s', (name) => {
  const spec = parseModelJson(readFileSync(join(root, 'examples', `${name}.json`), 'utf8'));
  const out = generateModel(spec, { arches: DEFAULT_ARCHES });
  const dir = join(root, 'generated', name);

  test('has exactly the files codegen produces', () => {
    const committed = listFiles(dir).map((p) => relative(dir, p)).filter((p) => p !== STAMP_FILE && p !== MARKER_FILE).sort();
    expect(committed).toEqual([...out.files.keys()].sort());
  });

  test('carries the compile-output marker, so `npm run generate` may replace it and nothing else may', () => {
    expect(readFileSync(join(dir, MARKER_FILE), 'utf8')).toBe(markerText('compile-output'));
  });

  test('every file is byte-identical to a fresh generation (run `npm run generate` after a codegen change)', () => {
    for (const [rel, text] of out.files) {
      expect(readFileSync(join(dir, rel), 'utf8'), rel).toBe(text);
    }
  });

  test('output is deterministic: LF only, no absolute paths, no timestamps', () => {
    for (const [rel, text] of out.files) {
      expect(text.includes('\r'), rel).toBe(false);
      expect(text.includes(root), rel).toBe(false);
      expect(/20\d\d-\d\d-\d\dT/.test(text), rel).toBe(false);
    }
  });
});
