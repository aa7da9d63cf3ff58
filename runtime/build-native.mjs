#!/usr/bin/env node
// Builds the native addon (runtime/) into build/native with cmake-js: `npm run build:native` in a
// clone, and the package's install script when tidarc is installed as a dependency. Plain
// JavaScript, so installing needs no TypeScript. node-addon-api and node-api-headers are found
// the way Node finds them (npm usually hoists a dependency's dependencies beside it, so they are
// not in tidarc's own node_modules) and passed to CMake as TIDARC_NAPI_INCLUDE_DIRS.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
// node-addon-api gives its directory relative to the working directory.
const includeDirs = [resolve(require('node-addon-api').include_dir), require('node-api-headers').include_dir];
const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const args = [
  cmakeJs, 'compile', '--directory', 'runtime', '--out', 'build/native', '--log-level', 'warn',
  `--CDTIDARC_NAPI_INCLUDE_DIRS=${includeDirs.join(';')}`, ...process.argv.slice(2),
];
const run = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (run.status !== 0) {
  const why = run.error ? run.error.message : run.signal ? `killed by ${run.signal}` : `exit code ${run.status}`;
  console.error(`tidarc: error: building the native addon in ${join(root, 'build', 'native')} failed (cmake-js: ${why}); it needs cmake >= 3.15 and a C++17 compiler (g++): install them and run \`npm rebuild tidarc\` (\`npm run build:native\` in a clone)`);
  process.exit(1);
}
