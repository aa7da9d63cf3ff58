/*! tidarc emulated CUDA driver: a libcuda.so.1 for machines without a GPU, so that the
    runtime's CUDA host code (runtime/src/cuda) runs in CI. It exports every function of
    runtime/src/cuda/cuda_driver_api.h under the real symbol names, implemented over the SIMT
    emulator, whose runtime is compiled into this library (src/emulate/emulated-driver.ts).

    - One device, "tidarc emulated GPU" (kDevice below); cuInit first, as with the real driver.
    - Device memory is emulator global memory between guard pages ("dev#N" in findings).
    - cuModuleLoad("X.fatbin") dlopens the sibling "X.emu.so": the same .cu built for the
      emulator with one `void <kernel>__emu_entry(void* param)` per kernel.
    - cuLaunchKernel runs the grid synchronously; cuLaunchKernelEx too, with the one launch
      attribute tidarc uses: PROGRAMMATIC_STREAM_SERIALIZATION makes it a programmatic launch,
      where the emulator checks that no thread touches global memory before its
      grid_dependency_wait ("pdl" findings; a capture records the flag, a replay keeps it). A finding or an unfinished launch prints the
      findings (JSON lines) on stderr and fails with CUDA_ERROR_LAUNCH_FAILED, sticky for the
      context until its last cuDevicePrimaryCtxRelease, like a fault on a GPU.
      With TIDARC_FAKE_REFUSE_PROGRAMMATIC set, programmatic launches fail with
      CUDA_ERROR_NOT_SUPPORTED, not sticky, for the tests of what tidarc does then: "1" (or any
      value but "0" and "after:N"), every one (a driver that refuses PDL: the load's probe turns
      PDL off); "after:N", every one after the first N (a driver that fails later: the device
      check's runtime part reruns without PDL); "fault", the first one fails with
      CUDA_ERROR_LAUNCH_FAILED, sticky like a fault (the load's probe throws: the device check's
      runtime part reruns without PDL in a fresh process).
    - Device memory is counted: cuMemGetInfo_v2 reports total = the device's memory (8 GiB,
      or TIDARC_FAKE_DEVICE_MEMORY=<bytes>) and free = total less what cuMemAlloc holds now;
      an allocation past it fails with CUDA_ERROR_OUT_OF_MEMORY, as on a GPU. With
      TIDARC_FAKE_FAIL_ALLOC=<n> the process's n-th cuMemAlloc (from 1) fails so once, whatever
      is free (an upload that fails after the load's preflight passed).
    - The primary context is reference-counted as on a GPU (cuDevicePrimaryCtxRetain /
      cuDevicePrimaryCtxRelease_v2; the last release destroys it and all it holds; a release
      without a retain, or cuModuleUnload of a module it does not hold, is an error);
      cuDevicePrimaryCtxGetState says whether it is active. TIDARC_FAKE_CONTEXT_LOG=<path>
      appends what it holds at each retain, release, module load and unload (log_context).
    - Streams, stream capture into graphs, graph replay, events and pinned host memory are in
      fake_cuda_streams.cpp (the state both files share is fake_cuda.h).
    Every call holds one mutex: the emulator's state is global, launches run one at a time. */
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda_driver_api.h"
#include "emu_runtime.h"
#include "fake_cuda.h"

using namespace tidarc_cuda;
using namespace tidarc_fake;

// C linkage and the exact types of cuda_driver_api.h: a definition below whose parameters
// differ is a "conflicting declaration of C function" error, not a silent overload.
#define TIDARC_FAKE_DECLARE(name, ret, params) extern "C" __attribute__((visibility("default"))) ret name params;
TIDARC_CUDA_DRIVER_FUNCTIONS(TIDARC_FAKE_DECLARE)
TIDARC_FAKE_DECLARE(cuLaunchKernelEx, CUresult, (const CUlaunchConfig* config, CUfunction fn, void** params, void** extra))
#undef TIDARC_FAKE_DECLARE

