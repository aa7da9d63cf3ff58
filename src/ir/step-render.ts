/**
 * A step graph as text (one line per op; identical layers folded as "x L") and as a simple
 * top-to-bottom SVG drawing of the same lines (`tidarc graph`). Layer numbers inside names
 * become L (model.layers.L.mlp.up_proj.weight, k_step.L) so identical layers print alike.
 * Deterministic; pure.
 */
import type { StepGraph } from './step-graph.js';
import type { StepOp } from './step-ops.js';

export interface GraphTitle {
  readonly step: string;
  readonly backend: string;
  readonly model: string;
}

interface Line {
  readonly text: string;
  /** Indentation level: 1 inside a folded layer group. */
  readonly depth: number;
  readonly group?: string;
}

const generic = (name: string): string => name.replace(/^model\.layers\.\d+\./, 'model.layers.L.').replace(/^([kv]_step)\.\d+$/, '$1.L');

function describe(op: StepOp, g: StepGraph): string {
  const [label, rest] = parts(op, g);
  return `${label.padEnd(14)} ${rest}`;
}

function parts(op: StepOp, g: StepGraph): [string, string] {
  const w = new Map(g.tensors.map((t) => [t.name, t]));
  const t = (name: string): string => {
    const d = w.get(name);
    return d ? `${generic(name)}[${d.width}${d.type === 'f32' ? '' : ` ${d.type}`}]` : generic(name);
  };
  switch (op.kind) {
    case 'embed': return ['embed', `${t(op.ids)} -> ${t(op.out)}  ${op.table}`];
    case 'rmsnorm': return ['rmsnorm', `${t(op.x)} -> ${t(op.out)}  ${generic(op.weight)}`];
    case 'headNorm': return ['qk-norm', `${t(op.x)} per head (${op.heads} heads)  ${generic(op.weight)}`];
    case 'linear': {
      const rows = op.parts.reduce((n, p) => n + (p.out ? w.get(p.out)?.width ?? 0 : 0), 0) || 2 * (w.get(op.swiglu?.out ?? '')?.width ?? 0);
      const k = w.get(op.x)?.width ?? 0;
      const outs = op.swiglu ? `${t(op.swiglu.out)} (SwiGLU epilogue, interleave ${op.swiglu.interleave})` : op.parts.map((p) => t(p.out!)).join(' | ');
      const parts = op.parts.length > 1 ? ` = ${op.parts.map((p) => generic(p.weight).replace(/^model\.layers\.L\./, '')).join(' | ')}` : '';
      const bias = op.bias ? ` + ${generic(op.bias)}` : '';
      const scale = op.rowScale ? ` (rows scaled by ${t(op.rowScale.sumsq)})` : '';
      const norm = op.normOut ? `, folded rmsnorm -> ${t(op.normOut.out)}, ${t(op.normOut.sumsq)}  ${generic(op.normOut.weight)}` : '';
      return [`linear ${op.role}`, `${t(op.x)}${scale} -> ${op.accumulate ? '+= ' : ''}${outs}${norm}  ${generic(op.weight)} [${rows} x ${k}]${parts}${bias}, M = ${g.tokens}`];
    }
    case 'rope': return ['rope', `${t(op.x)} (${op.heads} heads)`];
    case 'to16': return ['to16', `${t(op.x)} -> ${t(op.out)}`];
    case 'toFloat': return ['toFloat', `${t(op.x)} -> ${t(op.out)}`];
    case 'ropePack': return ['ropePack', `${op.norm ? 'qk-norm + ' : ''}rope(${t(op.q)}, ${t(op.k)}) + to16 -> ${t(op.qOut)}, ${t(op.kOut)}, ${t(op.vOut)}${op.norm ? `  ${generic(op.norm.q)}, ${generic(op.norm.k)}` : ''}`];
    case 'attention': return ['attention', `${t(op.q)}, ${t(op.k)}, ${t(op.v)} -> ${t(op.out)}, ${t(op.lse)}  (${g.launches.length} launch${g.launches.length === 1 ? '' : 'es'})`];
    case 'swiglu': return ['swiglu', `silu(${t(op.gate)}) * ${t(op.up)} -> ${t(op.out)}`];
    case 'gelu': return ['gelu', `${t(op.x)} -> ${t(op.out)}`];
    case 'add': return ['add', `${t(op.x)} += ${t(op.y)}`];
  }
}

const range = (xs: readonly number[]): string => (xs.length === 0 ? 'none' : xs.length === 1 ? String(xs[0]) : `${xs[0]}..${xs.at(-1)}`);

/** The graph as lines: ops before the layers, each run of identical layers once, ops after, the lm_head. */
function lines(g: StepGraph): Line[] {
  const out: Line[] = [];
  const layers = new Map<number, string[]>();
  const before: string[] = [], after: string[] = [];
  for (const op of g.ops) {
    if (op.layer !== undefined) (layers.get(op.layer) ?? layers.set(op.layer, []).get(op.layer)!).push(describe(op, g));
    else (layers.size === 0 ? before : after).push(describe(op, g));
  }
  for (const text of before) out.push({ text, depth: 0 });
  const bodies = [...layers.entries()].sort((a, b) => a[0] - b[0]);
  for (let i = 0; i < bodies.length;) {
    let j = i + 1;
    while (j < bodies.length && bodies[j]![1].join('\n') === bodies[i]![1].join('\n')) j++;
    const n = j - i, first = bodies[i]![0], last = bodies[j - 1]![0];
    const group = n === 1 ? `layer ${first}` : `layers ${first}..${last} (x ${n})`;
    out.push({ text: `${group}:`, depth: 0, group });
    for (const text of bodies[i]![1]) out.push({ text, depth: 1, group });
    i = j;
  }
  for (const text of after) out.push({ text, depth: 0 });
  const h = g.head;
  const drafts = h.drafts ? `, drafts ${h.drafts.stride === 0 ? '' : `${h.drafts.stride}a+`}${h.drafts.stride === 0 ? g.tokens - h.drafts.count : 1}..${h.drafts.stride === 0 ? g.tokens - 1 : `${h.drafts.stride}a+${h.drafts.count}`}` : '';
  const scale = h.rowScale ? ` (rows scaled by ${h.rowScale.sumsq})` : '';
  out.push({ text: `${'lm_head'.padEnd(14)} ${h.x} rows (verify ${range(h.verify)}${drafts})${scale} -> logits  ${h.weight}`, depth: 0 });
  return out;
}

