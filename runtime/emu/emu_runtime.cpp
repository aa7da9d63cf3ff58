/*! tidarc SIMT emulator runtime: blocks of fibers, warp collectives (shfl, ldmatrix, mma),
    __syncthreads, cp.async groups, and the checks: global and shared bounds, shared-memory
    races between barriers, reads of uninitialised or not-yet-waited shared memory,
    barriers or collectives not reached by every thread. Single-threaded by design: blocks
    run one after another, so "concurrency" is only what the kernel's own barriers allow. */
#include "emu_runtime.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "emu_fiber.h"
#include "tidarc_emu_device.h"

// The kernels' `extern __shared__ unsigned char smem_raw[]` (declared inside namespace tidarc).
namespace tidarc {
alignas(4096) thread_local unsigned char smem_raw[tidarc_emu::kMaxDynamicShared];
}

namespace tidarc_emu {
namespace {

enum class State { Runnable, WaitWarp, WaitBarrier, Done };
enum class Op { Shfl, Ldmatrix, Mma };

struct PendingCopy {
  unsigned char* dst;
  unsigned char data[16];
  int group;
  bool tracked;  // into dynamic shared memory (shadowed), not a static __shared__ array
};

struct Thread {
  FiberContext ctx;
  uint3 idx;
  int tid, warp, lane;
  State state;
  const char* waiting_at;
  std::vector<PendingCopy> pending;
  int committed_groups;
};

struct LaneIn {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
  const void* ptr;
  float f;
};
struct LaneOut {
  uint32_t r[4];
  float f[4];
};
struct Warp {
  int size = 0, arrived = 0;
  Op op = Op::Shfl;
  int count = 0;  // ldmatrix matrices, shfl lane mask
  bool trans = false;
  MmaType type = MmaType::bf16;
  const char* site = "";
  LaneIn in[32];
  LaneOut out[32];
};

// Shared-memory shadow, one per byte. Epochs count completed barriers; 0 = never.
constexpr int16_t kManyReaders = -2;
struct Shadow {
  uint32_t w_epoch, r_epoch;
  int16_t w_tid, r_tid, pending_tid;
  uint8_t written, pending;
};

struct Buffer {
  std::string name;
  uintptr_t begin, end;
  unsigned char* map;
  size_t map_len;
};

struct Launch {
  const char* kernel;
  dim3 grid, block;
  size_t smem;
  void (*entry)(void*);
  void* arg;
  uint3 block_idx;
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  FiberContext scheduler;
  Thread* current = nullptr;
  int barrier_arrived = 0;
  const char* barrier_site = nullptr;
  uint32_t epoch = 1;
  std::vector<Shadow> shadow;
  unsigned char* stacks = nullptr;
  size_t stacks_len = 0;
};

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kMaxStored = 40;
const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

Launch* L = nullptr;
std::vector<Buffer> g_buffers;
std::vector<Finding> g_findings;
std::map<std::string, size_t> g_counts;

Thread& cur() {
  if (!L || !L->current) {
    std::fprintf(stderr, "tidarc-emu: a device primitive was called outside a kernel launch\n");
    std::abort();
  }
  return *L->current;
}

void report(const std::string& kind, const std::string& message) {
  g_counts[kind]++;
  if (g_findings.size() >= kMaxStored) return;
  Finding f{kind, L ? L->kernel : "", L ? L->block_idx : uint3{0, 0, 0}, (L && L->current) ? L->current->idx : uint3{0, 0, 0}, message};
  g_findings.push_back(f);
}

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  return buf;
}

std::string thread_name(int tid) {
  const Thread& t = L->threads[static_cast<size_t>(tid)];
  return fmt("thread (%u,%u,%u)", t.idx.x, t.idx.y, t.idx.z);
}

// ---- shared memory ------------------------------------------------------------------------

const Buffer* find_buffer(uintptr_t a, size_t n);

// Where an address a primitive uses as shared memory lies. Dynamic shared memory is
// bounds- and race-checked; static __shared__ arrays (thread_local, one per block since
// blocks run one after another) are used but not tracked.
enum class SharedKind { Dynamic, BeyondDynamic, Static, NotShared };

SharedKind classify_shared(const void* p, size_t n, size_t* offset) {
  auto a = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(tidarc::smem_raw);
  if (a >= base && a + n <= base + L->smem) {
    *offset = a - base;
    return SharedKind::Dynamic;
  }
  if (a + n > base && a < base + kMaxDynamicShared) return SharedKind::BeyondDynamic;
  auto stacks = reinterpret_cast<uintptr_t>(L->stacks);
  if (find_buffer(a, 1) || (a >= stacks && a < stacks + L->stacks_len)) return SharedKind::NotShared;
  return SharedKind::Static;
}

std::string shared_problem(SharedKind k, const void* p) {
  if (k == SharedKind::BeyondDynamic) return fmt("is outside the %zu bytes of dynamic shared memory (%p)", L->smem, p);
  return fmt("is not shared memory (%p is global or local memory)", p);
}

void shared_read(int tid, size_t off, size_t n, const char* what) {
  for (size_t i = off; i < off + n; ++i) {
    Shadow& s = L->shadow[i];
    if (s.pending) {
      report("cp-async", fmt("%s reads shared byte %zu while the cp.async of %s into it has not been waited for", what, i, thread_name(s.pending_tid).c_str()));
    } else if (!s.written) {
      // Stores the kernel makes with plain C++ (not through a primitive) are not tracked;
      // they show as bytes that no longer hold the 0xff poison of a fresh block.
      if (tidarc::smem_raw[i] == 0xff) report("uninitialized-read", fmt("%s reads shared byte %zu that nothing wrote in this block", what, i));
    } else if (s.w_epoch == L->epoch && s.w_tid != tid) {
      report("race", fmt("%s reads shared byte %zu written by %s with no __syncthreads between", what, i, thread_name(s.w_tid).c_str()));
    }
    if (s.r_epoch == L->epoch && s.r_tid != tid) s.r_tid = kManyReaders;
    else s.r_tid = static_cast<int16_t>(tid);
    s.r_epoch = L->epoch;
  }
}

void shared_write_check(int tid, size_t off, size_t n, const char* what) {
  for (size_t i = off; i < off + n; ++i) {
    Shadow& s = L->shadow[i];
    if (s.w_epoch == L->epoch && s.w_tid != tid) {
      report("race", fmt("%s writes shared byte %zu also written by %s with no __syncthreads between", what, i, thread_name(s.w_tid).c_str()));
    } else if (s.r_epoch == L->epoch && s.r_tid != tid) {
      report("race", fmt("%s writes shared byte %zu read by %s with no __syncthreads between", what, i,
                          s.r_tid == kManyReaders ? "other threads" : thread_name(s.r_tid).c_str()));
    }
  }
}

void complete_copy(Thread& t, const PendingCopy& c) {
  if (!c.tracked) {
    std::memcpy(c.dst, c.data, 16);
    return;
  }
  size_t off = static_cast<size_t>(c.dst - tidarc::smem_raw);
  shared_write_check(t.tid, off, 16, "cp.async");
  std::memcpy(c.dst, c.data, 16);
  for (size_t i = off; i < off + 16; ++i) {
    Shadow& s = L->shadow[i];
    s.pending = 0;
    s.written = 1;
    s.w_epoch = L->epoch;
    s.w_tid = static_cast<int16_t>(t.tid);
  }
}

const Buffer* find_buffer(uintptr_t a, size_t n) {
  for (const Buffer& b : g_buffers)
    if (a >= b.begin && a + n <= b.end) return &b;
  return nullptr;
}

std::string describe_global(uintptr_t a) {
  const Buffer* nearest = nullptr;
  uintptr_t dist = UINTPTR_MAX;
  for (const Buffer& b : g_buffers) {
    uintptr_t d = a < b.begin ? b.begin - a : a >= b.end ? a - b.end + 1 : 0;
    if (d < dist) dist = d, nearest = &b;
  }
  if (!nearest) return fmt("0x%" PRIxPTR, a);
  if (a >= nearest->end) return fmt("0x%" PRIxPTR " (%zu bytes past the end of '%s')", a, static_cast<size_t>(a - nearest->end), nearest->name.c_str());
  return fmt("0x%" PRIxPTR " (%zu bytes before the start of '%s')", a, static_cast<size_t>(nearest->begin - a), nearest->name.c_str());
}

// ---- warp collectives -------------------------------------------------------------------

void block_current(State s, const char* site) {
  Thread& t = cur();
  t.state = s;
  t.waiting_at = site;
  fiber_switch(t.ctx, L->scheduler);
}

float to_float(MmaType type, uint16_t bits) {
  if (type == MmaType::bf16) return __bfloat162float(__nv_bfloat16{bits});
  return __half2float(__half{bits});
}

void execute_mma(Warp& w) {
  float A[16][16], B[16][8], C[16][8];
  auto lo = [&](uint32_t r) { return to_float(w.type, static_cast<uint16_t>(r & 0xffffu)); };
  auto hi = [&](uint32_t r) { return to_float(w.type, static_cast<uint16_t>(r >> 16)); };
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const LaneIn& in = w.in[l];
    A[g][2 * t] = lo(in.a[0]), A[g][2 * t + 1] = hi(in.a[0]);
    A[g + 8][2 * t] = lo(in.a[1]), A[g + 8][2 * t + 1] = hi(in.a[1]);
    A[g][2 * t + 8] = lo(in.a[2]), A[g][2 * t + 9] = hi(in.a[2]);
    A[g + 8][2 * t + 8] = lo(in.a[3]), A[g + 8][2 * t + 9] = hi(in.a[3]);
    B[2 * t][g] = lo(in.b[0]), B[2 * t + 1][g] = hi(in.b[0]);
    B[2 * t + 8][g] = lo(in.b[1]), B[2 * t + 9][g] = hi(in.b[1]);
    C[g][2 * t] = in.c[0], C[g][2 * t + 1] = in.c[1];
    C[g + 8][2 * t] = in.c[2], C[g + 8][2 * t + 1] = in.c[3];
  }
  float D[16][8];
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      float acc = C[m][n];
      for (int k = 0; k < 16; ++k) acc = std::fma(A[m][k], B[k][n], acc);  // products are exact in fp32
      D[m][n] = acc;
    }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    float* f = w.out[l].f;
    f[0] = D[g][2 * t], f[1] = D[g][2 * t + 1], f[2] = D[g + 8][2 * t], f[3] = D[g + 8][2 * t + 1];
  }
}

