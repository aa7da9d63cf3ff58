/**
 * `tidarc tune` with prefixes longer than the model's context: tuned (a kernel-library call may
 * take a longer prefix than run does, and the README's example relies on it), with one note line
 * saying so. It was silent: `--prefix 100000` on the 512-position tiny model tuned L = 131072 and
 * exited 0 without a word, and so did the default 1k,4k. Needs: g++ (the CPU library).
 */
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { prefixBeyondContextNote } from '../../src/cli/commands/tune.js';
import { findCxx } from '../../src/build/toolchain.js';
import { readModelInput } from '../../src/model/model-input.js';
import { runTidarc } from '../helpers/cli.js';
import { fileScratchWithOwnKernelCache } from '../helpers/scratch.js';

const cxx = await findCxx();
const dir = fileScratchWithOwnKernelCache('tidarc-tune-note-');

/** One tile, one split, one thread count, draft 4 only: a compile and a few timings. */
const SMALL = ['--draft', '4', '--warps', '4', '--tile-n', '64', '--splits', '1', '--threads', '1'];
const notes = (stdout: string): string[] => stdout.split('\n').filter((l) => l.startsWith('note: '));

test('the note: prefixes beyond the context only, the power-of-two bucket they are tuned as, where the context comes from', async () => {
  const { spec } = await readModelInput('models/tidar-tiny-code');
  expect(spec.maxPositionEmbeddings).toBe(512);
  expect(prefixBeyondContextNote(spec, [256, 512], false)).toBeUndefined();
  expect(prefixBeyondContextNote(spec, [256, 100000], false)).toBe(
    "note: prefix 100000 (tuned as L = 131072) is longer than tidar-tiny-code's context of 512 positions (max_position_embeddings): tuned anyway, for kernel-library calls with longer prefixes; run and bench-step stay within 512");
  expect(prefixBeyondContextNote(spec, [1024, 4096], true)).toMatch(/^note: prefixes 1024, 4096 \(--prefix's default\) are longer than tidar-tiny-code's context of 512 positions/);
  const { maxPositionEmbeddings: _, ...noMax } = spec;
  expect(prefixBeyondContextNote(noMax, [40000], false)).toMatch(/context of 32768 positions \(the qwen3 default: the model sets no max_position_embeddings\)/);
});

describe.skipIf(!cxx.found)('tidarc tune on the 512-position tiny model', () => {
  test('--prefix 600 is tuned as L1024 with one note; the default 1k,4k gets one too; --prefix 256 none', { timeout: 300_000 }, async () => {
    const db = join(dir, 'tune.json');
    const beyond = await runTidarc('tune', 'models/tidar-tiny-code', '--prefix', '600', '--db', db, ...SMALL);
    expect(beyond.code, beyond.stderr).toBe(0);
    expect(beyond.stderr).toBe('');
    expect(notes(beyond.stdout)).toEqual([expect.stringMatching(/^note: prefix 600 \(tuned as L = 1024\) is longer than tidar-tiny-code's context of 512 positions \(max_position_embeddings\): tuned anyway/)]);
    expect(beyond.stdout.split('\n')[0]).toMatch(/^note: /);  // before the tuning's lines
    expect(beyond.stdout).toContain(`2 shapes tuned, 0 already in ${db}`);

    const byDefault = await runTidarc('tune', 'models/tidar-tiny-code', '--db', db, ...SMALL);
    expect(byDefault.code, byDefault.stderr).toBe(0);
    expect(notes(byDefault.stdout)).toEqual([expect.stringMatching(/^note: prefixes 1024, 4096 \(--prefix's default\) are longer than tidar-tiny-code's context of 512 positions/)]);

    const within = await runTidarc('tune', 'models/tidar-tiny-code', '--prefix', '256', '--db', db, ...SMALL);
    expect(within.code, within.stderr).toBe(0);
    expect(notes(within.stdout)).toEqual([]);
  });
});
