/**
 * A mask as text, JSON or SVG, for people and for other tools. Pure: strings in, strings
 * out, deterministic (no timestamps, LF, fixed number formatting).
 *
 * Layout shared by all three: rows are the n in-step queries in order; columns are the P
 * cached prefix keys first, then the n in-step keys in row order. Consecutive rows (columns)
 * with the same segment label form one segment; separators are drawn between segments.
 */
import { TidarcError, requireInteger } from '../errors.js';
import { MAX_LENGTH } from './mask-builders.js';
import { type MaskSpec, denseMask, positions } from './mask.js';

/**
 * Dense output grows with n * (P + n). 2^26 cells (~134 MB of JSON or text) admits every
 * decode step up to k = 64 with an 8K prefix; beyond it string building nears V8's
 * string-length limit, so we refuse with a sentence instead of crashing.
 */
export const MAX_RENDER_CELLS = 1 << 26;

interface Segment {
  readonly label: string;
  readonly start: number;
  readonly count: number;
}

interface MaskView {
  readonly title: string;
  readonly rows: number;
  readonly cols: number;
  readonly positions: readonly number[];
  readonly dense: readonly Uint8Array[];
  readonly rowLabels: readonly string[];
  readonly rowSegments: readonly Segment[];
  readonly colSegments: readonly Segment[];
}

function segmentsOf(labels: readonly string[]): Segment[] {
  const out: Segment[] = [];
  labels.forEach((label, i) => {
    const last = out[out.length - 1];
    if (last && last.label === label) out[out.length - 1] = { ...last, count: last.count + 1 };
    else out.push({ label, start: i, count: 1 });
  });
  return out;
}

function describeParams(mask: MaskSpec, prefix: number): string {
  const parts = Object.entries(mask.params).map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(',')}]` : String(v)}`);
  return [...parts, `prefix=${prefix}`].join(' ');
}

function viewOf(mask: MaskSpec, prefix: number): MaskView {
  const P = requireInteger('prefix', prefix, 0, MAX_LENGTH);
  const rows = mask.tokens.length;
  const cols = P + rows;
  if (rows * cols > MAX_RENDER_CELLS) {
    throw new TidarcError('invalid-argument', 'the mask is too large to render densely', { field: 'cells', value: `${rows} x ${cols}`, allowed: `at most ${MAX_RENDER_CELLS} cells; use a smaller length, draft or prefix` });
  }
  const rowLabels = mask.tokens.map((t) => t.segment);
  return {
    title: `${mask.kind} ${describeParams(mask, P)}: ${rows} queries x ${cols} keys`,
    rows,
    cols,
    positions: positions(mask, P),
    dense: denseMask(mask, P),
    rowLabels,
    rowSegments: segmentsOf(rowLabels),
    colSegments: segmentsOf([...new Array<string>(P).fill('prefix'), ...rowLabels]),
  };
}

/** A table like the one in docs/tidar.md: 1 = visible, '.' = hidden, '|' between key segments. */
export function renderMaskText(mask: MaskSpec, prefix: number): string {
  const v = viewOf(mask, prefix);
  const width = (s: Segment): number => Math.max(2 * s.count - 1, s.label.length);
  const indexWidth = String(v.rows - 1).length;
  const segWidth = Math.max(...v.rowLabels.map((l) => l.length));
  const labels = v.rowLabels.map((seg, q) => `${String(q).padStart(indexWidth)} ${seg.padEnd(segWidth)} @${v.positions[q]}`);
  const labelWidth = Math.max(...labels.map((l) => l.length));
  const header = v.colSegments.map((s) => s.label.padEnd(width(s))).join(' | ');
  const lines = [`# ${v.title} (1 = visible, . = hidden)`, `${' '.repeat(labelWidth)}  ${header}`.trimEnd()];
  v.dense.forEach((row, q) => {
    const cells = v.colSegments.map((s) => {
      const marks: string[] = [];
      for (let c = s.start; c < s.start + s.count; c++) marks.push(row[c] ? '1' : '.');
      return marks.join(' ').padEnd(width(s));
    });
    lines.push(`${labels[q]!.padEnd(labelWidth)}  ${cells.join(' | ')}`.trimEnd());
  });
  return lines.join('\n') + '\n';
}

/**
 * JSON contract read by other tools: kind, the builder's params, prefix, rows, cols,
 * positions (one per row) and visible (rows x cols of 0/1). One matrix row per line keeps
 * big masks diffable without pretty-printing every cell onto its own line.
 */
export function renderMaskJson(mask: MaskSpec, prefix: number): string {
  const v = viewOf(mask, prefix);
  const reserved = new Set(['kind', 'prefix', 'rows', 'cols', 'positions', 'visible']);
  const fields: [string, unknown][] = [['kind', mask.kind]];
  for (const [k, value] of Object.entries(mask.params)) {
    if (reserved.has(k)) throw new TidarcError('invalid-spec', 'a mask parameter name clashes with a JSON field', { field: `params.${k}`, allowed: 'names other than ' + [...reserved].join(', ') });
    fields.push([k, value]);
  }
  fields.push(['prefix', prefix], ['rows', v.rows], ['cols', v.cols], ['positions', v.positions]);
  const body = fields.map(([k, value]) => `  ${JSON.stringify(k)}: ${JSON.stringify(value)}`);
  const matrix = v.dense.map((row) => `    [${row.join(',')}]`).join(',\n');
  body.push(`  "visible": [\n${matrix}\n  ]`);
  return `{\n${body.join(',\n')}\n}\n`;
}