void execute_ldmatrix(Warp& w, int warp_index) {
  uint16_t M[4][8][8] = {};
  for (int i = 0; i < w.count; ++i) {
    for (int j = 0; j < 8; ++j) {
      const int lane = 8 * i + j;
      const int tid = warp_index * 32 + lane;
      const void* p = w.in[lane].ptr;
      size_t off = 0;
      const SharedKind kind = classify_shared(p, 16, &off);
      if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
        report("alignment", fmt("ldmatrix row address of lane %d is not 16-byte aligned (%p)", lane, p));
      } else if (kind == SharedKind::BeyondDynamic || kind == SharedKind::NotShared) {
        report("out-of-bounds", fmt("ldmatrix row address of lane %d %s", lane, shared_problem(kind, p).c_str()));
      } else {
        if (kind == SharedKind::Dynamic) shared_read(tid, off, 16, fmt("ldmatrix (lane %d, %s)", lane, thread_name(tid).c_str()).c_str());
        std::memcpy(M[i][j], p, 16);
      }
    }
  }
  for (int l = 0; l < w.size; ++l) {
    for (int i = 0; i < w.count; ++i) {
      uint16_t a, b;
      if (!w.trans) {
        a = M[i][l / 4][2 * (l % 4)], b = M[i][l / 4][2 * (l % 4) + 1];
      } else {
        a = M[i][2 * (l % 4)][l / 4], b = M[i][2 * (l % 4) + 1][l / 4];
      }
      w.out[l].r[i] = a | (static_cast<uint32_t>(b) << 16);
    }
  }
}

