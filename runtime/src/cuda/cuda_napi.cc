// exports.cuda: the CUDA driver for JavaScript (src/runtime/cuda/device.ts wraps it). One
// device per process (its primary context) and one stream of ours on it (a blocking stream,
// not the legacy NULL stream: it can be captured into a graph, and the synchronous copies
// still order with it); device pointers travel as JS numbers, modules, functions, graphs and
// events as small integer handles, pinned host memory as external ArrayBuffers. Every CUresult other than CUDA_SUCCESS becomes a JS Error
// whose `code` is the CUDA_ERROR_* name and whose message names the call; nothing here aborts.
//
// Lifetime: every open() holds one reference to the session, close() gives one back, and the
// last close() unloads the modules, destroys the stream and releases the primary context
// (cuDevicePrimaryCtxRelease_v2: on a GPU the context holds a few hundred MiB of device memory,
// which a process that is done with the device must give back). A later open() retains a fresh
// one. Handles are never reused: an unloaded module's functions, a destroyed graph or event, and
// every handle of a released session stay dead for good (a stale CUfunction launched into a new
// context would be undefined behaviour on a GPU; here it is one error), and a released session's
// records are dropped (Handles: a process that loads and closes models repeatedly keeps none).
#include "cuda_napi.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "cuda_driver.h"
#include "../napi_guard.h"

namespace tidarc_cuda {

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

struct Function {
  CUfunction fn;  // nullptr once its module was unloaded
  int64_t module;  // its module's handle
};

// The handles of one kind: base + index into `items`. The last close() forgets a session's
// entries and moves `base` past them, so a process that opens and closes the device again and
// again keeps nothing of the sessions before, and a handle of theirs is still one error.
template <typename T>
struct Handles {
  int64_t base = 0;
  std::vector<T> items;

  Napi::Value Add(Napi::Env env, T item) {
    items.push_back(item);
    return Napi::Number::New(env, static_cast<double>(base + static_cast<int64_t>(items.size()) - 1));
  }
  // The handle at argument i (what: "module handle", ...); one error for one of a closed session.
  int64_t HandleAt(const Napi::CallbackInfo& info, size_t i, const char* what) const;
  T& At(const Napi::CallbackInfo& info, size_t i, const char* what) { return At(HandleAt(info, i, what)); }
  T& At(int64_t handle) { return items[static_cast<size_t>(handle - base)]; }
  void Forget() {
    base += static_cast<int64_t>(items.size());
    items.clear();
  }
};

struct Session {
  const Driver* driver = nullptr;
  CUdevice device = 0;
  CUcontext context = nullptr;  // retained while opens > 0
  int opens = 0;                // open() calls not yet closed
  CUstream stream = nullptr;
  Handles<CUmodule> modules;    // nullptr once unloaded
  Handles<Function> functions;
  Handles<CUgraphExec> graphs;  // nullptr once destroyed
  Handles<CUevent> events;      // nullptr once destroyed
  std::vector<struct PinnedBlock*> pinned;  // live cuMemHostAlloc blocks
  std::set<CUdeviceptr> buffers;    // live cuMemAlloc allocations (what the last close() refuses to pull from under their owners)
};

// One hostAlloc block, owned by its ArrayBuffer's finalizer (deleted there, never before): live
// while it is in Session::pinned. The finalizer tells its own block from a later one that
// cuMemHostAlloc placed at the same address (after hostFree released this one) by this record,
// not by the address.
struct PinnedBlock {
  void* data;
};

Session& State() {
  static Session s;
  return s;
}

[[noreturn]] void ThrowCuda(Napi::Env env, const Driver& d, const char* call, CUresult r) {
  Napi::Error e = Napi::Error::New(env, std::string(call) + " failed: " + d.Describe(r));
  e.Set("code", Napi::String::New(env, d.Name(r)));
  e.Set("status", Napi::Number::New(env, r));
  throw e;
}

#define TIDARC_CU_CHECK(env, d, call, expr)         \
  do {                                             \
    const CUresult r_ = (expr);                    \
    if (r_ != CUDA_SUCCESS) ThrowCuda(env, d, call, r_); \
  } while (0)

// The opened session; throws when cuda.open() has not run.
Session& Opened(Napi::Env env) {
  Session& s = State();
  if (s.context == nullptr) throw Napi::Error::New(env, "cuda: no device is open (call cuda.open() first)");
  TIDARC_CU_CHECK(env, *s.driver, "cuCtxSetCurrent", s.driver->cuCtxSetCurrent(s.context));
  return s;
}

int64_t IntAt(const Napi::CallbackInfo& info, size_t i, const char* what, int64_t lo, int64_t hi) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(env, std::string("cuda: ") + what + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= static_cast<double>(lo) && v <= static_cast<double>(hi)) || v != static_cast<double>(static_cast<int64_t>(v))) {
    throw Napi::RangeError::New(env, std::string("cuda: ") + what + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(v);
}

template <typename T>
int64_t Handles<T>::HandleAt(const Napi::CallbackInfo& info, size_t i, const char* what) const {
  const int64_t h = IntAt(info, i, what, 0, base + static_cast<int64_t>(items.size()) - 1);
  if (h < base) throw Napi::Error::New(info.Env(), std::string("cuda: ") + what + " " + std::to_string(h) + " is from a session closed since (open the device and load it again)");
  return h;
}

CUdeviceptr PtrAt(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return static_cast<CUdeviceptr>(IntAt(info, i, what, 1, static_cast<int64_t>(kMaxSafeInteger)));
}

// A typed array or Buffer argument: its bytes.
struct Bytes {
  uint8_t* data;
  size_t size;
};

Bytes BytesAt(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray()) throw Napi::TypeError::New(info.Env(), std::string("cuda: ") + what + " must be a typed array");
  Napi::TypedArray t = info[i].As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(t.ArrayBuffer().Data());
  return {base + t.ByteOffset(), t.ByteLength()};
}

