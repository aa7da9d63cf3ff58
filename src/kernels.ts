/**
 * `tidarc/kernels`: the runtime a compiled kernel directory loads (its index.js / index.cjs),
 * without the compiler. The main entry pulls in ts-morph and the TypeScript compiler (~1-3 s
 * to import); this one loads in a tenth of that.
 */
export { TidarcError } from './errors.js';
export {
  openKernelLibrary,
  readManifest,
  type AttentionInputs,
  type AttentionOutputs,
  type Backend,
  type KernelLibrary,
  type OpenOptions,
} from './runtime/kernel-library.js';
