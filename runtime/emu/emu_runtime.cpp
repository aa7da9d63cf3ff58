/*! tidarc SIMT emulator runtime: launches (blocks of fibers, one block after another, so
    "concurrency" is only what the kernel's own barriers allow), __syncthreads, deadlock
    diagnosis (a barrier or collective not reached by every thread), faults on guard pages,
    and the findings. Memory checks live in emu_memory.cpp, warp collectives in emu_warp.cpp. */
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "emu_hopper.h"
#include "emu_state.h"

namespace tidarc_emu {
namespace detail {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kMaxStored = 40;
const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
Launch* L = nullptr;
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

void block_current(State s, const char* site) {
  Thread& t = cur();
  t.state = s;
  t.waiting_at = site;
  fiber_switch(t.ctx, L->scheduler);
}

// ---- the scheduler ------------------------------------------------------------------------

void finish_thread(Thread& t) {
  if (!t.pending.empty()) {
    report("cp-async", fmt("%zu cp.async copies were never waited for before the thread exited", t.pending.size()));
    for (const PendingCopy& c : t.pending) complete_copy(t, c);
    t.pending.clear();
  }
  hopper::thread_end(t.tid);
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
  int done = 0, barrier = 0, warp = 0, named = 0, named_id = 0;
  const char* site = "";
  for (const Thread& t : L->threads) {
    if (t.state == State::Done) done++;
    if (t.state == State::WaitBarrier) barrier++, site = t.waiting_at;
    if (t.state == State::WaitWarp) warp++;
    if (t.state == State::WaitNamed) named++, named_id = t.named;
  }
  const int total = static_cast<int>(L->threads.size());
  if (named > 0) {
    const NamedBarrier& b = L->named[named_id];
    report("barrier", fmt("bar.sync %d never completes: %d of its %d threads arrived, %d threads wait at named barriers, %d exited (a missing bar.arrive, or counts that differ)",
                          named_id, b.arrived, b.count, named, done));
  } else if (barrier > 0) {
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
  for (NamedBarrier& b : L->named) b = NamedBarrier{};
  L->epoch = 1;
  L->block_writes.clear();
  L->block_atomic = 0;
  L->block_observed.clear();
  L->spin_word = 0, L->spin_polls = 0;
  std::fill(L->shadow.begin(), L->shadow.end(), Shadow{});
  std::memset(tidarc::smem_raw, 0xff, L->smem);  // NaN in bf16 and fp16: unwritten data shows
  hopper::block_begin(nthreads, L->smem);
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
      g_pdl_unwaited = L->programmatic && !t.waited;
      fiber_switch(L->scheduler, t.ctx);
      g_pdl_unwaited = false;
      L->current = nullptr;
    }
    if (all_done) break;
    if (!ran) {
      diagnose_deadlock();
      return false;
    }
  }
  for (int id = 1; id < kNamedBarriers; ++id) {
    const NamedBarrier& b = L->named[id];
    // On hardware the arrivals stay counted: a bar.arrive that no bar.sync consumed (the sides'
    // arrive and sync counts differ), or lanes that arrived and never got through.
    if (b.arrived > 0)
      report("barrier", fmt("named barrier %d: the block ends with a phase half-arrived (%d of its %d threads arrived, begun by a %s): an arrival nothing consumed", id, b.arrived, b.count, b.site));
  }
  hopper::block_end();
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

bool g_recover_faults = false;
BlockOrder g_block_order = BlockOrder::Forward;
struct sigaction g_previous_segv, g_previous_bus;

/** A fault that is not a launch's own goes where it would have gone without the emulator. */
void chain_fault(int sig, siginfo_t* info, void* context) {
  const struct sigaction& previous = sig == SIGBUS ? g_previous_bus : g_previous_segv;
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, context);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
  } else {
    // The default action: returning re-runs the faulting access, which now kills the process.
    signal(sig, SIG_DFL);
    if (info->si_code <= 0) raise(sig);  // sent by kill(), not a fault
  }
}

void on_fault(int sig, siginfo_t* info, void* context) {
  if (!L || !pthread_equal(L->os_thread, pthread_self())) return chain_fault(sig, info, context);
  auto a = reinterpret_cast<uintptr_t>(info->si_addr);
  std::string what = fmt("%s at %s", sig == SIGBUS ? "bus error" : "invalid memory access", describe_global(a).c_str());
  if (L->stacks && a >= reinterpret_cast<uintptr_t>(L->stacks) && a < reinterpret_cast<uintptr_t>(L->stacks) + L->stacks_len)
    what = "stack overflow of an emulated thread";
  report("out-of-bounds", what);
  if (g_recover_faults) siglongjmp(L->fault_exit, 1);  // back into launch(), off the fiber's stack
  write_findings_json(stdout);
  std::fprintf(stdout, "{\"fatal\":true}\n");
  std::fflush(stdout);
  _exit(70);
}