void execute(Warp& w, int warp_index) {
  switch (w.op) {
    case Op::Shfl:
      for (int l = 0; l < w.size; ++l) {
        const int src = l ^ w.count;
        w.out[l].f[0] = src < w.size ? w.in[src].f : w.in[l].f;
      }
      break;
    case Op::Ldmatrix:
      execute_ldmatrix(w, warp_index);
      break;
    case Op::Mma:
      if (w.size != 32) report("warp-divergence", "mma.sync needs all 32 lanes of the warp");
      else execute_mma(w);
      break;
  }
}

const char* op_name(Op op) { return op == Op::Shfl ? "shfl" : op == Op::Ldmatrix ? "ldmatrix" : "mma.sync"; }

/** Every lane deposits its input; the last to arrive computes all outputs and wakes the rest. */
const LaneOut& collective(Op op, const LaneIn& in, int count, bool trans, MmaType type, const char* site) {
  Thread& t = cur();
  Warp& w = L->warps[static_cast<size_t>(t.warp)];
  if (w.arrived == 0) {
    w.op = op, w.count = count, w.trans = trans, w.type = type, w.site = site;
  } else if (w.op != op || w.count != count || w.trans != trans || w.type != type) {
    report("warp-divergence", fmt("lane %d calls %s while other lanes of warp %d are in %s", t.lane, op_name(op), t.warp, op_name(w.op)));
  }
  w.in[t.lane] = in;
  if (++w.arrived == w.size) {
    execute(w, t.warp);
    w.arrived = 0;
    for (int l = 0; l < w.size; ++l) {
      Thread& other = L->threads[static_cast<size_t>(t.warp * 32 + l)];
      if (other.state == State::WaitWarp) other.state = State::Runnable;
    }
  } else {
    block_current(State::WaitWarp, site);
  }
  return w.out[t.lane];
}

