/**
 * Issue 12, item 6: an interrupted tidarc leaves nothing behind. SIGINT / SIGTERM during a
 * compile or an init-model exit 130 / 143 with the staging directory removed, the compilers
 * killed and an earlier output intact; what a SIGKILL leaves (it cannot be handled) is removed
 * by the next run that writes there; Ctrl-C during tune's compile phase exits 130, not 1 with
 * "g++ failed". The built CLI runs in a child process, as a user runs it.
 * Needs: the built CLI (`npm run build:ts`); no compiler (a fake one that sleeps stands in).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { runTidarc } from '../helpers/cli.js';
import { sharedKernelCache } from '../helpers/emulated-driver.js';
import { sharedSmallSpec, smallSpec, writeRandomModel } from '../helpers/random-model.js';

const BIN = resolve('bin/tidarc.js');
const TINY = resolve('examples/tiny.json');
const scratch = mkdtempSync(join(tmpdir(), 'tidarc-interrupt-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * A C++ compiler that answers --version, then on a compile writes its pid to $TIDARC_FAKE_STARTED
 * and sleeps: the compile phase lasts until a signal ends it.
 */
const FAKE_CXX = join(scratch, 'slow-cxx.sh');
writeFileSync(FAKE_CXX, '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "slow-c++ 1.0"; exit 0; fi\necho $$ > "$TIDARC_FAKE_STARTED"\nexec sleep 60\n');
chmodSync(FAKE_CXX, 0o755);

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the built CLI; `exit` resolves when it ends. `group`: its own process group (a terminal's Ctrl-C reaches the group). */
function start(args: readonly string[], env: Record<string, string> = {}, group = false): { child: ChildProcess; exit: Promise<Exit> } {
  const fullEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete fullEnv['TIDARC_DEBUG'];
  const child = spawn(process.execPath, [BIN, ...args], { env: fullEnv, detached: group });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d: Buffer) => void (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => void (stderr += d.toString()));
  const exit = new Promise<Exit>((done) => child.on('exit', (code, signal) => done({ code, signal, stdout, stderr })));
  return { child, exit };
}

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Whether a process still runs. A killed compiler whose parent (tidarc) exited before reaping it
 * is a zombie until whatever adopted it reaps it, which a container's PID 1 may never do; a
 * zombie answers kill(pid, 0), so its /proc state ('Z') is what says it is dead (CI saw this).
 */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;  // no /proc (not Linux): kill(pid, 0) is all there is
  }
};

/** Staging and swap directories and atomic-write temp files. */
const temps = (dir: string): string[] => readdirSync(dir).filter((f) => /\.(tmp|old)-\d+$|\.\d+\.[0-9a-f]{8}\.tmp$/.test(f));

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out[join(e.parentPath, e.name).slice(dir.length)] = readFileSync(join(e.parentPath, e.name), 'latin1');
  }
  return out;
}

describe.each([['SIGINT', 130], ['SIGTERM', 143]] as const)('compile interrupted by %s in the C++ build', (signal, code) => {
  test(`exits ${code}, kills the compiler, removes the staging directory, keeps the earlier output`, async () => {
    const parent = join(scratch, `compile-${signal}`);
    mkdirSync(parent);
    const out = join(parent, 'lib');
    expect((await runTidarc('compile', TINY, '--no-build', '--out', out)).code).toBe(0);
    const before = snapshot(out);
    const started = join(parent, 'cxx-started');
    const { child, exit } = start(['compile', TINY, '--arch', 'sm_80', '--jobs', '1', '--out', out],
      { CXX: FAKE_CXX, NVCC: join(scratch, 'no-nvcc'), TIDARC_FAKE_STARTED: started });
    await until('the compiler to start', () => existsSync(started) && readFileSync(started, 'utf8').trim() !== '');
    expect(temps(parent)).toHaveLength(1); // the staging directory, being written
    const compilerPid = Number(readFileSync(started, 'utf8'));
    child.kill(signal);
    const r = await exit;
    expect({ code: r.code, signal: r.signal }, r.stderr).toEqual({ code, signal: null });
    expect(r.stderr).toBe(`tidarc: interrupted (${signal}); unfinished output removed\n`);
    expect(temps(parent)).toEqual([]);
    expect(snapshot(out)).toEqual(before);
    await until('the compiler to be killed', () => !alive(compilerPid), 5000);
  });
});

