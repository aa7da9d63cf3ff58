/*! tidarc emulated CUDA driver: streams, stream capture, graphs, events, pinned host memory
    and the asynchronous copies (the rest of the driver is fake_cuda.cpp).

    The emulator runs everything at once, so a stream is only a handle until it captures.
    Between cuStreamBeginCapture and cuStreamEndCapture the launches, copies, memsets and event
    records issued on that stream are recorded (a launch's struct parameter is copied then),
    not run; cuGraphLaunch runs the recorded operations in order, reading device memory and
    pinned host memory as they are at replay, as a GPU does. As on a GPU (global capture
    mode), a synchronous copy, a synchronize or an allocation while a stream captures fails
    with CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates the capture, and so does an
    operation on the legacy NULL stream (CUDA_ERROR_STREAM_CAPTURE_IMPLICIT): cuStreamEndCapture
    then fails with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED and gives no graph. */
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "emu_runtime.h"
#include "fake_cuda.h"

using namespace tidarc_cuda;
using namespace tidarc_fake;

#define TIDARC_FAKE_DECLARE(name, ret, params) extern "C" __attribute__((visibility("default"))) ret name params;
TIDARC_CUDA_DRIVER_FUNCTIONS(TIDARC_FAKE_DECLARE)
#undef TIDARC_FAKE_DECLARE