function header(g: StepGraph, t: GraphTitle): string[] {
  const layers = new Set(g.ops.flatMap((o) => (o.layer === undefined ? [] : [o.layer]))).size;
  const launches = g.launches.map((l) => `${l.variant} rows ${l.from}..${l.from + l.rows - 1}${l.commitRows ? ' (then committed)' : ''}`).join('; ');
  return [
    `${t.model}: step ${t.step} on ${t.backend}: ${g.tokens} token${g.tokens === 1 ? '' : 's'}, ${layers} layers, ${g.ops.length} ops`,
    `attention launches: ${launches}`,
  ];
}

export function renderGraphText(g: StepGraph, t: GraphTitle): string {
  const body = lines(g).map((l) => `${'  '.repeat(l.depth + 1)}${l.text}`);
  const tensors = g.tensors.map((x) => `${generic(x.name)} ${x.type}[${g.tokens} x ${x.width}]`).filter((x, i, a) => a.indexOf(x) === i);
  return `${[...header(g, t), 'ops:', ...body, `tensors: ${tensors.join(', ')}`].join('\n')}\n`;
}

const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** One box per op line top to bottom, arrows between them, a frame around each folded layer group. */
export function renderGraphSvg(g: StepGraph, t: GraphTitle): string {
  const ls = lines(g).filter((l) => l.depth === 1 || l.group === undefined);
  const ROW = 28, BOX = 20, CHAR = 6.6, X0 = 16, INDENT = 24, TOP = 56;
  const width = Math.ceil(X0 * 2 + INDENT + Math.max(...ls.map((l) => l.text.length), ...header(g, t).map((h) => h.length)) * CHAR + 16);
  const height = TOP + ls.length * ROW + 16;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="monospace" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...header(g, t).map((h, i) => `<text x="${X0}" y="${18 + i * 16}" font-weight="${i === 0 ? 'bold' : 'normal'}">${escape(h)}</text>`),
  ];
  const groups = new Map<string, number[]>();
  ls.forEach((l, i) => l.group !== undefined && (groups.get(l.group) ?? groups.set(l.group, []).get(l.group)!).push(i));
  for (const [name, rows] of groups) {
    const y = TOP + rows[0]! * ROW - 6, h = rows.length * ROW + 2;
    out.push(`<rect x="${X0 - 6}" y="${y}" width="${width - 2 * X0 + 12}" height="${h}" fill="#f4f6fb" stroke="#8896b8" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${width - X0}" y="${y + 14}" text-anchor="end" fill="#4a5a80">${escape(name)}</text>`);
  }
  ls.forEach((l, i) => {
    const x = X0 + l.depth * INDENT, y = TOP + i * ROW;
    const w = Math.ceil(l.text.length * CHAR + 12);
    if (i > 0) out.push(`<line x1="${X0 + INDENT / 2}" y1="${y - ROW + BOX}" x2="${X0 + INDENT / 2}" y2="${y}" stroke="#999"/>`);
    out.push(`<rect x="${x}" y="${y}" width="${w}" height="${BOX}" rx="3" fill="${l.text.startsWith('attention') ? '#ffe9c7' : l.text.startsWith('linear') ? '#dcebff' : '#eeeeee'}" stroke="#666"/>`);
    out.push(`<text x="${x + 6}" y="${y + 14}">${escape(l.text)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * One op in a few words for the manifest: kind and shape (linears [N x K], per-token widths,
 * per-head ops [heads x headDim]), a fused linear's bias, accumulation and epilogue.
 */
export function compactOp(op: StepOp, g: StepGraph): string {
  const w = (name: string): number => g.tensors.find((t) => t.name === name)?.width ?? 0;
  switch (op.kind) {
    case 'linear': {
      const n = op.parts.reduce((a, p) => a + (p.out ? w(p.out) : 0), 0) || 2 * w(op.swiglu?.out ?? '');
      return `linear ${op.role} [${n}x${w(op.x)}]${op.rowScale ? ' *rms' : ''}${op.bias ? ' +bias' : ''}${op.accumulate ? ' +=' : ''}${op.swiglu ? ' swiglu' : ''}${op.normOut ? ' +rmsnorm' : ''}`;
    }
    case 'headNorm': case 'rope': return `${op.kind} [${op.heads}x${w(op.x) / op.heads}]`;
    case 'embed': case 'rmsnorm': case 'to16': case 'toFloat': case 'gelu': return `${op.kind} [${w(op.out)}]`;
    case 'swiglu': return `swiglu [${w(op.out)}]`;
    case 'add': return `add [${w(op.x)}]`;
    case 'ropePack': return `ropePack [${w(op.q)}+${w(op.k)}+${w(op.v)}]${op.norm ? ' +qk-norm' : ''}`;
    case 'attention': return 'attention';
  }
}