Napi::Value StatusJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string reason;
  const Driver* d = LoadDriver(&reason);
  Napi::Object out = Napi::Object::New(env);
  out.Set("available", Napi::Boolean::New(env, d != nullptr));
  out.Set("reason", Napi::String::New(env, reason));
  if (d != nullptr) {
    out.Set("driverVersion", Napi::Number::New(env, d->version));
    out.Set("devices", Napi::Number::New(env, d->devices));
    out.Set("library", Napi::String::New(env, d->path));
    out.Set("hasLaunchKernelEx", Napi::Boolean::New(env, d->cuLaunchKernelEx != nullptr));
  }
  return out;
}

Napi::Object DescribeOpened(Napi::Env env, Session& s);

// open(ordinal) -> {name, major, minor, multiprocessors, totalMemory, maxSharedOptin, driverVersion, hasLaunchKernelEx}
Napi::Value OpenJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string reason;
  const Driver* d = LoadDriver(&reason);
  if (d == nullptr) throw Napi::Error::New(env, "cuda: the driver is not usable: " + reason);
  const int ordinal = static_cast<int>(IntAt(info, 0, "device ordinal", 0, d->devices - 1));
  Session& s = State();
  if (s.context != nullptr && s.device != ordinal) throw Napi::Error::New(env, "cuda: device " + std::to_string(s.device) + " is already open in this process");
  // The first open retains the context; if anything after it fails, it is given back (an open
  // that throws holds no reference).
  const bool first = s.context == nullptr;
  if (first) {
    CUdevice device = 0;
    TIDARC_CU_CHECK(env, *d, "cuDeviceGet", d->cuDeviceGet(&device, ordinal));
    CUcontext context = nullptr;
    TIDARC_CU_CHECK(env, *d, "cuDevicePrimaryCtxRetain", d->cuDevicePrimaryCtxRetain(&context, device));
    s.driver = d, s.device = device, s.context = context;
  }
  try {
    Napi::Object out = DescribeOpened(env, s);
    s.opens++;
    return out;
  } catch (...) {
    if (first) {
      // The open's own error is the one to report; these only undo what it did.
      if (s.stream != nullptr && d->cuStreamDestroy_v2(s.stream) == CUDA_SUCCESS) s.stream = nullptr;
      d->cuCtxSetCurrent(nullptr);
      if (d->cuDevicePrimaryCtxRelease_v2(s.device) == CUDA_SUCCESS) s.context = nullptr, s.stream = nullptr;
    }
    throw;
  }
}

// The opened session made current, its stream created, and what open() says of the device.
Napi::Object DescribeOpened(Napi::Env env, Session& s) {
  const Driver* d = s.driver;
  TIDARC_CU_CHECK(env, *d, "cuCtxSetCurrent", d->cuCtxSetCurrent(s.context));
  if (s.stream == nullptr) TIDARC_CU_CHECK(env, *d, "cuStreamCreate", d->cuStreamCreate(&s.stream, CU_STREAM_DEFAULT));
  char name[256] = {};
  TIDARC_CU_CHECK(env, *d, "cuDeviceGetName", d->cuDeviceGetName(name, sizeof(name) - 1, s.device));
  auto attr = [&](int a) {
    int v = 0;
    TIDARC_CU_CHECK(env, *d, "cuDeviceGetAttribute", d->cuDeviceGetAttribute(&v, a, s.device));
    return v;
  };
  size_t total = 0;
  TIDARC_CU_CHECK(env, *d, "cuDeviceTotalMem", d->cuDeviceTotalMem_v2(&total, s.device));
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", Napi::String::New(env, name));
  out.Set("major", Napi::Number::New(env, attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)));
  out.Set("minor", Napi::Number::New(env, attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)));
  out.Set("multiprocessors", Napi::Number::New(env, attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)));
  out.Set("maxSharedOptin", Napi::Number::New(env, attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)));
  out.Set("totalMemory", Napi::Number::New(env, static_cast<double>(total)));
  out.Set("driverVersion", Napi::Number::New(env, d->version));
  out.Set("hasLaunchKernelEx", Napi::Boolean::New(env, d->cuLaunchKernelEx != nullptr));
  return out;
}

