// tidarc_native: the one seam between JavaScript and generated kernel libraries.
// It only converts data and calls into the library; every failure (dlopen, dlsym, ABI
// mismatch, a kernel's error code, a wrong argument) becomes a JS exception, never a crash.
// No CUDA library is linked: exports.cuda (src/cuda/) reaches the driver through dlopen, so the
// addon loads on machines without a GPU and can say why CUDA is unavailable.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <napi.h>

#include "cuda/cuda_napi.h"
#include "ops_cpu.h"
#include "staged_array.h"
#include "tidarc_abi.h"
#include "tidarc_attention_args.h"

namespace {

using KernelFn = int (*)(const TidarcAttentionArgs*);
using AbiVersionFn = int (*)();

// A dlopen handle plus its resolved entry points. Owned by a JS External; closing is
// deferred while asynchronous calls into the library are still running.
struct Library {
  void* dl = nullptr;
  std::string path;
  std::unordered_map<std::string, KernelFn> kernels;
  int in_flight = 0;
  bool close_requested = false;

  void Unload() {
    if (dl != nullptr) {
      // The CPU library's worker threads end here, outside dlclose: joining them from its
      // static destructors, under the loader lock, can deadlock.
      using ShutdownFn = void (*)();
      if (auto shutdown = reinterpret_cast<ShutdownFn>(dlsym(dl, "tidarc_cpu_shutdown"))) shutdown();
      dlclose(dl);
    }
    dl = nullptr;
    kernels.clear();
  }
};

// Distinguishes our handles from any other External passed in by mistake.
constexpr napi_type_tag kLibraryTag = {0x7a1dc0de5eed0001ULL, 0x9b3f1c2d4e5f6071ULL};

std::string DlError() {
  const char* e = dlerror();
  return e != nullptr ? std::string(e) : std::string("unknown dynamic loader error");
}

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg) {
  throw Napi::RangeError::New(env, msg);
}

const char* ReturnCodeName(int code) {
  switch (code) {
    case TIDARC_ERR_ARGS: return "TIDARC_ERR_ARGS";
    case TIDARC_ERR_PREFIX: return "TIDARC_ERR_PREFIX";
    case TIDARC_ERR_WORKSPACE: return "TIDARC_ERR_WORKSPACE";
    default: return "TIDARC_ERR_UNKNOWN";
  }
}

const char* ReturnCodeMeaning(int code) {
  switch (code) {
    case TIDARC_ERR_ARGS: return "invalid arguments (a null pointer, batch < 1, num_splits < 1, ...)";
    case TIDARC_ERR_PREFIX: return "some prefix_len[b] < 0 or > cache_capacity";
    case TIDARC_ERR_WORKSPACE: return "num_splits > 1 without a workspace";
    default: return "an error code this runtime does not know";
  }
}

// Error for a kernel's non-zero return: `code` is the TIDARC_ERR_* name, `status` the number.
Napi::Error KernelError(Napi::Env env, const std::string& symbol, int status) {
  std::string msg = symbol + " returned " + std::to_string(status) + " (" +
                    ReturnCodeName(status) + ": " + ReturnCodeMeaning(status) + ")";
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, ReturnCodeName(status)));
  err.Set("status", Napi::Number::New(env, status));
  return err;
}

Library* UnwrapLibrary(Napi::Env env, const Napi::Value& v) {
  if (!v.IsExternal() || !v.As<Napi::External<Library>>().CheckTypeTag(&kLibraryTag)) {
    ThrowType(env, "handle must be a library handle returned by openLibrary");
  }
  return v.As<Napi::External<Library>>().Data();
}

Library* OpenLibraryForCall(Napi::Env env, const Napi::Value& v) {
  Library* lib = UnwrapLibrary(env, v);
  if (lib->close_requested || lib->dl == nullptr) {
    throw Napi::Error::New(env, "library " + lib->path + " is closed");
  }
  return lib;
}

