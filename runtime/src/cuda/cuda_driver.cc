#include "cuda_driver.h"

#include <dlfcn.h>

#include <cstdlib>

namespace tidarc_cuda {

namespace {

struct Loaded {
  Driver driver;
  bool ok = false;
  std::string reason;
};

std::string DlError() {
  const char* e = dlerror();
  return e != nullptr ? std::string(e) : std::string("unknown dynamic loader error");
}

Loaded Load() {
  Loaded l;
  Driver& d = l.driver;
  const char* env = std::getenv("TIDARC_LIBCUDA");
  d.path = env != nullptr && *env != '\0' ? env : "libcuda.so.1";
  dlerror();
  // Never closed: unloading an initialised driver is not supported.
  void* lib = dlopen(d.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    l.reason = d.path + " could not be loaded (no NVIDIA driver?): " + DlError();
    return l;
  }
#define TIDARC_CUDA_RESOLVE(name, ret, params)                                          \
  d.name = reinterpret_cast<ret(*) params>(dlsym(lib, #name));                          \
  if (d.name == nullptr) {                                                              \
    l.reason = d.path + " has no " #name " (a driver older than CUDA 12?): " + DlError(); \
    return l;                                                                           \
  }
  TIDARC_CUDA_DRIVER_FUNCTIONS(TIDARC_CUDA_RESOLVE)
#undef TIDARC_CUDA_RESOLVE
#define TIDARC_CUDA_RESOLVE_OPTIONAL(name, ret, params) d.name = reinterpret_cast<ret(*) params>(dlsym(lib, #name));
  TIDARC_CUDA_OPTIONAL_FUNCTIONS(TIDARC_CUDA_RESOLVE_OPTIONAL)
#undef TIDARC_CUDA_RESOLVE_OPTIONAL
  dlerror();
  CUresult r = d.cuInit(0);
  if (r != CUDA_SUCCESS) {
    l.reason = "cuInit failed: " + d.Describe(r);
    return l;
  }
  d.cuDriverGetVersion(&d.version);
  if ((r = d.cuDeviceGetCount(&d.devices)) != CUDA_SUCCESS) {
    l.reason = "cuDeviceGetCount failed: " + d.Describe(r);
    return l;
  }
  if (d.devices == 0) {
    l.reason = "the CUDA driver reports no device";
    return l;
  }
  l.ok = true;
  l.reason = "CUDA driver " + std::to_string(d.version / 1000) + "." + std::to_string((d.version % 1000) / 10) + ", " +
             std::to_string(d.devices) + (d.devices == 1 ? " device" : " devices");
  return l;
}

}  // namespace

std::string Driver::Name(CUresult r) const {
  const char* name = nullptr;
  if (cuGetErrorName != nullptr && cuGetErrorName(r, &name) == CUDA_SUCCESS && name != nullptr) return name;
  return "CUresult " + std::to_string(r);
}

std::string Driver::Describe(CUresult r) const {
  const char* text = nullptr;
  std::string out = Name(r) + " (" + std::to_string(r) + ")";
  if (cuGetErrorString != nullptr && cuGetErrorString(r, &text) == CUDA_SUCCESS && text != nullptr) out += ": " + std::string(text);
  return out;
}

const Driver* LoadDriver(std::string* reason) {
  static const Loaded loaded = Load();  // thread-safe static init
  if (reason != nullptr) *reason = loaded.reason;
  return loaded.ok ? &loaded.driver : nullptr;
}

}  // namespace tidarc_cuda
