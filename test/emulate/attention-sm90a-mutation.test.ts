/**
 * The sm_90a attention's emulator checks can fail: each mutant is a copy of the generated unit's
 * kernel header with one classic Hopper bug, and each must be caught by the finding named (or a
 * mismatch against the float64 reference). The unit: the prefill chunk, fp16, head dim 64,
 * G = 4 (256 rows: 2 tiles of 2 consumer warpgroups), prefixes 130 and 17 (TMA tiles, then
 * zero-filled plain-load tails, then the in-step tiles), 1 split (3 for the split merge's mutant).
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runPool } from '../../src/build/pool.js';
import { findCxx } from '../../src/build/toolchain.js';
import { planAttentionSm90a } from '../../src/codegen/attention-sm90a.js';
import { prefillChunkVariant } from '../../src/codegen/variant.js';
import { type EmulationReport, emulateVariant } from '../../src/emulate/emulate-variant.js';
import { sharedEmulatorRuntime } from '../helpers/emulated-driver.js';
import { buildSm90aAttentionHarness, sm90aRunVariant, writeSm90aAttentionUnit } from './attention-sm90a-emu.js';

interface Mutant {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  readonly caughtBy: 'mismatch' | 'tma' | 'mbarrier' | 'descriptor' | 'wgmma' | 'proxy' | 'out-of-bounds' | 'barrier' | 'fence';
  /** A finding that must name the bug as well (where a mismatch alone would not say what it is). */
  readonly naming?: { readonly kind: string; readonly saying: RegExp };
  /** The header mutated (default the kernel's; the split merge is tidarc_attention.cuh's), and the splits run (default 1). */
  readonly file?: 'cuda/tidarc_attention.cuh';
  readonly splits?: 3;
}

const HEADER = 'cuda/tidarc_attention_sm90a.cuh';
const MUTANTS: readonly Mutant[] = [
  { name: 'a consumer reads a stage without waiting on its full mbarrier', from: '    mbarrier_wait(&full[s], (i / C::kStages) & 1);\n', to: '', caughtBy: 'tma' },
  { name: 'the K descriptor says 64B swizzle; TMA wrote 128B', from: 'const uint64_t desc_k = smem_desc(ring + s * S::kStageBytes, Swizzle::b128, 16, 1024);', to: 'const uint64_t desc_k = smem_desc(ring + s * S::kStageBytes, Swizzle::b64, 16, 1024);', caughtBy: 'descriptor' },
  { name: 'the scores are read without wgmma.wait_group', from: '    wgmma_wait<1>();  // S_i is in sacc; P V of tile i - 1 may still run\n', to: '', caughtBy: 'mismatch',
    naming: { kind: 'wgmma', saying: /wrote accumulator d\[\d+\] of an in-flight wgmma/ } },
  { name: 'o is rescaled while the previous tile\'s P V wgmma still writes it', from: '    wgmma_wait<0>();  // P V of tile i - 1 has retired', to: '    wgmma_wait<1>();  // P V of tile i - 1 has retired', caughtBy: 'mismatch',
    naming: { kind: 'wgmma', saying: /accumulator .* before wgmma\.wait_group/ } },
  { name: 'the producer refills a stage without waiting for its release', from: '    if (i >= C::kStages) mbarrier_wait(&empty[s], (i / C::kStages - 1) & 1);', to: '', caughtBy: 'mbarrier' },
  { name: 'the producer\'s cp.async writes are not fenced for the async proxy', from: '    fence_proxy_async();  // these generic-proxy writes', to: '    // these generic-proxy writes', caughtBy: 'proxy' },
  { name: 'the producer arrives before its cp.async copies landed', from: '    cp_async_wait<0>();\n    fence_proxy_async();  // these', to: '    fence_proxy_async();  // these', caughtBy: 'mismatch',
    naming: { kind: 'cp-async', saying: /^wgmma reads B at shared bytes \d+\.\.\d+ while the cp\.async of thread/ } },
  // Right results on the emulator before its checks were as strict as the hardware (the fence
  // counted for every store of its __syncthreads epoch; register A was copied at issue).
  { name: 'the producer fences after arriving on the full mbarrier (the consumers\' wgmma is not ordered after the fence)',
    from: '    fence_proxy_async();  // these generic-proxy writes before the consumers\' wgmma reads them\n    mbarrier_arrive(&full[s]);',
    to: '    mbarrier_arrive(&full[s]);\n    fence_proxy_async();  // these generic-proxy writes before the consumers\' wgmma reads them', caughtBy: 'proxy',
    naming: { kind: 'proxy', saying: /has not synchronised with that fence/ } },
  { name: 'the producer fences before its cp.async copies complete', from: '    cp_async_wait<0>();\n    fence_proxy_async();  // these', to: '    fence_proxy_async();\n    cp_async_wait<0>();  // these', caughtBy: 'proxy' },
  { name: 'P of tile i is packed into registers the P V wgmma of tile i - 1 still reads', from: '    if constexpr (kPrev) {\n      wgmma_wait<0>();',
    to: '    for (int kk = 0; kk < NT / 16; ++kk) p_fragment<T>(as_fragments(sacc), kk, pa[kk]);\n    if constexpr (kPrev) {\n      wgmma_wait<0>();', caughtBy: 'wgmma' },
  { name: 'a consumer never hands the ping-pong turn over (no bar.arrive): a deadlock, reported, not hung', from: 'if (group == 0) named_barrier_arrive<kTurnBarrier + 1, 256>();', to: 'if (group == 0) {}', caughtBy: 'barrier' },
  { name: 'a consumer hands the turn to itself (the named barrier ids of bar.arrive and bar.sync do not pair)', from: 'named_barrier_arrive<kTurnBarrier + 1, 256>()', to: 'named_barrier_arrive<kTurnBarrier, 256>()', caughtBy: 'barrier' },
  { name: 'bar.sync counts one warpgroup (128 threads), bar.arrive two', from: 'named_barrier_sync<kTurnBarrier + 1, 256>()', to: 'named_barrier_sync<kTurnBarrier + 1, 128>()', caughtBy: 'barrier' },
  // Right results and no deadlock on the emulator before it saw a thread arrive twice in a phase:
  // warpgroup 1's arrivals of two tiles fill a phase, so the ping-pong silently stops ordering.
  { name: 'warpgroup 0 never waits for its turn (bar.arrive twice in one phase)', from: '      else if (i > 0) named_barrier_sync<kTurnBarrier, 256>();\n', to: '', caughtBy: 'barrier',
    naming: { kind: 'barrier', saying: /^bar\.arrive [12]: thread \d+ \(warp \d+\) arrives again in the phase it already arrived in/ } },
  // Right results and no finding before the emulator looked at a block's named barriers at its end.
  { name: 'warpgroup 1 hands the turn over after its last tile too (a phase left half-arrived at exit)', from: '      else if (i + 1 < num_tiles) named_barrier_arrive<kTurnBarrier, 256>();', to: '      else named_barrier_arrive<kTurnBarrier, 256>();', caughtBy: 'barrier',
    naming: { kind: 'barrier', saying: /^named barrier 1: the block ends with a phase half-arrived \(128 of its 256 threads arrived, begun by a bar\.arrive\)/ } },
  // The split merge (shared with the mma.sync kernel) without its acquire, on the sm_90a kernel's
  // CTAs: right results and no finding before the emulator checked the handoff's reading side
  // (runtime/emu/emu_global.cpp): the wait polls with a volatile (relaxed) load, no acquire.
  { name: 'the merge duty polls its group\'s count without an acquire', file: 'cuda/tidarc_attention.cuh', from: 'while (ld_acquire_gpu_i32(done + target) < splits)', to: 'while (*static_cast<volatile int*>(done + target) < splits)', caughtBy: 'fence', splits: 3,
    naming: { kind: 'fence', saying: /before this CTA observed that counter/ } },
  { name: 'the prefix tail is not zero-filled past the valid keys (the NaN cache tail reaches P V)', from: 'const bool ok = row < tile.valid;', to: 'const bool ok = row < tile.valid + (tile.mode == kPrefixTail ? 3 : 0);', caughtBy: 'mismatch' },
];

