/*! tidarc emulator: Hopper mbarriers and bulk tensor copies (TMA). A copy snapshots global memory
    when issued and lands only when some thread waits on its mbarrier, delivering its bytes
    (complete_tx) to the phase in progress; so a consumer that reads without waiting sees poison
    and a finding, and one that waits sees exactly what the hardware would have delivered. */
#include <algorithm>
#include <cstring>

#include "emu_hopper.h"
#include "emu_state.h"

namespace tidarc_emu {
namespace hopper {

Block g;

// A thread that fails this many try_waits in a row while no mbarrier anywhere changes waits for
// a phase nothing can complete (every other thread is stuck too, or gone).
constexpr uint32_t kSpinLimit = 20000;

bool has_observed(int tid, uint32_t bar, uint32_t completions) {
  const auto& seen = g.threads[static_cast<size_t>(tid)].observed;
  auto it = seen.find(bar);
  return it != seen.end() && it->second >= completions;
}

void join(std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  if (a.size() < b.size()) a.resize(b.size(), 0);
  for (size_t i = 0; i < b.size(); ++i) a[i] = std::max(a[i], b[i]);
}

void block_begin(int nthreads, size_t shared_bytes) {
  if (g.active) g = Block{};
  g.nthreads = nthreads, g.shared_bytes = shared_bytes;
}

void activate() {
  if (g.active) return;
  g.active = true;
  g.chunks.assign((g.shared_bytes + 15) / 16, Chunk{});
  g.threads.assign(static_cast<size_t>(g.nthreads), ThreadState{});
  g.groups.assign(static_cast<size_t>(g.nthreads / 128), Warpgroup{});
  g.synced_fences.assign(static_cast<size_t>(g.nthreads), 0);  // no fence yet: each one activates first
}

void block_sync() {
  if (!g.active) return;
  for (size_t t = 0; t < g.synced_fences.size(); ++t) g.synced_fences[t] = detail::L->threads[t].proxy_fences;
}

void block_end() {
  for (const BulkCopy& c : g.copies) {
    if (c.landed) continue;
    detail::report("tma", detail::fmt("the bulk tensor copy of %s (%u bytes, mbarrier at shared offset %u) never completed: no thread waited on its mbarrier",
                                      detail::thread_name(c.issuer).c_str(), c.bytes, c.bar));
  }
}

namespace {

using detail::fmt;
using detail::report;

/** The mbarrier at `bar` as a shared offset, or UINT32_MAX after a finding. */
uint32_t barrier_offset(const uint64_t* bar, const char* what) {
  size_t off = 0;
  const detail::SharedKind kind = detail::classify_shared(bar, 8, &off);
  if (kind != detail::SharedKind::Dynamic) {
    report("mbarrier", fmt("%s: the mbarrier %s", what, kind == detail::SharedKind::Static ? "is in static shared memory, which the emulator does not track" : detail::shared_problem(kind, bar).c_str()));
    return UINT32_MAX;
  }
  if (off % 8 != 0) {
    report("alignment", fmt("%s: an mbarrier needs an 8-byte aligned address (shared offset %zu)", what, off));
    return UINT32_MAX;
  }
  return static_cast<uint32_t>(off);
}

Barrier* find_barrier(uint32_t off, const char* what) {
  auto it = g.barriers.find(off);
  if (it != g.barriers.end()) return &it->second;
  report("mbarrier", fmt("%s on the mbarrier at shared offset %u, which mbarrier.init never initialised in this block", what, off));
  return nullptr;
}

void complete_phase_if_done(Barrier& b) {
  if (b.pending != 0 || b.tx != 0) return;
  b.released[b.completed] = std::move(b.arriving);
  b.arriving.clear();
  b.acquired[b.completed] = std::move(b.arriving_acquired);
  b.arriving_acquired = detail::Acquires{};
  if (b.completed >= 2) b.released.erase(b.completed - 2), b.acquired.erase(b.completed - 2);  // a wait sees one of the newest two
  b.completed++;
  b.pending = b.expected;
  g.events++;
}

/** Lands every copy in flight on `bar` into shared memory and delivers its bytes. */
void land_copies(uint32_t bar, Barrier& b) {
  for (size_t i = 0; i < g.copies.size(); ++i) {
    BulkCopy& c = g.copies[i];
    if (c.landed || c.bar != bar) continue;
    c.landed = true;
    for (const auto& [off, data] : c.chunks) {
      std::memcpy(tidarc::smem_raw + off, data.data(), 16);
      Chunk& k = g.chunks[off / 16];
      if (k.copy == static_cast<int32_t>(i)) k.copy = -1;
      k.bar = bar, k.phase = b.completed, k.swizzle = static_cast<int16_t>(c.swizzle);
      k.reader_group = -1;
      for (uint32_t j = off; j < off + 16; ++j) {
        detail::Shadow& s = detail::L->shadow[j];
        s.written = 1;
        s.w_epoch = 0;  // ordered by the mbarrier, not by __syncthreads: no race with its readers
      }
    }
    b.tx -= c.bytes;
    g.events++;
    if (b.tx < 0)
      report("mbarrier", fmt("the bulk copies delivered %lld bytes more than arrive.expect_tx announced for phase %u of the mbarrier at shared offset %u",
                             static_cast<long long>(-b.tx), b.completed, bar));
  }
  complete_phase_if_done(b);
}

std::array<uint8_t, 16> read_box_chunk(const TensorMap& m, const int32_t* origin, uint32_t linear, bool* outside) {
  std::array<uint8_t, 16> out{};
  for (uint32_t e = 0; e < 16 / m.elem_bytes; ++e) {
    uint32_t rest = linear + e;
    int64_t addr_off = 0;
    bool inside = true;
    for (uint32_t d = 0; d < m.rank; ++d) {
      const int64_t coord = origin[d] + static_cast<int64_t>(rest % m.box[d]);
      rest /= m.box[d];
      if (coord < 0 || coord >= static_cast<int64_t>(m.dims[d])) inside = false;  // zero fill
      addr_off += coord * static_cast<int64_t>(m.strides[d]);
    }
    if (!inside) continue;
    const auto* src = static_cast<const uint8_t*>(m.base) + addr_off;
    if (!detail::find_buffer(reinterpret_cast<uintptr_t>(src), m.elem_bytes)) {
      *outside = true;
      continue;
    }
    std::memcpy(out.data() + e * m.elem_bytes, src, m.elem_bytes);
  }
  return out;
}

}  // namespace
}  // namespace hopper

using namespace hopper;
using detail::fmt;
using detail::report;

const char* encode_tensor_map(TensorMap* map, const void* base, uint32_t elem_bytes, uint32_t rank, const uint64_t* dims,
                              const uint64_t* strides_bytes, const uint32_t* box, uint32_t swizzle_bytes) {
  if (rank < 1 || rank > 5) return "rank must be 1..5";
  if (elem_bytes != 1 && elem_bytes != 2 && elem_bytes != 4 && elem_bytes != 8) return "element size must be 1, 2, 4 or 8 bytes";
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0) return "global address must be 16-byte aligned";
  if (swizzle_bytes != 0 && swizzle_bytes != 32 && swizzle_bytes != 64 && swizzle_bytes != 128) return "swizzle must be none, 32B, 64B or 128B";
  TensorMap m{};
  m.base = base, m.rank = rank, m.elem_bytes = elem_bytes, m.swizzle_bytes = swizzle_bytes, m.magic = kTensorMapMagic;
  for (uint32_t d = 0; d < rank; ++d) {
    if (dims[d] < 1 || dims[d] > (uint64_t{1} << 32)) return "every dimension must be 1..2^32";
    if (box[d] < 1 || box[d] > 256) return "every box dimension must be 1..256";
    m.dims[d] = dims[d], m.box[d] = box[d];
    m.strides[d] = d == 0 ? elem_bytes : strides_bytes[d - 1];
    if (d > 0 && (m.strides[d] % 16 != 0 || m.strides[d] >= (uint64_t{1} << 40))) return "global strides must be multiples of 16 bytes below 2^40";
  }
  const uint32_t inner = box[0] * elem_bytes;
  if (inner % 16 != 0) return "the box's inner dimension must be a multiple of 16 bytes";
  if (swizzle_bytes != 0 && inner > swizzle_bytes) return "the box's inner dimension must not exceed the swizzle span";
  *map = m;
  return nullptr;
}

