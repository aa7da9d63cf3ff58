import { availableParallelism } from 'node:os';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { configDefaults, defineConfig } from 'vitest/config';
import { SHARED_PROCESS, TIMED, globsOf } from './test/helpers/test-projects.js';

/**
 * The files that cost most in CI (seconds, setup included, from the CI run's JSON report), slowest
 * first. With two files in flight, one of these starting last would leave a core idle for its whole
 * length; vitest's own order (its duration cache, empty on a fresh `npm ci`, else file size) puts
 * some of them near the end. Order only: every file still runs, and a file missing here runs after
 * these in vitest's order. The first two share nothing that is built under a lock (the emulated
 * driver, test/helpers/emulated-driver.ts), so neither waits on the other.
 */
const SLOW_FIRST: readonly string[] = [
  'test/runtime/cuda/emulated-backend.test.ts',
  'test/tune/tune-cpu.test.ts',
  'test/codegen/cpu-backend.test.ts',
  'test/bench/device-check.test.ts',
  'test/emulate/kernels.test.ts',
  'test/codegen/nvcc.test.ts',
  'test/build/package-install.test.ts',
  'test/bench/gemm-bundle.test.ts',
  'test/runtime/model/invariants.test.ts',
  'test/runtime/model/sampling.test.ts',
  'test/cli/emulate.test.ts',
  'test/runtime/cuda/gpu-sampling.test.ts',
  'test/emulate/gemm.test.ts',
];

class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification): number => {
      const i = SLOW_FIRST.findIndex((p) => f.moduleId.endsWith(`/${p}`));
      return i < 0 ? SLOW_FIRST.length : i;
    };
    // Within a group (sequence.groupOrder); Array.prototype.sort is stable: the rest keep vitest's order.
    const group = (f: TestSpecification): number => f.project.config.sequence.groupOrder;
    // The shared project's files last and together: vitest hands a worker's process to the next
    // file only when that file is the queue's next and shares too (isolate: false); small, they
    // also fill the end of the run evenly on both cores.
    const shared = (f: TestSpecification): number => (f.project.config.isolate === false ? 1 : 0);
    return (await super.sort(files)).sort((a, b) => group(a) - group(b) || shared(a) - shared(b) || rank(a) - rank(b));
  }
}

// TIMED (test/helpers/test-projects.ts): files whose assertions compare times measured in the run
// (tune --budget's ETA against the run's own time, bench-step's AR step against TiDAR's): they run
// after the rest, one at a time, as on an idle machine, where another file's compile starting
// mid-measurement cannot skew them. SHARED_PROCESS: small files that leave nothing behind run in a
// reused worker process ('shared', isolate: false), which saves a process start and a module graph
// load per file; the rest keep a process each.
const SHARED = globsOf(SHARED_PROCESS);

// vitest's default on `run` is one worker less than the CPUs: one file at a time on CI's two cores,
// with the second core idle while a file runs a single-threaded emulator or decode. Two files in
// flight there (every shared build is under a file lock; each file has its own temporary
// directories); the default on more CPUs.
const workers = availableParallelism() <= 2 ? availableParallelism() : availableParallelism() - 1;

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 300_000,
    sequence: { sequencer: SlowFirstSequencer },
    projects: [
      { extends: true, test: { name: 'tidarc', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...TIMED, ...SHARED], maxWorkers: workers } },
      { extends: true, test: { name: 'shared', include: SHARED, exclude: [...configDefaults.exclude, ...TIMED], isolate: false, maxWorkers: workers } },
      { extends: true, test: { name: 'timed', include: [...TIMED], maxWorkers: 1, sequence: { groupOrder: 1 } } },
    ],
  },
});
