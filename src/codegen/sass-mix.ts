/**
 * The instruction mix of a kernel's hot loop, from `cuobjdump -sass` text (src/build/sass.ts runs
 * the tool), and a per-pipe issue model of one warp-iteration on one SM sub-partition: what says
 * whether the softmax, the address arithmetic and the loop control fit beside the mma.sync of an
 * attention key tile (src/codegen/sass-counts.ts measures them, attention-cost-model.ts prices
 * them). Pure: text in, counts and cycles out.
 *
 *   parse     each `Function : name` section's instructions (address, predicate, opcode with its
 *             modifiers, operands, a branch's target).
 *   loops     a backward BRA (target at or below its own address) closes a loop [target, BRA].
 *   hot loop  the loop whose body holds the most HMMA (or HGMMA, sm_90a's wgmma); of loops
 *             holding as many (an outer loop holds its inner loops' HMMA), the innermost. Loops nested inside the hot loop are
 *             reported (nested), and their bodies count once an iteration of the hot loop: their
 *             trip counts are not in the SASS (the attention kernel has none: every inner loop is
 *             unrolled).
 *   hot path  the instructions one iteration executes on an unmasked key tile: of the paths from
 *             the loop's head to its back edge (the body's blocks as a DAG, inner back edges
 *             dropped), the one with the most memory and tensor instructions (LDGSTS, LDSM, LDS,
 *             HMMA: an iteration in steady state issues the next tile's cp.async copies, as every
 *             one but the last S - 1 does) and, of those, the fewest instructions: every mask
 *             test skips its mask block, as on a full prefix tile (tidarc_attention.cuh
 *             softmax_max: kPrefixFull takes neither branch). A tie keeps the fall-through.
 *   classes   each opcode's row of the throughput table (CLASS_OF), or 'issue' (no pipe limit
 *             modelled: moves, loads, stores, barriers, branches, uniform-datapath ops).
 *   model     issue cycles = instructions (one a clock a sub-partition); each pipe's cycles =
 *             its instructions x 32 / its lanes a clock a sub-partition; the iteration's cycles =
 *             the largest of them. HMMA's pipe is not a table row: its cycles an instruction come
 *             from the mma.sync rate the cost model already assumes (hmmaCycles).
 */

export interface SassInstruction {
  readonly address: number;
  /** The guard predicate as written (`P0`, `!P1`), or undefined. */
  readonly predicate?: string;
  /** The opcode with its modifiers, e.g. `HMMA.16816.F32.BF16`. */
  readonly opcode: string;
  readonly operands: string;
  /** A BRA's target address. */
  readonly target?: number;
}

export interface SassKernel {
  readonly name: string;
  /** The `code for sm_XX` section it was printed under (a fatbin holds one a compiled arch). */
  readonly arch: string;
  readonly instructions: readonly SassInstruction[];
}