// ---- the scheduler ------------------------------------------------------------------------

void finish_thread(Thread& t) {
  if (!t.pending.empty()) {
    report("cp-async", fmt("%zu cp.async copies were never waited for before the thread exited", t.pending.size()));
    for (const PendingCopy& c : t.pending) complete_copy(t, c);
    t.pending.clear();
  }
}

void thread_main(void* p) {
  Thread& t = *static_cast<Thread*>(p);
  L->entry(L->arg);
  finish_thread(t);
  t.state = State::Done;
  fiber_switch(t.ctx, L->scheduler);
  std::abort();  // a finished fiber is never resumed
}

void diagnose_deadlock() {
  int done = 0, barrier = 0, warp = 0;
  const char* site = "";
  for (const Thread& t : L->threads) {
    if (t.state == State::Done) done++;
    if (t.state == State::WaitBarrier) barrier++, site = t.waiting_at;
    if (t.state == State::WaitWarp) warp++;
  }
  const int total = static_cast<int>(L->threads.size());
  if (barrier > 0) {
    report("barrier", fmt("__syncthreads at %s is not reached by every thread of the block: %d of %d wait there, %d exited, %d wait in a warp collective", site, barrier, total, done, warp));
  } else {
    report("warp-divergence", fmt("a warp collective is not reached by every lane: %d threads wait in one, %d exited", warp, done));
  }
}

bool run_block() {
  const int nthreads = static_cast<int>(L->block.x * L->block.y * L->block.z);
  L->threads.assign(static_cast<size_t>(nthreads), Thread{});
  L->warps.assign(static_cast<size_t>((nthreads + 31) / 32), Warp{});
  for (size_t w = 0; w < L->warps.size(); ++w) L->warps[w].size = std::min(32, nthreads - static_cast<int>(w) * 32);
  L->barrier_arrived = 0;
  L->epoch = 1;
  std::fill(L->shadow.begin(), L->shadow.end(), Shadow{});
  std::memset(tidarc::smem_raw, 0xff, L->smem);  // NaN in bf16 and fp16: unwritten data shows
  for (int i = 0; i < nthreads; ++i) {
    Thread& t = L->threads[static_cast<size_t>(i)];
    t.tid = i, t.warp = i / 32, t.lane = i % 32, t.state = State::Runnable;
    t.idx = {static_cast<unsigned>(i) % L->block.x, (static_cast<unsigned>(i) / L->block.x) % L->block.y, static_cast<unsigned>(i) / (L->block.x * L->block.y)};
    unsigned char* stack = L->stacks + static_cast<size_t>(i) * (kStackBytes + kPage) + kPage;
    fiber_init(t.ctx, stack, kStackBytes, thread_main, &t);
  }
  for (;;) {
    bool ran = false, all_done = true;
    for (Thread& t : L->threads) {
      if (t.state == State::Done) continue;
      all_done = false;
      if (t.state != State::Runnable) continue;
      ran = true;
      L->current = &t;
      fiber_switch(L->scheduler, t.ctx);
      L->current = nullptr;
    }
    if (all_done) break;
    if (!ran) {
      diagnose_deadlock();
      return false;
    }
  }
  for (Thread& t : L->threads) fiber_release(t.ctx);
  return true;
}

// ---- faults -------------------------------------------------------------------------------

