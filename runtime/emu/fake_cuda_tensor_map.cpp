/*! tidarc emulated CUDA driver: cuTensorMapEncodeTiled. The emulator's own encoder
    (emu_hopper_sync.cpp, what its cp.async.bulk.tensor reads) validates like the driver; the
    driver's enums become its element size and swizzle span. A map it refuses is
    CUDA_ERROR_INVALID_VALUE, as on a GPU, with the reason on stderr. */
#include <cstdint>
#include <cstdio>

#include "cuda_driver_api.h"
#include "emu_hopper.h"

using namespace tidarc_cuda;

#define TIDARC_FAKE_DECLARE(name, ret, params) extern "C" __attribute__((visibility("default"))) ret name params;
TIDARC_CUDA_OPTIONAL_FUNCTIONS(TIDARC_FAKE_DECLARE)
#undef TIDARC_FAKE_DECLARE

static_assert(sizeof(CUtensorMap) == sizeof(tidarc_emu::TensorMap) && alignof(CUtensorMap) == alignof(tidarc_emu::TensorMap), "one map, two names");

namespace {

CUresult refuse(const char* why) {
  std::fprintf(stderr, "tidarc emulated driver: cuTensorMapEncodeTiled: %s\n", why);
  return CUDA_ERROR_INVALID_VALUE;
}

/** Bytes of an element of a CUtensorMapDataType the emulator copies (0: not one). */
unsigned element_bytes(int type) {
  switch (type) {
    case 0: return 1;                             // UINT8
    case 1: case CU_TENSOR_MAP_DATA_TYPE_FLOAT16: case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: return 2;  // UINT16, FLOAT16, BFLOAT16
    case 2: case 3: case 7: return 4;             // UINT32, INT32, FLOAT32
    case 4: case 5: case 8: return 8;             // UINT64, INT64, FLOAT64
    default: return 0;
  }
}

}  // namespace

CUresult cuTensorMapEncodeTiled(CUtensorMap* map, int data_type, unsigned rank, void* address, const unsigned long long* dims,
                                const unsigned long long* strides, const unsigned* box, const unsigned* element_strides, int interleave,
                                int swizzle, int l2_promotion, int oob_fill) {
  if (map == nullptr || dims == nullptr || box == nullptr || element_strides == nullptr || (rank > 1 && strides == nullptr)) return refuse("a null argument");
  const unsigned bytes = element_bytes(data_type);
  if (bytes == 0) return refuse("a data type the emulator does not copy");
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return refuse("interleaved layouts are not emulated");
  if (l2_promotion < 0 || l2_promotion > 3 || oob_fill < 0 || oob_fill > 1) return refuse("an L2 promotion or out-of-bounds fill out of range");
  if (oob_fill != CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) return refuse("NaN fill is not emulated (elements outside the tensor read as zero)");
  for (unsigned d = 0; d < rank && d < 5; ++d)
    if (element_strides[d] != 1) return refuse("element strides other than 1 are not emulated");
  static constexpr unsigned kSpan[4] = {0, 32, 64, 128};
  if (swizzle < CU_TENSOR_MAP_SWIZZLE_NONE || swizzle > CU_TENSOR_MAP_SWIZZLE_128B) return refuse("a swizzle mode other than none, 32B, 64B or 128B");
  if (rank < 1 || rank > 5) return refuse("rank must be 1..5");
  uint64_t dims64[5] = {}, strides64[4] = {};
  for (unsigned d = 0; d < rank; ++d) dims64[d] = dims[d];
  for (unsigned d = 0; d + 1 < rank; ++d) strides64[d] = strides[d];
  if (const char* e = tidarc_emu::encode_tensor_map(reinterpret_cast<tidarc_emu::TensorMap*>(map), address, bytes, rank, dims64, strides64, box, kSpan[swizzle])) return refuse(e);
  return CUDA_SUCCESS;
}