KernelFn ResolveKernel(Napi::Env env, Library* lib, const Napi::Value& sym) {
  if (!sym.IsString()) ThrowType(env, "symbol must be a string (e.g. tidarc_cpu_<variant>)");
  std::string name = sym.As<Napi::String>().Utf8Value();
  if (name.empty()) ThrowType(env, "symbol must be a non-empty string");
  auto it = lib->kernels.find(name);
  if (it != lib->kernels.end()) return it->second;
  dlerror();  // clear a stale error so the one read below belongs to this dlsym
  void* p = dlsym(lib->dl, name.c_str());
  if (p == nullptr) {
    throw Napi::Error::New(env, "symbol " + name + " not found in " + lib->path + ": " + DlError());
  }
  auto fn = reinterpret_cast<KernelFn>(p);
  lib->kernels.emplace(name, fn);
  return fn;
}

// ---- argument conversion -------------------------------------------------------------

// The JavaScript array of each element type the argument's arrays have.
template <typename T> struct JsArray;
template <> struct JsArray<uint16_t> {
  static constexpr napi_typedarray_type kType = napi_uint16_array;
  static constexpr const char* kName = "a Uint16Array (bf16/fp16 bits)";
};
template <> struct JsArray<int32_t> {
  static constexpr napi_typedarray_type kType = napi_int32_array;
  static constexpr const char* kName = "an Int32Array";
};
template <> struct JsArray<float> {
  static constexpr napi_typedarray_type kType = napi_float32_array;
  static constexpr const char* kName = "a Float32Array";
};

// args[field] as the array of its element type; the split-KV workspace and counters may be null
// or absent (an empty array then: the kernel sees none).
template <typename T>
Napi::TypedArrayOf<T> GetArray(Napi::Env env, const Napi::Object& args, const char* field, int role) {
  Napi::Value v = args.Get(field);
  const bool nullable = role == TIDARC_ARRAY_SCRATCH || role == TIDARC_ARRAY_COUNTERS;
  if (nullable && (v.IsNull() || v.IsUndefined())) return Napi::TypedArrayOf<T>();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != JsArray<T>::kType) {
    ThrowType(env, std::string("args.") + field + " must be " + JsArray<T>::kName + (nullable ? " or null" : ""));
  }
  return v.As<Napi::TypedArrayOf<T>>();
}

// Every array of the argument as JavaScript passed it, by its C field (tidarc_attention_args.h).
struct JsArrays {
#define TIDARC_DECLARE(field, js, type, role) Napi::TypedArrayOf<type> field;
  TIDARC_ATTENTION_ARRAYS(TIDARC_DECLARE)
#undef TIDARC_DECLARE
};

int32_t GetInt32(Napi::Env env, const Napi::Object& args, const char* field) {
  Napi::Value v = args.Get(field);
  if (!v.IsNumber()) ThrowType(env, std::string("args.") + field + " must be an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) {
    ThrowType(env, std::string("args.") + field + " must be an integer, got " + std::to_string(d));
  }
  if (d < std::numeric_limits<int32_t>::min() || d > std::numeric_limits<int32_t>::max()) {
    ThrowRange(env, std::string("args.") + field + " must fit in int32, got " + std::to_string(d));
  }
  return static_cast<int32_t>(d);
}

void RequireSameLength(Napi::Env env, const char* a, size_t na, const char* b, size_t nb) {
  if (na != nb) {
    ThrowRange(env, std::string("args.") + a + " has " + std::to_string(na) + " elements but args." +
                        b + " has " + std::to_string(nb) + " (same layout expected)");
  }
}

// The converted call: the ABI struct plus what its pointers point at. A synchronous call
// passes the arrays' own memory (no JavaScript runs until it returns); an asynchronous one
// passes staged copies (staged_array.h), since JavaScript may free a buffer while it runs.
struct AttentionCall {
  TidarcAttentionArgs abi{};
  // Always a copy: the kernel checks every prefix_len[b] and then reads it again, and a
  // SharedArrayBuffer could change in between (another thread), turning a checked length
  // into a read past the cache.
  std::vector<int32_t> prefix;
  std::vector<tidarc::StagedArray> staged;  // asynchronous calls only
  size_t outputs_begin = 0;                 // staged[outputs_begin..] are written back
};

enum class CallMode { kSync, kAsync };

// With nothing cached (cache_capacity 0, e.g. a first step) the caches are empty arguments, not
// missing ones: kernels refuse a null pointer, so they get one they never read through.
// Elsewhere an empty array stays null and the kernel refuses it.
void AllowEmptyCaches(TidarcAttentionArgs& a) {
  alignas(64) static const uint16_t kNothing[32] = {};
  if (a.cache_capacity != 0) return;
  if (a.k_cache == nullptr) a.k_cache = kNothing;
  if (a.v_cache == nullptr) a.v_cache = kNothing;
}

