/**
 * `tidarc graph <model> --step tidar_k4`: the op graph one step runs (ir/step-graph.ts), as the
 * CPU runs it or as the cuda backend runs it after its fusions, printed as text (one line per
 * op, identical layers folded as "x L") or drawn as SVG. I/O only here; building and
 * rendering are pure.
 */
import type { Command } from 'commander';
import { GRAPH_BACKENDS, type GraphBackend, stepGraph, stepKinds } from '../../codegen/step-kinds.js';
import { TidarcError } from '../../errors.js';
import { renderGraphSvg, renderGraphText } from '../../ir/step-render.js';
import { writeTextFileAtomic } from '../../fs/atomic-write.js';
import { readModelInput } from '../../model/model-input.js';
import type { CliIo } from '../io.js';
import { parsePathOption } from '../options.js';

const FORMATS = ['text', 'svg'] as const;

interface GraphFlags {
  step?: string;
  backend?: string;
  format?: string;
  out?: string;
  foldNorms: boolean;
}

function oneOf<T extends string>(field: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new TidarcError('invalid-argument', `unknown ${field.replace(/^--/, '')}`, { field, value, allowed: `one of ${allowed.join(', ')}` });
  return value as T;
}

const HELP_AFTER = `
Step kinds: tidar_k<K> and block_k<K> for the model's draft lengths, ar, prefill_c64.
The cpu graph is the base graph (q, k, v as three linears, ...); the cuda graph is the same after
the GPU's rewrites (q|k|v and gate|up fused, rope + 16-bit pack as rope_pack, with Qwen3's q/k head
norms folded into it, residual adds accumulated by the GEMMs, SwiGLU in the gate_up GEMM's epilogue)
and, for a bf16 model, each RMSNorm between GEMMs folded into them (fold-norms: the o / down GEMM
writes the normed out and the rows' sums of squares, qkv / gate_up / lm_head scale their rows by
them; layer 0's input norm stays) unless --no-fold-norms.

Examples:
  $ tidarc graph models/tidar-tiny-code --step tidar_k4
  $ tidarc graph examples/qwen3-8b.json --step ar --backend cuda --format svg --out ar.svg
`;

export function registerGraphCommand(program: Command, io: CliIo): void {
  program
    .command('graph')
    .description('Print the op graph of one decode or prefill step (text, or an SVG drawing), as the cpu or cuda backend runs it.')
    .argument('<model>', 'a checkpoint directory, its config.json (or any Hugging Face config.json), or a model.json')
    .option('--step <kind>', 'the step: tidar_k<K>, ar, prefill_c64 or block_k<K>, e.g. --step tidar_k4')
    .option('--backend <name>', `${GRAPH_BACKENDS.join(' or ')} (default cpu)`)
    .option('--no-fold-norms', 'cuda: the graph without fold-norms (every RMSNorm its own op), as `tidarc run --no-fold-norms` runs it')
    .option('--format <format>', 'text (default) or svg')
    .option('--out <file>', 'write to FILE instead of standard output')
    .addHelpText('after', HELP_AFTER)
    .action(async (modelPath: string, flags: GraphFlags) => {
      const out = flags.out === undefined ? undefined : parsePathOption('--out', flags.out);
      const backend: GraphBackend = oneOf('--backend', flags.backend ?? 'cpu', GRAPH_BACKENDS);
      const format = oneOf('--format', flags.format ?? 'text', FORMATS);
      const { spec } = await readModelInput(modelPath);
      if (flags.step === undefined) throw new TidarcError('invalid-argument', 'a step kind is required', { field: '--step', allowed: stepKinds(spec).join(', ') });
      const graph = stepGraph(spec, flags.step, backend, '--step', undefined, { foldNorms: flags.foldNorms });
      const title = { step: flags.step, backend, model: spec.name };
      const text = format === 'svg' ? renderGraphSvg(graph, title) : renderGraphText(graph, title);
      if (out === undefined) {
        io.stdout(text);
        return;
      }
      await writeTextFileAtomic(out, text, '--out');
      io.stdout(`wrote ${flags.out} (${format}, step ${flags.step} on ${backend}, ${graph.ops.length} ops)\n`);
    });
}
