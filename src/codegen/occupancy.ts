/**
 * How many CTAs of a kernel one SM holds at once, from what ptxas reports (registers, static
 * shared memory) and the launch (threads, dynamic shared memory): the residency the split-KV
 * rule counts slots with (SMs x CTAs per SM; issue 15). The arithmetic is CUDA's occupancy
 * calculator's (cuda_occupancy.h) for compute capability 8.x / 9.0: registers are allocated per
 * warp in units of 256, and the register file is split over 4 sub-partitions that each hold
 * whole warps; every CTA reserves 1 KB of shared memory for the system.
 */
import type { ArchName } from './arch.js';
import type { VariantOccupancy } from './manifest.js';

/** Per-SM limits of an arch (the programming guide's table of compute capabilities). */
export interface SmLimits {
  readonly registers: number;
  readonly sharedBytes: number;
  readonly threads: number;
  readonly ctas: number;
}

// Not in ArchSpec: a per-SM record of its own keeps this file the only reader; Record<ArchName>
// still makes adding an arch fail to typecheck until its limits are here.
export const SM_LIMITS: Readonly<Record<ArchName, SmLimits>> = {
  sm_80: { registers: 65_536, sharedBytes: 167_936, threads: 2048, ctas: 32 },
  sm_86: { registers: 65_536, sharedBytes: 102_400, threads: 1536, ctas: 16 },
  sm_89: { registers: 65_536, sharedBytes: 102_400, threads: 1536, ctas: 24 },
  sm_90: { registers: 65_536, sharedBytes: 233_472, threads: 2048, ctas: 32 },
  sm_90a: { registers: 65_536, sharedBytes: 233_472, threads: 2048, ctas: 32 },  // the same SM as sm_90
};

const REGISTER_UNIT = 256;
const SUB_PARTITIONS = 4;
const SHARED_RESERVED_PER_CTA = 1024;
const SHARED_UNIT = 128;

export interface KernelResources {
  /** ptxas: registers per thread. */
  readonly registers: number;
  /** Static (ptxas) plus dynamic (launch) shared memory of one CTA, bytes. */
  readonly sharedBytes: number;
  readonly threads: number;
}

export interface Occupancy {
  readonly ctasPerSm: number;
  /** What stops one more CTA: registers, shared memory, threads or the CTA limit. */
  readonly limit: 'registers' | 'shared' | 'threads' | 'ctas';
}

/** A kernel's warps a CTA. */
const warpsOf = (k: KernelResources): number => Math.ceil(k.threads / 32);
/** Registers one warp takes, in allocation units. */
const registersPerWarp = (k: KernelResources): number => Math.ceil((k.registers * 32) / REGISTER_UNIT) * REGISTER_UNIT;
/** Shared memory one CTA takes, in allocation units, with the system's reserve. */
const sharedPerCta = (k: KernelResources): number => Math.ceil(k.sharedBytes / SHARED_UNIT) * SHARED_UNIT + SHARED_RESERVED_PER_CTA;

export function occupancy(arch: ArchName, k: KernelResources): Occupancy {
  const sm = SM_LIMITS[arch];
  const warps = warpsOf(k);
  const warpsPerPartition = registersPerWarp(k) === 0 ? Infinity : Math.floor(sm.registers / SUB_PARTITIONS / registersPerWarp(k));
  const byLimit = {
    registers: Math.floor(warpsPerPartition / Math.ceil(warps / SUB_PARTITIONS)),
    shared: Math.floor(sm.sharedBytes / sharedPerCta(k)),
    threads: Math.floor(sm.threads / (warps * 32)),
    ctas: sm.ctas,
  };
  const limit = (Object.keys(byLimit) as (keyof typeof byLimit)[]).reduce((a, b) => (byLimit[b] < byLimit[a] ? b : a));
  return { ctasPerSm: Math.max(0, byLimit[limit]), limit };
}

export function isArchName(name: string): name is ArchName {
  return Object.hasOwn(SM_LIMITS, name);
}

/** A variant's record for the manifest: the main kernel's ptxas figures with its launch's threads and dynamic shared memory. */
export function variantOccupancy(arch: ArchName, ptxas: { readonly registers: number; readonly sharedBytes: number }, launch: { readonly block: number; readonly dynamicSharedBytes: number }): VariantOccupancy {
  const sharedBytes = ptxas.sharedBytes + launch.dynamicSharedBytes;
  const o = occupancy(arch, { registers: ptxas.registers, sharedBytes, threads: launch.block });
  return { registers: ptxas.registers, sharedBytes, ctasPerSm: o.ctasPerSm, limit: o.limit };
}

/**
 * How many CTAs of kernel `next` one SM holds beside `residentCtas` CTAs of kernel `resident`
 * (the same per-SM rules as occupancy(): registers by warp in sub-partitions, shared memory with
 * its per-CTA reserve, threads, CTA slots). What programmatic dependent launch needs: a dependent
 * grid's CTAs are scheduled while its predecessor's are still resident (step-cost-model.ts).
 */
export function ctasBeside(arch: ArchName, resident: KernelResources, residentCtas: number, next: KernelResources): number {
  const sm = SM_LIMITS[arch];
  const partitionRegs = sm.registers / SUB_PARTITIONS - residentCtas * Math.ceil(warpsOf(resident) / SUB_PARTITIONS) * registersPerWarp(resident);
  const nextPartitionRegs = Math.ceil(warpsOf(next) / SUB_PARTITIONS) * registersPerWarp(next);
  const n = Math.min(
    nextPartitionRegs === 0 ? Infinity : Math.floor(partitionRegs / nextPartitionRegs),
    Math.floor((sm.sharedBytes - residentCtas * sharedPerCta(resident)) / sharedPerCta(next)),
    Math.floor((sm.threads - residentCtas * warpsOf(resident) * 32) / (warpsOf(next) * 32)),
    sm.ctas - residentCtas,
  );
  return Math.max(0, n);
}