void mbarrier_init(uint64_t* bar, uint32_t count) {
  activate();
  const uint32_t off = barrier_offset(bar, "mbarrier.init");
  if (off == UINT32_MAX) return;
  if (count < 1 || count > (1u << 20) - 1) report("mbarrier", fmt("mbarrier.init count %u is outside 1..2^20-1", count));
  Barrier b;
  b.expected = count, b.pending = count;
  g.barriers[off] = b;
  g.events++;
  std::memset(bar, 0, 8);  // the object's bytes are opaque; zero marks them as written
  for (uint32_t j = off; j < off + 8; ++j) detail::L->shadow[j].written = 1, detail::L->shadow[j].w_epoch = 0;
}

void mbarrier_arrive(uint64_t* bar, uint32_t tx_bytes) {
  activate();
  const uint32_t off = barrier_offset(bar, "mbarrier.arrive");
  if (off == UINT32_MAX) return;
  Barrier* b = find_barrier(off, "mbarrier.arrive");
  if (!b) return;
  b->tx += tx_bytes;
  if (b->pending == 0) {
    report("mbarrier", fmt("more arrivals than the %u mbarrier.init announced in phase %u of the mbarrier at shared offset %u", b->expected, b->completed, off));
    return;
  }
  b->pending--;
  detail::Thread& t = detail::cur();
  join(b->arriving, g.threads[static_cast<size_t>(t.tid)].released);
  b->arriving_acquired.join(t.acquired);  // mbarrier.arrive releases at CTA scope: the phase's waiters get this thread's acquires
  g.events++;
  complete_phase_if_done(*b);
}

bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
  activate();
  const uint32_t off = barrier_offset(bar, "mbarrier.try_wait");
  if (off == UINT32_MAX) return true;
  Barrier* b = find_barrier(off, "mbarrier.try_wait");
  if (!b) return true;
  detail::Thread& t = detail::cur();
  ThreadState& ts = g.threads[static_cast<size_t>(t.tid)];
  if ((b->completed & 1) == (parity & 1)) land_copies(off, *b);
  if ((b->completed & 1) != (parity & 1)) {
    // The phase waited for is the newest completed one of that parity.
    const uint32_t seen = ((b->completed - 1) & 1) == (parity & 1) ? b->completed : b->completed - 1;
    uint32_t& o = ts.observed[off];
    o = std::max(o, seen);
    auto phase = b->released.find(seen - 1);
    if (phase != b->released.end()) join(ts.released, phase->second);
    auto acquired = b->acquired.find(seen - 1);
    if (acquired != b->acquired.end()) t.acquired.join(acquired->second);
    ts.spins = 0;
    return true;
  }
  if (g.deadlocked) return true;
  if (ts.spin_events == g.events) {
    if (++ts.spins >= kSpinLimit) {
      report("mbarrier", fmt("try_wait.parity %u on the mbarrier at shared offset %u waits for a phase that never completes: %lld of %u arrivals missing, %lld transaction bytes %s",
                             parity & 1, off, static_cast<long long>(b->pending), b->expected, static_cast<long long>(b->tx < 0 ? -b->tx : b->tx),
                             b->tx < 0 ? "delivered beyond what arrive.expect_tx announced" : "announced and not delivered (a copy is missing, or expect_tx counts too many)"));
      g.deadlocked = true;  // let every waiter through so that the block ends and is reported
      return true;
    }
  } else {
    ts.spin_events = g.events, ts.spins = 0;
  }
  detail::block_current(detail::State::Runnable, "mbarrier.try_wait");  // let the others run
  return false;
}

