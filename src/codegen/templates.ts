/**
 * The templates shipped in templates/: handlebars files compiled once per process with
 * noEscape (C++ is not HTML) and strict (a missing field is an error, not an empty string),
 * plus static headers copied verbatim into every output.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';

/** The package root: the nearest directory above this module with a package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('tidarc: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
}

const handlebars = Handlebars.create();
const compiled = new Map<string, HandlebarsTemplateDelegate>();
const statics = new Map<string, string>();

export function readTemplateFile(relPath: string): string {
  const cached = statics.get(relPath);
  if (cached !== undefined) return cached;
  const text = readFileSync(join(packageRoot(), 'templates', relPath), 'utf8');
  statics.set(relPath, text);
  return text;
}

export function renderTemplate(relPath: string, view: object): string {
  let template = compiled.get(relPath);
  if (!template) {
    template = handlebars.compile(readTemplateFile(relPath), { noEscape: true, strict: true });
    compiled.set(relPath, template);
  }
  return template(view);
}

let digest: string | undefined;

/** sha256 over every file under templates/ (paths and contents), computed once. */
export function templatesDigest(): string {
  if (digest !== undefined) return digest;
  const root = join(packageRoot(), 'templates');
  const walk = (rel: string): string[] =>
    readdirSync(join(root, rel)).sort().flatMap((name) => {
      const path = rel ? `${rel}/${name}` : name;
      return statSync(join(root, path)).isDirectory() ? walk(path) : [path];
    });
  const hash = createHash('sha256');
  for (const path of walk('')) hash.update(`${path}\n`).update(readFileSync(join(root, path)));
  digest = hash.digest('hex');
  return digest;
}
