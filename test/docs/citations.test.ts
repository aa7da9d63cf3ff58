/**
 * Issue 17 item 8: code comments, the training README and MODEL.md cited docs/tidar.md, which
 * was not in the repository (some as ../shared/docs/tidar.md, a path outside it). Every
 * citation of tidar.md is the repository's docs/tidar.md, every docs/<name>.md the repository
 * cites exists, and the page's mask table is what `tidarc mask` prints. Needs git.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runTidarc } from '../helpers/cli.js';

const repo = join(import.meta.dirname, '..', '..');
const TEXT = /\.(ts|mts|mjs|js|md|py|cpp|cc|h|cu|cuh|hbs|sh|txt)$/;
const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repo, encoding: 'utf8' })
  .split('\0')
  .filter((f) => TEXT.test(f) && !f.startsWith('test/docs/') && existsSync(join(repo, f)));

function citations(pattern: RegExp): { file: string; text: string }[] {
  return files.flatMap((file) => [...readFileSync(join(repo, file), 'utf8').matchAll(pattern)].map((m) => ({ file, text: m[0] })));
}

describe('docs/tidar.md', () => {
  test('is in the repository, with the decode step, its mask, acceptance and the KV-cache rule', () => {
    const page = readFileSync(join(repo, 'docs', 'tidar.md'), 'utf8');
    for (const heading of ['## The decode step', '### The mask', '### Acceptance', '## The KV-cache rule', '## Prefill', '## Where TiDAR pays off']) expect(page).toContain(heading);
  });

  test('every citation of tidar.md names the repository path docs/tidar.md', () => {
    const cited = citations(/(?:[\w./-]*\/)?tidar\.md/g);
    expect(cited.length).toBeGreaterThan(5);
    expect(cited.filter((c) => !/(^|[^\w.-])(\.\.\/)*docs\/tidar\.md$/.test(c.text) || c.text.includes('shared/'))).toEqual([]);
  });

  test('every docs/<name>.md cited inside the repository exists', () => {
    // ../shared/docs/<name>.md is the team's folder beside the repository, not part of it.
    const cited = citations(/(?<![\w-])(?:\.\.\/)*(?:shared\/)?docs\/[\w-]+\.md/g).filter((c) => !c.text.includes('shared/'));
    expect(cited.length).toBeGreaterThan(5);
    const missing = cited.filter((c) => !existsSync(join(repo, 'docs', c.text.replace(/^(\.\.\/)*docs\//, ''))));
    expect(missing).toEqual([]);
  });

  test('its mask table is what tidarc mask prints', async () => {
    const r = await runTidarc('mask', '--kind', 'tidar-decode', '--draft', '3', '--prefix', '3');
    const table = r.stdout.split('\n').slice(1).join('\n').trimEnd();
    expect(readFileSync(join(repo, 'docs', 'tidar.md'), 'utf8')).toContain(table);
  });
});
