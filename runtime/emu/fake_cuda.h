/*! tidarc emulated CUDA driver, internal: the state that fake_cuda.cpp (device, context,
    memory, modules, launches) and fake_cuda_streams.cpp (streams, capture, graphs, events,
    pinned host memory, asynchronous copies) share. Every exported call holds g_mutex while it
    touches any of it. */
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_driver_api.h"

namespace tidarc_cuda {

struct CUfunc_st {
  std::string name;
  void (*entry)(void*);
  int max_dynamic_shared;
  /** sizeof the kernel's struct parameter (the module's <kernel>__emu_param_bytes); 0 when the
      module predates it, and then a launch cannot be captured (its bytes cannot be copied). */
  size_t param_bytes;
};

struct CUmod_st {
  void* library;
  std::map<std::string, std::unique_ptr<CUfunc_st>> functions;
};

/** One operation a stream ran or a capture recorded: what a graph node replays. */
struct FakeNode {
  enum Kind { kLaunch, kCopyHtoD, kCopyDtoH, kCopyDtoD, kMemset, kEventRecord } kind;
  CUfunc_st* fn = nullptr;
  unsigned dims[6] = {};  // grid x y z, block x y z
  unsigned shared = 0;
  std::vector<uint8_t> param;  // the launch's struct, copied at capture
  bool programmatic = false;    // cuLaunchKernelEx with PROGRAMMATIC_STREAM_SERIALIZATION: replayed as such
  CUdeviceptr dst = 0, src = 0;
  const void* host_src = nullptr;  // read at replay, as on a GPU (pinned memory)
  void* host_dst = nullptr;
  size_t bytes = 0;
  unsigned char value = 0;
  CUevent_st* event = nullptr;
};

/** A stream: launches run at once (the emulator is synchronous) unless it is capturing. */
struct CUstream_st {
  bool capturing = false;
  /** An unsupported call during the capture: cuStreamEndCapture fails and gives no graph. */
  bool invalidated = false;
  std::vector<FakeNode> captured;
};

struct CUevent_st {
  /** steady-clock milliseconds when the event's work completed; < 0 until recorded. */
  double at_ms = -1;
};

struct CUgraph_st {
  std::vector<FakeNode> nodes;
};

struct CUgraphExec_st {
  std::vector<FakeNode> nodes;
};

/** The device's primary context: its allocations, modules, streams, graphs and sticky error. */
struct CUctx_st {
  int retains = 0;
  CUresult sticky = CUDA_SUCCESS;
  std::map<CUdeviceptr, size_t> allocations;  // start -> bytes
  size_t allocated = 0;
  unsigned next_buffer = 0;
  std::map<CUmod_st*, std::unique_ptr<CUmod_st>> modules;
  std::map<CUstream_st*, std::unique_ptr<CUstream_st>> streams;
  std::map<CUevent_st*, std::unique_ptr<CUevent_st>> events;
  std::map<CUgraph_st*, std::unique_ptr<CUgraph_st>> graphs;
  std::map<CUgraphExec_st*, std::unique_ptr<CUgraphExec_st>> execs;
  std::map<const uint8_t*, size_t> pinned;  // cuMemHostAlloc: start -> bytes
};

}  // namespace tidarc_cuda

namespace tidarc_fake {

using namespace tidarc_cuda;

extern std::mutex g_mutex;

/** The calling thread's usable context, or the error a real driver gives instead. */
CUresult current(CUctx_st** ctx);
/** Whether [p, p + n) lies inside one device allocation of the context. */
bool inside_one(const CUctx_st& ctx, CUdeviceptr p, size_t n);
/** Whether [p, p + n) lies inside one pinned host allocation of the context. */
bool inside_pinned(const CUctx_st& ctx, const void* p, size_t n);
CUfunc_st* find_function(const CUctx_st& ctx, CUfunction fn);

/** A launch's geometry and shared memory against the device's limits and the function's opt-in. */
bool launch_fits(const CUfunc_st& f, const unsigned (&dims)[6], unsigned shared_bytes);
/** Runs one launch now (`programmatic`: a programmatic dependent launch, PDL-checked); a finding or
 *  an unfinished launch makes CUDA_ERROR_LAUNCH_FAILED sticky. */
CUresult run_launch(CUctx_st& ctx, CUfunc_st& f, const unsigned (&dims)[6], unsigned shared_bytes, void* param, bool programmatic);

/**
 * Where an operation issued on `stream` goes: nullptr = run it now; else the capturing stream
 * that records it. A legacy-stream operation while a stream captures is
 * CUDA_ERROR_STREAM_CAPTURE_IMPLICIT (and invalidates the capture), an unknown stream
 * CUDA_ERROR_INVALID_HANDLE.
 */
CUresult stream_target(CUctx_st& ctx, CUstream stream, CUstream_st** capture);
/**
 * For calls that a capture forbids (synchronous copies, synchronize, allocation): while any
 * stream captures, invalidates it and returns CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED.
 */
CUresult refuse_during_capture(CUctx_st& ctx);
/** Releases streams, events, graphs and pinned memory (the context's last release). */
void destroy_streams(CUctx_st& ctx);

}  // namespace tidarc_fake
