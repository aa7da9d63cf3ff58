/**
 * The model's weights on the device, keyed by the names the cuda step graph reads: the
 * checkpoint's names, and the fused matrices under the names the rewrite gives them
 * (model.layers.3.self_attn.qkv_proj.weight = q | k | v rows in one buffer, its parts views
 * into it). A fused gate | up whose GEMM has the SwiGLU epilogue is uploaded with its rows
 * interleaved in blocks (its parts then are not views of anything; only the GEMM reads it).
 * A bf16 model compiled with the fold-norms epilogues also gets each foldable RMSNorm's weight
 * widened to float32 (exact; `normWeights`), which the producer GEMM reads, beside the 16-bit
 * one the unfolded graph's rmsnorm reads (a runner may run either: GpuRunnerOptions.foldNorms).
 */
import { interleaveGateUp } from '../../codegen/gemm-epilogue.js';
import type { Manifest } from '../../codegen/manifest.js';
import { AR_VARIANT } from '../../codegen/variant-name.js';
import { TidarcError } from '../../errors.js';
import type { ModelSpec } from '../../ir/model.js';
import { layerPrefix, opWeights } from '../../ir/step-graph.js';
import { type NormFolding, normFolding } from '../../ir/step-fold-norms.js';
import { gpuRewriteOptions, rewriteForGpu } from '../../ir/step-rewrite.js';
import { decode } from '../../util/dtype.js';
import { ropeInvFreq, type WeightMatrix } from '../ops.js';
import { passGraph } from '../model/step.js';
import { type ModelWeights, weightOf } from '../model/weights.js';
import type { CudaDevice, DeviceBuffer } from './device.js';
import type { GpuMatrix } from './gpu-ops.js';

/** The model's weights on the device (a tied lm_head shares the embedding's buffer). */
export interface GpuWeights {
  /** Every matrix and norm the cuda graph reads, fused ones and their parts included. */
  readonly matrices: ReadonlyMap<string, GpuMatrix>;
  /** Biases (fp32), fused ones and views of their parts. */
  readonly biases: ReadonlyMap<string, DeviceBuffer>;
  readonly invFreq: DeviceBuffer;
  readonly bytes: number;
  /** gate | up rows interleaved in blocks of this many for the SwiGLU epilogue (tidarc_gemm_abi.h). */
  readonly gateUpInterleave?: number;
  /** The foldable RMSNorms' weights in float32 (fold-norms' producers read them), by checkpoint name; absent when nothing folds. */
  readonly normWeights?: ReadonlyMap<string, DeviceBuffer>;
  /** The roles whose compiled GEMMs fold RMSNorms (the manifest's flags), when this load folds; runners may still not (gpuGraphChoice). */
  readonly foldNorms?: NormFolding;
  /** Why this load does not fold (no foldNorms). */
  readonly foldNormsWhy?: string;
}

/** What a load folds: the manifest's flagged roles for a bf16 model where `want` (default true), else why not. */
export function loadFolding(spec: ModelSpec, manifest: Pick<Manifest, 'gemms'> | undefined, want = true): { readonly folding: NormFolding } | { readonly why: string } {
  return want ? normFolding(spec, manifest?.gemms) : { why: 'switched off (--no-fold-norms / foldNorms: false)' };
}


/** The RMSNorm weights a fold of `folding` reads in float32 (every norm the folded graph no longer launches). */
export function foldedNormWeights(spec: ModelSpec, folding: NormFolding): string[] {
  const graph = rewriteForGpu(passGraph(spec, 1, { kind: 'step', variant: AR_VARIANT }), { foldNorms: folding });
  return graph.ops.flatMap((op) => (op.kind === 'linear' && op.normOut ? [op.normOut.weight] : []));
}

/**
 * The interleave the compiled gate_up GEMM fuses SwiGLU with, when the manifest has one for
 * these weights' shape and format in every layer (the runner then launches it with the epilogue
 * in every layer: one layer's gate or up stored F32 would leave that layer with no GEMM to run).
 */
function gateUpInterleaveOf(spec: ModelSpec, manifest: Pick<Manifest, 'gemms'> | undefined, w: ModelWeights): number | undefined {
  const g = manifest?.gemms?.find((x) => x.roles.includes('gate_up'));
  if (!g?.swigluInterleave) return undefined;
  for (let layer = 0; layer < spec.layers; layer++) {
    const gate = w.get(`${layerPrefix(layer)}mlp.gate_proj.weight`), up = w.get(`${layerPrefix(layer)}mlp.up_proj.weight`);
    if (!gate || !up || g.n !== gate.rows + up.rows || g.k !== gate.cols || g.dtype !== gate.dtype || up.dtype !== gate.dtype || gate.rows !== up.rows) return undefined;
  }
  return g.swigluInterleave;
}

