/*! tidarc emulator: wgmma.mma_async m64nNk16 (bf16/fp16 in, fp32 accumulate) as a rendezvous of
    the 128 threads of a warpgroup. Operands come from shared memory through matrix descriptors
    (decoded per the PTX ISA's canonical layouts, K-major or MN-major, swizzle none/32/64/128B) or,
    for A, from registers. The result is asynchronous: the accumulators hold a signalling NaN
    (kInFlightBits) until wgmma.wait_group retires the group, as reading them early gives garbage
    on the hardware. PTX ISA, wgmma.wait_group: accessing the accumulators or the registers of A
    of a wgmma before a wait_group that retires it is undefined. So a store to (or arithmetic on)
    an in-flight accumulator, seen as changed bits at the next issue into it or at its retirement,
    and registers of A that differ at retirement from their bits at issue are findings. */
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "emu_hopper.h"
#include "emu_state.h"

namespace tidarc_emu {
namespace hopper {

uint32_t group_retired(int group) {
  uint32_t r = UINT32_MAX;
  for (int t = group * 128; t < group * 128 + 128; ++t) r = std::min(r, g.threads[static_cast<size_t>(t)].retired);
  return r;
}

void thread_end(int tid) {
  if (!g.active) return;
  const ThreadState& ts = g.threads[static_cast<size_t>(tid)];
  if (!ts.mma.empty())
    detail::report("wgmma", detail::fmt("%zu wgmma.mma_async results were never retired by wgmma.wait_group (%s) before the thread exited",
                                        ts.mma.size(), ts.mma.back().group < 0 ? "not even committed" : "its accumulators were read in flight"));
}

namespace {

using detail::fmt;
using detail::report;

/**
 * Reports what the kernel changed of an in-flight wgmma's registers by `when` (the next wgmma
 * into the same accumulators, or the wait_group that retires it): an accumulator whose bits are
 * no longer kInFlightBits was stored to or computed with, and register A (wgmma_rs) no longer
 * holding its bits at issue was overwritten, which the hardware may read instead (PTX ISA,
 * wgmma.wait_group; the Hopper path packs P into A while the softmax of the next tile runs).
 */
void check_untouched(const PendingMma& p, int tid, const char* when) {
  const int group = tid / 128;
  for (size_t i = 0; i < p.values.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &p.d[i], 4);
    if (bits == kInFlightBits) continue;
    report("wgmma", fmt("%s wrote accumulator d[%zu] of an in-flight wgmma.mma_async (issue %u of warpgroup %d) before wgmma.wait_group retired it (seen at %s): undefined on the hardware, where the wgmma writes it too",
                        detail::thread_name(tid).c_str(), i, p.seq, group, when));
    break;
  }
  if (p.a && std::memcmp(p.a, p.a_bits.data(), sizeof p.a_bits) != 0)
    report("wgmma", fmt("%s overwrote register A of an in-flight wgmma.mma_async (issue %u of warpgroup %d) before wgmma.wait_group retired it (seen at %s): the hardware may read the new value",
                        detail::thread_name(tid).c_str(), p.seq, group, when));
}

struct Descriptor {
  uint32_t start, lbo, sbo, base_offset, span;
};

Descriptor decode(uint64_t desc) {
  static constexpr uint32_t kSpan[4] = {0, 128, 64, 32};  // layout type: none, 128B, 64B, 32B
  return {static_cast<uint32_t>(desc & 0x3fff) << 4, static_cast<uint32_t>((desc >> 16) & 0x3fff) << 4,
          static_cast<uint32_t>((desc >> 32) & 0x3fff) << 4, static_cast<uint32_t>((desc >> 49) & 7), kSpan[desc >> 62]};
}

/** Byte offset (before the swizzle) of element (i along M or N, j along K), 16-bit elements. */
uint32_t element_offset(const Descriptor& s, bool mn_major, uint32_t i, uint32_t j) {
  if (!mn_major) {
    if (s.span == 0) return s.start + (i % 8) * 16 + (i / 8) * s.sbo + (j % 8) * 2 + (j / 8) * s.lbo;
    return s.start + (i % 8) * s.span + (i / 8) * s.sbo + j * 2;
  }
  if (s.span == 0) return s.start + (i % 8) * 2 + (i / 8) * s.sbo + (j % 8) * 16 + (j / 8) * s.lbo;
  return s.start + (i % (s.span / 2)) * 2 + (i / (s.span / 2)) * s.lbo + (j % 8) * s.span + (j / 8) * s.sbo;
}

float to_float(MmaType type, uint16_t bits) {
  return type == MmaType::bf16 ? __bfloat162float(__nv_bfloat16{bits}) : __half2float(__half{bits});
}

const char* span_name(int span) { return span == 0 ? "unswizzled" : span == 32 ? "32B-swizzled" : span == 64 ? "64B-swizzled" : "128B-swizzled"; }

/**
 * Reads an (mn x 16) operand through `desc` into out[i][j] (i along M or N, j along K), checking
 * the descriptor and every byte it touches. Returns false after a descriptor finding.
 */
bool read_operand(const char* name, uint64_t raw, bool mn_major, uint32_t mn, int group, uint32_t seq, MmaType type, float (*out)[16]) {
  const Descriptor s = decode(raw);
  const char* major = mn_major ? "MN-major" : "K-major";
  if (s.base_offset != 0) {
    report("descriptor", fmt("wgmma %s descriptor has matrix base offset %u: only patterns that start on their repeat boundary are modelled", name, s.base_offset));
    return false;
  }
  if (s.span != 0 && s.start % (8 * s.span) >= 128) {
    report("descriptor", fmt("wgmma %s descriptor starts at shared offset %u, past the first 128-byte line of its %u-byte swizzle pattern (needs a base offset)", name, s.start, 8 * s.span));
    return false;
  }
  if (s.span != 0 && !mn_major && s.start % s.span + 32 > s.span) {
    report("descriptor", fmt("wgmma %s descriptor: the K slice at shared offset %u crosses its %u-byte swizzle row", name, s.start, s.span));
    return false;
  }
  const bool needs_sbo = mn_major ? true : mn > 8;
  const bool needs_lbo = s.span == 0 ? true : mn_major && mn > s.span / 2;
  if ((needs_sbo && s.sbo == 0) || (needs_lbo && s.lbo == 0)) {
    report("descriptor", fmt("wgmma %s %s %s descriptor has a zero %s byte offset", name, span_name(static_cast<int>(s.span)), major, needs_sbo && s.sbo == 0 ? "stride" : "leading"));
    return false;
  }
  std::set<std::pair<uint32_t, uint32_t>> phases;
  bool reported_pending = false, reported_swizzle = false, reported_unwritten = false, reported_proxy = false;
  uint32_t cp_lo = UINT32_MAX, cp_hi = 0;  // the bytes read that a cp.async still has in flight
  int16_t cp_tid = -1;
  // Per writer: the fence.proxy.async count of that thread that every thread of the warpgroup has
  // synchronised with (UINT32_MAX: not computed yet). A writer of the issuing warpgroup itself
  // needs no barrier: wgmma.fence (.sync.aligned, every thread of the warpgroup) orders the
  // shared-memory writes across the warpgroup before the wgmma (PTX ISA 9.7.15, "wgmma.fence").
  static thread_local std::vector<uint32_t> known_fences;
  known_fences.assign(static_cast<size_t>(g.nthreads), UINT32_MAX);
  auto fences_known = [&](int writer) {
    uint32_t& k = known_fences[static_cast<size_t>(writer)];
    if (k != UINT32_MAX) return k;
    k = g.synced_fences[static_cast<size_t>(writer)];
    if (writer / 128 == group) k = std::max(k, g.threads[static_cast<size_t>(writer)].proxy_fences_at_wgmma_fence);
    const size_t slot = fence_slot(writer);
    uint32_t least = UINT32_MAX;
    for (int t = group * 128; t < group * 128 + 128 && least > k; ++t) {
      const std::vector<uint32_t>& r = g.threads[static_cast<size_t>(t)].released;
      least = std::min(least, slot < r.size() ? r[slot] : 0u);
    }
    return k = std::max(k, least);
  };
  for (uint32_t i = 0; i < mn; ++i) {
    for (uint32_t j = 0; j < 16; ++j) {
      const uint32_t off = swizzle_offset(element_offset(s, mn_major, i, j), s.span);
      if (off + 2 > detail::L->smem) {
        report("out-of-bounds", fmt("wgmma %s element (%u, %u) through the descriptor lies at shared offset %u, past the %zu bytes of dynamic shared memory", name, i, j, off, detail::L->smem));
        return false;
      }
      Chunk& k = g.chunks[off / 16];
      if (k.copy >= 0 && !g.copies[static_cast<size_t>(k.copy)].landed && !reported_pending) {
        report("tma", fmt("wgmma reads %s at shared byte %u while the bulk tensor copy of %s into it has not completed (no mbarrier wait)", name, off, detail::thread_name(g.copies[static_cast<size_t>(k.copy)].issuer).c_str()));
        reported_pending = true;
      }
      const detail::Shadow& sh = detail::L->shadow[off];
      const bool async_written = sh.written && sh.w_epoch == 0;  // else st.shared wrote over the copy since
      if (async_written && k.swizzle >= 0 && k.swizzle != static_cast<int16_t>(s.span) && !reported_swizzle) {
        report("descriptor", fmt("wgmma reads %s at shared byte %u through a %s descriptor, but the bulk tensor copy wrote it %s", name, off, span_name(static_cast<int>(s.span)), span_name(k.swizzle)));
        reported_swizzle = true;
      }
      if (sh.pending) {
        // A cp.async lands when its thread waits (cp.async.wait_group): what the wgmma reads now is
        // whatever the bytes held before, on the hardware as here.
        if (cp_tid < 0) cp_tid = sh.pending_tid;
        cp_lo = std::min(cp_lo, off), cp_hi = std::max(cp_hi, off + 1);
      } else if (!sh.written && tidarc::smem_raw[off] == 0xff && tidarc::smem_raw[off + 1] == 0xff && !reported_unwritten) {
        report("uninitialized-read", fmt("wgmma reads %s at shared byte %u that nothing wrote in this block", name, off));
        reported_unwritten = true;
      } else if (sh.written && sh.w_epoch != 0 && sh.w_tid >= 0 && !reported_proxy) {
        // A generic-proxy store (st.shared, a landed cp.async, a plain store; the async proxy's
        // own writes have epoch 0) reaches wgmma, an async-proxy read, only through a
        // fence.proxy.async of the writer AFTER the store that is ordered before the read (PTX
        // ISA, memory consistency model: "Proxies"; fence.proxy.async under membar / fence).
        const int w = sh.w_tid;
        if (detail::L->threads[static_cast<size_t>(w)].proxy_fences <= sh.w_fence) {
          report("proxy", fmt("wgmma reads %s at shared byte %u that %s stored (st.shared, cp.async or a plain store) with no fence.proxy.async after the store%s (the async proxy may see stale data)",
                              name, off, detail::thread_name(w).c_str(), sh.w_fence > 0 ? "; its last fence.proxy.async came before the store" : ""));
          reported_proxy = true;
        } else if (fences_known(w) <= sh.w_fence) {
          report("proxy", fmt("wgmma reads %s at shared byte %u that %s stored and then fenced (fence.proxy.async), but warpgroup %d has not synchronised with that fence (no __syncthreads, or no mbarrier phase waited for whose arrivals followed it)",
                              name, off, detail::thread_name(w).c_str(), group));
          reported_proxy = true;
        }
      }
      if (async_written && k.bar != UINT32_MAX) phases.insert({k.bar, k.phase});
      k.reader_group = static_cast<int16_t>(group), k.reader_seq = seq, k.reader_epoch = detail::L->epoch;
      uint16_t bits;
      std::memcpy(&bits, tidarc::smem_raw + off, 2);
      out[i][j] = to_float(type, bits);
    }
  }
  if (cp_tid >= 0)
    report("cp-async", fmt("wgmma reads %s at shared bytes %u..%u while the cp.async of %s into them has not been waited for (cp.async.wait_group, then fence.proxy.async, must come before the wgmma)",
                           name, cp_lo, cp_hi, detail::thread_name(cp_tid).c_str()));
  for (const auto& [bar, phase] : phases) {
    for (int t = group * 128; t < group * 128 + 128; ++t) {
      if (has_observed(t, bar, phase + 1)) continue;
      report("tma", fmt("wgmma reads %s that a bulk tensor copy delivered in phase %u of the mbarrier at shared offset %u, which %s has not waited for", name, phase, bar, detail::thread_name(t).c_str()));
      break;
    }
  }
  return true;
}

// Row and column of accumulator register i of thread t of a warpgroup (PTX ISA, wgmma .m64nNk16
// D fragment): the mma.m16n8 C fragment of warp t / 32, repeated for every 8 columns.
inline uint32_t acc_row(int t, int i) { return 16 * (t / 32) + (t % 32) / 4 + 8 * ((i / 2) % 2); }
inline uint32_t acc_col(int t, int i) { return 8 * (i / 4) + 2 * (t % 4) + (i % 2); }

void execute(Warpgroup& w, int group) {
  static thread_local float A[64][16], B[256][16];
  const uint32_t seq = w.issued++;
  const int n = w.n;
  bool ok = true;
  for (int t = 1; t < 128; ++t) {
    const GroupLane& x = w.lanes[t];
    if ((!w.regs_a && x.desc_a != w.lanes[0].desc_a) || x.desc_b != w.lanes[0].desc_b) {
      report("warp-divergence", fmt("the threads of warpgroup %d pass different matrix descriptors to one wgmma.mma_async", group));
      break;
    }
  }
  if (w.regs_a) {
    auto lo = [&](uint32_t r) { return to_float(w.type, static_cast<uint16_t>(r & 0xffffu)); };
    auto hi = [&](uint32_t r) { return to_float(w.type, static_cast<uint16_t>(r >> 16)); };
    for (int t = 0; t < 128; ++t) {  // the mma.m16n8k16 A fragment of each warp's 16 rows
      const int r = 16 * (t / 32) + (t % 32) / 4, c = 2 * (t % 4);
      const uint32_t* a = w.lanes[t].a;
      A[r][c] = lo(a[0]), A[r][c + 1] = hi(a[0]), A[r + 8][c] = lo(a[1]), A[r + 8][c + 1] = hi(a[1]);
      A[r][c + 8] = lo(a[2]), A[r][c + 9] = hi(a[2]), A[r + 8][c + 8] = lo(a[3]), A[r + 8][c + 9] = hi(a[3]);
    }
  } else {
    ok = read_operand("A", w.lanes[0].desc_a, w.trans_a, 64, group, seq, w.type, A);
  }
  ok = read_operand("B", w.lanes[0].desc_b, w.trans_b, static_cast<uint32_t>(n), group, seq, w.type, B) && ok;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int t = 0; t < 128; ++t) {
    const GroupLane& x = w.lanes[t];
    PendingMma p{x.d, -1, seq, std::vector<float>(static_cast<size_t>(n / 2), nan)};
    if (w.regs_a) p.a = x.a_ptr, std::memcpy(p.a_bits.data(), x.a, sizeof x.a);
    if (ok) {
      for (int i = 0; i < n / 2; ++i) {
        const uint32_t row = acc_row(t, i), col = acc_col(t, i);
        float acc = w.accumulate ? x.c[i] : 0.0f;
        for (int k = 0; k < 16; ++k) acc = std::fma(A[row][k], B[col][k], acc);  // products exact in fp32
        p.values[static_cast<size_t>(i)] = acc;
      }
    }
    g.threads[static_cast<size_t>(group * 128 + t)].mma.push_back(std::move(p));
  }
}

}  // namespace
}  // namespace hopper