namespace {

constexpr CUresult CUDA_ERROR_INVALID_HANDLE = 400;
/** Legacy NULL stream and its two special handles (CU_STREAM_LEGACY, CU_STREAM_PER_THREAD). */
bool is_null_stream(CUstream s) {
  const auto v = reinterpret_cast<uintptr_t>(s);
  return v == 0 || v == 1 || v == 2;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/** A memory operation's failure at replay: the buffers were freed after the capture. */
CUresult replay_fault(CUctx_st& ctx, const char* what) {
  std::fprintf(stderr, "{\"failed_graph_node\":\"%s\",\"message\":\"its memory was freed after the capture\"}\n", what);
  std::fflush(stderr);
  ctx.sticky = CUDA_ERROR_LAUNCH_FAILED;
  return CUDA_ERROR_LAUNCH_FAILED;
}

/** Runs one operation now (at issue on a stream that does not capture, or in a replay). */
CUresult run_node(CUctx_st& ctx, FakeNode& n) {
  switch (n.kind) {
    case FakeNode::kLaunch:
      return run_launch(ctx, *n.fn, n.dims, n.shared, n.param.data(), n.programmatic);
    case FakeNode::kCopyHtoD:
      if (!inside_one(ctx, n.dst, n.bytes) || !inside_pinned(ctx, n.host_src, n.bytes)) return replay_fault(ctx, "host to device copy");
      std::memcpy(reinterpret_cast<void*>(n.dst), n.host_src, n.bytes);
      return CUDA_SUCCESS;
    case FakeNode::kCopyDtoH:
      if (!inside_one(ctx, n.src, n.bytes) || !inside_pinned(ctx, n.host_dst, n.bytes)) return replay_fault(ctx, "device to host copy");
      std::memcpy(n.host_dst, reinterpret_cast<const void*>(n.src), n.bytes);
      return CUDA_SUCCESS;
    case FakeNode::kCopyDtoD:
      if (!inside_one(ctx, n.dst, n.bytes) || !inside_one(ctx, n.src, n.bytes)) return replay_fault(ctx, "device to device copy");
      std::memmove(reinterpret_cast<void*>(n.dst), reinterpret_cast<const void*>(n.src), n.bytes);
      return CUDA_SUCCESS;
    case FakeNode::kMemset:
      if (!inside_one(ctx, n.dst, n.bytes)) return replay_fault(ctx, "memset");
      std::memset(reinterpret_cast<void*>(n.dst), n.value, n.bytes);
      return CUDA_SUCCESS;
    case FakeNode::kEventRecord:
      if (ctx.events.count(n.event) == 0) return replay_fault(ctx, "event record");
      n.event->at_ms = now_ms();
      return CUDA_SUCCESS;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

/** Issues an operation on `stream`: recorded when it captures, else run now. */
CUresult issue(CUctx_st& ctx, CUstream stream, FakeNode node) {
  CUstream_st* capture = nullptr;
  if (CUresult r = stream_target(ctx, stream, &capture)) return r;
  if (capture == nullptr) return run_node(ctx, node);
  capture->captured.push_back(std::move(node));
  return CUDA_SUCCESS;
}

}  // namespace

namespace tidarc_fake {

bool inside_pinned(const CUctx_st& ctx, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  auto it = ctx.pinned.upper_bound(b);
  if (it == ctx.pinned.begin()) return false;
  --it;
  const size_t offset = static_cast<size_t>(b - it->first);
  return offset <= it->second && n <= it->second - offset;
}

CUresult stream_target(CUctx_st& ctx, CUstream stream, CUstream_st** capture) {
  *capture = nullptr;
  if (is_null_stream(stream)) {
    // The legacy stream waits for every blocking stream: a capturing one cannot be waited for.
    for (auto& [key, s] : ctx.streams) {
      if (s->capturing) {
        s->invalidated = true;
        return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
      }
    }
    return CUDA_SUCCESS;
  }
  auto it = ctx.streams.find(stream);
  if (it == ctx.streams.end()) return CUDA_ERROR_INVALID_HANDLE;
  if (it->second->capturing) *capture = it->second.get();
  return CUDA_SUCCESS;
}

CUresult refuse_during_capture(CUctx_st& ctx) {
  CUresult r = CUDA_SUCCESS;
  for (auto& [key, s] : ctx.streams) {
    if (s->capturing) {
      s->invalidated = true;
      r = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
  }
  return r;
}

void destroy_streams(CUctx_st& ctx) {
  for (const auto& [p, bytes] : ctx.pinned) std::free(const_cast<uint8_t*>(p));
  ctx.pinned.clear();
  ctx.execs.clear();
  ctx.graphs.clear();
  ctx.events.clear();
  ctx.streams.clear();
}

}  // namespace tidarc_fake

// ---- streams and capture ----------------------------------------------------------------------

CUresult cuStreamCreate(CUstream* stream, unsigned flags) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (stream == nullptr || flags > 1) return CUDA_ERROR_INVALID_VALUE;  // 1 = CU_STREAM_NON_BLOCKING
  auto s = std::make_unique<CUstream_st>();
  *stream = s.get();
  ctx->streams[s.get()] = std::move(s);
  return CUDA_SUCCESS;
}

CUresult cuStreamDestroy_v2(CUstream stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  auto it = ctx->streams.find(stream);
  if (it == ctx->streams.end()) return CUDA_ERROR_INVALID_HANDLE;
  ctx->streams.erase(it);
  return CUDA_SUCCESS;
}

CUresult cuStreamSynchronize(CUstream stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (!is_null_stream(stream) && ctx->streams.count(stream) == 0) return CUDA_ERROR_INVALID_HANDLE;
  return refuse_during_capture(*ctx);  // nothing is ever pending
}

CUresult cuStreamBeginCapture_v2(CUstream stream, int mode) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  // Only global mode, and the legacy stream cannot capture (as on a GPU).
  if (mode != CU_STREAM_CAPTURE_MODE_GLOBAL || is_null_stream(stream)) return CUDA_ERROR_NOT_SUPPORTED;
  auto it = ctx->streams.find(stream);
  if (it == ctx->streams.end()) return CUDA_ERROR_INVALID_HANDLE;
  CUstream_st& s = *it->second;
  if (s.capturing) return CUDA_ERROR_INVALID_VALUE;
  s.capturing = true;
  s.invalidated = false;
  s.captured.clear();
  return CUDA_SUCCESS;
}

CUresult cuStreamEndCapture(CUstream stream, CUgraph* graph) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *graph = nullptr;
  auto it = ctx->streams.find(stream);
  if (it == ctx->streams.end()) return CUDA_ERROR_INVALID_HANDLE;
  CUstream_st& s = *it->second;
  if (!s.capturing) return CUDA_ERROR_INVALID_VALUE;
  s.capturing = false;
  std::vector<FakeNode> nodes = std::move(s.captured);
  s.captured.clear();
  if (s.invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
  auto g = std::make_unique<CUgraph_st>();
  g->nodes = std::move(nodes);
  *graph = g.get();
  ctx->graphs[g.get()] = std::move(g);
  return CUDA_SUCCESS;
}

// ---- graphs -----------------------------------------------------------------------------------

CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph, unsigned long long flags) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (exec == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
  auto it = ctx->graphs.find(graph);
  if (it == ctx->graphs.end()) return CUDA_ERROR_INVALID_HANDLE;
  auto e = std::make_unique<CUgraphExec_st>();
  e->nodes = it->second->nodes;  // an executable graph is a snapshot: later graph edits do not reach it
  *exec = e.get();
  ctx->execs[e.get()] = std::move(e);
  return CUDA_SUCCESS;
}

CUresult cuGraphLaunch(CUgraphExec exec, CUstream stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  auto it = ctx->execs.find(exec);
  if (it == ctx->execs.end()) return CUDA_ERROR_INVALID_HANDLE;
  CUstream_st* capture = nullptr;
  if (CUresult r = stream_target(*ctx, stream, &capture)) return r;
  if (capture != nullptr) {  // a graph launched into a capture becomes its operations
    capture->captured.insert(capture->captured.end(), it->second->nodes.begin(), it->second->nodes.end());
    return CUDA_SUCCESS;
  }
  for (FakeNode& n : it->second->nodes) {
    if (CUresult r = run_node(*ctx, n)) return r;
  }
  return CUDA_SUCCESS;
}

CUresult cuGraphExecDestroy(CUgraphExec exec) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  return ctx->execs.erase(exec) == 1 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult cuGraphDestroy(CUgraph graph) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  return ctx->graphs.erase(graph) == 1 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

// ---- events -----------------------------------------------------------------------------------

CUresult cuEventCreate(CUevent* event, unsigned flags) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (event == nullptr || flags != CU_EVENT_DEFAULT) return CUDA_ERROR_INVALID_VALUE;
  auto e = std::make_unique<CUevent_st>();
  *event = e.get();
  ctx->events[e.get()] = std::move(e);
  return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent event, CUstream stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (ctx->events.count(event) == 0) return CUDA_ERROR_INVALID_HANDLE;
  FakeNode node{FakeNode::kEventRecord};
  node.event = event;
  return issue(*ctx, stream, std::move(node));
}

