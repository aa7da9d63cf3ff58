// The device check's launch overheads: the step cost model's StepOverheads and PdlOverheads
// (src/bench/step-cost-model.ts) measured on this device by src/bench/launch-overheads.ts (its
// header says what each series launches and how each constant is derived).
//   node overheads.mjs TIDARC_ROOT WORK_DIR [BUDGET_S]
// TIDARC_ROOT is a built tidarc package (dist/, templates/, the addon). The GPU operators come from
// the kernel cache entry of the runtime part's model (runtime_spec.mjs, keyed as loadModel and
// precompile.mjs key it), in WORK_DIR/cache or $TIDARC_CACHE where it is set: on a GPU the entry's
// cuda/tidarc_ops.fatbin (nvcc compiles the entry on its first use; precompile.mjs or the runtime
// part may have done so already), on the emulated driver ($TIDARC_LIBCUDA) the operators' .emu.so,
// built once beside the cache's entries. PDL series run where pdl.ts would turn PDL on for that entry.
// BUDGET_S (seconds; none: no limit): a shorter plan when little is left after the setup, and a
// result of {"ok":false} at the budget's end whatever is running then.
// Prints ONE JSON line: {format: 1, backend, emulated, device {name, computeCapability}, pdl {on, why},
// kernels {empty, small}, series {graph-E, graph-S, graph-E-pdl|null, graph-S-pdl|null, stream-E, copies, graph-E-copy:
// {n, gpuMs, slopeS, interceptS, r2}}, host {launchS, graphLaunchS, copyS, opLaunchS[, opLaunchPdlS where PDL is on]}, measured {<field>:
// {value, identifiable, from[, measuredS]}} for every field of StepOverheads and PdlOverheads, graphCopyNodeS {value, identifiable,
// from, pairedS, interceptDiffS, slopeDiffS, model {valueS, copyLatencyS, graphNodeGapS, assumedS, from}} (the step's upload as a
// graph node, graph-E-copy against graph-E, beside the model's price of it; bench:step --overheads prices the node with it), plan, stats,
// queue, graphLaunchHost {<graph series>: {n, hostMs, slopeS, interceptS}}, warnings, ok, seconds}; on failure {ok: false, error, seconds}. Exit status 0 either way.
// Emulated timings mean nothing (the emulator runs kernels on the CPU, synchronously).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runtimeCheckSpec } from './runtime_spec.mjs';

const started = performance.now();
const [root, work, budgetText] = process.argv.slice(2);
const deadline = budgetText === undefined ? Infinity : started + 1000 * Number(budgetText);
const seconds = () => (performance.now() - started) / 1e3;
let done = false;
function finish(result) {
  if (done) return;
  done = true;
  process.stdout.write(`${JSON.stringify({ ...result, seconds: seconds() })}\n`);
}
const fail = (e) => finish({ ok: false, error: String(e instanceof Error ? e.message : e).split('\n')[0] });
let phase = 'starting';
/** fs/interrupt.js once loaded: what kills the compilers tidarc started (nvcc, the emulator's c++) and removes their unfinished output. */
let interrupt;
if (Number.isFinite(deadline)) {
  // Whatever runs at the budget's end (an nvcc compile of the entry, a load): the result says so, the compilers
  // started for it are killed (process.exit alone would leave them running into the next part's time), and the process ends.
  setTimeout(() => {
    fail(`out of time: the budget of ${budgetText} s ended while ${phase}`);
    try {
      interrupt?.stopChildProcesses();
      interrupt?.undoPending();
    } catch { /* best effort on the way out */ }
    process.exit(0);
  }, Math.max(0, deadline - performance.now() - 250)).unref();
}

