/**
 * The sm_90a attention cost model lives in src/codegen/attention-sm90a-cost-model.ts since the
 * compile records its kernel choice by it (attention-kernel-choice.ts; codegen may not import
 * bench). Re-exported for the bench scripts and the step cost model that import it from here
 * (its tests are in test/codegen).
 */
export * from '../codegen/attention-sm90a-cost-model.js';
