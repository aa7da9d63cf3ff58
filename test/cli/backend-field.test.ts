/**
 * `tidarc run` and `tidarc bench-step --backend cuda` where CUDA cannot run: the error names the option as the user typed
 * it, `(--backend = cuda)`, as --mask-token and --draft are named (it read `(backend = cuda)`, the
 * loader's field). The library keeps its own name: loadModel / chooseBackend say `backend`.
 * Needs: the native addon (its CUDA status); skipped where CUDA is usable (a GPU, or the emulated
 * driver via TIDARC_LIBCUDA).
 */
import { describe, expect, test } from 'vitest';
import { chooseBackend } from '../../src/load/model-parts.js';
import { loadNative } from '../../src/runtime/native.js';
import { expectOneErrorLine, runTidarc, withoutDebugEnv } from '../helpers/cli.js';

withoutDebugEnv();
const cudaUsable = loadNative().cudaStatus().available;

describe.skipIf(cudaUsable)('--backend cuda without usable CUDA', () => {
  test('tidarc run: one error line naming --backend, not the loader\'s field', async () => {
    const r = await runTidarc('run', 'models/tidar-tiny-code', '--prompt', 'def ', '--backend', 'cuda');
    expectOneErrorLine(r, 'the cuda backend cannot run here: ', '(--backend = cuda); allowed: auto, cpu');
    expect(r.stderr).not.toContain('(backend = cuda)');
  });

  test('tidarc bench-step: the same', async () => {
    const r = await runTidarc('bench-step', 'models/tidar-tiny-code', '--prefix', '16', '--backend', 'cuda');
    expectOneErrorLine(r, 'the cuda backend cannot run here: ', '(--backend = cuda); allowed: auto, cpu');
  });

  test('the library names its own option: chooseBackend(\'cuda\') says backend, or the field it is given', async () => {
    await expect(chooseBackend('cuda')).rejects.toThrow(/\(backend = cuda\); allowed: auto, cpu$/);
    await expect(chooseBackend('cuda', '--backend')).rejects.toThrow(/\(--backend = cuda\); allowed: auto, cpu$/);
  });
});