AttentionCall ConvertArgs(Napi::Env env, const Napi::Value& value, CallMode mode) {
  if (!value.IsObject() || value.IsArray() || value.IsTypedArray()) {
    ThrowType(env, "args must be an object with " TIDARC_ATTENTION_JS_FIELDS);
  }
  Napi::Object args = value.As<Napi::Object>();
  JsArrays js;
#define TIDARC_READ(field, name, type, role) js.field = GetArray<type>(env, args, name, role);
  TIDARC_ATTENTION_ARRAYS(TIDARC_READ)
#undef TIDARC_READ

  AttentionCall call;
  TidarcAttentionArgs& a = call.abi;
#define TIDARC_READ(field, name) a.field = GetInt32(env, args, name);
  TIDARC_ATTENTION_SCALARS(TIDARC_READ)
#undef TIDARC_READ

  // Shapes are known only to the variant; these cheap checks catch swapped or short buffers
  // that would otherwise be read out of bounds. Range checks of values stay in the kernel.
#define TIDARC_SAME(field, name, other, other_name) \
  RequireSameLength(env, name, js.field.ElementLength(), other_name, js.other.ElementLength());
  TIDARC_ATTENTION_SAME_EXTENT(TIDARC_SAME)
#undef TIDARC_SAME
  if (a.batch > 0 && js.prefix_len.ElementLength() < static_cast<size_t>(a.batch)) {
    ThrowRange(env, "args.prefixLen has " + std::to_string(js.prefix_len.ElementLength()) +
                        " elements but batch is " + std::to_string(a.batch));
  }
  call.prefix.assign(js.prefix_len.Data(), js.prefix_len.Data() + std::max(a.batch, 0));
  // prefix_len always points at that checked copy (AttentionCall), never at the array.
  auto is_prefix = [&](const void* field) { return field == static_cast<const void*>(&a.prefix_len); };

  if (mode == CallMode::kSync) {
    // An empty array passes null: a zero-length view of a larger buffer has a data pointer,
    // from which a kernel would read a shape's worth of another array's bytes.
    auto data = [](auto& arr) -> void* { return arr.ElementLength() > 0 ? static_cast<void*>(arr.Data()) : nullptr; };
#define TIDARC_POINT(field, name, type, role) \
    if (!is_prefix(&a.field)) a.field = static_cast<type*>(data(js.field));
    TIDARC_ATTENTION_ARRAYS(TIDARC_POINT)
#undef TIDARC_POINT
    a.prefix_len = call.prefix.data();
    AllowEmptyCaches(a);
    return call;
  }
  // Of the caches, only the slots the call reads are copied (slots [0, prefix_len[b]) of each
  // sequence b and KV head), into caches of capacity max(prefix_len): the capacity is often
  // many times the prefix, and a large fresh copy costs page faults. Locating the slots needs
  // their size, args.headDim; without it, or when the lengths are out of range (the kernel
  // then says so) or the caches are shared (used in place), nothing is compacted.
  tidarc::Gather cache_gather;
  const tidarc::Gather* gather = nullptr;
  if (!args.Get("headDim").IsUndefined()) {
    const int32_t head_dim = GetInt32(env, args, "headDim");
    if (head_dim < 1) ThrowRange(env, "args.headDim must be >= 1, got " + std::to_string(head_dim));
    const size_t sequence_slots = static_cast<size_t>(std::max(a.batch, 0)) * std::max(a.cache_capacity, 0) * head_dim;
    const bool in_range = std::all_of(call.prefix.begin(), call.prefix.end(),
                                      [&](int32_t L) { return L >= 0 && L <= a.cache_capacity; });
    bool shared = false;
#define TIDARC_SHARED(field, name, type, role) \
    if (role == TIDARC_ARRAY_CACHE) shared = shared || tidarc::InspectTypedArray(env, js.field).shared;
    TIDARC_ATTENTION_ARRAYS(TIDARC_SHARED)
#undef TIDARC_SHARED
    if (sequence_slots > 0 && in_range && !shared) {
      if (js.k_cache.ElementLength() % sequence_slots != 0) {
        ThrowRange(env, "args.kCache has " + std::to_string(js.k_cache.ElementLength()) +
                            " elements, not a multiple of batch * cacheCapacity * headDim (" +
                            std::to_string(sequence_slots) + ")");
      }
      const size_t kv_heads = js.k_cache.ElementLength() / sequence_slots;
      const size_t slot = sizeof(uint16_t) * head_dim;
      const int32_t capacity = *std::max_element(call.prefix.begin(), call.prefix.end());
      for (int32_t b = 0; b < a.batch; ++b) {
        for (size_t h = 0; h < kv_heads; ++h) {
          const size_t row = b * kv_heads + h;
          cache_gather.ranges.push_back({row * a.cache_capacity * slot, row * capacity * slot, call.prefix[b] * slot});
        }
      }
      cache_gather.bytes = a.batch * kv_heads * capacity * slot;
      a.cache_capacity = capacity;
      gather = &cache_gather;
    }
  }

  // Inputs first, then the arrays the kernel writes (written back in OnOK); the cache arrays
  // through the gather; an empty workspace (or counters) stays null.
  call.staged.reserve(sizeof(JsArrays) / sizeof(Napi::TypedArrayOf<float>));
  bool outputs = false;
#define TIDARC_STAGE(field, name, type, role)                                                          \
  if ((role == TIDARC_ARRAY_OUT || role == TIDARC_ARRAY_SCRATCH || role == TIDARC_ARRAY_COUNTERS) == outputs && !is_prefix(&a.field)) { \
    const bool none = (role == TIDARC_ARRAY_SCRATCH || role == TIDARC_ARRAY_COUNTERS) && js.field.ElementLength() == 0; \
    a.field = none ? nullptr                                                                             \
                   : static_cast<type*>(call.staged.emplace_back(env, js.field, name, role == TIDARC_ARRAY_CACHE ? gather : nullptr).data()); \
  }
  TIDARC_ATTENTION_ARRAYS(TIDARC_STAGE)
  call.outputs_begin = call.staged.size();
  outputs = true;
  TIDARC_ATTENTION_ARRAYS(TIDARC_STAGE)
#undef TIDARC_STAGE
  a.prefix_len = call.prefix.data();
  AllowEmptyCaches(a);
  return call;
}