// cuLaunchKernelEx reads the caller's CUlaunchConfig and CUlaunchAttribute as cuda.h lays them out
// (cuda_driver_api.h checks the structs' sizes and offsets); what this file reads of them:
static_assert(offsetof(CUlaunchAttribute, id) == 0 && offsetof(CUlaunchAttribute, value) == 8 && sizeof(CUlaunchAttribute) == 72,
              "CUlaunchAttribute: id at 0, value at 8, 72 bytes (cuda.h)");
static_assert(offsetof(CUlaunchAttributeValue, programmaticStreamSerializationAllowed) == 0, "the int member is at the union's start");
static_assert(offsetof(CUlaunchConfig, gridDimX) == 0 && offsetof(CUlaunchConfig, blockDimX) == 12 && offsetof(CUlaunchConfig, sharedMemBytes) == 24 &&
                  offsetof(CUlaunchConfig, hStream) == 32 && offsetof(CUlaunchConfig, attrs) == 40 && offsetof(CUlaunchConfig, numAttrs) == 48,
              "CUlaunchConfig as cuda.h lays it out (LP64)");
static_assert(CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION == 6, "cuda.h's CUlaunchAttributeID value");

namespace {

// Codes the real driver returns in situations cuda_driver_api.h does not name.
constexpr CUresult CUDA_ERROR_INVALID_DEVICE = 101;
constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
constexpr CUresult CUDA_ERROR_INVALID_CONTEXT = 201;
constexpr CUresult CUDA_ERROR_INVALID_HANDLE = 400;

struct ErrorText {
  CUresult code;
  const char* name;
  const char* text;  // what cuGetErrorString says
};
constexpr ErrorText kErrors[] = {
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
    {CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "operation failed due to a previous error during capture"},
    {CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED", "operation would make the legacy stream depend on a capturing blocking stream"},
    {CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT", "operation would make the legacy stream depend on a capturing blocking stream"},
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_FILE_NOT_FOUND, "CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
};

/** The emulated device: an H100 SXM's figures (sm_90), with 8 GiB of memory reported. */
struct DeviceRecord {
  const char* name;
  int driver_version;
  size_t total_memory;
  int shared_default;  // dynamic shared memory a launch gets without cuFuncSetAttribute
  int shared_optin;
  int max_threads;
};
constexpr DeviceRecord kDevice = {"tidarc emulated GPU", 13000, size_t{8} << 30, 48 * 1024, 227 * 1024, 1024};
static_assert(kDevice.shared_optin == static_cast<int>(tidarc_emu::kMaxDynamicShared), "the emulator's shared memory is the opt-in limit");

struct Attribute {
  int id;
  int value;
};
constexpr Attribute kAttributes[] = {
    {1, kDevice.max_threads},  // MAX_THREADS_PER_BLOCK
    {2, 1024}, {3, 1024}, {4, 64},  // MAX_BLOCK_DIM_X, _Y, _Z
    {5, 2147483647}, {6, 65535}, {7, 65535},  // MAX_GRID_DIM_X, _Y, _Z
    {8, kDevice.shared_default},  // MAX_SHARED_MEMORY_PER_BLOCK
    {10, 32},  // WARP_SIZE
    {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 132},
    {39, 2048},  // MAX_THREADS_PER_MULTIPROCESSOR
    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9},
    {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0},
    {81, 228 * 1024},  // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, kDevice.shared_optin},
};

/**
 * The emulated device's memory: kDevice's, or $TIDARC_FAKE_DEVICE_MEMORY bytes (a positive
 * integer; anything else is ignored) for the tests of what tidarc does with a device too small
 * for a model. Read once.
 */
size_t device_memory() {
  static const size_t bytes = [] {
    const char* v = std::getenv("TIDARC_FAKE_DEVICE_MEMORY");
    if (v == nullptr || *v == '\0') return kDevice.total_memory;
    char* end = nullptr;
    const unsigned long long n = std::strtoull(v, &end, 10);
    return end != nullptr && *end == '\0' && n > 0 ? static_cast<size_t>(n) : kDevice.total_memory;
  }();
  return bytes;
}

/** Whether this cuMemAlloc is the one $TIDARC_FAKE_FAIL_ALLOC=<n> fails (the n-th of the process, from 1). */
bool fail_this_alloc() {
  static const long fail_at = [] {
    const char* v = std::getenv("TIDARC_FAKE_FAIL_ALLOC");
    return v != nullptr && *v != '\0' ? std::strtol(v, nullptr, 10) : 0L;
  }();
  static long calls = 0;
  return ++calls == fail_at;
}

bool g_initialized = false;
CUctx_st g_primary;

/**
 * $TIDARC_FAKE_CONTEXT_LOG=<path>: each retain and release of the primary context and each
 * cuModuleLoad and cuModuleUnload appends one JSON line there, with what the context holds
 * after the call (a release: before the last one destroys it): its references, modules, device
 * allocations and bytes, streams, events, executable graphs and pinned blocks. The tests read
 * it to see that tidarc gives everything back itself and that no context is held at the end
 * (the line of the last release shows what the process still held when it let go).
 */
void log_context(const char* call, const CUctx_st& ctx) {
  static const char* const path = std::getenv("TIDARC_FAKE_CONTEXT_LOG");
  if (path == nullptr || *path == '\0') return;
  FILE* f = std::fopen(path, "a");
  if (f == nullptr) return;
  std::fprintf(f, "{\"call\":\"%s\",\"retains\":%d,\"modules\":%zu,\"allocations\":%zu,\"allocated\":%zu,\"streams\":%zu,\"events\":%zu,\"graphs\":%zu,\"pinned\":%zu}\n",
               call, ctx.retains, ctx.modules.size(), ctx.allocations.size(), ctx.allocated, ctx.streams.size(), ctx.events.size(), ctx.execs.size(), ctx.pinned.size());
  std::fclose(f);
}
thread_local CUctx_st* t_current = nullptr;  // per OS thread, as in the real driver

/**
 * Modules need the emulator's symbols (current_thread_idx, syncthreads, the primitives, the
 * thread_local tidarc::smem_raw) from this library, which its client may have opened with
 * RTLD_LOCAL: reopening it RTLD_NOLOAD | RTLD_GLOBAL puts it in the global scope that a
 * later dlopen of a module resolves against. Empty on success, else why not.
 */
std::string make_symbols_global() {
  Dl_info self{};
  if (dladdr(reinterpret_cast<void*>(&cuInit), &self) == 0 || self.dli_fname == nullptr) return "dladdr found no path for the emulated driver";
  if (dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL) == nullptr) return dlerror();
  return "";
}

CUresult initialized() { return g_initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED; }

CUresult check_device(CUdevice device) {
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  return device == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

}  // namespace

namespace tidarc_fake {

std::mutex g_mutex;

CUresult current(CUctx_st** ctx) {
  if (!g_initialized) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current == nullptr || t_current->retains == 0) return CUDA_ERROR_INVALID_CONTEXT;
  if (t_current->sticky != CUDA_SUCCESS) return t_current->sticky;
  *ctx = t_current;
  return CUDA_SUCCESS;
}

bool inside_one(const CUctx_st& ctx, CUdeviceptr p, size_t n) {
  auto it = ctx.allocations.upper_bound(p);
  if (it == ctx.allocations.begin()) return false;
  --it;
  const size_t offset = p - it->first;
  return offset <= it->second && n <= it->second - offset;
}

CUfunc_st* find_function(const CUctx_st& ctx, CUfunction fn) {
  for (const auto& [key, module] : ctx.modules)
    for (const auto& [name, f] : module->functions)
      if (f.get() == fn) return f.get();
  return nullptr;
}

bool launch_fits(const CUfunc_st& f, const unsigned (&d)[6], unsigned shared_bytes) {
  const bool grid_ok = d[0] >= 1 && d[1] >= 1 && d[2] >= 1 && d[0] <= 2147483647u && d[1] <= 65535 && d[2] <= 65535;
  const bool block_ok = d[3] >= 1 && d[4] >= 1 && d[5] >= 1 && d[3] <= 1024 && d[4] <= 1024 && d[5] <= 64 &&
                        static_cast<unsigned long long>(d[3]) * d[4] * d[5] <= static_cast<unsigned>(kDevice.max_threads);
  return grid_ok && block_ok && shared_bytes <= static_cast<unsigned>(f.max_dynamic_shared);
}

CUresult run_launch(CUctx_st& ctx, CUfunc_st& f, const unsigned (&d)[6], unsigned shared_bytes, void* param, bool programmatic) {
  tidarc_emu::clear_findings();
  const bool completed =
      tidarc_emu::launch(f.name.c_str(), tidarc_emu::dim3(d[0], d[1], d[2]), tidarc_emu::dim3(d[3], d[4], d[5]), shared_bytes, f.entry, param, programmatic);
  if (completed && tidarc_emu::finding_counts().empty()) return CUDA_SUCCESS;
  tidarc_emu::write_findings_json(stderr);
  std::fprintf(stderr, "{\"failed_launch\":\"%s\",\"completed\":%s,\"programmatic\":%s}\n", f.name.c_str(), completed ? "true" : "false",
               programmatic ? "true" : "false");
  std::fflush(stderr);
  ctx.sticky = CUDA_ERROR_LAUNCH_FAILED;
  return CUDA_ERROR_LAUNCH_FAILED;
}

}  // namespace tidarc_fake