/** Fixed precision keeps SVG output byte-identical across runs and platforms. */
const num = (x: number): string => String(Math.round(x * 1000) / 1000);

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Runs of visible cells in one row, as [start, end) column pairs. */
function visibleRuns(row: Uint8Array): [number, number][] {
  const runs: [number, number][] = [];
  for (let c = 0; c < row.length; c++) {
    if (!row[c]) continue;
    const start = c;
    while (c + 1 < row.length && row[c + 1]) c++;
    runs.push([start, c + 1]);
  }
  return runs;
}

const sameRow = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * The matrix as an SVG picture. Visible cells are merged into one rect per run of equal
 * rows and consecutive columns, so even a k = 64 decode mask stays a few thousand rects;
 * the cell size shrinks with the matrix so the drawing stays about 1200 px on its long side.
 */
export function renderMaskSvg(mask: MaskSpec, prefix: number): string {
  const v = viewOf(mask, prefix);
  const cell = Math.min(20, 1200 / Math.max(v.rows, v.cols));
  const font = 12;
  const longest = (segs: readonly Segment[]): number => Math.max(...segs.map((s) => s.label.length));
  // Label extents from an average glyph width of ~0.62 em; column labels are rotated 45 degrees.
  const colLabelReach = longest(v.colSegments) * font * 0.62 * Math.SQRT1_2;
  const left = 16 + longest(v.rowSegments) * font * 0.62;
  const top = 40 + colLabelReach;
  const heading = `${v.title} (dark = visible)`;
  const width = Math.max(left + v.cols * cell + colLabelReach + 8, 16 + heading.length * font * 0.62);
  const height = top + v.rows * cell + 16;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${num(width)}" height="${num(height)}" viewBox="0 0 ${num(width)} ${num(height)}" font-family="sans-serif" font-size="${font}">`,
    `<title>${escapeXml(v.title)}</title>`,
    `<rect x="0" y="0" width="${num(width)}" height="${num(height)}" fill="#ffffff"/>`,
    `<text x="8" y="${font + 4}">${escapeXml(heading)}</text>`,
    // crispEdges: merged rects at fractional coordinates would otherwise show anti-aliased seams.
    `<g fill="#1f4e79" shape-rendering="crispEdges">`,
  ];
  for (let r = 0; r < v.rows; ) {
    const row = v.dense[r]!;
    let end = r + 1;
    while (end < v.rows && sameRow(v.dense[end]!, row)) end++;
    for (const [c0, c1] of visibleRuns(row)) {
      out.push(`<rect x="${num(left + c0 * cell)}" y="${num(top + r * cell)}" width="${num((c1 - c0) * cell)}" height="${num((end - r) * cell)}"/>`);
    }
    r = end;
  }
  out.push('</g>');
  const right = left + v.cols * cell, bottom = top + v.rows * cell;
  // A faint cell grid helps count cells in small masks; in big ones it would be solid grey.
  if (cell >= 6) {
    out.push(`<g stroke="#888888" stroke-opacity="0.35" stroke-width="0.5">`);
    for (let c = 1; c < v.cols; c++) out.push(`<line x1="${num(left + c * cell)}" y1="${num(top)}" x2="${num(left + c * cell)}" y2="${num(bottom)}"/>`);
    for (let r = 1; r < v.rows; r++) out.push(`<line x1="${num(left)}" y1="${num(top + r * cell)}" x2="${num(right)}" y2="${num(top + r * cell)}"/>`);
    out.push('</g>');
  }
  out.push(`<g stroke="#c0392b" stroke-width="1">`);
  for (const s of v.colSegments.slice(1)) out.push(`<line x1="${num(left + s.start * cell)}" y1="${num(top)}" x2="${num(left + s.start * cell)}" y2="${num(bottom)}"/>`);
  for (const s of v.rowSegments.slice(1)) out.push(`<line x1="${num(left)}" y1="${num(top + s.start * cell)}" x2="${num(right)}" y2="${num(top + s.start * cell)}"/>`);
  out.push('</g>', `<rect x="${num(left)}" y="${num(top)}" width="${num(v.cols * cell)}" height="${num(v.rows * cell)}" fill="none" stroke="#555555" stroke-width="1"/>`);
  // Labels of segments too thin to hold a line of text would overprint their neighbours.
  out.push('<g fill="#222222">');
  for (const s of v.rowSegments) {
    if (s.count * cell < font * 0.8 && v.rowSegments.length > 1) continue;
    out.push(`<text x="${num(left - 6)}" y="${num(top + (s.start + s.count / 2) * cell + font * 0.35)}" text-anchor="end">${escapeXml(s.label)}</text>`);
  }
  for (const s of v.colSegments) {
    if (s.count * cell < font * 0.8 && v.colSegments.length > 1) continue;
    const x = left + (s.start + s.count / 2) * cell, y = top - 6;
    out.push(`<text x="${num(x)}" y="${num(y)}" transform="rotate(-45 ${num(x)} ${num(y)})">${escapeXml(s.label)}</text>`);
  }
  out.push('</g>', '</svg>');
  return out.join('\n') + '\n';
}