CUresult cuEventSynchronize(CUevent event) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (ctx->events.count(event) == 0) return CUDA_ERROR_INVALID_HANDLE;
  return refuse_during_capture(*ctx);
}

CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (ms == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (ctx->events.count(start) == 0 || ctx->events.count(end) == 0) return CUDA_ERROR_INVALID_HANDLE;
  if (start->at_ms < 0 || end->at_ms < 0) return CUDA_ERROR_INVALID_HANDLE;  // never recorded
  *ms = static_cast<float>(end->at_ms - start->at_ms);
  return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent event) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  return ctx->events.erase(event) == 1 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

// ---- pinned host memory and asynchronous copies -----------------------------------------------

CUresult cuMemHostAlloc(void** ptr, size_t bytes, unsigned flags) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  if (ptr == nullptr || bytes == 0 || flags > 0xf) return CUDA_ERROR_INVALID_VALUE;
  void* p = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
  ctx->pinned[static_cast<const uint8_t*>(p)] = bytes;
  *ptr = p;
  return CUDA_SUCCESS;
}

CUresult cuMemFreeHost(void* ptr) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  auto it = ctx->pinned.find(static_cast<const uint8_t*>(ptr));
  if (it == ctx->pinned.end()) return CUDA_ERROR_INVALID_VALUE;
  ctx->pinned.erase(it);
  std::free(ptr);
  return CUDA_SUCCESS;
}

// The host side of an asynchronous copy must be pinned (cuMemHostAlloc): the real driver
// copies pageable memory synchronously instead, which a capture cannot record.
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, CUstream stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (src == nullptr || !inside_one(*ctx, dst, bytes) || !inside_pinned(*ctx, src, bytes)) return CUDA_ERROR_INVALID_VALUE;
  FakeNode node{FakeNode::kCopyHtoD};
  node.dst = dst, node.host_src = src, node.bytes = bytes;
  return issue(*ctx, stream, std::move(node));
}

CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (dst == nullptr || !inside_one(*ctx, src, bytes) || !inside_pinned(*ctx, dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
  FakeNode node{FakeNode::kCopyDtoH};
  node.src = src, node.host_dst = dst, node.bytes = bytes;
  return issue(*ctx, stream, std::move(node));
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (!inside_one(*ctx, dst, bytes) || !inside_one(*ctx, src, bytes)) return CUDA_ERROR_INVALID_VALUE;
  FakeNode node{FakeNode::kCopyDtoD};
  node.dst = dst, node.src = src, node.bytes = bytes;
  return issue(*ctx, stream, std::move(node));
}

CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t bytes, CUstream stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (!inside_one(*ctx, dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
  FakeNode node{FakeNode::kMemset};
  node.dst = dst, node.value = value, node.bytes = bytes;
  return issue(*ctx, stream, std::move(node));
}