Napi::Value AllocJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const int64_t bytes = IntAt(info, 0, "bytes", 1, static_cast<int64_t>(1) << 46);
  CUdeviceptr p = 0;
  TIDARC_CU_CHECK(env, *s.driver, "cuMemAlloc", s.driver->cuMemAlloc_v2(&p, static_cast<size_t>(bytes)));
  if (static_cast<double>(p) > kMaxSafeInteger) {
    s.driver->cuMemFree_v2(p);
    throw Napi::Error::New(env, "cuda: a device address above 2^53 cannot be represented in JavaScript");
  }
  s.buffers.insert(p);
  return Napi::Number::New(env, static_cast<double>(p));
}

// memInfo() -> {free, total}: the device's bytes free now (what every process's allocations, the
// context and the driver's own leave) and in all (cuMemGetInfo), for the load's preflight.
Napi::Value MemInfoJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  size_t free_bytes = 0, total_bytes = 0;
  TIDARC_CU_CHECK(env, *s.driver, "cuMemGetInfo", s.driver->cuMemGetInfo_v2(&free_bytes, &total_bytes));
  Napi::Object out = Napi::Object::New(env);
  out.Set("free", Napi::Number::New(env, static_cast<double>(free_bytes)));
  out.Set("total", Napi::Number::New(env, static_cast<double>(total_bytes)));
  return out;
}

Napi::Value FreeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const CUdeviceptr p = PtrAt(info, 0, "pointer");
  s.buffers.erase(p);  // not ours to free again, even if the driver refuses it (a context a fault left unusable)
  TIDARC_CU_CHECK(env, *s.driver, "cuMemFree", s.driver->cuMemFree_v2(p));
  return env.Undefined();
}

// upload(devicePtr, typedArray): all of the array's bytes to devicePtr.
Napi::Value UploadJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const CUdeviceptr dst = PtrAt(info, 0, "destination");
  const Bytes src = BytesAt(info, 1, "source");
  if (src.size > 0) TIDARC_CU_CHECK(env, *s.driver, "cuMemcpyHtoD", s.driver->cuMemcpyHtoD_v2(dst, src.data, src.size));
  return env.Undefined();
}

// download(devicePtr, typedArray): fills the whole array from devicePtr.
Napi::Value DownloadJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const CUdeviceptr src = PtrAt(info, 0, "source");
  const Bytes dst = BytesAt(info, 1, "destination");
  if (dst.size > 0) TIDARC_CU_CHECK(env, *s.driver, "cuMemcpyDtoH", s.driver->cuMemcpyDtoH_v2(dst.data, src, dst.size));
  return env.Undefined();
}

// copy(dst, src, bytes) on the device, on our stream (so a capture records it).
Napi::Value CopyJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const CUdeviceptr dst = PtrAt(info, 0, "destination"), src = PtrAt(info, 1, "source");
  const int64_t bytes = IntAt(info, 2, "bytes", 0, static_cast<int64_t>(1) << 46);
  if (bytes > 0) TIDARC_CU_CHECK(env, *s.driver, "cuMemcpyDtoDAsync", s.driver->cuMemcpyDtoDAsync_v2(dst, src, static_cast<size_t>(bytes), s.stream));
  return env.Undefined();
}

// fill(dst, byteValue, bytes), on our stream.
Napi::Value FillJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const CUdeviceptr dst = PtrAt(info, 0, "destination");
  const auto value = static_cast<unsigned char>(IntAt(info, 1, "byte value", 0, 255));
  const int64_t bytes = IntAt(info, 2, "bytes", 0, static_cast<int64_t>(1) << 46);
  if (bytes > 0) TIDARC_CU_CHECK(env, *s.driver, "cuMemsetD8Async", s.driver->cuMemsetD8Async(dst, value, static_cast<size_t>(bytes), s.stream));
  return env.Undefined();
}

// loadModule(path) -> module handle (a fatbin or cubin file).
Napi::Value LoadModuleJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "cuda: module path must be a string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  CUmodule m = nullptr;
  const CUresult r = s.driver->cuModuleLoad(&m, path.c_str());
  if (r != CUDA_SUCCESS) {
    Napi::Error e = Napi::Error::New(env, "cuModuleLoad(" + path + ") failed: " + s.driver->Describe(r));
    e.Set("code", Napi::String::New(env, s.driver->Name(r)));
    throw e;
  }
  return s.modules.Add(env, m);
}

// getFunction(module, name) -> function handle.
Napi::Value GetFunctionJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const int64_t m = s.modules.HandleAt(info, 0, "module handle");
  if (s.modules.At(m) == nullptr) throw Napi::Error::New(env, "cuda: module handle " + std::to_string(m) + " was unloaded");
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(env, "cuda: function name must be a string");
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  CUfunction f = nullptr;
  const CUresult r = s.driver->cuModuleGetFunction(&f, s.modules.At(m), name.c_str());
  if (r != CUDA_SUCCESS) {
    Napi::Error e = Napi::Error::New(env, "cuModuleGetFunction(" + name + ") failed: " + s.driver->Describe(r));
    e.Set("code", Napi::String::New(env, s.driver->Name(r)));
    throw e;
  }
  return s.functions.Add(env, Function{f, m});
}