namespace {

/** The last release of the primary context: everything in it goes, the sticky error too. */
void destroy_context(CUctx_st& ctx) {
  destroy_streams(ctx);
  for (const auto& [p, bytes] : ctx.allocations) tidarc_emu::free_global(reinterpret_cast<void*>(p));
  for (const auto& [key, module] : ctx.modules) dlclose(module->library);
  ctx.allocations.clear();
  ctx.modules.clear();
  ctx.allocated = 0;
  ctx.next_buffer = 0;
  ctx.sticky = CUDA_SUCCESS;
}

/** "dir/X.fatbin" (or any extension) -> "dir/X.emu.so"; "./" keeps dlopen off the library path. */
std::string emulated_module_path(const std::string& path) {
  const size_t slash = path.rfind('/');
  const size_t dot = path.rfind('.');
  std::string stem = dot != std::string::npos && (slash == std::string::npos || dot > slash) ? path.substr(0, dot) : path;
  return (slash == std::string::npos ? "./" : "") + stem + ".emu.so";
}

}  // namespace

// ---- initialisation and the device ------------------------------------------------------------

CUresult cuInit(unsigned flags) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (g_initialized) return CUDA_SUCCESS;
  const std::string why = make_symbols_global();
  if (!why.empty()) {
    std::fprintf(stderr, "tidarc emulated driver: cannot export the emulator to modules: %s\n", why.c_str());
    return CUDA_ERROR_NOT_INITIALIZED;
  }
  tidarc_emu::set_fault_recovery(true);  // a kernel's fault fails its launch, not the process
  g_initialized = true;
  return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *version = kDevice.driver_version;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int* count) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = initialized()) return r;
  if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *count = 1;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = initialized()) return r;
  if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
  *device = 0;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char* name, int len, CUdevice device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = check_device(device)) return r;
  if (name == nullptr || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  std::snprintf(name, static_cast<size_t>(len), "%s", kDevice.name);
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int* value, int attribute, CUdevice device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = check_device(device)) return r;
  if (value == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (const Attribute& a : kAttributes) {
    if (a.id == attribute) {
      *value = a.value;
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = check_device(device)) return r;
  if (bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *bytes = device_memory();
  return CUDA_SUCCESS;
}

// ---- the primary context ----------------------------------------------------------------------

// A reference count, as on a GPU: the first retain creates the context, the last release destroys
// it with everything in it; a release without a retain is CUDA_ERROR_INVALID_CONTEXT.
CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = check_device(device)) return r;
  if (ctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
  g_primary.retains++;
  *ctx = &g_primary;
  log_context("cuDevicePrimaryCtxRetain", g_primary);
  return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = check_device(device)) return r;
  if (g_primary.retains == 0) return CUDA_ERROR_INVALID_CONTEXT;
  --g_primary.retains;
  log_context("cuDevicePrimaryCtxRelease_v2", g_primary);  // what the release found, before the last one destroys it
  if (g_primary.retains == 0) destroy_context(g_primary);
  return CUDA_SUCCESS;
}