/**
 * An nvcc that answers --version, then on a compile writes an intermediate into $TMPDIR (as the
 * real one writes its tmpxft_* files, megabytes a variant), its pid to $TIDARC_FAKE_STARTED, and sleeps.
 */
const FAKE_NVCC = join(scratch, 'slow-nvcc.sh');
writeFileSync(FAKE_NVCC, '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Cuda compilation tools, release 99.0, V99.0.0"; exit 0; fi\n'
  + 'echo intermediate > "${TMPDIR:-/tmp}/tmpxft_fake_$$.ii"\necho "$$ ${TMPDIR:-/tmp}" > "$TIDARC_FAKE_STARTED"\nexec sleep 60\n');
chmodSync(FAKE_NVCC, 0o755);

describe('compile interrupted in the nvcc build', () => {
  test('SIGINT: nvcc\'s temp files were in the staging directory and went with it (was: tmpxft_* left in $TMPDIR)', async () => {
    const parent = join(scratch, 'compile-nvcc');
    const tmp = join(scratch, 'compile-nvcc-tmp');
    mkdirSync(parent);
    mkdirSync(tmp);
    const started = join(parent, 'nvcc-started');
    const { child, exit } = start(['compile', TINY, '--arch', 'sm_80', '--jobs', '1', '--out', join(parent, 'lib')],
      { NVCC: FAKE_NVCC, CXX: join(scratch, 'no-cxx'), TMPDIR: tmp, TIDARC_FAKE_STARTED: started });
    await until('nvcc to start', () => existsSync(started) && readFileSync(started, 'utf8').includes(' '));
    const [pid, nvccTmp] = readFileSync(started, 'utf8').trim().split(' ') as [string, string];
    expect(nvccTmp.startsWith(join(parent, 'lib.tmp-'))).toBe(true);
    child.kill('SIGINT');
    const r = await exit;
    expect(r.code, r.stderr).toBe(130);
    expect(readdirSync(tmp)).toEqual([]);
    expect(temps(parent)).toEqual([]);
    await until('nvcc to be killed', () => !alive(Number(pid)), 5000);
  });
});

/** A model whose checkpoint takes a second or two to write (60 MB). */
function midSpec(): string {
  const spec = { ...JSON.parse(readFileSync(TINY, 'utf8')), name: 'mid', layers: 2, hiddenSize: 1024, queryHeads: 16, kvHeads: 4, intermediateSize: 4096 };
  const path = join(scratch, 'mid.json');
  writeFileSync(path, JSON.stringify(spec));
  return path;
}

describe('init-model interrupted while writing the weights', () => {
  test('SIGTERM: exit 143, no <out>.tmp-PID left (was: up to 276 MB left in 24 of 24 kills)', async () => {
    const parent = join(scratch, 'init-term');
    mkdirSync(parent);
    const { child, exit } = start(['init-model', midSpec(), '--seed', '1', '--out', join(parent, 'ckpt')]);
    await until('the staging directory', () => temps(parent).length > 0);
    child.kill('SIGTERM');
    const r = await exit;
    expect(r.code, r.stderr).toBe(143);
    expect(readdirSync(parent)).toEqual([]);
  });

  test('SIGKILL leaves the staging directory (it cannot be handled); the next run writing there removes it, not a user\'s look-alike', async () => {
    const parent = join(scratch, 'init-kill');
    mkdirSync(parent);
    const { child, exit } = start(['init-model', midSpec(), '--seed', '1', '--out', join(parent, 'ckpt')]);
    await until('the staging directory', () => temps(parent).length > 0);
    child.kill('SIGKILL');
    expect((await exit).signal).toBe('SIGKILL');
    const left = temps(parent);
    expect(left).toEqual([`ckpt.tmp-${child.pid}`]);
    // A directory of the user's with a name like a leftover of the same dead process.
    mkdirSync(join(parent, `data.tmp-${child.pid}`));
    writeFileSync(join(parent, `data.tmp-${child.pid}`, 'mine.txt'), 'keep');
    const r = await runTidarc('init-model', TINY, '--seed', '1', '--out', join(parent, 'other'));
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(parent).sort()).toEqual([`data.tmp-${child.pid}`, 'other']);
  });
});