// unloadModule(module): cuModuleUnload, after the device has finished what it runs (a kernel of
// the module may still be running). Its handle and its functions' handles are dead from here on,
// whether or not the driver's unload succeeded.
Napi::Value UnloadModuleJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const int64_t m = s.modules.HandleAt(info, 0, "module handle");
  CUmodule module = s.modules.At(m);
  if (module == nullptr) throw Napi::Error::New(env, "cuda: module handle " + std::to_string(m) + " was already unloaded");
  s.modules.At(m) = nullptr;
  for (Function& f : s.functions.items)
    if (f.module == m) f.fn = nullptr;
  TIDARC_CU_CHECK(env, *s.driver, "cuCtxSynchronize", s.driver->cuCtxSynchronize());
  TIDARC_CU_CHECK(env, *s.driver, "cuModuleUnload", s.driver->cuModuleUnload(module));
  return env.Undefined();
}

CUfunction FunctionAt(const Napi::CallbackInfo& info, Session& s, size_t i) {
  const int64_t h = s.functions.HandleAt(info, i, "function handle");
  const Function& f = s.functions.At(h);
  if (f.fn == nullptr) throw Napi::Error::New(info.Env(), "cuda: function handle " + std::to_string(h) + " was unloaded with its module (load the kernel again)");
  return f.fn;
}

// setMaxDynamicShared(function, bytes): opt in to more than 48 KB of dynamic shared memory.
Napi::Value SetMaxDynamicSharedJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  CUfunction f = FunctionAt(info, s, 0);
  const int bytes = static_cast<int>(IntAt(info, 1, "bytes", 0, 1 << 30));
  TIDARC_CU_CHECK(env, *s.driver, "cuFuncSetAttribute", s.driver->cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes));
  return env.Undefined();
}

// launch(function, gx, gy, gz, bx, by, bz, sharedBytes, args[, programmatic]): `args` holds the
// bytes of the kernel's single struct parameter (packed by src/runtime/cuda/op-abi.ts).
// programmatic true: cuLaunchKernelEx with the one attribute
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 1 (programmatic dependent launch: the
// kernel may be scheduled before its predecessor on the stream has finished and must
// griddepcontrol.wait before touching memory; a capture records a programmatic edge). A driver
// without cuLaunchKernelEx refuses it (open() says whether it has one: hasLaunchKernelEx).
Napi::Value LaunchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  CUfunction f = FunctionAt(info, s, 0);
  unsigned dims[6];
  static const char* const kNames[6] = {"grid x", "grid y", "grid z", "block x", "block y", "block z"};
  for (int i = 0; i < 6; i++) dims[i] = static_cast<unsigned>(IntAt(info, 1 + i, kNames[i], 1, 0x7fffffff));
  const auto shared = static_cast<unsigned>(IntAt(info, 7, "shared bytes", 0, 1 << 30));
  Bytes args = BytesAt(info, 8, "kernel arguments");
  // The struct is read by the driver during cuLaunchKernel; copy it to aligned storage
  // (64 bytes: an sm_90a kernel's struct holds CUtensorMaps).
  alignas(64) uint8_t param[512];
  if (args.size == 0 || args.size > sizeof(param)) throw Napi::RangeError::New(env, "cuda: kernel arguments must be 1 to 512 bytes");
  std::copy(args.data, args.data + args.size, param);
  void* params[] = {param};
  if (info.Length() > 9 && !info[9].IsUndefined() && !info[9].IsBoolean()) throw Napi::TypeError::New(env, "cuda: programmatic must be a boolean");
  const bool programmatic = info.Length() > 9 && info[9].IsBoolean() && info[9].As<Napi::Boolean>().Value();
  if (programmatic) {
    if (s.driver->cuLaunchKernelEx == nullptr) throw Napi::Error::New(env, "cuda: " + s.driver->path + " has no cuLaunchKernelEx (a programmatic launch needs a CUDA 12 driver)");
    CUlaunchAttribute attr{};
    attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig config{};
    config.gridDimX = dims[0], config.gridDimY = dims[1], config.gridDimZ = dims[2];
    config.blockDimX = dims[3], config.blockDimY = dims[4], config.blockDimZ = dims[5];
    config.sharedMemBytes = shared;
    config.hStream = s.stream;
    config.attrs = &attr;
    config.numAttrs = 1;
    TIDARC_CU_CHECK(env, *s.driver, "cuLaunchKernelEx", s.driver->cuLaunchKernelEx(&config, f, params, nullptr));
    return env.Undefined();
  }
  TIDARC_CU_CHECK(env, *s.driver, "cuLaunchKernel",
                  s.driver->cuLaunchKernel(f, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], shared, s.stream, params, nullptr));
  return env.Undefined();
}

