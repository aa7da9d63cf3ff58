/**
 * Issue 17 item 6: a checkpoint whose config.json has no "tidar" object (a plain Hugging Face
 * checkpoint, here with a byte vocabulary, which has no default mask token) runs in AR mode,
 * which feeds no mask token; TiDAR mode asks for one with --mask-token (loadModel's
 * maskTokenId), which is checked like the config's own. Before, every mode stopped at
 * "missing mask token id" and run had no flag to give it.
 * Needs: g++ and the native addon (the CPU kernels compile on first use).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadModel } from '../../src/load/load-model.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { expectOneErrorLine, runTidarc } from '../helpers/cli.js';
import { smallSpec, writeRandomModel } from '../helpers/random-model.js';

const root = mkdtempSync(join(tmpdir(), 'tidarc-mask-token-'));
let dir: string;

beforeAll(async () => {
  process.env['TIDARC_CACHE'] = join(root, 'cache');
  dir = await writeRandomModel(root, smallSpec('plain', [2], { maxPositionEmbeddings: 256 }), 5);
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  delete config['tidar'];
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}, 120_000);

afterAll(() => {
  delete process.env['TIDARC_CACHE'];
  rmSync(root, { recursive: true, force: true });
});

describe('a checkpoint without a "tidar" object', () => {
  test('loads with no mask token', async () => {
    const ckpt = await loadCheckpoint(dir);
    expect(ckpt.maskTokenId).toBeUndefined();
    expect((await loadCheckpoint(dir, { maskTokenId: 259 })).maskTokenId).toBe(259);
  });

  test('tidarc run --mode ar generates', async () => {
    const r = await runTidarc('run', dir, '--prompt', 'def ', '--mode', 'ar', '--max-tokens', '6', '--ignore-eos', '--json', '--threads', '1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ mode: 'ar', backend: 'cpu', nfe: 6 });
  }, 300_000);

  test('tidarc run in TiDAR mode asks for --mask-token before compiling anything', async () => {
    const t0 = performance.now();
    const tidar = await runTidarc('run', dir, '--prompt', 'def ', '--max-tokens', '6');
    expectOneErrorLine(tidar, 'TiDAR mode feeds a mask token and this checkpoint names none', '(--mask-token)', 'or --mode ar');
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  test.for([
    [['--mask-token', '256'], ['(--mask-token = 256)', 'eos']],
    [['--mask-token', '9999'], ['--mask-token = 9999', 'from 0 to 259']],
    [['--mask-token', 'x'], ['--mask-token = x']],
  ] as const)('a bad --mask-token %s is one error naming it', async ([flags, pieces]) => {
    const r = await runTidarc('run', dir, '--prompt', 'def ', '--max-tokens', '6', ...flags);
    expectOneErrorLine(r, ...pieces);
  });

  test('tidarc run --mask-token 259 decodes with TiDAR, token for token as AR', async () => {
    const tidar = await runTidarc('run', dir, '--prompt', 'def ', '--mask-token', '259', '--draft', '16', '--max-tokens', '20', '--ignore-eos', '--json', '--threads', '1');
    expect(tidar.stderr).toBe('');
    expect(tidar.code).toBe(0);
    // The same mask token for AR: it is never emitted, so AR's target distribution leaves it out too.
    const ar = await runTidarc('run', dir, '--prompt', 'def ', '--mode', 'ar', '--mask-token', '259', '--max-tokens', '20', '--ignore-eos', '--json', '--threads', '1');
    const [t, a] = [tidar, ar].map((r) => JSON.parse(r.stdout) as { tokens: number[]; mode: string });
    expect(t!.mode).toBe('tidar');
    expect(t!.tokens).toEqual(a!.tokens);
  }, 300_000);

  test('loadModel: generate in TiDAR mode without maskTokenId is one error naming it; AR runs', async () => {
    const model = await loadModel(dir, { backend: 'cpu', threads: 1 });
    try {
      await expect(model.generate({ prompt: 'def ', maxTokens: 4, mode: 'tidar' })).rejects.toMatchObject({
        name: 'TidarcError', code: 'invalid-argument', message: expect.stringMatching(/names none .*\(maskTokenId\); allowed: .*maskTokenId.*'ar'/),
      });
      expect((await model.generate({ prompt: 'def ', maxTokens: 4, mode: 'ar', stopAtEos: false })).tokens).toHaveLength(4);
    } finally {
      model.close();
    }
  }, 300_000);
});
