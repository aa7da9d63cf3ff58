/**
 * The text of `bench:step -- --compare` (what comparisonLines prints for a StepComparison made by
 * step-compare.ts compareSteps): where the figures come from, a table row per measured run with
 * the predictions under each set of constants and the share of the miss they explain, the host
 * time per step beside the model's and issue 16's host target, then the notes and warnings.
 * Pure: a comparison in, lines out.
 */
import { measuredOverheadLines } from './step-overheads-file.js';
import { HOST_SHARE_TARGET, hostStepLines } from './step-host.js';
import { MISS_SHARE, type ModeComparison, type RowComparison, type StepComparison, modeText } from './step-comparison.js';

const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;

/** What bench:step --compare prints: where the figures come from, a table row per measured mode, the notes and warnings. */
export function comparisonLines(c: StepComparison): string[] {
  const lines = [
    `Measured decode steps (${c.file}: ${c.device}${c.date ? `, ${c.date}` : ''}${c.dryRun ? ', DRY RUN' : ''}) beside the step cost model's PREDICTIONS for the ${c.machine} (${c.machineLabel}; sm_90a kernels where built, registers as the bundle assumed, PDL as each run had it).`,
    c.ceilings
      ? `Ceilings measured: copy ${c.ceilings.copyTBs.toFixed(2)} TB/s (assumed ${c.ceilings.assumedCopyTBs}), bf16 matmul ${c.ceilings.matmulTflops.toFixed(0)} TFLOP/s (assumed ${c.ceilings.assumedMatmulTflops}); mma.sync, L2, shared memory, HBM latency and the clock stay assumed.`
      : 'Ceilings: none measured in the file (the ceilings column is the assumed machine\'s).',
    ...(c.overheads ? measuredOverheadLines(c.overheads) : ['Overheads: none usable in the file (the overheads column is the assumed constants\').']),
    '',
  ];
  const header = ['model', 'L', 'step', 'run', 'measured ms', 'bundled ms', 'assumed ms', 'ceilings ms', 'overheads ms', 'both ms', 'meas/pred', 'meas/both', 'explained: both (ceilings, overheads)', 'residual ms'];
  const cells: string[][] = [];
  const idle: string[] = [];
  for (const r of c.rows) {
    if (r.modes.length === 0) {
      if (!r.unpriced) idle.push(`${r.model} L=${r.prefix} ${r.step}`);
      continue;
    }
    for (const m of r.modes) {
      const p = m.predictedMs;
      cells.push([
        r.model, String(r.prefix), r.step, modeText(m.mode, m.mode === 'noPdl' ? false : r.pdl), m.measuredMs.toFixed(3), m.bundledMs === null ? '-' : `${m.bundledMs.toFixed(3)}${m.bundleMatches ? '' : '!'}`,
        p.assumed.toFixed(3), p.ceilings.toFixed(3), p.overheads.toFixed(3), p.both.toFixed(3), `${m.measuredOverBase.toFixed(2)}${m.base === 'assumed' ? '*' : ''}`, m.measuredOverBoth.toFixed(2),
        m.explained ? `${pct(m.explained.both)} (${pct(m.explained.ceilings)}, ${pct(m.explained.overheads)})` : `within ${pct(MISS_SHARE)}`,
        `${m.residualMs >= 0 ? '+' : ''}${m.residualMs.toFixed(3)}`,
      ]);
    }
  }
  if (cells.length > 0) {
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((x) => x[i]!.length)));
    const line = (x: readonly string[]): string => x.map((v, i) => (i < 4 || i === 12 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ').trimEnd();
    lines.push(line(header), ...cells.map(line));
  } else {
    lines.push('No row has a measured step (every point was skipped or failed): nothing to compare.');
  }
  if (idle.length > 0) lines.push(`Not measured (skipped or failed in the part): ${idle.join(', ')}.`);
  lines.push(
    '',
    'measured: the e2e part\'s median GPU ms a step (bench-step, CUDA events); every other column is a cost-model prediction (src/bench/step-cost-model.ts):',
    '  bundled: the bundle\'s (e2e_predictions.json); assumed: recomputed now with the assumed constants; ceilings / overheads / both: with the device\'s measured ceilings, launch and host constants, or both.',
    `  meas/pred: measured / bundled (* against the assumed recomputation, where the bundle's is missing or differs: !); explained: (x - pred) / (measured - pred) for x = both (ceilings, overheads), where the miss is over ${pct(MISS_SHARE)}.`,
    '  residual = measured - both: what the measured constants do not explain, i.e. the kernels or an unmodelled cost (the gemm, sm90a and attention parts time the kernels one by one: device-check.md).',
  );
  lines.push('', ...hostLines(c));
  for (const n of c.notes) lines.push(`Note: ${n}`);
  for (const w of c.warnings) lines.push(`WARNING: ${w}`);
  return lines;
}