// An exception escaping an extern "C" kernel must not unwind into Node; it is reported
// instead (generated kernels return codes and never throw, but a bug should not crash).
int CallKernel(KernelFn fn, const TidarcAttentionArgs& args, bool* threw) {
  *threw = false;
  try {
    return fn(&args);
  } catch (...) {
    *threw = true;
    return TIDARC_OK;
  }
}

// ---- exports -------------------------------------------------------------------------

Napi::Value OpenLibrary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) ThrowType(env, "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.empty()) ThrowType(env, "path must be a non-empty string");
  // A bare file name is a file in the working directory, not a search of the library path.
  if (path.find('/') == std::string::npos) path = "./" + path;

  dlerror();
  void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (dl == nullptr) {
    throw Napi::Error::New(env, "cannot open kernel library " + path + ": " + DlError());
  }
  dlerror();
  auto version_fn = reinterpret_cast<AbiVersionFn>(dlsym(dl, "tidarc_abi_version"));
  if (version_fn == nullptr) {
    std::string why = DlError();
    dlclose(dl);
    throw Napi::Error::New(env, path + " is not a tidarc kernel library (no tidarc_abi_version): " +
                                    why);
  }
  int version = version_fn();
  if (version != TIDARC_ABI_VERSION) {
    dlclose(dl);
    throw Napi::Error::New(env, path + " was built for tidarc ABI version " +
                                    std::to_string(version) + ", this runtime expects " +
                                    std::to_string(TIDARC_ABI_VERSION) +
                                    "; regenerate and rebuild the library");
  }

  auto lib = std::make_unique<Library>();
  lib->dl = dl;
  lib->path = path;
  auto handle = Napi::External<Library>::New(env, lib.release(), [](Napi::Env, Library* l) {
    l->Unload();
    delete l;
  });
  handle.TypeTag(&kLibraryTag);
  return handle;
}

Napi::Value CloseLibrary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Library* lib = UnwrapLibrary(env, info.Length() > 0 ? info[0] : env.Undefined());
  lib->close_requested = true;  // closing twice is harmless
  if (lib->in_flight == 0) lib->Unload();
  return env.Undefined();
}