describe('tidarc tune: Ctrl-C in the compile phase', () => {
  test('exits 130 with the staging directories removed (was: exit 1, "g++ failed")', async () => {
    const cache = join(scratch, 'tune-cache');
    const started = join(scratch, 'tune-cxx-started');
    const { child, exit } = start(['tune', TINY, '--prefix', '64', '--db', join(scratch, 'tune.json')],
      { CXX: FAKE_CXX, TIDARC_CACHE: cache, TIDARC_FAKE_STARTED: started }, true);
    await until('the compiler to start', () => existsSync(started) && readFileSync(started, 'utf8').trim() !== '');
    // A terminal's Ctrl-C: SIGINT to the whole foreground process group, the compilers included.
    process.kill(-child.pid!, 'SIGINT');
    const r = await exit;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).not.toMatch(/error/);
    const leftovers = readdirSync(cache, { recursive: true }).map(String).filter((f) => /\.(tmp|old)-\d+$/.test(f));
    expect(leftovers).toEqual([]);
    expect(existsSync(join(scratch, 'tune.json'))).toBe(false);
  });
});

describe('tidarc emulate interrupted while building the emulator', () => {
  test('SIGTERM: exit 143, the compiler killed, no tidarc-emu-* scratch directory left in TMPDIR', async () => {
    const out = join(scratch, 'emu-lib');
    expect((await runTidarc('compile', TINY, '--no-build', '--out', out)).code).toBe(0);
    const tmp = join(scratch, 'emu-tmp');
    mkdirSync(tmp);
    const started = join(scratch, 'emu-cxx-started');
    // The first compile is the emulator runtime's, staged in the kernel cache (runtime-cache.ts).
    const cache = join(scratch, 'emu-cache');
    const { child, exit } = start(['emulate', out, '--variant', 'ar', '--jobs', '1'],
      { CXX: FAKE_CXX, TMPDIR: tmp, TIDARC_CACHE: cache, TIDARC_FAKE_STARTED: started });
    await until('the compiler to start', () => existsSync(started) && readFileSync(started, 'utf8').trim() !== '');
    expect(readdirSync(tmp).filter((f) => f.startsWith('tidarc-emu-'))).toHaveLength(1);
    const compilerPid = Number(readFileSync(started, 'utf8'));
    child.kill('SIGTERM');
    const r = await exit;
    expect(r.code, r.stderr).toBe(143);
    expect(readdirSync(tmp)).toEqual([]);
    // Neither its staging directory nor its lock is left in the cache.
    expect(readdirSync(join(cache, 'emu-runtime'))).toEqual([]);
    await until('the compiler to be killed', () => !alive(compilerPid), 5000);
  });
});

