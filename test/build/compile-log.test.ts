/**
 * What compile-model tells about its compiler runs, with stand-in compilers (no nvcc or g++
 * runs): each nvcc line names the arches that unit was built for (an sm_90a unit is built for
 * sm_90a alone), and a failed build keeps the previous compile's error log beside the new one.
 */
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { compileModel } from '../../src/build/compile-model.js';
import { TidarcError } from '../../src/errors.js';
import { modelForShape } from '../helpers/models.js';
import { scratchDir } from '../helpers/scratch.js';

function script(path: string, lines: readonly string[]): string {
  writeFileSync(path, ['#!/bin/sh', ...lines].join('\n'));
  chmodSync(path, 0o755);
  return path;
}

/** Runs `body` with $NVCC and $CXX set (undefined: a path that does not exist), restoring them after. */
async function withCompilers<T>(dir: string, nvcc: string | undefined, cxx: string | undefined, body: () => Promise<T>): Promise<T> {
  const saved = { NVCC: process.env['NVCC'], CXX: process.env['CXX'] };
  process.env['NVCC'] = nvcc ?? join(dir, 'no-such-nvcc');
  process.env['CXX'] = cxx ?? join(dir, 'no-such-cxx');
  try {
    return await body();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test('each nvcc line names the arches its unit was built for: sm_90a units sm_90a alone, the others sm_90 alone', async () => {
  const dir = await scratchDir('tidarc-compile-log-');
  // Writes the fatbin it is asked for and reports no kernels.
  const nvcc = script(join(dir, 'fake-nvcc'), [
    'if [ "$1" = "--version" ]; then echo "Cuda compilation tools, release 99.9, stand-in"; exit 0; fi',
    'prev=""; for a in "$@"; do if [ "$prev" = "-o" ]; then out="$a"; fi; prev="$a"; done',
    'echo stand-in > "$out"',
  ]);
  const lines: string[] = [];
  const spec = modelForShape({ dtype: 'bf16', headDim: 128, qHeads: 4, kvHeads: 1 }, [4]);
  const r = await withCompilers(dir, nvcc, undefined, () =>
    compileModel({ spec, arches: ['sm_90', 'sm_90a'], outDir: join(dir, 'out'), build: 'all', jobs: 2, log: (l) => lines.push(l) }));
  // The sm_90a units: the GEMMs' and the compute-bound variants' attention (tidar_k4 at G = 4).
  const units = [...(r.manifest.gemmsSm90a ?? []).map((g) => g.unit), ...r.manifest.variants.flatMap((v) => (v.sm90a ? [`${v.name}_sm90a`] : []))];
  expect(units.length).toBeGreaterThan(0);
  const built = new Map(lines.flatMap((l) => {
    const m = /^\[\d+\/\d+\] nvcc (\S+) \(([^)]*)\)/.exec(l);
    return m ? [[m[1]!, m[2]!] as const] : [];
  }));
  expect(built.size).toBe(r.manifest.variants.length + 1 + new Set((r.manifest.gemms ?? []).map((g) => g.unit)).size + units.length);
  // The ordinary units are built for sm_90 alone: its code runs on the sm_90a device too, so a second cubin would only double nvcc's time.
  for (const [unit, arches] of built) expect(arches, unit).toBe(units.includes(unit) ? 'sm_90a' : 'sm_90');
});

test('a failed build keeps the previous build error log (.build-error.previous.log) and appends a compile\'s later failures', async () => {
  const dir = await scratchDir('tidarc-compile-errlog-');
  // Fails every compile, naming $FAKE_RUN so that each compile's log can be told apart.
  const cxx = script(join(dir, 'fake-cxx'), [
    'if [ "$1" = "--version" ]; then echo "fake-c++ 1.0"; exit 0; fi',
    'echo "fake-c++: error in run $FAKE_RUN" >&2',
    'exit 1',
  ]);
  const out = join(dir, 'lib');
  const spec = modelForShape({ dtype: 'bf16', headDim: 64, qHeads: 2, kvHeads: 2 }, [2]);
  const failOnce = async (run: string): Promise<TidarcError> => {
    process.env['FAKE_RUN'] = run;
    try {
      const e = await withCompilers(dir, undefined, cxx, () => compileModel({ spec, targets: ['cpu'], outDir: out, build: 'all', jobs: 4, log: () => undefined }).then(() => undefined, (x: unknown) => x));
      expect(e).toBeInstanceOf(TidarcError);
      return e as TidarcError;
    } finally {
      delete process.env['FAKE_RUN'];
    }
  };
  expect((await failOnce('one')).message).toMatch(/error in run one \(full output in .*lib\.build-error\.log\)$/);
  const first = readFileSync(`${out}.build-error.log`, 'utf8');
  expect(first).toContain('error in run one');
  expect((await failOnce('two')).message).toContain('error in run two');
  expect(readdirSync(dir).filter((f) => f.startsWith('lib')).sort()).toEqual(['lib.build-error.log', 'lib.build-error.previous.log']);
  expect(readFileSync(`${out}.build-error.previous.log`, 'utf8')).toBe(first);
  const second = readFileSync(`${out}.build-error.log`, 'utf8');
  expect(second).not.toContain('run one');
  // Four compiles in flight fail together: every one's output is in the log, none overwritten.
  expect(second.match(/failed on cpu\//g)?.length).toBeGreaterThan(1);
});