/** The kernels of `cuobjdump -sass` output, each with its arch and its instructions in address order. */
export function parseSass(text: string): SassKernel[] {
  const kernels: { name: string; arch: string; instructions: SassInstruction[] }[] = [];
  let current: { name: string; arch: string; instructions: SassInstruction[] } | undefined;
  let arch = '';
  for (const line of text.split('\n')) {
    const code = /^\s*code for (sm_\w+)/.exec(line);
    if (code) {
      arch = code[1]!;
      current = undefined;
      continue;
    }
    const fn = /^\s*Function\s*:\s*(\S+)/.exec(line);
    if (fn) {
      current = { name: fn[1]!, arch, instructions: [] };
      kernels.push(current);
      continue;
    }
    const m = /^\s*\/\*([0-9a-f]{4,})\*\/\s+(?:@(!?U?P[T0-9]+)\s+)?([A-Z][A-Za-z0-9_.]*)\s*([^;]*);/.exec(line);  // modifiers may hold lower case: HGMMA.64x64x16
    if (!m || !current) continue;
    const opcode = m[3]!;
    const operands = m[4]!.trim();
    const branch = /^BRA\b/.test(opcode) ? /(?:^|\s|`\(|\()(0x[0-9a-f]+)\b/.exec(operands) : null;
    current.instructions.push({
      address: parseInt(m[1]!, 16),
      ...(m[2] ? { predicate: m[2] } : {}),
      opcode,
      operands,
      ...(branch ? { target: parseInt(branch[1]!, 16) } : {}),
    });
  }
  return kernels;
}

export interface SassLoop {
  /** The back edge's target: the loop's first instruction. */
  readonly head: number;
  /** The backward BRA's address: the loop's last instruction. */
  readonly tail: number;
  readonly instructions: number;
  readonly hmma: number;
}

/** A tensor-core instruction: mma.sync's HMMA or sm_90a's warpgroup HGMMA (wgmma), the 'hmma' class. */
const isHmma = (i: SassInstruction): boolean => /^H(G?)MMA\b/.test(i.opcode);

/** Every loop of a kernel: a backward BRA closes [its target, itself]. */
export function findLoops(kernel: SassKernel): SassLoop[] {
  const ins = kernel.instructions;
  return ins.filter((i) => i.target !== undefined && i.target <= i.address).map((back) => {
    const body = ins.filter((i) => i.address >= back.target! && i.address <= back.address);
    return { head: back.target!, tail: back.address, instructions: body.length, hmma: body.filter(isHmma).length };
  });
}

export interface HotLoop {
  readonly loop: SassLoop;
  /** Loops inside it (their bodies count once an iteration). */
  readonly nested: readonly SassLoop[];
  /** The instructions of one unmasked iteration, in address order. */
  readonly path: readonly SassInstruction[];
}

/** The kernel's hot loop (the most HMMA, then the innermost) and its unmasked path; undefined without a loop holding HMMA. */
export function hotLoop(kernel: SassKernel): HotLoop | undefined {
  const loops = findLoops(kernel).filter((l) => l.hmma > 0);
  if (loops.length === 0) return undefined;
  const loop = [...loops].sort((a, b) => b.hmma - a.hmma || a.instructions - b.instructions)[0]!;
  const nested = findLoops(kernel).filter((l) => l !== loop && l.head >= loop.head && l.tail < loop.tail && !(l.head === loop.head && l.tail === loop.tail));
  return { loop, nested, path: hotPath(kernel, loop) };
}

/** Instructions that move tile data or feed the tensor cores: a steady-state iteration issues all of them. */
const isWork = (i: SassInstruction): boolean => /^(HMMA|HGMMA|LDGSTS|LDSM|LDS)\b/.test(i.opcode);

/**
 * The path of one unmasked iteration (see the header): a longest-work, then shortest, path over
 * the loop body's DAG from its head to its back edge. Unconditional BRA jumps; a guarded one may
 * fall through or jump; EXIT and RET end a path (never the loop's); inner back edges are dropped.
 */
export function hotPath(kernel: SassKernel, loop: SassLoop): SassInstruction[] {
  const body = kernel.instructions.filter((i) => i.address >= loop.head && i.address <= loop.tail);
  const index = new Map(body.map((i, n) => [i.address, n]));
  const end = body.length - 1;
  // best[n]: [work, -instructions] of the best path from n to the back edge (inclusive), and the next index.
  const best: ({ work: number; count: number; next: number } | undefined)[] = new Array(body.length);
  const better = (a: { work: number; count: number }, b: { work: number; count: number } | undefined): boolean =>
    b === undefined || a.work > b.work || (a.work === b.work && a.count < b.count);
  for (let n = end; n >= 0; n--) {
    const i = body[n]!;
    const here = { work: isWork(i) ? 1 : 0, count: 1 };
    if (n === end) {
      best[n] = { ...here, next: -1 };
      continue;
    }
    if (/^(EXIT|RET)\b/.test(i.opcode) && !i.predicate) continue;
    const successors: number[] = [];
    const jump = i.target !== undefined && i.target > i.address ? index.get(i.target) : undefined;
    const unconditional = /^BRA\b/.test(i.opcode) && !i.predicate;
    if (!unconditional) successors.push(n + 1);  // fall-through first: it keeps a tie
    if (jump !== undefined) successors.push(jump);
    let pick: { work: number; count: number; next: number } | undefined;
    for (const s of successors) {
      const b = best[s];
      if (!b) continue;
      const cand = { work: here.work + b.work, count: here.count + b.count, next: s };
      if (better(cand, pick)) pick = cand;
    }
    best[n] = pick;
  }
  const path: SassInstruction[] = [];
  for (let n = 0; n >= 0 && best[n]; n = best[n]!.next) path.push(body[n]!);
  return path;
}

/**
 * Rows of the CUDA C++ Programming Guide's "Arithmetic Instructions" throughput table (Best
 * Practices Guide 12.1.1, "Throughput of Native Arithmetic Instructions: number of results per
 * clock cycle per multiprocessor"), plus the tensor pipe ('hmma': mma.sync's HMMA and sm_90a's
 * HGMMA, one instruction a wgmma of one warp; the WARPGROUP.ARRIVE / DEPBAR fences around them
 * are 'issue'), and 'issue' for what no row limits here.
 */
export const INSTRUCTION_CLASSES = ['hmma', 'fp32', 'imad', 'alu', 'conv', 'mufu', 'shfl', 'issue'] as const;
export type InstructionClass = (typeof INSTRUCTION_CLASSES)[number];

/**
 * An opcode's class by its base name: fp32 add/multiply/multiply-add; 32-bit integer multiply and
 * multiply-add (IMAD and its MOV/SHL/IADD/WIDE forms run on the multiply-add pipe); 'alu' is the
 * integer add, compare/min/max (integer and float, selects) and shift/bitwise-logic rows, which the
 * table gives the same rate (64 a SM on 8.0 and 9.0) and which are assumed to share one pipe (16
 * lanes a sub-partition); conversions (F2FP's packs included: "all other type conversions");
 * MUFU (ex2, rcp, lg2); warp shuffles.
 */
const CLASS_OF: Readonly<Record<string, InstructionClass>> = {
  HMMA: 'hmma', HGMMA: 'hmma',
  FADD: 'fp32', FMUL: 'fp32', FFMA: 'fp32', FSWZADD: 'fp32',
  IMAD: 'imad', IMUL: 'imad',
  IADD3: 'alu', IADD: 'alu', VIADD: 'alu', IABS: 'alu', ISETP: 'alu', FSETP: 'alu', IMNMX: 'alu', VIMNMX: 'alu', VIADDMNMX: 'alu',
  FMNMX: 'alu', FSEL: 'alu', SEL: 'alu', SHF: 'alu', SHL: 'alu', SHR: 'alu', LOP3: 'alu', LOP: 'alu', LEA: 'alu', BFE: 'alu', BFI: 'alu',
  PRMT: 'alu', PLOP3: 'alu', FCHK: 'alu',
  F2FP: 'conv', F2F: 'conv', I2F: 'conv', F2I: 'conv', I2FP: 'conv', F2IP: 'conv', I2I: 'conv',
  MUFU: 'mufu',
  SHFL: 'shfl',
};

export function classOf(opcode: string): InstructionClass {
  return CLASS_OF[opcode.split('.')[0]!] ?? 'issue';
}

export type ClassCounts = Readonly<Record<InstructionClass, number>>;

export function countClasses(path: readonly SassInstruction[]): ClassCounts {
  const counts = Object.fromEntries(INSTRUCTION_CLASSES.map((c) => [c, 0])) as Record<InstructionClass, number>;
  for (const i of path) counts[classOf(i.opcode)]++;
  return counts;
}

export type PipeArch = 'sm_80' | 'sm_90';

/**
 * Results a clock an SM of each limited class, by compute capability (the table above, columns 8.0
 * and 9.0): fp32 add/mul/fma 64 and 128; 32-bit integer multiply-add 64; integer add, compare/
 * min/max, shift and bitwise logic 64; "all other type conversions" 16; 32-bit floating-point
 * reciprocal, exp2, log2 (MUFU) 16; warp shuffle 32.
 */
export const PIPE_RESULTS_PER_SM: Readonly<Record<PipeArch, Readonly<Record<Exclude<InstructionClass, 'hmma' | 'issue'>, number>>>> = {
  sm_80: { fp32: 64, imad: 64, alu: 64, conv: 16, mufu: 16, shfl: 32 },
  sm_90: { fp32: 128, imad: 64, alu: 64, conv: 16, mufu: 16, shfl: 32 },
};

/** Sub-partitions (warp schedulers, one instruction issued a clock each) of an SM on sm_80 and sm_90. */
export const SUB_PARTITIONS = 4;

/** FLOPs of one HMMA.16816 (m16n8k16: 2 x 16 x 8 x 16). */
export const HMMA_FLOPS = 4096;

/**
 * Clocks one HMMA.16816 holds a sub-partition's tensor pipe at `flopsPerSmPerClock` (the cost model's
 * mma.sync rate over SMs x clock): 4096 / (rate / 4).
 */
export function hmmaCycles(flopsPerSmPerClock: number): number {
  return HMMA_FLOPS / (flopsPerSmPerClock / SUB_PARTITIONS);
}

export interface IterationCycles {
  /** One issue slot an instruction. */
  readonly issue: number;
  /** Each limited class's cycles (HMMA's at hmmaCyclesEach). */
  readonly pipes: Readonly<Record<Exclude<InstructionClass, 'issue'>, number>>;
  /** max(issue, every pipe). */
  readonly cycles: number;
  readonly limiter: 'issue' | Exclude<InstructionClass, 'issue'>;
}

/** The cycles one warp-iteration of `counts` takes a sub-partition on `arch`, HMMA at `hmmaCyclesEach` clocks each. */
export function iterationCycles(counts: ClassCounts, arch: PipeArch, hmmaCyclesEach: number): IterationCycles {
  const issue = INSTRUCTION_CLASSES.reduce((n, c) => n + counts[c], 0);
  const rates = PIPE_RESULTS_PER_SM[arch];
  const pipes = {
    hmma: counts.hmma * hmmaCyclesEach,
    ...Object.fromEntries((Object.keys(rates) as (keyof typeof rates)[]).map((c) => [c, (counts[c] * 32) / (rates[c] / SUB_PARTITIONS)])),
  } as Record<Exclude<InstructionClass, 'issue'>, number>;
  let limiter: IterationCycles['limiter'] = 'issue';
  let cycles = issue;
  for (const [c, v] of Object.entries(pipes) as [Exclude<InstructionClass, 'issue'>, number][]) {
    if (v > cycles) {
      cycles = v;
      limiter = c;
    }
  }
  return { issue, pipes, cycles, limiter };
}