// encodeTensorMap(dtype, address, dims, strides, box, swizzle) -> Uint8Array(128): a 2D..5D
// tiled tensor map of 16-bit elements (dtype 'bf16' | 'fp16'; dims and box innermost first,
// strides in bytes for dimensions 1..), elements outside the tensor read as zero, swizzle
// 0 | 32 | 64 | 128 bytes. src/runtime/cuda/tensor-map.ts checks the layout first and says
// what is wrong; the driver's own refusal is the backstop.
Napi::Value EncodeTensorMapJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  if (s.driver->cuTensorMapEncodeTiled == nullptr) throw Napi::Error::New(env, "cuda: " + s.driver->path + " has no cuTensorMapEncodeTiled (tensor maps need a CUDA 12 driver)");
  if (info.Length() < 6 || !info[0].IsString() || !info[2].IsArray() || !info[3].IsArray() || !info[4].IsArray()) {
    throw Napi::TypeError::New(env, "cuda: encodeTensorMap(dtype, address, dims[], strides[], box[], swizzle)");
  }
  const std::string dtype = info[0].As<Napi::String>().Utf8Value();
  if (dtype != "bf16" && dtype != "fp16") throw Napi::RangeError::New(env, "cuda: tensor map dtype must be bf16 or fp16");
  const CUdeviceptr address = PtrAt(info, 1, "tensor map address");
  auto list = [&](size_t i, const char* what) {
    Napi::Array a = info[i].As<Napi::Array>();
    std::vector<unsigned long long> v;
    for (uint32_t j = 0; j < a.Length(); ++j) {
      Napi::Value e = a.Get(j);
      if (!e.IsNumber() || e.As<Napi::Number>().DoubleValue() < 0 || e.As<Napi::Number>().DoubleValue() > kMaxSafeInteger) throw Napi::RangeError::New(env, std::string("cuda: tensor map ") + what + " must be non-negative integers");
      v.push_back(static_cast<unsigned long long>(e.As<Napi::Number>().DoubleValue()));
    }
    return v;
  };
  const std::vector<unsigned long long> dims = list(2, "dims"), strides = list(3, "strides"), box64 = list(4, "box");
  const unsigned rank = static_cast<unsigned>(dims.size());
  if (rank < 2 || rank > 5 || strides.size() != rank - 1 || box64.size() != rank) throw Napi::RangeError::New(env, "cuda: a tensor map needs 2..5 dims, one box size each, and a stride for each but the first");
  const int64_t swizzle_bytes = IntAt(info, 5, "swizzle", 0, 128);
  const int swizzle = swizzle_bytes == 0 ? CU_TENSOR_MAP_SWIZZLE_NONE : swizzle_bytes == 32 ? CU_TENSOR_MAP_SWIZZLE_32B : swizzle_bytes == 64 ? CU_TENSOR_MAP_SWIZZLE_64B : swizzle_bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : -1;
  if (swizzle < 0) throw Napi::RangeError::New(env, "cuda: tensor map swizzle must be 0, 32, 64 or 128");
  std::vector<unsigned> box(box64.begin(), box64.end()), element_strides(rank, 1);
  CUtensorMap map{};
  TIDARC_CU_CHECK(env, *s.driver, "cuTensorMapEncodeTiled",
                  s.driver->cuTensorMapEncodeTiled(&map, dtype == "bf16" ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, rank,
                                                   reinterpret_cast<void*>(address), dims.data(), strides.data(), box.data(), element_strides.data(),
                                                   CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, sizeof(map));
  std::copy(reinterpret_cast<const uint8_t*>(&map), reinterpret_cast<const uint8_t*>(&map) + sizeof(map), out.Data());
  return out;
}

Napi::Value SynchronizeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  TIDARC_CU_CHECK(env, *s.driver, "cuCtxSynchronize", s.driver->cuCtxSynchronize());
  return env.Undefined();
}

// ---- capture into graphs -------------------------------------------------------------------

// beginCapture(): what our stream issues from now on is recorded, not run.
Napi::Value BeginCaptureJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  TIDARC_CU_CHECK(env, *s.driver, "cuStreamBeginCapture", s.driver->cuStreamBeginCapture_v2(s.stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
  return env.Undefined();
}

// endCapture() -> graph handle: the recording, instantiated (the graph itself is not kept).
// Ends the capture even when it was invalidated, so the stream is usable again; then throws.
Napi::Value EndCaptureJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  CUgraph graph = nullptr;
  TIDARC_CU_CHECK(env, *s.driver, "cuStreamEndCapture", s.driver->cuStreamEndCapture(s.stream, &graph));
  CUgraphExec exec = nullptr;
  const CUresult r = s.driver->cuGraphInstantiateWithFlags(&exec, graph, 0);
  s.driver->cuGraphDestroy(graph);
  if (r != CUDA_SUCCESS) ThrowCuda(env, *s.driver, "cuGraphInstantiate", r);
  return s.graphs.Add(env, exec);
}

CUgraphExec& GraphAt(const Napi::CallbackInfo& info, Session& s, size_t i) {
  CUgraphExec& g = s.graphs.At(info, i, "graph handle");
  if (g == nullptr) throw Napi::Error::New(info.Env(), "cuda: the graph was destroyed");
  return g;
}

