/**
 * src/build/sass.ts, the cuobjdump edge, with a stand-in tool (no CUDA needed): TIDARC_CUOBJDUMP
 * is taken first and its release line reported; a missing tool is an error that names where to get
 * one (the triton wheel's pip command); dumpSass passes the binary to `-sass` and returns what the
 * tool printed, which parseSass reads.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { dumpSass, findCuobjdump } from '../../src/build/sass.js';
import { parseSass } from '../../src/codegen/sass-mix.js';
import { packageRoot } from '../../src/util/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'tidarc-sass-tool-'));
const saved = process.env['TIDARC_CUOBJDUMP'];
afterEach(() => {
  if (saved === undefined) delete process.env['TIDARC_CUOBJDUMP'];
  else process.env['TIDARC_CUOBJDUMP'] = saved;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fixture = join(packageRoot(), 'test', 'fixtures', 'sass-attention-loop.sass');

describe('findCuobjdump and dumpSass', () => {
  test('TIDARC_CUOBJDUMP first: its release line; -sass on the binary returns what it printed', async () => {
    const tool = join(dir, 'cuobjdump');
    writeFileSync(tool, [
      '#!/bin/sh',
      'if [ "$1" = "--version" ]; then echo "cuobjdump: NVIDIA (R) fat binary listing tool"; echo "Cuda compilation tools, release 99.9, stand-in"; exit 0; fi',
      `if [ "$1" = "-sass" ] && [ "$2" = "${join(dir, 'k.cubin')}" ]; then cat "${fixture}"; exit 0; fi`,
      'echo "bad arguments: $*" >&2; exit 1',
    ].join('\n'));
    chmodSync(tool, 0o755);
    process.env['TIDARC_CUOBJDUMP'] = tool;
    const found = await findCuobjdump();
    expect(found).toEqual({ found: true, tool: { path: tool, version: 'Cuda compilation tools, release 99.9, stand-in' } });
    const text = await dumpSass(tool, join(dir, 'k.cubin'));
    expect(text).toBe(readFileSync(fixture, 'utf8'));
    expect(parseSass(text)[0]!.name).toBe('tidarc_attn_tidar_k16_bf16_d128_q32_kv8');
  });

  test('none found: an error naming the tool tried and the pip command that gets one', async () => {
    process.env['TIDARC_CUOBJDUMP'] = join(dir, 'no-such-cuobjdump');
    const found = await findCuobjdump();
    expect(found.found).toBe(false);
    if (!found.found) {
      expect(found.reason).toContain(`${join(dir, 'no-such-cuobjdump')}: not found`);
      expect(found.reason).toContain('python3 -m pip download --no-deps triton');
    }
  });
});
