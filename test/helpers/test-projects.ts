/**
 * Which test files share a worker process (vitest.config.ts's 'shared' project, isolate: false)
 * and which run alone at the end ('timed'). Every other file gets a fresh process, vitest's default.
 *
 * Why share: a fresh process per file costs about 0.75 CPU s (the fork, then the src/ module graph
 * fetched and evaluated again) whatever the file does; on CI's two cores, over some 90 small files,
 * that is half a minute of the run. Why only these: in one process a file sees what the files before
 * it left, so a shared file must leave nothing behind. test-projects.test.ts holds every file here
 * to RISKY (no environment, working directory, signal handler or mock it changes). Heavy files stay isolated:
 * their 0.75 s is small beside them, and they share builds through test/helpers/emulated-driver.ts.
 */

/** Compared against the run's own time: after the rest, one at a time (vitest.config.ts). */
export const TIMED: readonly string[] = ['test/tune/tune-budget.test.ts', 'test/cli/bench-step.test.ts'];

/** Whole folders (`dir/**`) and single files; add a file only if test-projects.test.ts passes with it. */
export const SHARED_PROCESS: readonly string[] = [
  'test/docs/**', 'test/helpers/**', 'test/ir/**', 'test/load/**', 'test/model/**', 'test/scripts/**', 'test/util/**',
  'test/codegen/attention-sm90a-cost-model.test.ts', 'test/bench/device-carry.test.ts', 'test/bench/device-check-results.test.ts',
  'test/codegen/gemm-cost-model.test.ts', 'test/codegen/gemm-sm90a-cost-model.test.ts', 'test/bench/roofline.test.ts',
  'test/build/kernel-cache-gemms.test.ts', 'test/build/kernel-cache-sm90a.test.ts', 'test/build/ptxas.test.ts',
  'test/cli/graph.test.ts', 'test/cli/init-model.test.ts', 'test/cli/run-summary.test.ts',
  'test/codegen/abi-fields.test.ts', 'test/codegen/attention-cost-model.test.ts', 'test/codegen/attention-sm90a.test.ts', 'test/codegen/attention-kernel-choice.test.ts',
  'test/codegen/call-params.test.ts', 'test/codegen/gemm-plan.test.ts', 'test/codegen/gemm-sm90a.test.ts', 'test/codegen/in-flight-rate.test.ts',
  'test/codegen/gemm-static-asserts.test.ts',
  'test/codegen/generated-golden.test.ts', 'test/codegen/occupancy.test.ts', 'test/codegen/plan.test.ts',
  'test/codegen/row-tile-choice.test.ts', 'test/codegen/splits.test.ts', 'test/codegen/swiglu-ptx.test.ts',
  'test/codegen/targets.test.ts', 'test/codegen/variant-name.test.ts',
  'test/emulate/emulate-dir-runtime.test.ts', 'test/emulate/emulated-driver-lock.test.ts', 'test/emulate/emulated-modules-stale.test.ts',
  'test/emulate/emulated-ops-shared.test.ts', 'test/emulate/gemm-tuned.test.ts', 'test/emulate/gpu-presence.test.ts', 'test/emulate/shared-modules.test.ts',
  'test/emulate/handoff.test.ts', 'test/emulate/harness-protocol.test.ts', 'test/emulate/masks.test.ts', 'test/emulate/named-barrier.test.ts',
  'test/fs/file-lock.test.ts', 'test/fs/make-dirs.test.ts', 'test/fs/read-json.test.ts',
  'test/runtime/attention-checks.test.ts', 'test/runtime/ops-gelu.test.ts', 'test/runtime/ops.test.ts', 'test/runtime/reference.test.ts',
  'test/runtime/cuda/abi-render.test.ts', 'test/runtime/cuda/attention-launch-occupancy.test.ts', 'test/runtime/cuda/attention-launch-sm90a.test.ts',
  'test/runtime/cuda/attention-launch.test.ts', 'test/runtime/cuda/gemm-abi.test.ts', 'test/runtime/cuda/gpu-activations16.test.ts',
  'test/runtime/cuda/gpu-gemm-select.test.ts', 'test/runtime/cuda/gpu-gemm.test.ts',
  'test/runtime/cuda/gpu-runner-epilogues.test.ts', 'test/runtime/cuda/gpu-runner-graph.test.ts', 'test/runtime/cuda/gpu-runner-scratch.test.ts',
  'test/runtime/cuda/op-abi.test.ts', 'test/runtime/cuda/ops-kernels.test.ts', 'test/runtime/cuda/step-graphs.test.ts',
  'test/runtime/model/decode-options.test.ts', 'test/runtime/model/needed-variants.test.ts', 'test/runtime/model/non-finite.test.ts',
  'test/bench/device-check-gemm-tune.test.ts', 'test/bench/device-check-e2e.test.ts', 'test/bench/device-prebuild.test.ts',
  'test/codegen/target.test.ts', 'test/emulate/emulated-driver.test.ts',
  'test/codegen/gemm-kernel-choice.test.ts', 'test/codegen/gemm-tile-choice.test.ts', 'test/codegen/gemm-kernel-pick.test.ts', 'test/codegen/attention-grid.test.ts',
  'test/codegen/gemm-unit-split.test.ts', 'test/codegen/gemm-omission.test.ts', 'test/build/kernel-cache-choice.test.ts',
  'test/runtime/native.test.ts', 'test/runtime/kernel-library.test.ts', 'test/runtime/async-buffers.test.ts',
  'test/runtime/cuda/device-graphs.test.ts', 'test/runtime/cuda/tensor-map.test.ts', 'test/runtime/cuda/gpu-ops-abi.test.ts',
  'test/runtime/cuda/attention-sm90a-driver.test.ts', 'test/runtime/cuda/gpu-gemm-emulated.test.ts', 'test/runtime/cuda/gpu-gemm-sm90a.test.ts',
  'test/tune/db.test.ts', 'test/tune/gemm-family.test.ts', 'test/tune/gemm-space.test.ts', 'test/tune/gemm-tuned.test.ts',
  'test/tune/report.test.ts', 'test/tune/tuned-tile.test.ts',
];

/**
 * What a file in a shared process must not do: change the environment, the working directory or
 * the process's handlers, mock or stub, or touch globalThis. Reading the environment (a child's
 * copy of it) is fine, and so is loading the addon or a kernel library: every shared file sees the
 * same unchanged environment, so the driver the addon chooses once per process ($TIDARC_LIBCUDA)
 * is the one each would have chosen alone.
 */
export const RISKY = /process\.env(\[[^\]]+\]|\.\w+)\s*(=(?!=)|\?\?=|\|\|=)|delete\s+process\.env|Object\.assign\(\s*process\.env|process\.chdir|process\.(on|once|exitCode|umask)\b|\bvi\.(mock|doMock|stub\w*|useFakeTimers|spyOn)\b|\bglobalThis\b/;

/** The include patterns of a project for these entries (vitest globs). */
export function globsOf(entries: readonly string[]): string[] {
  return entries.map((e) => (e.endsWith('/**') ? `${e}/*.test.ts` : e));
}

/** Whether `file` (a path from the repository root) is one of `entries`. */
export function listed(entries: readonly string[], file: string): boolean {
  return entries.some((e) => (e.endsWith('/**') ? file.startsWith(e.slice(0, -2)) : file === e));
}