// graphLaunch(graph): one launch of everything the capture recorded, on our stream.
Napi::Value GraphLaunchJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  TIDARC_CU_CHECK(env, *s.driver, "cuGraphLaunch", s.driver->cuGraphLaunch(GraphAt(info, s, 0), s.stream));
  return env.Undefined();
}

Napi::Value GraphDestroyJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  CUgraphExec& g = GraphAt(info, s, 0);
  CUgraphExec exec = g;
  g = nullptr;  // dead whether or not the driver's destroy succeeds
  TIDARC_CU_CHECK(env, *s.driver, "cuGraphExecDestroy", s.driver->cuGraphExecDestroy(exec));
  return env.Undefined();
}

// ---- pinned host memory and asynchronous copies --------------------------------------------

// hostAlloc(bytes) -> ArrayBuffer over page-locked memory (cuMemHostAlloc): asynchronous
// copies from it need no staging, and a graph's copy reads it at replay. hostFree detaches it;
// an ArrayBuffer the program drops is freed when it is collected. A buffer hostFree released may
// be collected after another hostAlloc got the same address: its finalizer must leave that one
// alone (it freed it, and hostFree then refused it, when the finalizer looked blocks up by address).
Napi::Value HostAllocJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const int64_t bytes = IntAt(info, 0, "bytes", 1, static_cast<int64_t>(1) << 40);
  void* p = nullptr;
  TIDARC_CU_CHECK(env, *s.driver, "cuMemHostAlloc", s.driver->cuMemHostAlloc(&p, static_cast<size_t>(bytes), 0));
  PinnedBlock* block = new PinnedBlock{p};
  Napi::ArrayBuffer buffer;
  try {
    buffer = Napi::ArrayBuffer::New(env, p, static_cast<size_t>(bytes), [](Napi::Env, void* data, PinnedBlock* b) {
      Session& st = State();
      auto it = std::find(st.pinned.begin(), st.pinned.end(), b);
      if (it != st.pinned.end()) {  // not released by hostFree
        st.pinned.erase(it);
        if (st.context != nullptr && st.driver->cuCtxSetCurrent(st.context) == CUDA_SUCCESS) st.driver->cuMemFreeHost(data);
      }
      delete b;
    }, block);
  } catch (...) {
    // No buffer, so no finalizer will ever free it (a runtime that refuses external buffers):
    // give the page-locked memory back now instead of leaving it on the live list for good.
    s.driver->cuMemFreeHost(p);
    delete block;
    throw;
  }
  s.pinned.push_back(block);
  return buffer;
}

Napi::Value HostFreeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "cuda: hostFree takes the ArrayBuffer of hostAlloc");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  if (buffer.ByteLength() == 0) return env.Undefined();  // already freed (detached)
  void* data = buffer.Data();
  // Live blocks have distinct addresses: the one at data is this buffer's.
  auto it = std::find_if(s.pinned.begin(), s.pinned.end(), [data](const PinnedBlock* b) { return b->data == data; });
  if (it == s.pinned.end()) throw Napi::Error::New(env, "cuda: hostFree: not an ArrayBuffer of hostAlloc");
  s.pinned.erase(it);  // the finalizer deletes the block record
  buffer.Detach();  // JavaScript can no longer reach the memory
  TIDARC_CU_CHECK(env, *s.driver, "cuMemFreeHost", s.driver->cuMemFreeHost(data));
  return env.Undefined();
}

// uploadAsync(devicePtr, view): the view's bytes (in pinned memory) to devicePtr, on our stream.
Napi::Value UploadAsyncJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const CUdeviceptr dst = PtrAt(info, 0, "destination");
  const Bytes src = BytesAt(info, 1, "source");
  if (src.size > 0) TIDARC_CU_CHECK(env, *s.driver, "cuMemcpyHtoDAsync", s.driver->cuMemcpyHtoDAsync_v2(dst, src.data, src.size, s.stream));
  return env.Undefined();
}

// downloadAsync(devicePtr, view): devicePtr to the view (in pinned memory), on our stream.
Napi::Value DownloadAsyncJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  const CUdeviceptr src = PtrAt(info, 0, "source");
  const Bytes dst = BytesAt(info, 1, "destination");
  if (dst.size > 0) TIDARC_CU_CHECK(env, *s.driver, "cuMemcpyDtoHAsync", s.driver->cuMemcpyDtoHAsync_v2(dst.data, src, dst.size, s.stream));
  return env.Undefined();
}

Napi::Value StreamSynchronizeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  TIDARC_CU_CHECK(env, *s.driver, "cuStreamSynchronize", s.driver->cuStreamSynchronize(s.stream));
  return env.Undefined();
}

// ---- events: GPU time between two points of our stream --------------------------------------

Napi::Value EventCreateJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  CUevent e = nullptr;
  TIDARC_CU_CHECK(env, *s.driver, "cuEventCreate", s.driver->cuEventCreate(&e, CU_EVENT_DEFAULT));
  return s.events.Add(env, e);
}