void write_json_string(FILE* out, const std::string& s) {
  std::fputc('"', out);
  for (char c : s) {
    if (c == '"' || c == '\\') std::fputc('\\', out), std::fputc(c, out);
    else if (static_cast<unsigned char>(c) < 0x20) std::fprintf(out, "\\u%04x", c);
    else std::fputc(c, out);
  }
  std::fputc('"', out);
}

void on_fault(int sig, siginfo_t* info, void*) {
  auto a = reinterpret_cast<uintptr_t>(info->si_addr);
  std::string what = fmt("%s at %s", sig == SIGBUS ? "bus error" : "invalid memory access", describe_global(a).c_str());
  if (L && L->stacks && a >= reinterpret_cast<uintptr_t>(L->stacks) && a < reinterpret_cast<uintptr_t>(L->stacks) + L->stacks_len)
    what = "stack overflow of an emulated thread";
  report("out-of-bounds", what);
  write_findings_json(stdout);
  std::fprintf(stdout, "{\"fatal\":true}\n");
  std::fflush(stdout);
  _exit(70);
}

void install_fault_handler() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  static std::vector<char> alt(1 << 16);
  stack_t ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
}

}  // namespace

// ---- the API of tidarc_emu.h / tidarc_emu_device.h / emu_runtime.h ------------------------

const uint3& current_thread_idx() { return cur().idx; }
const uint3& current_block_idx() { return L->block_idx; }
const dim3& current_block_dim() { return L->block; }
const dim3& current_grid_dim() { return L->grid; }

void syncthreads(const char* site) {
  Thread& t = cur();
  if (L->barrier_arrived == 0) {
    L->barrier_site = site;
  } else if (std::strcmp(L->barrier_site, site) != 0) {
    report("barrier", fmt("threads wait at different __syncthreads: %s and %s", L->barrier_site, site));
  }
  (void)t;
  if (++L->barrier_arrived == static_cast<int>(L->threads.size())) {
    L->barrier_arrived = 0;
    L->epoch++;
    for (Thread& other : L->threads)
      if (other.state == State::WaitBarrier) other.state = State::Runnable;
  } else {
    block_current(State::WaitBarrier, site);
  }
}

float shfl_xor_f32(float v, int lane_mask, const char* site) {
  LaneIn in{};
  in.f = v;
  return collective(Op::Shfl, in, lane_mask, false, MmaType::bf16, site).f[0];
}

void mma_m16n8k16(MmaType type, float d[4], const uint32_t a[4], const uint32_t b[2]) {
  LaneIn in{};
  std::memcpy(in.a, a, sizeof in.a);
  std::memcpy(in.b, b, sizeof in.b);
  std::memcpy(in.c, d, sizeof in.c);
  const LaneOut& out = collective(Op::Mma, in, 0, false, type, "mma.sync");
  std::memcpy(d, out.f, sizeof out.f);
}

void ldmatrix(int count, bool trans, uint32_t* r, const void* row) {
  LaneIn in{};
  in.ptr = row;
  const LaneOut& out = collective(Op::Ldmatrix, in, count, trans, MmaType::bf16, "ldmatrix");
  for (int i = 0; i < count; ++i) r[i] = out.r[i];
}

void cp_async_16(void* dst, const void* src, bool valid) {
  Thread& t = cur();
  size_t off;
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || (valid && reinterpret_cast<uintptr_t>(src) % 16 != 0)) {
    report("alignment", fmt("cp.async.16 needs 16-byte aligned addresses (shared %p, global %p)", dst, src));
    return;
  }
  const SharedKind kind = classify_shared(dst, 16, &off);
  if (kind == SharedKind::BeyondDynamic || kind == SharedKind::NotShared) {
    report("out-of-bounds", fmt("cp.async destination %s", shared_problem(kind, dst).c_str()));
    return;
  }
  PendingCopy c{static_cast<unsigned char*>(dst), {}, t.committed_groups, kind == SharedKind::Dynamic};
  if (valid) {
    auto a = reinterpret_cast<uintptr_t>(src);
    if (!find_buffer(a, 16)) report("out-of-bounds", fmt("cp.async reads global memory outside every buffer: %s", describe_global(a).c_str()));
    else std::memcpy(c.data, src, 16);
  }
  if (!c.tracked) {
    t.pending.push_back(c);
    return;
  }
  for (size_t i = off; i < off + 16; ++i) {
    Shadow& s = L->shadow[i];
    if (s.pending && s.pending_tid != t.tid)
      report("race", fmt("cp.async into shared byte %zu while the cp.async of %s into it is still pending", i, thread_name(s.pending_tid).c_str()));
  }
  shared_write_check(t.tid, off, 16, "cp.async");
  for (size_t i = off; i < off + 16; ++i) L->shadow[i].pending = 1, L->shadow[i].pending_tid = static_cast<int16_t>(t.tid);
  t.pending.push_back(c);
}

