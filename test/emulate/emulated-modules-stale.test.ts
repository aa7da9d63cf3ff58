// A kernel cache entry's emulated modules are rebuilt when the emulator they were built against
// changed: the cache key covers the model and the templates, not runtime/emu's headers, the
// compiler or the emulator flags, so a stamp beside the modules does. Needs nothing.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { MODULES_STAMP, dropStaleModules } from '../../src/emulate/emulated-modules.js';
import { emulatedModuleKey } from '../../src/emulate/emulated-driver.js';
import { findCxx } from '../../src/build/toolchain.js';
import { scratchDir } from '../helpers/scratch.js';

describe('dropStaleModules', () => {
  test('keeps modules built under the same key; removes them when the key differs or no stamp says', async () => {
    const dir = await scratchDir('tidarc-emu-stale-');
    const modules = ['ar.emu.so', 'tidarc_ops.emu.so'];
    const make = () => { for (const m of modules) writeFileSync(join(dir, m), 'x'); };
    make();
    writeFileSync(join(dir, 'ar.cu'), 'source');
    writeFileSync(join(dir, MODULES_STAMP), 'k1\n');
    expect(await dropStaleModules(dir, 'k1')).toBe(false);
    expect(modules.every((m) => existsSync(join(dir, m)))).toBe(true);
    expect(await dropStaleModules(dir, 'k2')).toBe(true);
    expect(modules.some((m) => existsSync(join(dir, m)))).toBe(false);
    expect(existsSync(join(dir, 'ar.cu'))).toBe(true);
    make();
    writeFileSync(join(dir, MODULES_STAMP), '');
    expect(await dropStaleModules(dir, 'k1')).toBe(true);
  });
});

const cxx = await findCxx();
describe.skipIf(!cxx.found)('emulatedModuleKey (needs g++)', () => {
  test('is stable for the same emulator, compiler and flags', async () => {
    const a = await emulatedModuleKey();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(await emulatedModuleKey()).toBe(a);
  });
});