try {
  if (!root || !work) throw new Error('usage: node overheads.mjs TIDARC_ROOT WORK_DIR [BUDGET_S]');
  const load = (path) => import(pathToFileURL(join(root, 'dist', 'src', ...path.split('/'))).href);
  interrupt = await load('fs/interrupt.js');
  const { cachedKernels, sharedCacheDir } = await load('build/kernel-cache.js');
  const { hfConfigOf, specFromCheckpointConfig } = await load('model/checkpoint.js');
  const { BYTE_EOS_ID } = await load('model/tokenizer.js');
  const { loadNative } = await load('runtime/native.js');
  const { CudaDevice } = await load('runtime/cuda/device.js');
  const { programmaticLaunchFor } = await load('runtime/cuda/pdl.js');
  const { probedDecision } = await load('runtime/cuda/pdl-probe.js');
  const { OPS_MODULE } = await load('runtime/cuda/gpu-runner.js');
  const { EMULATED_DEVICE_PREFIX, emulatedOpsModule } = await load('emulate/emulated-modules.js');
  const { ARCH_NAMES } = await load('codegen/arch.js');
  const { measureLaunchOverheads } = await load('bench/launch-overheads.js');

  const status = loadNative().cudaStatus();
  if (!status.available) throw new Error(`CUDA is not usable: ${status.reason}`);
  const device = CudaDevice.open(0);
  try {
    const emulated = device.info.name.startsWith(EMULATED_DEVICE_PREFIX);
    if (!emulated && !ARCH_NAMES.includes(device.arch)) throw new Error(`device ${device.info.name} is ${device.arch}; tidarc compiles for ${ARCH_NAMES.join(', ')}`);
    // The runtime part's model as loadModel keys it (the spec read back from the config.json initModel writes): the same cache entry.
    const spec = specFromCheckpointConfig(hfConfigOf(runtimeCheckSpec([1, 2, 4, 8]), { eosTokenId: BYTE_EOS_ID }), 'config.json');
    const cacheDir = process.env.TIDARC_CACHE ?? join(work, 'cache');
    const log = (l) => process.stderr.write(`${l}\n`);
    phase = `getting the kernels of ${spec.name} for ${emulated ? 'the emulator' : device.arch} (kernel cache ${cacheDir})`;
    const compiled = await cachedKernels({ spec, target: emulated ? 'emulator' : device.arch, cacheDir, log });
    if (!emulated && !compiled.manifest.build?.nvcc) throw new Error(`the kernels for ${device.arch} were not built: ${compiled.manifest.build?.nvccMissing ?? 'no nvcc report'}`);
    phase = 'building the GPU operators for the emulated driver';
    const module = emulated ? await emulatedOpsModule(compiled.outDir, sharedCacheDir(cacheDir), log) : join(compiled.outDir, OPS_MODULE);
    const computeCapability = [device.info.major, device.info.minor];
    // As loadModel decides it: from the entry, the device and the driver, then tried once (pdl-probe.ts): a driver that
    // refuses a programmatic launch or edge gives the series without PDL (and says why) instead of failing them all.
    phase = 'trying a programmatic launch (the PDL probe)';
    const pdl = probedDecision(programmaticLaunchFor({
      option: undefined, manifest: compiled.manifest, computeCapability, compiledArches: compiled.manifest.arches, driverHasLaunchEx: device.programmaticLaunch,
    }), device, compiled.outDir, module);
    // A GPU: lengths 16, 64, 256 (a shorter plan where under 20 s are left: still three lengths, or r2 checks nothing); the
    // emulator: a few launches, its times mean nothing.
    const left = (deadline - performance.now()) / 1e3;
    const plan = emulated
      ? { ns: [1, 2, 3], repeats: 2, hostIterations: 3, graphHostIterations: 2, copyBytes: 4096, maxCopies: 2 }
      : left < 20
        ? { ns: [16, 48, 128], repeats: 3, hostIterations: 100, graphHostIterations: 20, copyBytes: 64 << 20, maxCopies: 400 }
        : { ns: [16, 64, 256], repeats: 7, hostIterations: 200, graphHostIterations: 50, copyBytes: 64 << 20, maxCopies: 400 };
    phase = 'measuring';
    const r = measureLaunchOverheads(device, module, { ...plan, pdl, ...(Number.isFinite(deadline) ? { deadlineMs: deadline - 1000 } : {}) });
    finish({
      format: 1, backend: 'cuda', emulated, device: { name: device.info.name, computeCapability }, pdl: { on: pdl.on, why: pdl.why },
      kernels: r.kernels, series: r.series, host: r.host, measured: r.measured, graphCopyNodeS: r.graphCopyNodeS, plan: r.plan, stats: r.stats, queue: r.queue, graphLaunchHost: r.graphLaunchHost,
      warnings: r.warnings, ok: true,
    });
  } finally {
    device.close();
  }
} catch (e) {
  fail(e);
}
