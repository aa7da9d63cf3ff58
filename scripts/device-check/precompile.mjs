// The runtime and e2e parts' kernels, compiled into their kernel cache while the GPU parts before
// them run (device_check.py starts this at the beginning of a GPU run, niced): nvcc needs no GPU,
// and its ~20 s (the runtime's small model) and ~40 s (e2e's two models) came out of those parts'
// windows. Each entry is keyed as loadModel keys it (the spec read back from the checkpoint's
// config.json, the device's arch), so a part that starts while an entry compiles waits on its
// lock and then finds it built; a key that differs costs nothing but the compile it would do anyway.
//   node precompile.mjs TIDARC_ROOT CACHE_DIR TARGET CONFIGS.json [RUNTIME_DRAFTS, e.g. 1,2,4,8]
// CONFIGS.json: the e2e models' config.json objects (e2e_hf.hf_config). Prints one JSON line per entry.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runtimeCheckSpec } from './runtime_spec.mjs';

const [root, cacheDir, target, configsFile, draftsText] = process.argv.slice(2);
const load = (path) => import(pathToFileURL(join(root, 'dist', 'src', ...path.split('/'))).href);
const { hfConfigOf, specFromCheckpointConfig } = await load('model/checkpoint.js');
const { cachedKernels, kernelCacheEntry } = await load('build/kernel-cache.js');
const { BYTE_EOS_ID } = await load('model/tokenizer.js');
const configs = [
  ...(draftsText ? [hfConfigOf(runtimeCheckSpec(draftsText.split(',').map(Number)), { eosTokenId: BYTE_EOS_ID })] : []),  // as initModel writes it
  ...JSON.parse(readFileSync(configsFile, 'utf8')),
];
for (const config of configs) {
  const spec = specFromCheckpointConfig(config, 'config.json');  // as loadCheckpoint reads it back
  const t0 = performance.now();
  try {
    const r = await cachedKernels({ spec, target, cacheDir, log: (l) => process.stderr.write(`${l}\n`) });
    process.stdout.write(`${JSON.stringify({ model: spec.name, entry: r.outDir, unchanged: r.unchanged, seconds: (performance.now() - t0) / 1e3 })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ model: spec.name, entry: kernelCacheEntry({ spec, target, cacheDir }), error: String(e instanceof Error ? e.message : e).split('\n')[0] })}\n`);
  }
}
