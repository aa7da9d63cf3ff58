/**
 * The folder-level import graph of src/ has no cycles: util and the root files (errors.ts,
 * version.ts) at the bottom, then fs, ir, codegen, build, model, runtime, emulate, tune, load,
 * bench and cli. A file cycle (madge) is one bug; a folder cycle is a layering that has begun
 * to dissolve, where no folder can be read, tested or moved without the other.
 *
 *   npx tsx scripts/check-folder-cycles.ts [srcDir]   # exit 1 and the cycles, or 0 and "no folder cycles"
 *
 * Nodes are the folders directly under src/ and each file directly in src/ (index.ts, the API
 * entry, imports every folder; errors.ts imports none). Every relative import counts, type-only
 * and dynamic ones included: a type import is still a dependency of the reader.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** One import that crosses folders: from file, the specifier, and the node it lands in. */
export interface FolderEdge {
  readonly from: string;
  readonly to: string;
  readonly file: string;
  readonly specifier: string;
}

/** The node of a path relative to src: its first folder, or the file itself at the top. */
export function folderOf(relPath: string): string {
  const parts = relPath.split('/');
  return parts.length > 1 ? parts[0]! : relPath;
}

/** Cross-folder edges of the given sources (paths relative to src, '/'-separated). Pure. */
export function folderEdges(sources: ReadonlyMap<string, string>): FolderEdge[] {
  const edges: FolderEdge[] = [];
  for (const [file, text] of sources) {
    const from = folderOf(file);
    for (const imported of ts.preProcessFile(text, true, true).importedFiles) {
      const specifier = imported.fileName;
      if (!specifier.startsWith('.')) continue;
      const target = normalize(join(dirname(file), specifier)).split(sep).join('/');
      if (target.startsWith('..')) continue; // outside src/: not a folder of this graph
      const to = folderOf(target.replace(/\.js$/, '.ts'));
      if (to !== from) edges.push({ from, to, file, specifier });
    }
  }
  return edges;
}

/**
 * The cycles of the folder graph: for every folder that lies on one, a shortest cycle through
 * it, as a closed path [a, b, ..., a] with an import that makes each step.
 */
export function folderCycles(edges: readonly FolderEdge[]): { path: string[]; steps: FolderEdge[] }[] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    if (!next.has(e.from)) next.set(e.from, new Set());
    next.get(e.from)!.add(e.to);
  }
  const nodes = [...new Set(edges.flatMap((e) => [e.from, e.to]))].sort();
  // Tarjan's strongly connected components.
  const index = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], onStack = new Set<string>();
  const components: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of [...(next.get(v) ?? [])].sort()) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      for (let w = stack.pop()!; ; w = stack.pop()!) {
        onStack.delete(w);
        component.push(w);
        if (w === v) break;
      }
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const v of nodes) if (!index.has(v)) visit(v);
  // For each folder of a component, a shortest cycle through it (breadth-first inside the
  // component), without repeating a cycle already listed from another of its folders.
  const cycles: { path: string[]; steps: FolderEdge[] }[] = [];
  const seen = new Set<string>();
  for (const component of components) {
    const inside = new Set(component);
    for (const start of component) {
      const parent = new Map<string, string>();
      const queue = [start];
      let end: string | undefined;
      while (queue.length > 0 && end === undefined) {
        const v = queue.shift()!;
        for (const w of [...(next.get(v) ?? [])].sort()) {
          if (!inside.has(w)) continue;
          if (w === start) { end = v; break; }
          if (!parent.has(w)) { parent.set(w, v); queue.push(w); }
        }
      }
      const back: string[] = [];
      for (let v = end!; v !== start; v = parent.get(v)!) back.push(v);
      const path = [start, ...back.reverse(), start];
      const key = [...path.slice(1)].sort().join(',') + '|' + path.length;
      if (seen.has(key)) continue;
      seen.add(key);
      cycles.push({ path, steps: path.slice(1).map((to, i) => edges.find((e) => e.from === path[i] && e.to === to)!) });
    }
  }
  return cycles;
}

/** The .ts sources under srcDir (declaration files skipped), by path relative to it. */
export function readSources(srcDir: string): Map<string, string> {
  const sources = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) sources.set(relative(srcDir, path).split(sep).join('/'), readFileSync(path, 'utf8'));
    }
  };
  walk(srcDir);
  return sources;
}

export function renderCycles(cycles: ReturnType<typeof folderCycles>): string {
  return cycles.map((c) => [
    `folder cycle: ${c.path.join(' -> ')}`,
    ...c.steps.map((s) => `  ${s.from} -> ${s.to}: src/${s.file} imports '${s.specifier}'`),
  ].join('\n')).join('\n');
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const srcDir = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'src'));
  const cycles = folderCycles(folderEdges(readSources(srcDir)));
  if (cycles.length > 0) {
    process.stderr.write(`${renderCycles(cycles)}\n`);
    process.exit(1);
  }
  process.stdout.write(`no folder cycles in ${relative(process.cwd(), srcDir) || '.'}\n`);
}
