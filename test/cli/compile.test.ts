/**
 * `tidarc compile` end to end through the CLI edge: what it writes, deterministic output,
 * "up to date" without touching the directory, one-line errors, and atomic replacement of
 * an earlier output when a later compile fails (in generation or in the C++ build).
 * Needs: nothing (the build failure uses a fake C++ compiler; nvcc is pointed at nothing).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Run, runTidarc, withoutDebugEnv } from '../helpers/cli.js';


const run = (...argv: string[]): Promise<Run> => runTidarc('compile', ...argv);

/** Every file under `dir`, relative, sorted. */
function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(dir, join(prefix, e.name)) : [join(prefix, e.name)]))
    .sort();
}

function readAll(dir: string): Map<string, Buffer> {
  return new Map(listFiles(dir).map((f) => [f, readFileSync(join(dir, f))]));
}

/** mtime of every file and directory under `dir` (including `dir` itself). */
function mtimes(dir: string): Map<string, number> {
  const paths = ['.', ...listFiles(dir), 'cpu', 'cuda'];
  return new Map(paths.map((p) => [p, statSync(join(dir, p)).mtimeMs]));
}

/** Leftovers of staging (`DIR.tmp-PID`) or swapping (`DIR.old-PID`) next to the outputs. */
function leftovers(parent: string): string[] {
  return readdirSync(parent).filter((f) => /\.(tmp|old)-\d+$/.test(f));
}

const scratch = mkdtempSync(join(tmpdir(), 'tidarc-cli-compile-'));
withoutDebugEnv();  // a stack trace on stderr is what some of these tests rule out
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const TINY_VARIANTS = ['tidar_k2', 'tidar_k4', 'block_k2', 'block_k4', 'ar', 'prefill_c64'];

describe('compile --no-build of the bundled model', () => {
  const first = join(scratch, 'first');
  const second = join(scratch, 'second');
  let firstRun: Run;

  beforeAll(async () => {
    firstRun = await run('--no-build', '--out', first);
  });

  test('prints what it wrote and writes sources, manifest, bindings and CMakeLists.txt', () => {
    expect(firstRun.stderr).toBe('');
    expect(firstRun.code).toBe(0);
    expect(firstRun.stdout).toContain('compiling tiny (bundled examples/tiny.json)');
    expect(firstRun.stdout).toContain(`wrote ${first}: 6 variants`);
    for (const v of TINY_VARIANTS) expect(firstRun.stdout).toMatch(new RegExp(`^  ${v} `, 'm'));
    // One token: "1 in-step token," aligned with "tokens," (was "1 in-step token , tile").
    expect(firstRun.stdout).toMatch(/^  ar +1 in-step token,  tile /m);
    expect(firstRun.stdout).toMatch(/^  tidar_k4 +20 in-step tokens, tile /m);
    expect(firstRun.stdout).toContain('nvcc: not run (--no-build)');

    const files = listFiles(first);
    for (const f of ['manifest.json', 'index.js', 'index.d.ts', 'index.cjs', 'index.d.cts', 'package.json', 'CMakeLists.txt', 'model.json']) expect(files).toContain(f);
    // No TypeScript source beside index.js: a consumer's tsc would take it for the import (library-ts.ts).
    expect(files).not.toContain('index.ts');
    for (const v of TINY_VARIANTS) {
      expect(files).toContain(`cuda/${v}.cu`);
      expect(files).toContain(`cpu/${v}.cpp`);
    }
    const manifest = JSON.parse(readFileSync(join(first, 'manifest.json'), 'utf8')) as { variants: { name: string }[]; build?: unknown };
    expect(manifest.variants.map((v) => v.name)).toEqual(TINY_VARIANTS);
    expect(manifest.build).toBeUndefined();
    // --no-build compiles nothing.
    expect(files.filter((f) => /\.(so|o|fatbin)$/.test(f))).toEqual([]);
    expect(leftovers(scratch)).toEqual([]);
  });

  test('a second run into another directory writes byte-identical files', async () => {
    const r = await run('--no-build', '--out', second);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('wrote ');
    const a = readAll(first);
    const b = readAll(second);
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [f, bytes] of a) expect(b.get(f)!.equals(bytes), f).toBe(true);
  });

  test('the same directory again is "up to date" and changes no mtime', async () => {
    const before = mtimes(first);
    const bytes = readAll(first);
    const r = await run('--no-build', '--out', first);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`up to date ${first}`);
    expect(r.stdout).not.toMatch(/^wrote /m);
    expect(mtimes(first)).toEqual(before);
    expect(readAll(first)).toEqual(bytes);
    expect(leftovers(scratch)).toEqual([]);
  });

  test('--json prints the summary as JSON only', async () => {
    const r = await run('--no-build', '--json', '--out', first);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as { unchanged: boolean; variants: { name: string }[]; arches: string[] };
    expect(s.unchanged).toBe(true);
    expect(s.variants.map((v) => v.name)).toEqual(TINY_VARIANTS);
    expect(s.arches).toEqual(['sm_80', 'sm_86', 'sm_89', 'sm_90']);
  });
});

