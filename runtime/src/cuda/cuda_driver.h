// The CUDA driver, reached through dlopen: libcuda.so.1 (or $TIDARC_LIBCUDA, e.g. the
// emulated driver built from runtime/emu/fake_cuda.cpp) with every function of
// cuda_driver_api.h resolved once. Nothing CUDA is linked or needed at build time.
#pragma once
#include <string>

#include "cuda_driver_api.h"

namespace tidarc_cuda {

struct Driver {
#define TIDARC_CUDA_MEMBER(name, ret, params) ret(*name) params = nullptr;
  TIDARC_CUDA_DRIVER_FUNCTIONS(TIDARC_CUDA_MEMBER)
  TIDARC_CUDA_OPTIONAL_FUNCTIONS(TIDARC_CUDA_MEMBER)  // null when the driver lacks one
#undef TIDARC_CUDA_MEMBER
  /** Where the library came from (for messages). */
  std::string path;
  int version = 0;
  int devices = 0;

  /** "CUDA_ERROR_OUT_OF_MEMORY (2): out of memory" for a result code. */
  std::string Describe(CUresult r) const;
  /** The CUDA_ERROR_* name of a result code ("CUresult N" when the driver has none). */
  std::string Name(CUresult r) const;
};

/**
 * The process's driver: loaded, resolved and cuInit'ed on the first call (thread-safe), then
 * cached; nullptr when unusable, with `reason` saying why (no library, a missing symbol,
 * cuInit failed, no device). Never throws.
 */
const Driver* LoadDriver(std::string* reason);

}  // namespace tidarc_cuda