/** `foldNorms` false: no norm folds in this load's runners (default: where allowed, loadFolding). */
export function uploadWeights(device: CudaDevice, spec: ModelSpec, w: ModelWeights, manifest?: Pick<Manifest, 'gemms'>, o: { readonly foldNorms?: boolean } = {}): GpuWeights {
  const gateUpInterleave = gateUpInterleaveOf(spec, manifest, w);
  // The weights a graph reads do not depend on its token count or schedule.
  const graph = rewriteForGpu(passGraph(spec, 1, { kind: 'step', variant: AR_VARIANT }), gpuRewriteOptions(gateUpInterleave, undefined));
  const matrices = new Map<string, GpuMatrix>();
  const biases = new Map<string, DeviceBuffer>();
  const seen = new Map<WeightMatrix, GpuMatrix>();
  let bytes = 0;
  const upload = (data: ArrayBufferView & { byteLength: number }, label: string): DeviceBuffer => {
    const buf = device.alloc(data.byteLength, label);
    device.upload(buf, data);
    bytes += buf.bytes;
    return buf;
  };
  const matrix = (name: string): void => {
    if (matrices.has(name)) return;
    const m = weightOf(w, name);
    const g = seen.get(m) ?? { buf: upload(m.data, name), dtype: m.dtype, rows: m.rows, cols: m.cols };
    seen.set(m, g);
    matrices.set(name, g);
  };
  /**
   * Row-concatenated matrices in one buffer (one GEMM reads them once), and a view of each part.
   * Parts in different formats (a checkpoint's q_proj stored F32 beside a BF16 k_proj: the loader
   * takes either per tensor) are all widened to f32, exactly, as a wholly F32 fused matrix is run.
   */
  const fused = (name: string, parts: readonly string[], interleave?: number): void => {
    const ms = parts.map((p) => weightOf(w, p));
    const cols = ms[0]!.cols;
    if (ms.some((m) => m.cols !== cols)) throw new TidarcError('runtime', `${name}: the fused parts differ in columns (${parts.map((p, i) => `${p}: ${ms[i]!.cols}`).join(', ')})`);
    const dtype = ms.every((m) => m.dtype === ms[0]!.dtype) ? ms[0]!.dtype : 'f32';
    const rows = ms.reduce((n, m) => n + m.rows, 0);
    const data = dtype === 'f32' ? new Float32Array(rows * cols) : new Uint16Array(rows * cols);
    let at = 0;
    for (const m of ms) data.set(m.dtype === dtype || m.dtype === 'f32' ? m.data : decode(m.dtype, m.data as Uint16Array), at), (at += m.data.length);
    const buf = upload(interleave === undefined ? data : interleaveGateUp(data, cols, interleave), name);
    matrices.set(name, { buf, dtype, rows, cols });
    const elem = data.BYTES_PER_ELEMENT;
    let row = 0;
    ms.forEach((m, i) => {
      matrices.set(parts[i]!, { buf: { ptr: buf.ptr + row * cols * elem, bytes: m.rows * cols * elem, label: `${name} rows ${row}..${row + m.rows - 1}` }, dtype, rows: m.rows, cols });
      row += m.rows;
    });
  };
  /** The parts' biases in one buffer (zeros for a part without one) and a view of each present part. */
  const fusedBias = (name: string, parts: readonly { weight: string; bias?: string }[]): void => {
    const sizes = parts.map((p) => weightOf(w, p.weight).rows);
    const all = new Float32Array(sizes.reduce((a, b) => a + b, 0));
    let at = 0;
    parts.forEach((p, i) => (p.bias && all.set(weightOf(w, p.bias).data as Float32Array, at), (at += sizes[i]!)));
    const buf = upload(all, name);
    biases.set(name, buf);
    at = 0;
    parts.forEach((p, i) => {
      if (p.bias) biases.set(p.bias, { ptr: buf.ptr + at * 4, bytes: sizes[i]! * 4, label: `${name} view` });
      at += sizes[i]!;
    });
  };
  for (const op of graph.ops) {
    if (op.kind === 'linear' && op.parts.length > 1) {
      fused(op.weight, op.parts.map((p) => p.weight), op.swiglu?.interleave);
      if (op.bias) fusedBias(op.bias, op.parts);
    } else if (op.kind === 'linear') {
      matrix(op.weight);
      const bias = op.parts[0]!.bias;
      if (bias && !biases.has(bias)) biases.set(bias, upload(weightOf(w, bias).data, bias));
    } else {
      for (const name of opWeights(op)) matrix(name);
    }
  }
  matrix(graph.head.weight);
  const normWeights = new Map<string, DeviceBuffer>();
  const fold = loadFolding(spec, manifest, o.foldNorms);
  for (const name of 'folding' in fold ? foldedNormWeights(spec, fold.folding) : []) {
    const m = weightOf(w, name);
    normWeights.set(name, upload(m.dtype === 'f32' ? m.data : decode(m.dtype, m.data as Uint16Array), `${name} (float32, folded)`));
  }
  const invFreq = upload(ropeInvFreq(spec.ropeTheta, spec.headDim, spec.ropeScaling), 'rope inverse frequencies');
  const folding = 'folding' in fold ? { foldNorms: fold.folding, normWeights } : { foldNormsWhy: fold.why };
  return { matrices, biases, invFreq, bytes, ...folding, ...(gateUpInterleave ? { gateUpInterleave } : {}) };
}