describe('bad input gives exit code 1 and exactly one `tidarc: error:` line naming what was wrong', () => {
  const badJson = join(scratch, 'bad.json');
  const headDim96 = join(scratch, 'hd96.json');
  const missing = join(scratch, 'no-such-model.json');
  beforeAll(() => {
    writeFileSync(badJson, '{ "name": "tiny", ');
    const tiny = JSON.parse(readFileSync(join(import.meta.dirname, '../../examples/tiny.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(headDim96, JSON.stringify({ ...tiny, headDim: 96, hiddenSize: 96 * 4 }));
  });

  // Parsed strings are shown JSON-quoted by some validators ("abc"), numbers bare: accept both.
  const cases: [string, () => string[], RegExp][] = [
    ['malformed JSON model file', () => [badJson], /bad\.json: malformed JSON/],
    ['unsupported head dim', () => [headDim96], /hd96\.json: .*headDim = 96.*64, 128/],
    ['missing model file', () => [missing], /no such model file or directory \(model = [^)]*no-such-model\.json\); allowed: a checkpoint directory, its config\.json, or a tidarc model\.json/],
    ['unknown arch', () => ['--arch', 'sm_70'], /--arch = sm_70.*sm_80.*sm_90/],
    ['unknown arch in a list', () => ['--arch', 'sm_80,sm_75'], /--arch = sm_75/],
    ['--draft 0', () => ['--draft', '0'], /--draft = "?0"?.*\b1\b.*\b32\b/],
    ['--draft -3', () => ['--draft', '-3'], /--draft = "?-3"?.*\b32\b/],
    ['--draft 1000', () => ['--draft', '1000'], /--draft = "?1000"?.*\b1\b.*\b32\b/],
    ['--draft abc', () => ['--draft', 'abc'], /--draft = "?abc"?.*integers/],
    ['--draft 1.5', () => ['--draft', '1.5'], /--draft = "?1\.5"?/],
    ['--jobs 0', () => ['--jobs', '0'], /--jobs = 0.*1 to 256/],
    ['--jobs abc', () => ['--jobs', 'abc'], /--jobs = abc.*1 to 256/],
    ['unknown option', () => ['--bogus'], /unknown option '--bogus'/],
    ['--variant of another draft', () => ['--variant', 'tidar_k4,tidar_k3'], /no such variant in this compile \(--variant = tidar_k3\); allowed: tidar_k2, tidar_k4, block_k2, block_k4, ar, prefill_c64$/],
  ];
  test.each(cases)('%s', async (name, argv, pattern) => {
    const out = join(scratch, `err-${name.replace(/[^a-z0-9]+/gi, '-')}`);
    const r = await run(...argv(), '--no-build', '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr.endsWith('\n')).toBe(true);
    const lines = r.stderr.slice(0, -1).split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tidarc: error: /);
    expect(lines[0]).toMatch(pattern);
    expect(lines[0]).not.toMatch(/\bat .*:\d+:\d+/); // no stack frame
    expect(existsSync(out)).toBe(false);
    expect(leftovers(scratch)).toEqual([]);
  });
});

describe('a failed compile leaves an earlier output directory intact', () => {
  test('failure in generation (invalid --draft) after a good compile', async () => {
    const parent = mkdtempSync(join(scratch, 'atomic-gen-'));
    const out = join(parent, 'lib');
    expect((await run('--no-build', '--out', out)).code).toBe(0);
    const before = readAll(out);
    const r = await run('--no-build', '--draft', '0', '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tidarc: error: .*--draft/);
    expect(readAll(out)).toEqual(before);
    expect(readdirSync(parent)).toEqual(['lib']);
  });

  test('failure in the C++ build after a good compile', async () => {
    const parent = mkdtempSync(join(scratch, 'atomic-build-'));
    const out = join(parent, 'lib');
    expect((await run('--no-build', '--out', out)).code).toBe(0);
    const before = readAll(out);

    // Answers --version (so the probe finds it) and fails every compile.
    const fakeCxx = join(scratch, 'fake-cxx.sh');
    writeFileSync(fakeCxx, '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "fake-c++ 1.0"; exit 0; fi\necho "fake-c++: simulated compile error" >&2\nexit 1\n');
    chmodSync(fakeCxx, 0o755);
    const saved = { CXX: process.env['CXX'], NVCC: process.env['NVCC'] };
    process.env['CXX'] = fakeCxx;
    process.env['NVCC'] = join(scratch, 'no-such-nvcc');
    let r: Run;
    try {
      r = await run('--jobs', '2', '--out', out);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    expect(r.code).toBe(1);
    // One line with the compiler's first error; the full output is kept beside the directory.
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^tidarc: error: .*fake-cxx\.sh failed on cpu\/.*\.cpp: fake-c\+\+: simulated compile error \(full output in .*lib\.build-error\.log\)/);
    expect(readAll(out)).toEqual(before);
    expect(readdirSync(parent).sort()).toEqual(['lib', 'lib.build-error.log']);
    expect(readFileSync(join(parent, 'lib.build-error.log'), 'utf8')).toContain('simulated compile error');
  });
});

// `--out dir/` (shell completion adds the slash) must stage next to dir, not inside it.
test('--out with a trailing slash writes into that directory', async () => {
  const out = join(scratch, 'slash');
  const r = await run('--no-build', '--out', `${out}/`);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(existsSync(join(out, 'manifest.json'))).toBe(true);
  expect(readdirSync(out).filter((f) => /\.(tmp|old)-\d+$/.test(f))).toEqual([]);
});

test('--variant compiles only those variants: sources, bindings and manifest; the manifest names the rest', async () => {
  const out = join(scratch, 'picked');
  const r = await run('--variant', 'ar,tidar_k4', '--no-build', '--out', out, '--json');
  expect(r.code, r.stderr).toBe(0);
  expect((JSON.parse(r.stdout) as { variants: { name: string }[] }).variants.map((v) => v.name)).toEqual(['tidar_k4', 'ar']);
  type Gemms = { gemms: { kernel: string; m: number; roles: string[] }[]; omittedGemms: { kernel: string }[] };
  const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Gemms & { variants: { name: string }[]; omittedVariants: string[]; stepGraphs: { steps: object } };
  expect(manifest.omittedVariants).toEqual(['tidar_k2', 'block_k2', 'block_k4', 'prefill_c64']);
  // The GEMMs too: the layers' kernels for 1 and 20 rows, lm_head's for 1 to 20 (codegen/gemm-omission.ts); the rest are named.
  for (const head of [false, true]) expect([...new Set(manifest.gemms.filter((g) => g.roles.includes('lm_head') === head).map((g) => g.m))]).toEqual(head ? [1, 6, 20] : [1, 20]);
  expect(Object.keys(manifest.stepGraphs.steps)).toEqual(['tidar_k4', 'ar']);
  expect(listFiles(out).filter((f) => /^(cpu|cuda)\/(tidar_k\d+|ar|block_k\d+|prefill_c\d+)\.(cpp|cu)$/.test(f))).toEqual(['cpu/ar.cpp', 'cpu/tidar_k4.cpp', 'cuda/ar.cu', 'cuda/tidar_k4.cu']);
  expect(readFileSync(join(out, 'index.d.ts'), 'utf8')).not.toMatch(/block_k|prefill_c|tidar_k2|tidarK2/);
  // The filter is part of the input key: the same directory without it is a new compile, not "up to date".
  expect((await run('--no-build', '--out', out)).stdout).toMatch(/^wrote .*: 6 variants/m);
  const whole = (JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Gemms).gemms.map((g) => g.kernel).sort();
  expect([...manifest.gemms, ...manifest.omittedGemms].map((g) => g.kernel).sort()).toEqual(whole);
});

test('compile --help mentions every option and gives examples', async () => {
  const r = await run('--help');
  expect(r.code).toBe(0);
  for (const opt of ['--draft', '--arch', '--out', '--no-build', '--jobs', '--json', '--variant']) expect(r.stdout).toContain(opt);
  for (const arch of ['sm_80', 'sm_86', 'sm_89', 'sm_90']) expect(r.stdout).toContain(arch);
  expect(r.stdout).toContain('Examples:');
  expect(r.stdout).toContain('$ tidarc compile examples/qwen3-8b.json --draft 4,8,16 --arch sm_80,sm_90 --out build/qwen3-8b');
});

describe('an earlier output whose manifest was tampered with', () => {
  test('files it lists outside the directory or that are not regular files are not read (a FIFO blocked the compile forever)', { timeout: 30_000 }, async () => {
    const out = join(scratch, 'tampered');
    expect((await run('examples/tiny.json', '--no-build', '--out', out)).code).toBe(0);
    execFileSync('mkfifo', [join(out, 'listed.fifo')]);
    const manifestPath = join(out, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    manifest.files = { ...manifest.files, 'listed.fifo': 'x', '../../../../../../dev/zero': 'y' };
    writeFileSync(manifestPath, JSON.stringify(manifest));
    const r = await run('examples/tiny.json', '--no-build', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/up to date/);
    expect(existsSync(join(out, 'listed.fifo'))).toBe(false); // replaced by a fresh output
  });
});