void tma_load(void* dst, const TensorMap* map, const int32_t* coords, int rank, uint64_t* bar) {
  activate();
  detail::Thread& t = detail::cur();
  if (map->magic != kTensorMapMagic) {
    report("tma", "cp.async.bulk.tensor with a tensor map that encode_tensor_map never encoded");
    return;
  }
  if (static_cast<uint32_t>(rank) != map->rank) {
    report("tma", fmt("cp.async.bulk.tensor.%dd through a tensor map of rank %u", rank, map->rank));
    return;
  }
  const uint32_t boff = barrier_offset(bar, "cp.async.bulk.tensor");
  if (boff == UINT32_MAX || !find_barrier(boff, "cp.async.bulk.tensor")) return;
  uint32_t bytes = map->elem_bytes;
  for (uint32_t d = 0; d < map->rank; ++d) bytes *= map->box[d];
  if (detail::g_pdl_unwaited) {  // named by the box's first element inside the tensor (its bytes need not be contiguous)
    uint64_t origin = 0;
    for (uint32_t d = 0; d < map->rank; ++d) origin += static_cast<uint64_t>(std::max(coords[d], 0)) * map->strides[d];
    detail::pdl_check(reinterpret_cast<uintptr_t>(map->base) + origin, bytes, "cp.async.bulk.tensor (a box)");
  }
  size_t off = 0;
  const detail::SharedKind kind = detail::classify_shared(dst, bytes, &off);
  if (kind != detail::SharedKind::Dynamic) {
    report("out-of-bounds", fmt("cp.async.bulk.tensor destination (%u bytes) %s", bytes, kind == detail::SharedKind::Static ? "is static shared memory, which the emulator does not track" : detail::shared_problem(kind, dst).c_str()));
    return;
  }
  // The PTX ISA asks for 128 bytes; a swizzled box must also start its pattern (base offset 0),
  // which is what the wgmma descriptors of tidarc_hopper.cuh assume.
  const uint32_t align = map->swizzle_bytes == 0 ? 128 : map->swizzle_bytes * 8;
  if (off % align != 0) {
    report("alignment", fmt("cp.async.bulk.tensor destination at shared offset %zu is not %u-byte aligned (%s)", off, align, map->swizzle_bytes ? "a swizzle pattern's start" : "the PTX ISA's minimum"));
    return;
  }
  BulkCopy c{boff, t.tid, map->swizzle_bytes, bytes, false, {}};
  bool outside = false, overlapping = false, overwriting = false;  // one finding of each kind a copy
  const int32_t idx = static_cast<int32_t>(g.copies.size());
  for (uint32_t lin = 0; lin < bytes; lin += 16) {
    const uint32_t dst_off = swizzle_offset(static_cast<uint32_t>(off) + lin, map->swizzle_bytes);
    if (dst_off + 16 > detail::L->smem) {
      report("out-of-bounds", fmt("cp.async.bulk.tensor writes shared byte %u (swizzled), past the %zu bytes of dynamic shared memory", dst_off, detail::L->smem));
      return;
    }
    c.chunks.push_back({dst_off, read_box_chunk(*map, coords, lin / map->elem_bytes, &outside)});
    Chunk& k = g.chunks[dst_off / 16];
    if (k.copy >= 0 && !g.copies[static_cast<size_t>(k.copy)].landed && !overlapping) {
      report("tma", fmt("a bulk tensor copy into shared byte %u while the bulk copy of %s into it has not completed", dst_off, detail::thread_name(g.copies[static_cast<size_t>(k.copy)].issuer).c_str()));
      overlapping = true;
    } else if (k.reader_group >= 0 && group_retired(k.reader_group) <= k.reader_seq && !overwriting) {
      report("tma", fmt("a bulk tensor copy overwrites shared byte %u that a wgmma of warpgroup %d still reads (not retired by wgmma.wait_group: a missing wait on the consumer's release)", dst_off, k.reader_group));
      overwriting = true;
    } else if (k.reader_group >= 0 && k.reader_epoch == detail::L->epoch && !overwriting) {
      const std::vector<uint32_t>& known = g.threads[static_cast<size_t>(t.tid)].released;
      if (static_cast<size_t>(k.reader_group) >= known.size() || known[static_cast<size_t>(k.reader_group)] <= k.reader_seq) {
        report("tma", fmt("a bulk tensor copy overwrites shared byte %u that a wgmma of warpgroup %d read, and %s has not waited on an mbarrier that warpgroup %d arrived on after retiring it (a missing or miscounted release)",
                          dst_off, k.reader_group, detail::thread_name(t.tid).c_str(), k.reader_group));
        overwriting = true;
      }
    }
    k.copy = idx;
  }
  if (outside) report("out-of-bounds", fmt("cp.async.bulk.tensor reads global memory outside every buffer: the tensor map's dims and strides (base %p) overrun it", map->base));
  g.copies.push_back(std::move(c));
  g.events++;
}

// fence.proxy.async (PTX ISA, "Parallel Synchronization and Communication Instructions: membar /
// fence", and the memory consistency model's "Proxies"): orders the thread's generic-proxy accesses
// BEFORE it with its async-proxy accesses after, so it covers the stores (and landed cp.async
// copies) that precede it, never a later one. Counted per thread; each store keeps the count it
// saw (Shadow::w_fence), and the count travels to other threads in the clock of mbarrier phases
// (ThreadState::released at fence_slot) and through __syncthreads (block_sync).
void fence_proxy_async() {
  activate();
  detail::Thread& t = detail::cur();
  t.proxy_fences++;
  std::vector<uint32_t>& known = g.threads[static_cast<size_t>(t.tid)].released;
  if (known.size() <= fence_slot(t.tid)) known.resize(fence_slot(t.tid) + 1, 0);
  known[fence_slot(t.tid)] = t.proxy_fences;
}

}  // namespace tidarc_emu
