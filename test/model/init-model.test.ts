// Needs: nothing (writes small random checkpoints into temp directories).
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelSpecFile } from '../../src/ir/model-file.js';
import { parameterCount } from '../../src/model/checkpoint.js';
import { initModel, type InitProgress } from '../../src/model/init-model.js';
import { readSafetensors } from '../../src/model/safetensors.js';
import { decode } from '../../src/util/dtype.js';

const TINY = await loadModelSpecFile('examples/tiny.json');
const FILES = ['config.json', 'model.safetensors', 'tokenizer.json'];

/** Temp directories of this file, removed when it is done (checkpoints are megabytes). */
const temps: string[] = [];
afterAll(() => Promise.all(temps.map((d) => rm(d, { recursive: true, force: true }))));

async function tempRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tidarc-init-'));
  temps.push(dir);
  return dir;
}

async function bytesOf(dir: string): Promise<Buffer[]> {
  return Promise.all(FILES.map((f) => readFile(join(dir, f))));
}

describe('initModel', () => {
  it('writes config.json, model.safetensors and tokenizer.json and reports them', async () => {
    const root = await tempRoot();
    const progress: InitProgress[] = [];
    const r = await initModel({ spec: TINY, outDir: join(root, 'tiny'), seed: 3, onProgress: (p) => void progress.push(p) });
    expect(await readdir(root)).toEqual(['tiny']); // no staging directory left
    expect((await readdir(join(root, 'tiny'))).sort()).toEqual(['.tidarc-output', ...FILES]); // and the marker that lets a rerun replace it
    expect(r.parameters).toBe(parameterCount(TINY));
    expect(r.files.map((f) => f.name)).toEqual(FILES);
    expect(r.totalBytes).toBe(r.files.reduce((s, f) => s + f.bytes, 0));
    expect(progress.length).toBe(24);
    expect(progress.at(-1)).toMatchObject({ tensorsDone: 24, tensorCount: 24, bytesWritten: r.files[1]!.bytes, totalBytes: r.files[1]!.bytes });
    const config = JSON.parse(await readFile(join(root, 'tiny', 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ model_type: 'qwen3', torch_dtype: 'bfloat16', eos_token_id: 256, tidar: { mask_token_id: 259, draft_lengths: [2, 4], name: 'tiny' } });
    expect((await readSafetensors(join(root, 'tiny', 'model.safetensors'))).metadata).toEqual({ format: 'pt' });
  });

  it('same seed, byte-identical files; another seed, other weights', async () => {
    const root = await tempRoot();
    await initModel({ spec: TINY, outDir: join(root, 'a'), seed: 7 });
    await initModel({ spec: TINY, outDir: join(root, 'b'), seed: 7 });
    await initModel({ spec: TINY, outDir: join(root, 'c'), seed: 8 });
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((d) => bytesOf(join(root, d))));
    a!.forEach((buf, i) => expect(buf.equals(b![i]!)).toBe(true));
    expect(a![1]!.equals(c![1]!)).toBe(false);
    expect(a![0]!.equals(c![0]!)).toBe(true); // config does not depend on the seed
  });

  it('draws N(0, std^2) for weights and 1 for norms, in the model dtype', async () => {
    const root = await tempRoot();
    await initModel({ spec: { ...TINY, dtype: 'fp16' }, outDir: join(root, 'm'), seed: 1, std: 0.05 });
    const file = await readSafetensors(join(root, 'm', 'model.safetensors'));
    const w = file.tensor('model.layers.0.mlp.gate_proj.weight');
    expect(w.dtype).toBe('F16');
    const values = decode('fp16', w.data as Uint16Array);
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    const std = Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length);
    expect(Math.abs(mean)).toBeLessThan(0.002);
    expect(std).toBeGreaterThan(0.049);
    expect(std).toBeLessThan(0.051);
    expect(Array.from(decode('fp16', file.tensor('model.norm.weight').data as Uint16Array)).every((v) => v === 1)).toBe(true);
    // Each tensor has its own stream: two projections of the same shape differ.
    const up = file.tensor('model.layers.0.mlp.up_proj.weight').data;
    expect(Buffer.from(up.buffer, up.byteOffset, up.byteLength).equals(Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength))).toBe(false);
  });

  it('normStd: norm weights 1 + N(0, normStd^2), seeded per tensor; 0 gives exact ones', async () => {
    const root = await tempRoot();
    const spec = { ...TINY, hiddenSize: 512 }; // 512-element hidden norms: a tighter spread estimate
    await initModel({ spec, outDir: join(root, 'ones'), seed: 4, normStd: 0 });
    await initModel({ spec, outDir: join(root, 'a'), seed: 4, normStd: 0.2 });
    await initModel({ spec, outDir: join(root, 'b'), seed: 4, normStd: 0.2 });
    await initModel({ spec, outDir: join(root, 'c'), seed: 5, normStd: 0.2 });
    const [ones, a, b, c] = await Promise.all(['ones', 'a', 'b', 'c'].map((d) => readSafetensors(join(root, d, 'model.safetensors'))));
    const norms = ones!.names().filter((n) => n.endsWith('norm.weight'));
    // input/post-attention per layer, q_norm and k_norm per layer (Qwen3), the final norm.
    expect(norms.length).toBe(4 * spec.layers + 1);
    const values = (f: typeof a, name: string): Float32Array => decode('bf16', f!.tensor(name).data as Uint16Array);
    for (const n of norms) expect(Array.from(values(ones, n)).every((v) => v === 1)).toBe(true);
    // The other tensors do not depend on normStd.
    const w = 'model.layers.1.mlp.down_proj.weight';
    expect(Array.from(values(a, w))).toEqual(Array.from(values(ones, w)));
    const seen = new Set<string>();
    for (const n of norms) {
      const v = values(a, n);
      expect(Array.from(v)).toEqual(Array.from(values(b, n))); // same seed, same weights
      expect(Array.from(v)).not.toEqual(Array.from(values(c, n))); // another seed, others
      const key = Array.from(v).join(',');
      expect(seen.has(key)).toBe(false); // every norm tensor its own draw (q_norm and k_norm too)
      seen.add(key);
      expect(new Set(v).size).toBeGreaterThan(v.length / 4); // elements differ
      if (v.length >= 512) {
        const mean = v.reduce((s, x) => s + x, 0) / v.length;
        const sd = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
        // 512 draws: the mean is within 4 standard errors (0.2 / sqrt(512) = 0.009) of 1, the sd within 15% of 0.2.
        expect(Math.abs(mean - 1)).toBeLessThan(0.036);
        expect(sd).toBeGreaterThan(0.17);
        expect(sd).toBeLessThan(0.23);
      }
    }
  });

  it('replaces an earlier model directory but not a foreign one', async () => {
    const root = await tempRoot();
    const out = join(root, 'm');
    await initModel({ spec: TINY, outDir: out, seed: 1 });
    await writeFile(join(out, 'stale.txt'), 'x');
    await initModel({ spec: TINY, outDir: out, seed: 2 });
    expect((await readdir(out)).sort()).toEqual(['.tidarc-output', ...FILES]);
    const foreign = join(root, 'photos');
    await mkdir(foreign);
    await writeFile(join(foreign, 'cat.jpg'), 'x');
    await expect(initModel({ spec: TINY, outDir: foreign, seed: 1 })).rejects.toThrow(/is not empty and was not written by tidarc.*\(outDir = .*photos\)/);
    expect(await readdir(foreign)).toEqual(['cat.jpg']);
  });

  it.each([
    [{ seed: -1 }, /\(seed = -1\); allowed: an integer from 0 to 4294967295/],
    [{ seed: 1.5 }, /\(seed = 1\.5\)/],
    [{ seed: 1, std: -0.1 }, /\(std = -0\.1\); allowed: a number from 0 to 10/],
    [{ seed: 1, std: Number.NaN }, /\(std = NaN\)/],
    [{ seed: 1, normStd: -0.1 }, /\(normStd = -0\.1\); allowed: a number from 0 to 10/],
    [{ seed: 1, normStd: Number.POSITIVE_INFINITY }, /\(normStd = Infinity\)/],
    [{ seed: 1, normStd: 11 }, /\(normStd = 11\)/],
  ])('refuses %j', async (opts, pattern) => {
    await expect(initModel({ spec: TINY, outDir: join(await tempRoot(), 'm'), ...opts })).rejects.toThrow(pattern);
  });

  it('refuses a vocabulary the byte tokenizer cannot lay out', async () => {
    await expect(initModel({ spec: { ...TINY, maskTokenId: 100 }, outDir: join(await tempRoot(), 'm'), seed: 1 })).rejects.toThrow(/maskTokenId = 100/);
  });
});
