/**
 * A teardown's steps, each run even where an earlier one threw, then the first error thrown. For
 * closing what holds a CUDA device: after a kernel fault every free is refused (sticky), and the
 * step that matters most, the device's close giving the primary context back, comes last; skipped,
 * it left the faulted context retained for the rest of the process.
 */
export function runEvery(steps: readonly (() => void)[]): void {
  let failure: { readonly error: unknown } | undefined;
  for (const step of steps) {
    try {
      step();
    } catch (e) {
      failure ??= { error: e };
    }
  }
  if (failure) throw failure.error;
}