CUevent& EventAt(const Napi::CallbackInfo& info, Session& s, size_t i) {
  CUevent& e = s.events.At(info, i, "event handle");
  if (e == nullptr) throw Napi::Error::New(info.Env(), "cuda: the event was destroyed");
  return e;
}

Napi::Value EventRecordJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  TIDARC_CU_CHECK(env, *s.driver, "cuEventRecord", s.driver->cuEventRecord(EventAt(info, s, 0), s.stream));
  return env.Undefined();
}

// eventElapsed(start, end) -> ms: waits for `end`, then the GPU time between the two records.
Napi::Value EventElapsedJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  CUevent start = EventAt(info, s, 0), end = EventAt(info, s, 1);
  TIDARC_CU_CHECK(env, *s.driver, "cuEventSynchronize", s.driver->cuEventSynchronize(end));
  float ms = 0;
  TIDARC_CU_CHECK(env, *s.driver, "cuEventElapsedTime", s.driver->cuEventElapsedTime(&ms, start, end));
  return Napi::Number::New(env, ms);
}

Napi::Value EventDestroyJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = Opened(env);
  CUevent& e = EventAt(info, s, 0);
  CUevent event = e;
  e = nullptr;  // dead whether or not the driver's destroy succeeds
  TIDARC_CU_CHECK(env, *s.driver, "cuEventDestroy", s.driver->cuEventDestroy_v2(event));
  return env.Undefined();
}

// ---- the end of a session ------------------------------------------------------------------

// close() -> {released}: gives back one open()'s reference. The last one first refuses while
// device buffers, graphs, events or pinned blocks are still held (releasing the context would
// free them under their owners; a pinned ArrayBuffer would then point at freed memory), then
// waits for the device, destroys the stream, unloads every module still loaded, and releases the
// primary context: released true. Each step runs even where an earlier one failed (a context a
// fault left unusable fails them all, and releasing it is the only way back); the first failure
// is then thrown, naming its call, with the context released all the same.
Napi::Value CloseJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Session& s = State();
  if (s.opens == 0) throw Napi::Error::New(env, "cuda: close() without an open device (each open() is closed once)");
  Napi::Object out = Napi::Object::New(env);
  if (s.opens > 1) {
    s.opens--;
    out.Set("released", Napi::Boolean::New(env, false));
    return out;
  }
  const auto live = [](const auto& handles) { return std::count_if(handles.begin(), handles.end(), [](const auto& h) { return h != nullptr; }); };
  std::string held;
  const auto hold = [&held](size_t n, const char* one, const char* many) {
    if (n > 0) held += (held.empty() ? "" : ", ") + std::to_string(n) + " " + (n == 1 ? one : many);
  };
  hold(s.buffers.size(), "device buffer", "device buffers");
  hold(static_cast<size_t>(live(s.graphs.items)), "graph", "graphs");
  hold(static_cast<size_t>(live(s.events.items)), "event", "events");
  hold(s.pinned.size(), "pinned host block", "pinned host blocks");
  if (!held.empty()) throw Napi::Error::New(env, "cuda: cannot close the device: " + held + " still held; free them first (releasing the context would free them under their owners)");
  const Driver& d = *s.driver;
  const char* failed_call = nullptr;
  CUresult failed = CUDA_SUCCESS;
  const auto step = [&](const char* call, CUresult r) {
    if (r != CUDA_SUCCESS && failed_call == nullptr) failed_call = call, failed = r;
  };
  step("cuCtxSetCurrent", d.cuCtxSetCurrent(s.context));
  step("cuCtxSynchronize", d.cuCtxSynchronize());  // no kernel of a module runs while it is unloaded
  if (s.stream != nullptr) step("cuStreamDestroy", d.cuStreamDestroy_v2(s.stream));
  s.stream = nullptr;
  for (CUmodule& m : s.modules.items) {
    if (m != nullptr) step("cuModuleUnload", d.cuModuleUnload(m));
    m = nullptr;
  }
  for (Function& f : s.functions.items) f.fn = nullptr;
  step("cuCtxSetCurrent", d.cuCtxSetCurrent(nullptr));  // this thread keeps no binding to a context about to go
  // Still retained if this fails: the reference stays (opens 1), and a later close() tries again.
  TIDARC_CU_CHECK(env, d, "cuDevicePrimaryCtxRelease", d.cuDevicePrimaryCtxRelease_v2(s.device));
  s.context = nullptr;
  s.opens = 0;
  // Nothing of this session is kept: its handles stay dead (one error each), by number alone.
  s.modules.Forget(), s.functions.Forget(), s.graphs.Forget(), s.events.Forget();
  if (failed_call != nullptr) {
    Napi::Error e = Napi::Error::New(env, std::string(failed_call) + " failed: " + d.Describe(failed) + " (the context was released all the same)");
    e.Set("code", Napi::String::New(env, d.Name(failed)));
    e.Set("status", Napi::Number::New(env, failed));
    throw e;
  }
  out.Set("released", Napi::Boolean::New(env, true));
  return out;
}

