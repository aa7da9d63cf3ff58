/**
 * The templates shipped in templates/: handlebars files compiled once per process with
 * noEscape (C++ is not HTML) and strict (a missing field is an error, not an empty string),
 * plus static headers copied verbatim into every output.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Handlebars from 'handlebars';
import { fileTreeDigest } from '../fs/file-tree-digest.js';
import { packageRoot } from '../util/paths.js';

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
  digest ??= fileTreeDigest(join(packageRoot(), 'templates'));
  return digest;
}