/** Issue 16's host target's runs: the 8B shape at L = 4096, AR and k = 8, graphs where measured (else launch by launch). */
function issue16Host(c: StepComparison): { row: RowComparison; mode: ModeComparison }[] {
  const at = (step: string): RowComparison | undefined => c.rows.find((r) => r.model.startsWith('qwen3-8b') && r.prefix === 4096 && r.step === step);
  return [at('ar'), at('tidar_k8')].flatMap((row) => {
    const mode = row?.modes.find((m) => m.mode === 'graphs' && m.host) ?? row?.modes.find((m) => m.mode === 'launches' && m.host);
    return row && mode ? [{ row, mode }] : [];
  });
}

/** The host part of --compare: a row per run with a host time, the derived hostStepS, issue 16's 5% target. */
export function hostLines(c: StepComparison): string[] {
  const lines = [`Host time per step (bench-step's hostMs: the step's wall time outside its waits for the GPU, MEASURED) beside the cost model's (PREDICTED):`];
  const header = ['model', 'L', 'step', 'run', 'host ms', 'bundled ms', 're-predicted ms', 'calls ms', 'decoder ms', 'host/step', `<= ${pct(HOST_SHARE_TARGET)}`];
  const cells: string[][] = [];
  for (const r of c.rows) {
    for (const m of r.modes) {
      const h = m.host;
      if (!h) continue;
      cells.push([
        r.model, String(r.prefix), r.step, modeText(m.mode, m.mode === 'noPdl' ? false : r.pdl), h.measuredMs.toFixed(4), h.bundledMs === null ? '-' : h.bundledMs.toFixed(4), h.predictedMs.toFixed(4),
        h.callsMs.toFixed(4), h.decoderMs.toFixed(4), h.share === null ? '-' : `${(100 * h.share).toFixed(1)}%`, h.met === null ? '-' : h.met ? 'met' : 'MISSED',
      ]);
    }
  }
  if (cells.length > 0) {
    const widths = header.map((x, i) => Math.max(x.length, ...cells.map((y) => y[i]!.length)));
    const line = (x: readonly string[]): string => x.map((v, i) => (i < 4 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ').trimEnd();
    lines.push(line(header), ...cells.map(line));
  } else {
    lines.push('No run recorded a host time (bench-step\'s hostMs): nothing to compare.');
  }
  lines.push(...hostStepLines(c.host));
  const t = issue16Host(c);
  if (t.length > 0) {
    const worst = t.reduce((a, b) => ((b.mode.host!.share ?? -1) > (a.mode.host!.share ?? -1) ? b : a));
    const h = worst.mode.host!;
    const runs = t.map((x) => `${x.row.step} ${modeText(x.mode.mode, x.row.pdl)}`).join(', ');
    lines.push(h.share === null || !(h.measuredMs > 0)
      ? `Issue 16, host time per step <= ${pct(HOST_SHARE_TARGET)} of the step (${runs}): no step time or no host time to divide by.`
      : `Issue 16, host time per step <= ${pct(HOST_SHARE_TARGET)} of the step (${worst.row.model} L=4096, ${runs}): ${h.met ? 'met' : 'MISSED'}, ${(100 * h.share).toFixed(1)}% (worst: ${worst.row.step}, MEASURED); `
        + `of its ${h.measuredMs.toFixed(4)} ms host time ${h.decoderMs.toFixed(4)} ms (${pct(h.decoderMs / h.measuredMs)}) is the decoder's own, ${h.callsMs.toFixed(4)} ms (${pct(h.callsMs / h.measuredMs)}) launch and copy calls.`);
  }
  if (c.partialLayers.length > 0) lines.push(`  the e2e part's models have fewer layers than the models they stand for (${c.partialLayers.join('; ')}): with graphs the host time does not grow with layers and the GPU's does, so a whole model's host share is smaller.`);
  lines.push(
    '  bundled: the bundle\'s host prediction (assumed constants); re-predicted: the cost model with the overheads part\'s constants and the derived hostStepS (every row the same constant: how well one explains them all).',
    '  calls: launches x the call (graph or kernel launch) + launch by launch the cost model\'s uploads x hostCopyS; decoder: host ms - calls, this run\'s hostStepS; host/step: host ms / the run\'s median step ms.',
  );
  return lines;
}