// active: some reference holds the context (flags: none are set by anyone here).
CUresult cuDevicePrimaryCtxGetState(CUdevice device, unsigned* flags, int* active) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = check_device(device)) return r;
  if (flags == nullptr || active == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *flags = 0;
  *active = g_primary.retains > 0 ? 1 : 0;
  return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (CUresult r = initialized()) return r;
  if (ctx != nullptr && ctx != &g_primary) return CUDA_ERROR_INVALID_CONTEXT;
  t_current = ctx;
  return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize() {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  return refuse_during_capture(*ctx);  // launches are synchronous: nothing is ever pending
}

// ---- memory -----------------------------------------------------------------------------------

CUresult cuMemAlloc_v2(CUdeviceptr* ptr, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  if (ptr == nullptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  if (fail_this_alloc() || bytes > device_memory() - ctx->allocated) return CUDA_ERROR_OUT_OF_MEMORY;
  const std::string name = "dev#" + std::to_string(ctx->next_buffer++);
  const auto p = reinterpret_cast<CUdeviceptr>(tidarc_emu::alloc_global(name.c_str(), bytes));
  ctx->allocations[p] = bytes;
  ctx->allocated += bytes;
  *ptr = p;
  return CUDA_SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr ptr) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  if (ptr == 0) return CUDA_SUCCESS;
  auto it = ctx->allocations.find(ptr);
  if (it == ctx->allocations.end()) return CUDA_ERROR_INVALID_VALUE;
  tidarc_emu::free_global(reinterpret_cast<void*>(ptr));
  ctx->allocated -= it->second;
  ctx->allocations.erase(it);
  return CUDA_SUCCESS;
}

// Free: the device's memory less what this context's allocations hold (the emulator has no
// other process, and its context and modules take no device memory).
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (free_bytes == nullptr || total_bytes == nullptr) return CUDA_ERROR_INVALID_VALUE;
  *total_bytes = device_memory();
  *free_bytes = device_memory() - std::min(ctx->allocated, device_memory());
  return CUDA_SUCCESS;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (src == nullptr || !inside_one(*ctx, dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(reinterpret_cast<void*>(dst), src, bytes);
  return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (dst == nullptr || !inside_one(*ctx, src, bytes)) return CUDA_ERROR_INVALID_VALUE;
  std::memcpy(dst, reinterpret_cast<const void*>(src), bytes);
  return CUDA_SUCCESS;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (!inside_one(*ctx, dst, bytes) || !inside_one(*ctx, src, bytes)) return CUDA_ERROR_INVALID_VALUE;
  std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes);
  return CUDA_SUCCESS;
}

CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  if (bytes == 0) return CUDA_SUCCESS;
  if (!inside_one(*ctx, dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
  std::memset(reinterpret_cast<void*>(dst), value, bytes);
  return CUDA_SUCCESS;
}

// ---- modules and launches ---------------------------------------------------------------------

CUresult cuModuleLoad(CUmodule* module, const char* path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  // Stricter than a GPU may be: loading code can synchronize the device, so modules load before a capture.
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  if (module == nullptr || path == nullptr) return CUDA_ERROR_INVALID_VALUE;
  const std::string so = emulated_module_path(path);
  struct stat st{};
  if (stat(so.c_str(), &st) != 0) {
    std::fprintf(stderr, "tidarc emulated driver: no %s for %s: this driver runs the .emu.so beside each module (a compiled directory's variants: "
                 "await emulateCompiledDir(dir), import { emulateCompiledDir } from 'tidarc'; tidarc run --backend cuda builds its own)\n", so.c_str(), path);
    return CUDA_ERROR_FILE_NOT_FOUND;
  }
  void* library = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    std::fprintf(stderr, "tidarc emulated driver: cannot load %s: %s\n", so.c_str(), dlerror());
    return CUDA_ERROR_INVALID_IMAGE;
  }
  auto m = std::make_unique<CUmod_st>();
  m->library = library;
  *module = m.get();
  ctx->modules[m.get()] = std::move(m);
  log_context("cuModuleLoad", *ctx);
  return CUDA_SUCCESS;
}

CUresult cuModuleUnload(CUmodule module) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  // As cuModuleLoad: no code changes while a stream captures.
  if (CUresult r = refuse_during_capture(*ctx)) return r;
  auto it = ctx->modules.find(module);
  if (it == ctx->modules.end()) return CUDA_ERROR_INVALID_HANDLE;
  dlclose(it->second->library);
  ctx->modules.erase(it);
  log_context("cuModuleUnload", *ctx);
  return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction* fn, CUmodule module, const char* name) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  if (fn == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  auto it = ctx->modules.find(module);
  if (it == ctx->modules.end()) return CUDA_ERROR_INVALID_HANDLE;
  auto& slot = it->second->functions[name];
  if (!slot) {
    void* entry = dlsym(it->second->library, (std::string(name) + "__emu_entry").c_str());
    if (entry == nullptr) {
      it->second->functions.erase(name);
      return CUDA_ERROR_NOT_FOUND;
    }
    // Modules built before the parameter size was exported launch, but cannot be captured.
    const void* size = dlsym(it->second->library, (std::string(name) + "__emu_param_bytes").c_str());
    slot = std::make_unique<CUfunc_st>(CUfunc_st{name, reinterpret_cast<void (*)(void*)>(entry), kDevice.shared_default,
                                                 size != nullptr ? *static_cast<const unsigned long long*>(size) : 0});
  }
  *fn = slot.get();
  return CUDA_SUCCESS;
}

