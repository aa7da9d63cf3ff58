/**
 * Writes the files rendered from the ABI's one source (src/runtime/cuda/op-abi.ts): the C
 * headers in templates/ and the device check's Python packing. Run after changing op-abi.ts,
 * then `npm run generate` (the goldens copy the headers):
 *
 *   npx tsx scripts/generate-abi.ts
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HARNESS_HEADER, renderHarnessHeader } from '../src/emulate/harness-protocol.js';
import { ABI_FILES, renderAttentionArgsHeader, renderAttentionHeader, renderOpsHeader, renderPythonAbi } from '../src/runtime/cuda/abi-render.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const files: [string, string][] = [
  [ABI_FILES.attentionHeader, renderAttentionHeader()],
  [ABI_FILES.attentionArgsHeader, renderAttentionArgsHeader()],
  [ABI_FILES.opsHeader, renderOpsHeader()],
  [ABI_FILES.python, renderPythonAbi()],
  [HARNESS_HEADER, renderHarnessHeader()],
];
for (const [path, text] of files) {
  writeFileSync(join(root, path), text);
  process.stdout.write(`wrote ${path}\n`);
}
