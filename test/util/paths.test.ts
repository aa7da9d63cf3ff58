import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';
import { TidarcError } from '../../src/errors.js';
import { packageRoot } from '../../src/util/paths.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-paths-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test('packageRoot finds the tidarc package from src/ and from here', () => {
  expect(packageRoot()).toBe(root);
  expect(packageRoot(here)).toBe(root);
});

test("packageRoot skips a nearer package.json that is not tidarc's (runtime/ has its own)", () => {
  expect(packageRoot(join(root, 'runtime', 'src'))).toBe(root);
  const vendored = join(scratch, 'app', 'node_modules', 'tidarc', 'dist', 'src', 'util');
  mkdirSync(vendored, { recursive: true });
  writeFileSync(join(scratch, 'app', 'package.json'), '{"name":"app"}');
  writeFileSync(join(scratch, 'app', 'node_modules', 'tidarc', 'package.json'), '{"name":"tidarc"}');
  writeFileSync(join(scratch, 'app', 'node_modules', 'tidarc', 'dist', 'package.json'), '{not json');
  expect(packageRoot(vendored)).toBe(join(scratch, 'app', 'node_modules', 'tidarc'));
});

test('packageRoot outside any tidarc package is one error, not the nearest package.json', () => {
  const other = join(scratch, 'other', 'lib');
  mkdirSync(other, { recursive: true });
  writeFileSync(join(scratch, 'other', 'package.json'), '{"name":"other"}');
  expect(() => packageRoot(other)).toThrow(TidarcError);
  expect(() => packageRoot(other)).toThrow(/cannot locate the tidarc package root/);
});