/** The handler once per process; an alternate signal stack once per launching OS thread
 *  (64 KB, kept until the thread ends) unless the thread has one already. */
void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, &g_previous_segv);
    sigaction(SIGBUS, &sa, &g_previous_bus);
  });
  thread_local bool alt_stack_checked = false;
  if (alt_stack_checked) return;
  alt_stack_checked = true;
  stack_t current{};
  if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;
  constexpr size_t kAltStackBytes = 1 << 16;
  void* alt = mmap(nullptr, kAltStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (alt == MAP_FAILED) return;
  stack_t ss{};
  ss.ss_sp = alt;
  ss.ss_size = kAltStackBytes;
  sigaltstack(&ss, nullptr);
}
}  // namespace detail

using namespace detail;

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
    hopper::block_sync();
    // bar.sync orders every thread's earlier steps before every thread's later ones: an acquire
    // (a fence after an atomic, emu_global.cpp) of one thread now covers them all.
    Acquires acquired;
    for (const Thread& other : L->threads) acquired.join(other.acquired);
    if (!acquired.empty())
      for (Thread& other : L->threads) other.acquired = acquired;
    for (Thread& other : L->threads)
      if (other.state == State::WaitBarrier) other.state = State::Runnable;
  } else {
    block_current(State::WaitBarrier, site);
  }
}

// bar.sync / bar.arrive id, count: a phase completes when `count` threads arrived (the waiting
// ones of bar.sync and the passing ones of bar.arrive); then the next phase begins. Unlike
// __syncthreads it does not end a race-check epoch (only some threads take part): each arrival
// is stamped (Launch::nb_clock), and a thread that waited through a phase (bar.sync) keeps the
// phase's arrival stamps, so a shared byte another participant wrote (or alone read) before
// arriving is no race for it (emu_memory.cpp named_ordered); bar.arrive orders only what its
// thread did before it, and a thread that only arrived is ordered after nothing.
void named_barrier(int id, int count, bool wait, const char* site, const char* file, int line) {
  Thread& t = cur();
  const int nthreads = static_cast<int>(L->threads.size());
  if (id < 1 || id >= kNamedBarriers) {
    report("barrier", fmt("%s %d: a named barrier id is 1..%d (0 is __syncthreads')", site, id, kNamedBarriers - 1));
    return;
  }
  if (count < 32 || count % 32 != 0 || count > nthreads) {
    report("barrier", fmt("%s %d, %d: the thread count must be a multiple of 32 in 32..%d (the block's threads)", site, id, count, nthreads));
    return;
  }
  NamedBarrier& b = L->named[id];
  // PTX ISA (bar, barrier): "Care must be taken to keep a warp from executing more barrier
  // instructions than intended (barrier.arrive followed by any other barrier instruction to the
  // same barrier) prior to the reset of the barrier" -- unpredictable on hardware; here the
  // extra arrival would silently complete the phase (e.g. a ping-pong whose waits are missing).
  if (b.in_phase.size() != static_cast<size_t>(nthreads)) b.in_phase.assign(static_cast<size_t>(nthreads), false);
  if (b.in_phase[static_cast<size_t>(t.tid)]) {
    report("barrier", fmt("%s %d: thread %d (warp %d) arrives again in the phase it already arrived in (%d of %d arrived): a bar.arrive followed by another barrier instruction on the same barrier before its phase completes is unpredictable on hardware",
                          site, id, t.tid, t.warp, b.arrived, b.count));
  }
  b.in_phase[static_cast<size_t>(t.tid)] = true;
  if (b.arrive_clk.size() != static_cast<size_t>(nthreads)) b.arrive_clk.assign(static_cast<size_t>(nthreads), 0);
  b.arrive_clk[static_cast<size_t>(t.tid)] = ++L->nb_clock;
  // bar.sync and bar.arrive are .aligned (barrier.sync.aligned): every thread of a warp executes
  // the same barrier instruction, and the hardware counts the warp's arrival as one. Lanes of a
  // warp arriving in one phase through different instructions diverged there.
  if (b.warp_at.size() != L->warps.size()) b.warp_at.assign(L->warps.size(), BarrierCall{nullptr, nullptr, 0});
  BarrierCall& at = b.warp_at[static_cast<size_t>(t.warp)];
  if (!at.file) {
    at = {site, file, line};
  } else if (at.line >= 0 && (at.site != site || at.line != line || std::strcmp(at.file, file) != 0)) {
    report("barrier", fmt("%s %d at %s:%d: lanes of warp %d also arrive in this phase through the %s at %s:%d; bar.sync/bar.arrive are .aligned (every lane of a warp executes the same barrier instruction), undefined on hardware when reached divergently",
                          site, id, file, line, t.warp, at.site, at.file, at.line));
    at.line = -1;
  }
  b.acquired.join(t.acquired);
  if (b.arrived == 0) {
    b.count = count, b.site = site;
  } else if (b.count != count) {
    report("barrier", fmt("%s %d counts %d threads but the phase in progress, begun by a %s, counts %d", site, id, count, b.site, b.count));
  }
  hopper::g.events++;  // progress, for the mbarrier waits' deadlock check
  if (++b.arrived >= b.count) {
    // A warp some of whose live lanes are not in the completed phase reached it divergently.
    for (size_t w = 0; w < L->warps.size(); ++w) {
      int in = 0, live = 0;
      for (int l = 0; l < L->warps[w].size; ++l) {
        const size_t i = w * 32 + static_cast<size_t>(l);
        in += b.in_phase[i], live += L->threads[i].state != State::Done;
      }
      if (in > 0 && in < live && b.warp_at[w].line >= 0)
        report("barrier", fmt("%s %d at %s:%d completes a phase with %d of warp %zu's %d running lanes arrived; bar.sync/bar.arrive are .aligned (the whole warp arrives at once), undefined on hardware when reached divergently",
                              b.warp_at[w].site, id, b.warp_at[w].file, b.warp_at[w].line, in, w, live));
    }
    b.arrived = 0;
    std::fill(b.in_phase.begin(), b.in_phase.end(), false);
    std::fill(b.warp_at.begin(), b.warp_at.end(), BarrierCall{nullptr, nullptr, 0});
    const auto arrivals = std::make_shared<const std::vector<uint32_t>>(b.arrive_clk);
    std::fill(b.arrive_clk.begin(), b.arrive_clk.end(), 0);
    for (Thread& other : L->threads)
      if (other.state == State::WaitNamed && other.named == id) other.state = State::Runnable, other.acquired.join(b.acquired), other.nb_last = arrivals;
    if (wait) t.acquired.join(b.acquired), t.nb_last = arrivals;
    b.acquired = Acquires{};
    return;
  }
  if (wait) {
    t.named = id;
    block_current(State::WaitNamed, site);
  }
}