describe('run interrupted while it decodes', () => {
  test('SIGINT: exit 130 at once, not after the last token (was: the signal waited for the whole generation, then was lost: exit 0)', async () => {
    const dir = await writeRandomModel(join(scratch, 'run-int'), sharedSmallSpec(), 5);
    const { child, exit } = start(['run', dir, '--prompt', 'hello', '--mode', 'ar', '--max-tokens', '3000', '--ignore-eos', '--threads', '1'],
      { TIDARC_CACHE: await sharedKernelCache() });
    let text = '';
    child.stdout!.on('data', (d: Buffer) => void (text += d.toString()));
    await until('the first tokens', () => text.length > 0, 300_000);
    child.kill('SIGINT');
    const r = await exit;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/tidarc: interrupted \(SIGINT\)\n$/);
    expect(r.stderr).not.toMatch(/3000 tokens in/);
    // The streamed text ends its line: in a terminal the "interrupted" line was glued to it.
    expect(r.stdout).toMatch(/\n$/);
  }, 600_000);

  test('--json: SIGINT prints what was generated, marked "interrupted" (was: nothing on stdout, the tokens lost)', async () => {
    const dir = await writeRandomModel(join(scratch, 'run-int-json'), sharedSmallSpec(), 5);
    const env = { TIDARC_CACHE: await sharedKernelCache() };
    // 4000 tokens: about 2 s here, 0.4 s past the first token when the signal comes.
    const args = ['run', dir, '--prompt', 'hello', '--mode', 'ar', '--max-tokens', '4000', '--ignore-eos', '--threads', '1'];
    // --json writes nothing until the end: when decoding starts is the text-mode twin's first token (kernels cached by then).
    const twin = start(args, env);
    const t0 = Date.now();
    let firstMs = 0;
    twin.child.stdout!.on('data', () => void (firstMs ||= Date.now() - t0));
    await until('the first tokens', () => firstMs > 0, 300_000);
    twin.child.kill('SIGINT');
    expect((await twin.exit).code).toBe(130);
    // The signal must land while it decodes: a load spike can move that window, so a run that finished first
    // (exit 0) is retried with the signal sooner, one still prefilling (no JSON yet) with it later.
    let delayMs = 2 * firstMs + 200;
    let r: Exit | undefined;
    for (let attempt = 0; attempt < 4; attempt++) {
      const { child, exit } = start([...args, '--json'], env);
      await new Promise((res) => setTimeout(res, delayMs));
      child.kill('SIGINT');
      r = await exit;
      if (r.code === 0) delayMs /= 2;
      else if (r.code === 130 && r.stdout.trim() === '') delayMs *= 1.5;
      else break;
    }
    r = r!;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/tidarc: interrupted \(SIGINT\)\n$/);
    const res = JSON.parse(r.stdout) as { text: string; tokens: number[]; interrupted: string; backend: string; mode: string };
    expect(res).toMatchObject({ interrupted: 'SIGINT', backend: 'cpu', mode: 'ar' });
    expect(res.tokens.length).toBeGreaterThan(0);
    expect(res.tokens.length).toBeLessThan(4000);
    expect(res.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < sharedSmallSpec().vocabSize)).toBe(true);
  }, 600_000);
});

describe('run interrupted while it prefills', () => {
  test('SIGINT during a long prompt\'s prefill: exit 130 long before the prefill would have ended (was: it waited for the whole prefill, then exit 0)', async () => {
    // 2 layers 1024 wide (its own kernels, draft 1 only: a few seconds of g++ once per kernel cache)
    // and a prompt of about 3500 tokens: a prefill of seconds on one thread, 55 chunks of 64 rows.
    const dir = await writeRandomModel(join(scratch, 'run-prefill'), smallSpec('prefill-long', [1], { hiddenSize: 1024, intermediateSize: 4096 }), 6);
    const env = { TIDARC_CACHE: await sharedKernelCache() };
    const args = (prompt: string): string[] => ['run', dir, '--prompt', prompt, '--mode', 'ar', '--max-tokens', '1', '--threads', '1'];
    const long = Array.from({ length: 900 }, (_, i) => `w${i % 97}`).join(' ');
    const warm = await start(args('hello'), env).exit;  // compiles the kernels, if not cached
    expect(warm.code, warm.stderr).toBe(0);
    const timed = async (prompt: string): Promise<number> => {
      const t0 = Date.now();
      const r = await start(args(prompt), env).exit;
      expect(r.code, r.stderr).toBe(0);
      return Date.now() - t0;
    };
    // No line says the prefill has started (stderr has only the summary once the kernels are
    // cached): a short prompt's run measures what comes before it, the long one's adds the prefill.
    const before = await timed('hello');
    const prefill = (await timed(long)) - before;
    expect(prefill, `startup ${before} ms`).toBeGreaterThan(1000);
    const { child, exit } = start(args(long), env);
    await new Promise((r) => setTimeout(r, before + prefill / 4));
    const t0 = Date.now();
    child.kill('SIGINT');
    const r = await exit;
    const waited = Date.now() - t0;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toBe('tidarc: interrupted (SIGINT)\n');
    expect(r.stdout).toBe('');
    // Before: the signal waited for the rest of the prefill (about 3/4 of it: 2.4 s of 3.1 here), then
    // was lost (exit 0, the token printed); now 0.3 s on an idle machine (the prefill pauses between
    // graph steps; one layer's attention over every chunk runs unbroken). The bound is half the
    // prefill: a loaded machine stretched that pause to 1.65 s of a 4.95 s prefill (a clean-clone
    // CI beside four other jobs, 2026-12-05), and the old behaviour's 3/4 still fails it.
    expect(waited, `prefill ${prefill} ms, startup ${before} ms`).toBeLessThan(prefill / 2);
  }, 600_000);
});
