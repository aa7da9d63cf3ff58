/**
 * The sm_90a attention cost model lives in src/codegen/attention-sm90a-cost-model.ts since the
 * compile records its kernel choice by it (attention-kernel-choice.ts; codegen may not import
 * bench). Re-exported for the bench scripts and tests that import it from here.
 */
export * from '../codegen/attention-sm90a-cost-model.js';
