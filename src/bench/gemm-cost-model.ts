/**
 * The GEMM cost model lives in src/codegen/gemm-cost-model.ts since the planner chooses its
 * tiles by it (gemm-tile-choice.ts; codegen may not import bench). Re-exported for the bench
 * scripts and bundles that import it from here.
 */
export * from '../codegen/gemm-cost-model.js';