CUresult cuFuncSetAttribute(CUfunction fn, int attribute, int value) {
  std::lock_guard<std::mutex> lock(g_mutex);
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  CUfunc_st* f = find_function(*ctx, fn);
  if (f == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  if (attribute != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES || value < 0 || value > kDevice.shared_optin) return CUDA_ERROR_INVALID_VALUE;
  f->max_dynamic_shared = value;
  return CUDA_SUCCESS;
}

namespace {

/** cuLaunchKernel and cuLaunchKernelEx, with g_mutex held: checks, then runs now or records. */
CUresult launch_kernel(CUfunction fn, const unsigned (&dims)[6], unsigned shared_bytes, CUstream stream, void** params, void** extra, bool programmatic) {
  CUctx_st* ctx;
  if (CUresult r = current(&ctx)) return r;
  CUfunc_st* f = find_function(*ctx, fn);
  if (f == nullptr) return CUDA_ERROR_INVALID_HANDLE;
  CUstream_st* capture = nullptr;
  if (CUresult r = stream_target(*ctx, stream, &capture)) return r;
  if (!launch_fits(*f, dims, shared_bytes)) return CUDA_ERROR_INVALID_VALUE;
  // tidarc kernels take exactly one parameter, a struct; `extra` packing is not supported.
  if (params == nullptr || params[0] == nullptr || extra != nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (capture == nullptr) return run_launch(*ctx, *f, dims, shared_bytes, params[0], programmatic);
  // Captured: the struct's bytes are copied now, as the real driver does.
  if (f->param_bytes == 0) {
    capture->invalidated = true;
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  FakeNode node{FakeNode::kLaunch};
  node.fn = f;
  std::copy(dims, dims + 6, node.dims);
  node.shared = shared_bytes;
  const auto* bytes = static_cast<const uint8_t*>(params[0]);
  node.param.assign(bytes, bytes + f->param_bytes);
  node.programmatic = programmatic;  // a programmatic edge in the graph: the replay launches it so
  capture->captured.push_back(std::move(node));
  return CUDA_SUCCESS;
}

}  // namespace

CUresult cuLaunchKernel(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared_bytes, CUstream stream, void** params, void** extra) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const unsigned dims[6] = {gx, gy, gz, bx, by, bz};
  return launch_kernel(fn, dims, shared_bytes, stream, params, extra, false);
}

// The attributes: tidarc uses only CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION (its
// value's programmaticStreamSerializationAllowed, non-zero: a programmatic launch), so any other
// attribute id is refused with CUDA_ERROR_INVALID_VALUE rather than silently ignored (stricter
// than the real driver, which takes the others, CU_LAUNCH_ATTRIBUTE_IGNORE included).
CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction fn, void** params, void** extra) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (config == nullptr || (config->numAttrs > 0 && config->attrs == nullptr)) return CUDA_ERROR_INVALID_VALUE;
  bool programmatic = false;
  for (unsigned i = 0; i < config->numAttrs; ++i) {
    const CUlaunchAttribute& a = config->attrs[i];
    if (a.id != CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION) return CUDA_ERROR_INVALID_VALUE;
    programmatic = a.value.programmaticStreamSerializationAllowed != 0;
  }
  // How many programmatic launches to accept before refusing the rest: -1 for all (the variable unset, "0" or "fault").
  static const char* const refuse = std::getenv("TIDARC_FAKE_REFUSE_PROGRAMMATIC");
  static const bool fault_programmatic = refuse != nullptr && std::strcmp(refuse, "fault") == 0;
  static const long accept_programmatic = [] {
    if (refuse == nullptr || *refuse == '\0' || std::strcmp(refuse, "0") == 0 || fault_programmatic) return -1L;
    return std::strncmp(refuse, "after:", 6) == 0 ? std::strtol(refuse + 6, nullptr, 10) : 0L;
  }();
  static long accepted_programmatic = 0;
  if (programmatic && accept_programmatic >= 0 && accepted_programmatic++ >= accept_programmatic) return CUDA_ERROR_NOT_SUPPORTED;
  if (programmatic && fault_programmatic) {
    CUctx_st* ctx;
    if (CUresult r = current(&ctx)) return r;
    ctx->sticky = CUDA_ERROR_LAUNCH_FAILED;
    return CUDA_ERROR_LAUNCH_FAILED;
  }
  const unsigned dims[6] = {config->gridDimX, config->gridDimY, config->gridDimZ, config->blockDimX, config->blockDimY, config->blockDimZ};
  return launch_kernel(fn, dims, config->sharedMemBytes, config->hStream, params, extra, programmatic);
}

// ---- errors -----------------------------------------------------------------------------------

CUresult cuGetErrorName(CUresult error, const char** name) {
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (const ErrorText& e : kErrors) {
    if (e.code == error) {
      *name = e.name;
      return CUDA_SUCCESS;
    }
  }
  *name = nullptr;
  return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char** text) {
  if (text == nullptr) return CUDA_ERROR_INVALID_VALUE;
  for (const ErrorText& e : kErrors) {
    if (e.code == error) {
      *text = e.text;
      return CUDA_SUCCESS;
    }
  }
  *text = nullptr;
  return CUDA_ERROR_INVALID_VALUE;
}