const cxx = await findCxx();
const root = mkdtempSync(join(tmpdir(), 'tidarc-emu-sm90a-mut-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const reports = new Map<string, EmulationReport>();

beforeAll(async () => {
  if (!cxx.found) return;
  const plan = planAttentionSm90a(prefillChunkVariant({ dtype: 'fp16', headDim: 64, qHeads: 4, kvHeads: 1 }));
  const base = join(root, 'unit');
  writeSm90aAttentionUnit(base, plan);
  const objects = await sharedEmulatorRuntime();
  await runPool([...MUTANTS.entries()], 2, async ([i, m]) => {
    const dir = join(root, `mutant${i}`);
    mkdirSync(dir);
    cpSync(join(base, 'cuda'), join(dir, 'cuda'), { recursive: true });
    const path = join(dir, m.file ?? HEADER);
    const text = readFileSync(path, 'utf8');
    if (text.split(m.from).length !== 2) throw new Error(`mutant "${m.name}": pattern not found exactly once in ${m.file ?? HEADER}`);
    writeFileSync(path, text.replace(m.from, m.to));
    const unit = { plan, source: join(dir, plan.source), cudaDir: join(dir, 'cuda') };
    await buildSm90aAttentionHarness(cxx.tool.path, unit, objects, join(dir, 'emu'));
    reports.set(m.name, await emulateVariant(join(dir, 'emu'), sm90aRunVariant(plan), { batch: 2, prefixLen: [130, 17], splits: m.splits ?? 1, seed: 7 }, dir));
  });
}, 600_000);

describe.skipIf(!cxx.found)('mutants of the sm_90a attention are caught', () => {
  test.for(MUTANTS.map((m) => [m.name, m] as const))('%s', ([, m]) => {
    const r = reports.get(m.name)!;
    expect(r.ok).toBe(false);
    if (m.caughtBy === 'mismatch') expect(r.maxError).toBeGreaterThan(r.tolerance);
    else expect(Object.keys(r.findingCounts), JSON.stringify(r.findings.slice(0, 2))).toContain(m.caughtBy);
    if (m.naming) {
      const { kind, saying } = m.naming;
      expect(r.findings.filter((f) => f.kind === kind).map((f) => f.message).find((text) => saying.test(text)), JSON.stringify(r.findings.slice(0, 3))).toBeDefined();
    }
  });
});
