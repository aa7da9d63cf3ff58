import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { runTidarc } from '../helpers/cli.js';

describe('tidarc doctor', () => {
  test('--json lists every check with a reason', async () => {
    const r = await runTidarc('doctor', '--json');
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout) as { name: string; ok: boolean; detail: string }[];
    expect(list.map((c) => c.name)).toEqual(['node', 'native addon', 'C++ compiler', 'nvcc', 'CUDA driver / GPU', 'host memory', 'BLAS']);
    for (const c of list) expect(c.detail.length).toBeGreaterThan(0);
  });

  test.skipIf(existsSync('/dev/nvidiactl'))('says which backend auto picks and why (no driver here)', async () => {
    const r = await runTidarc('doctor');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^backend auto: cpu \(no usable CUDA \(.*libcuda.*\)\)$/m);
  });

  describe.skipIf(existsSync('/dev/nvidiactl'))('no C++ compiler and no GPU: no backend is usable', () => {
    /** Runs doctor with CXX naming a compiler that does not exist (as other tests fake a missing g++). */
    async function withoutCxx(...args: string[]): ReturnType<typeof runTidarc> {
      const saved = process.env['CXX'];
      process.env['CXX'] = join(tmpdir(), `tidarc-no-such-cxx-${process.pid}`);
      try {
        return await runTidarc('doctor', ...args);
      } finally {
        if (saved === undefined) delete process.env['CXX'];
        else process.env['CXX'] = saved;
      }
    }

    test('exit 1 (was 0), the whole report printed, its last line says why', async () => {
      const r = await withoutCxx();
      expect(r.code, r.stderr).toBe(1);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines.find((l) => l.includes('C++ compiler'))).toMatch(/^missing {2}C\+\+ compiler/);
      expect(r.stdout).toMatch(/^backend auto: cpu \(.*\) \(the cpu backend is NOT usable: see above\)$/m);
      expect(lines.at(-1)).toMatch(/^no backend is usable here: the cpu backend needs the native addon and a C\+\+ compiler/);
      expect(lines).toHaveLength(9);  // seven checks, backend auto, the verdict
    });

    test('--json: the list on stdout, exit 1, the verdict on stderr', async () => {
      const r = await withoutCxx('--json');
      expect(r.code).toBe(1);
      const list = JSON.parse(r.stdout) as { name: string; ok: boolean }[];
      expect(list.find((c) => c.name === 'C++ compiler')!.ok).toBe(false);
      expect(r.stderr).toMatch(/^tidarc: no backend is usable here: .*\n$/);
    });
  });

  test.runIf(process.platform === 'linux')("prints the host's available and total memory and free swap (/proc/meminfo), and the memory cgroup whose limit binds", async () => {
    const r = await runTidarc('doctor');
    const line = r.stdout.split('\n').find((l) => l.includes('host memory'));
    const cgroup = '(?: \\(the limit of (?:an ancestor of )?memory cgroup \\S+\\))?', swapCgroup = '(?: within the swap limit of (?:an ancestor of )?memory cgroup \\S+)?';
    expect(line).toMatch(new RegExp(`^ok {7}host memory {8}\\d+\\.\\d (GiB|MiB) available of \\d+\\.\\d GiB${cgroup} \\(swap: (\\d+ bytes|\\d+\\.\\d [KMG]iB) free${swapCgroup}\\)$`));
    // The figures are this machine's: available at most total, total what /proc/meminfo says
    // (where a memory cgroup's limit binds, that limit: the line names the cgroup).
    if (line!.includes('(the limit of ')) return;
    const total = Number(/^MemTotal:\s*(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
    expect(line).toContain(`of ${(total / 2 ** 30).toFixed(1)} GiB`);
  });

  test('exit 0 with the C++ compiler found (the cpu backend works), no verdict line', async () => {
    const r = await runTidarc('doctor');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(/no backend is usable/);
  });

  test("every command's --help has an Examples section that runs that command (doctor's had a lone 'Example:')", async () => {
    const top = await runTidarc('--help');
    const names = [...top.stdout.matchAll(/^ {2}([a-z][a-z-]*) /gm)].map((m) => m[1]!).filter((n) => n !== 'help');
    expect(names).toContain('doctor');
    expect(names.length).toBeGreaterThanOrEqual(11);
    for (const name of names) {
      const r = await runTidarc(name, '--help');
      expect(r.code, name).toBe(0);
      const section = r.stdout.split(/^Examples:\n/m)[1];
      expect(section, `${name} --help has no Examples: section`).toBeDefined();
      expect(section!, name).toMatch(new RegExp(`^ {2}\\$ .*\\btidarc ${name}\\b`, 'm'));
    }
  });
});