using namespace hopper;

void check_descriptor_address(const void* p) {
  activate();
  size_t off = 0;
  const detail::SharedKind kind = detail::classify_shared(p, 16, &off);
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) detail::report("alignment", detail::fmt("a wgmma matrix descriptor needs a 16-byte aligned shared address (%p); the low 4 bits are dropped", p));
  else if (kind != detail::SharedKind::Dynamic) detail::report("descriptor", detail::fmt("a wgmma matrix descriptor's address %s", kind == detail::SharedKind::Static ? "is static shared memory, which the emulator does not track" : detail::shared_problem(kind, p).c_str()));
}

void wgmma(MmaType type, int n, float* d, const uint32_t* a, uint64_t desc_a, uint64_t desc_b, bool trans_a, bool trans_b, bool accumulate) {
  activate();
  detail::Thread& t = detail::cur();
  const int group = t.tid / 128;
  if (static_cast<size_t>(group) >= g.groups.size()) {
    detail::report("warp-divergence", detail::fmt("wgmma.mma_async needs whole warpgroups of 128 threads; thread %d is outside them", t.tid));
    return;
  }
  if (n < 8 || n > 256 || n % 8 != 0) {
    detail::report("wgmma", detail::fmt("wgmma.mma_async m64n%dk16: N must be a multiple of 8 in 8..256", n));
    return;
  }
  ThreadState& ts = g.threads[static_cast<size_t>(t.tid)];
  if (!ts.fenced) {
    detail::report("wgmma", "wgmma.mma_async without a wgmma.fence since its accumulators were last accessible (kernel start or wgmma.wait_group)");
    ts.fenced = true;
  }
  Warpgroup& w = g.groups[static_cast<size_t>(group)];
  GroupLane& lane = w.lanes[t.tid % 128];
  lane.d = d, lane.desc_a = desc_a, lane.desc_b = desc_b, lane.a_ptr = a;
  if (a) std::memcpy(lane.a, a, sizeof lane.a);
  // Accumulators still in flight from an earlier wgmma chain into this one in issue order (the
  // hardware orders wgmmas into the same accumulators; the kernel must not touch them between).
  const PendingMma* chained = nullptr;
  for (const PendingMma& p : ts.mma)
    if (p.d == d) chained = &p;
  if (chained) check_untouched(*chained, t.tid, "the next wgmma.mma_async into them");
  for (int i = 0; i < n / 2; ++i) lane.c[i] = chained ? chained->values[static_cast<size_t>(i)] : d[i];
  for (int i = 0; i < n / 2; ++i) std::memcpy(&d[i], &kInFlightBits, 4);
  if (w.arrived == 0) {
    w.n = n, w.type = type, w.trans_a = trans_a, w.trans_b = trans_b, w.regs_a = a != nullptr, w.accumulate = accumulate;
  } else if (w.n != n || w.type != type || w.trans_a != trans_a || w.trans_b != trans_b || w.regs_a != (a != nullptr) || w.accumulate != accumulate) {
    detail::report("warp-divergence", detail::fmt("thread %d's wgmma.mma_async differs in shape, type or operands from the rest of warpgroup %d", t.tid, group));
  }
  if (++w.arrived == 128) {
    execute(w, group);
    w.arrived = 0;
    for (int i = group * 128; i < group * 128 + 128; ++i) {
      detail::Thread& other = detail::L->threads[static_cast<size_t>(i)];
      if (other.state == detail::State::WaitWarp) other.state = detail::State::Runnable;
    }
  } else {
    detail::block_current(detail::State::WaitWarp, "wgmma.mma_async");
  }
}