// primaryContext(ordinal) -> {active, opens}: whether the device's primary context is active in
// this process (cuDevicePrimaryCtxGetState: some reference holds it, ours or another library's),
// and how many open()s of ours are not closed. Needs no open device.
Napi::Value PrimaryContextJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string reason;
  const Driver* d = LoadDriver(&reason);
  if (d == nullptr) throw Napi::Error::New(env, "cuda: the driver is not usable: " + reason);
  const int ordinal = static_cast<int>(IntAt(info, 0, "device ordinal", 0, d->devices - 1));
  CUdevice device = 0;
  TIDARC_CU_CHECK(env, *d, "cuDeviceGet", d->cuDeviceGet(&device, ordinal));
  unsigned flags = 0;
  int active = 0;
  TIDARC_CU_CHECK(env, *d, "cuDevicePrimaryCtxGetState", d->cuDevicePrimaryCtxGetState(device, &flags, &active));
  const Session& s = State();
  Napi::Object out = Napi::Object::New(env);
  out.Set("active", Napi::Boolean::New(env, active != 0));
  out.Set("opens", Napi::Number::New(env, s.context != nullptr && s.device == device ? s.opens : 0));
  return out;
}

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  return tidarc::GuardedCall<F>(info, "tidarc cuda");
}

}  // namespace

void RegisterCuda(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("status", Napi::Function::New(env, Guarded<StatusJs>, "status"));
  o.Set("open", Napi::Function::New(env, Guarded<OpenJs>, "open"));
  o.Set("close", Napi::Function::New(env, Guarded<CloseJs>, "close"));
  o.Set("primaryContext", Napi::Function::New(env, Guarded<PrimaryContextJs>, "primaryContext"));
  o.Set("alloc", Napi::Function::New(env, Guarded<AllocJs>, "alloc"));
  o.Set("free", Napi::Function::New(env, Guarded<FreeJs>, "free"));
  o.Set("memInfo", Napi::Function::New(env, Guarded<MemInfoJs>, "memInfo"));
  o.Set("upload", Napi::Function::New(env, Guarded<UploadJs>, "upload"));
  o.Set("download", Napi::Function::New(env, Guarded<DownloadJs>, "download"));
  o.Set("copy", Napi::Function::New(env, Guarded<CopyJs>, "copy"));
  o.Set("fill", Napi::Function::New(env, Guarded<FillJs>, "fill"));
  o.Set("loadModule", Napi::Function::New(env, Guarded<LoadModuleJs>, "loadModule"));
  o.Set("getFunction", Napi::Function::New(env, Guarded<GetFunctionJs>, "getFunction"));
  o.Set("unloadModule", Napi::Function::New(env, Guarded<UnloadModuleJs>, "unloadModule"));
  o.Set("setMaxDynamicShared", Napi::Function::New(env, Guarded<SetMaxDynamicSharedJs>, "setMaxDynamicShared"));
  o.Set("launch", Napi::Function::New(env, Guarded<LaunchJs>, "launch"));
  o.Set("encodeTensorMap", Napi::Function::New(env, Guarded<EncodeTensorMapJs>, "encodeTensorMap"));
  o.Set("synchronize", Napi::Function::New(env, Guarded<SynchronizeJs>, "synchronize"));
  o.Set("beginCapture", Napi::Function::New(env, Guarded<BeginCaptureJs>, "beginCapture"));
  o.Set("endCapture", Napi::Function::New(env, Guarded<EndCaptureJs>, "endCapture"));
  o.Set("graphLaunch", Napi::Function::New(env, Guarded<GraphLaunchJs>, "graphLaunch"));
  o.Set("graphDestroy", Napi::Function::New(env, Guarded<GraphDestroyJs>, "graphDestroy"));
  o.Set("hostAlloc", Napi::Function::New(env, Guarded<HostAllocJs>, "hostAlloc"));
  o.Set("hostFree", Napi::Function::New(env, Guarded<HostFreeJs>, "hostFree"));
  o.Set("uploadAsync", Napi::Function::New(env, Guarded<UploadAsyncJs>, "uploadAsync"));
  o.Set("downloadAsync", Napi::Function::New(env, Guarded<DownloadAsyncJs>, "downloadAsync"));
  o.Set("streamSynchronize", Napi::Function::New(env, Guarded<StreamSynchronizeJs>, "streamSynchronize"));
  o.Set("eventCreate", Napi::Function::New(env, Guarded<EventCreateJs>, "eventCreate"));
  o.Set("eventRecord", Napi::Function::New(env, Guarded<EventRecordJs>, "eventRecord"));
  o.Set("eventElapsed", Napi::Function::New(env, Guarded<EventElapsedJs>, "eventElapsed"));
  o.Set("eventDestroy", Napi::Function::New(env, Guarded<EventDestroyJs>, "eventDestroy"));
  exports.Set("cuda", o);
  // The older probe name, kept for callers of cudaStatus().
  exports.Set("cudaStatus", Napi::Function::New(env, Guarded<StatusJs>, "cudaStatus"));
}

}  // namespace tidarc_cuda