Napi::Value RunAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Library* lib = OpenLibraryForCall(env, info.Length() > 0 ? info[0] : env.Undefined());
  Napi::Value sym = info.Length() > 1 ? info[1] : env.Undefined();
  KernelFn fn = ResolveKernel(env, lib, sym);
  AttentionCall call = ConvertArgs(env, info.Length() > 2 ? info[2] : env.Undefined(), CallMode::kSync);
  std::string name = sym.As<Napi::String>().Utf8Value();
  bool threw = false;
  int status = CallKernel(fn, call.abi, &threw);
  if (threw) throw Napi::Error::New(env, name + " threw a C++ exception");
  if (status != TIDARC_OK) throw KernelError(env, name, status);
  return env.Undefined();
}

// Runs one kernel call on the libuv thread pool; JS objects are touched only in the
// constructor and in OnOK/OnError, which run on the main thread.
class AttentionWorker : public Napi::AsyncWorker {
 public:
  AttentionWorker(Napi::Env env, Napi::Value handle, Library* lib, KernelFn fn, std::string name,
                  AttentionCall call)
      : Napi::AsyncWorker(env, "tidarc:runAttention"),
        deferred_(Napi::Promise::Deferred::New(env)),
        handle_(Napi::Persistent(handle)),
        lib_(lib),
        fn_(fn),
        name_(std::move(name)),
        call_(std::move(call)) {
    ++lib_->in_flight;
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    bool threw = false;
    status_ = CallKernel(fn_, call_.abi, &threw);
    if (threw) SetError(name_ + " threw a C++ exception");
  }

  void OnOK() override {
    Finish();
    if (status_ != TIDARC_OK) {
      deferred_.Reject(KernelError(Env(), name_, status_).Value());
      return;
    }
    // Every output that can take its result gets it; one that cannot fails the call.
    std::string why, field;
    for (size_t i = call_.outputs_begin; i < call_.staged.size(); ++i) {
      std::string w;
      if (!call_.staged[i].WriteBack(Env(), &w) && why.empty()) {
        why = w;
        field = call_.staged[i].field();
      }
    }
    if (why.empty()) {
      deferred_.Resolve(Env().Undefined());
      return;
    }
    Napi::Error err = Napi::Error::New(Env(), name_ + ": " + why);
    err.Set("code", Napi::String::New(Env(), "TIDARC_ERR_BUFFER_CHANGED"));
    err.Set("field", Napi::String::New(Env(), field));
    deferred_.Reject(err.Value());
  }

  void OnError(const Napi::Error& e) override {
    Finish();
    deferred_.Reject(e.Value());
  }

 private:
  void Finish() {
    if (--lib_->in_flight == 0 && lib_->close_requested) lib_->Unload();
  }

  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Value> handle_;  // keeps the External (and the dlopen handle) alive
  Library* lib_;
  KernelFn fn_;
  std::string name_;
  AttentionCall call_;
  int status_ = TIDARC_OK;
};

Napi::Value RunAttentionAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value handle = info.Length() > 0 ? info[0] : env.Undefined();
  Library* lib = OpenLibraryForCall(env, handle);
  Napi::Value sym = info.Length() > 1 ? info[1] : env.Undefined();
  KernelFn fn = ResolveKernel(env, lib, sym);
  AttentionCall call = ConvertArgs(env, info.Length() > 2 ? info[2] : env.Undefined(), CallMode::kAsync);
  auto* worker = new AttentionWorker(env, handle, lib, fn, sym.As<Napi::String>().Utf8Value(),
                                     std::move(call));
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, TIDARC_ABI_VERSION));
  exports.Set("openLibrary", Napi::Function::New(env, OpenLibrary, "openLibrary"));
  exports.Set("closeLibrary", Napi::Function::New(env, CloseLibrary, "closeLibrary"));
  exports.Set("runAttention", Napi::Function::New(env, RunAttention, "runAttention"));
  exports.Set("runAttentionAsync", Napi::Function::New(env, RunAttentionAsync, "runAttentionAsync"));
  tidarc_cuda::RegisterCuda(env, exports);
  tidarc::ops::RegisterCpuOps(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(tidarc_native, Init)