void wgmma_fence() {
  activate();
  const detail::Thread& t = detail::cur();
  ThreadState& ts = g.threads[static_cast<size_t>(t.tid)];
  ts.fenced = true;
  ts.proxy_fences_at_wgmma_fence = t.proxy_fences;
}

void wgmma_commit() {
  activate();
  ThreadState& ts = g.threads[static_cast<size_t>(detail::cur().tid)];
  for (PendingMma& p : ts.mma)
    if (p.group < 0) p.group = ts.committed;
  ts.committed++;  // an empty group counts too, as on the hardware
}

void wgmma_wait(int pending_groups) {
  activate();
  const int tid = detail::cur().tid;
  ThreadState& ts = g.threads[static_cast<size_t>(tid)];
  const int limit = ts.committed - pending_groups;
  std::vector<PendingMma> keep;
  for (size_t i = 0; i < ts.mma.size(); ++i) {
    PendingMma& p = ts.mma[i];
    if (p.group >= 0 && p.group < limit) {
      check_untouched(p, tid, "wgmma.wait_group");
      // A later wgmma into the same accumulators, still in flight, chained from these values:
      // the accumulators stay in flight (a read now gives garbage on the hardware too).
      bool superseded = false;
      for (size_t j = i + 1; j < ts.mma.size() && !superseded; ++j) superseded = ts.mma[j].d == p.d;
      if (!superseded) std::memcpy(p.d, p.values.data(), p.values.size() * sizeof(float));
      ts.retired = std::max(ts.retired, p.seq + 1);
    } else {
      keep.push_back(std::move(p));
    }
  }
  ts.mma.swap(keep);
  ts.fenced = false;
  const size_t group = static_cast<size_t>(detail::cur().tid / 128);
  if (ts.released.size() <= group) ts.released.resize(group + 1, 0);
  ts.released[group] = std::max(ts.released[group], ts.retired);
}

}  // namespace tidarc_emu