void cp_async_commit() { cur().committed_groups++; }

void cp_async_wait(int pending_groups) {
  Thread& t = cur();
  // Complete every copy of a committed group older than the newest `pending_groups` ones.
  const int limit = t.committed_groups - pending_groups;
  std::vector<PendingCopy> keep;
  for (const PendingCopy& c : t.pending) {
    if (c.group < limit) complete_copy(t, c);
    else keep.push_back(c);
  }
  t.pending.swap(keep);
}

float fast_exp2(float x) { return std::exp2(x); }

uint32_t shared_offset(const void* p) {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(tidarc::smem_raw));
}

void* alloc_global(const char* name, size_t bytes) {
  const size_t size = std::max<size_t>(16, (bytes + 15) & ~size_t{15});
  const size_t body = (size + kPage - 1) / kPage * kPage;
  const size_t len = body + 2 * kPage;
  auto* map = static_cast<unsigned char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (map == MAP_FAILED) {
    std::perror("tidarc-emu: mmap");
    std::exit(2);
  }
  mprotect(map, kPage, PROT_NONE);
  mprotect(map + kPage + body, kPage, PROT_NONE);
  unsigned char* begin = map + kPage + body - size;  // ends at the guard page
  g_buffers.push_back({name, reinterpret_cast<uintptr_t>(begin), reinterpret_cast<uintptr_t>(begin) + bytes, map, len});
  return begin;
}

void free_globals() {
  for (Buffer& b : g_buffers) munmap(b.map, b.map_len);
  g_buffers.clear();
}

bool launch(const char* kernel, dim3 grid, dim3 block, size_t dynamic_shared, void (*entry)(void*), void* arg) {
  install_fault_handler();
  if (dynamic_shared > kMaxDynamicShared) {
    std::fprintf(stderr, "tidarc-emu: %s asks for %zu bytes of dynamic shared memory; at most %zu\n", kernel, dynamic_shared, kMaxDynamicShared);
    return false;
  }
  Launch launch_state;
  L = &launch_state;
  L->kernel = kernel, L->grid = grid, L->block = block, L->smem = dynamic_shared, L->entry = entry, L->arg = arg;
  L->shadow.assign(dynamic_shared, Shadow{});
  const size_t nthreads = block.x * block.y * block.z;
  L->stacks_len = nthreads * (kStackBytes + kPage);
  L->stacks = static_cast<unsigned char*>(mmap(nullptr, L->stacks_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  for (size_t i = 0; i < nthreads; ++i) mprotect(L->stacks + i * (kStackBytes + kPage), kPage, PROT_NONE);  // overflow guard
  bool ok = true;
  for (unsigned z = 0; z < grid.z && ok; ++z)
    for (unsigned y = 0; y < grid.y && ok; ++y)
      for (unsigned x = 0; x < grid.x && ok; ++x) {
        L->block_idx = {x, y, z};
        ok = run_block();
      }
  munmap(L->stacks, L->stacks_len);
  L = nullptr;
  return ok;
}

const std::vector<Finding>& findings() { return g_findings; }

std::vector<std::pair<std::string, size_t>> finding_counts() { return {g_counts.begin(), g_counts.end()}; }

void write_findings_json(FILE* out) {
  for (const Finding& f : g_findings) {
    std::fprintf(out, "{\"finding\":");
    write_json_string(out, f.kind);
    std::fprintf(out, ",\"kernel\":");
    write_json_string(out, f.kernel);
    std::fprintf(out, ",\"block\":[%u,%u,%u],\"thread\":[%u,%u,%u],\"message\":", f.block.x, f.block.y, f.block.z, f.thread.x, f.thread.y, f.thread.z);
    write_json_string(out, f.message);
    std::fprintf(out, "}\n");
  }
  for (const auto& [kind, n] : g_counts) {
    std::fprintf(out, "{\"count\":");
    write_json_string(out, kind);
    std::fprintf(out, ",\"n\":%zu}\n", n);
  }
}

}  // namespace tidarc_emu
