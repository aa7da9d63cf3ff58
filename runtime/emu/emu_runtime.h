/*! tidarc emulator: what a harness uses to run kernels (launch, global buffers with guard
    pages, findings). Kernels themselves only see tidarc_emu.h and tidarc_emu_device.h. */
#pragma once
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include "tidarc_emu.h"

namespace tidarc_emu {

/** One problem the emulator saw: what, where (kernel, block, thread) and the address. */
struct Finding {
  std::string kind;  // out-of-bounds, race, uninitialized-read, cp-async, barrier, warp-divergence, alignment, fence, stale-l1, counter, pdl, ...
  std::string kernel;
  uint3 block;
  uint3 thread;
  std::string message;
};

/** Largest dynamic shared memory a launch may ask for (sm_90's 227 KB). */
constexpr size_t kMaxDynamicShared = 232448;

/**
 * Global memory for a kernel: the buffer ends exactly at a PROT_NONE guard page (and
 * starts right after another), so a direct access past either end faults and is reported
 * with the thread that made it. Registered for the primitives' bounds checks by `name`.
 */
void* alloc_global(const char* name, size_t bytes);
/** Frees one buffer of alloc_global; false (and nothing freed) when `p` does not start one. */
bool free_global(void* p);
void free_globals();

/**
 * Runs `kernel(arg)` on every thread of `grid` x `block`, one block after another.
 * Returns false when the launch had to stop (a deadlocked barrier or collective).
 * `programmatic`: launched as a programmatic dependent launch (the PDL attribute), which may
 * start before the previous kernel of the stream ends: every access of a thread to a device
 * allocation before its grid_dependency_wait is a "pdl" finding.
 */
bool launch(const char* kernel, dim3 grid, dim3 block, size_t dynamic_shared, void (*entry)(void*), void* arg, bool programmatic = false);

/**
 * What a fault inside a launch (an access to a guard page, an emulated thread's stack
 * overflow) does. By default the process prints the findings and exits 70: the harness
 * protocol. With `recover` the fault becomes a finding, the launch stops there and returns
 * false, and the process goes on (the emulated CUDA driver, which lives in its client's
 * process). Either way a fault outside a launch, or on another OS thread, goes to the
 * handler that was installed before the emulator's.
 */
void set_fault_recovery(bool recover);

/**
 * The order launches run their blocks in (one after another): Forward is x fastest, then y,
 * then z; Reverse the opposite. A result must not depend on it (which CTA of a split-KV row
 * group finishes last, say); a check runs both and compares.
 */
enum class BlockOrder { Forward, Reverse };
void set_block_order(BlockOrder order);

/** A finding of the host (a harness's check of what a launch left behind), outside any launch. */
void add_finding(const std::string& kind, const std::string& message);

const std::vector<Finding>& findings();
/** Forgets every finding and count so far (a host that launches many kernels asks per launch). */
void clear_findings();
/** Findings per kind, including those beyond the stored limit. */
std::vector<std::pair<std::string, size_t>> finding_counts();
/** One JSON object per line: {"finding", "kernel", "block", "thread", "message"}, then {"count", "n"} per kind. */
void write_findings_json(FILE* out);

}  // namespace tidarc_emu