bool launch(const char* kernel, dim3 grid, dim3 block, size_t dynamic_shared, void (*entry)(void*), void* arg, bool programmatic) {
  install_fault_handler();
  if (dynamic_shared > kMaxDynamicShared) {
    std::fprintf(stderr, "tidarc-emu: %s asks for %zu bytes of dynamic shared memory; at most %zu\n", kernel, dynamic_shared, kMaxDynamicShared);
    return false;
  }
  Launch launch_state;
  L = &launch_state;
  L->kernel = kernel, L->grid = grid, L->block = block, L->smem = dynamic_shared, L->entry = entry, L->arg = arg;
  L->programmatic = programmatic;
  L->shadow.assign(dynamic_shared, Shadow{});
  g_plain_base = reinterpret_cast<uintptr_t>(tidarc::smem_raw);
  g_cross_lo = 0, g_cross_len = 0;
  const size_t nthreads = block.x * block.y * block.z;
  L->stacks_len = nthreads * (kStackBytes + kPage);
  L->stacks = static_cast<unsigned char*>(mmap(nullptr, L->stacks_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  for (size_t i = 0; i < nthreads; ++i) mprotect(L->stacks + i * (kStackBytes + kPage), kPage, PROT_NONE);  // overflow guard
  L->os_thread = pthread_self();
  volatile bool ok = true;
  if (sigsetjmp(L->fault_exit, 1) == 0) {
    const size_t blocks = static_cast<size_t>(grid.x) * grid.y * grid.z;
    for (size_t i = 0; i < blocks && ok; ++i) {
      const size_t at = g_block_order == BlockOrder::Reverse ? blocks - 1 - i : i;  // x fastest
      L->block_idx = {static_cast<unsigned>(at % grid.x), static_cast<unsigned>(at / grid.x % grid.y), static_cast<unsigned>(at / (static_cast<size_t>(grid.x) * grid.y))};
      ok = run_block();
    }
  } else {
    ok = false;  // a recovered fault, already a finding; the fibers of the block are abandoned
  }
  munmap(L->stacks, L->stacks_len);
  g_pdl_unwaited = false;  // a recovered fault leaves the scheduler loop without resetting it
  g_plain_base = kPlainNone;
  g_cross_lo = 0, g_cross_len = 0;
  L = nullptr;
  return ok;
}

void set_fault_recovery(bool recover) { g_recover_faults = recover; }

void set_block_order(BlockOrder order) { g_block_order = order; }

void add_finding(const std::string& kind, const std::string& message) { report(kind, message); }

const std::vector<Finding>& findings() { return g_findings; }

void clear_findings() {
  g_findings.clear();
  g_counts.clear();
}

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
