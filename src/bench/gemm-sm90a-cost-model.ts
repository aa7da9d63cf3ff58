/**
 * The sm_90a GEMM cost model lives in src/codegen/gemm-sm90a-cost-model.ts since the compile
 * records its family choice by it (gemm-kernel-choice.ts; codegen may not import bench).
 * Re-exported for the bench scripts and the step cost model that import it from here (its tests
 * are in test/codegen).
 */
export * from '../codegen/gemm-sm90a-cost-model.js';
