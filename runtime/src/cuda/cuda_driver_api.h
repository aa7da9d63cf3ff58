/*! The part of the CUDA driver API tidarc uses, declared here so that nothing CUDA is needed
    at build time: the runtime dlopens libcuda.so.1 (or $TIDARC_LIBCUDA, e.g. the emulated
    driver of runtime/emu/fake_cuda.cpp) and resolves exactly these entry points.
    Types and values follow cuda.h (driver API, CUDA 12/13); the _v2 names are the symbols
    libcuda exports for the 64-bit device-pointer functions. */
#pragma once
#include <cstddef>

namespace tidarc_cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
using CUevent = struct CUevent_st*;
using CUgraph = struct CUgraph_st*;
using CUgraphExec = struct CUgraphExec_st*;

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_INVALID_VALUE = 1;
constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
constexpr CUresult CUDA_ERROR_NOT_INITIALIZED = 3;
constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
constexpr CUresult CUDA_ERROR_FILE_NOT_FOUND = 301;
constexpr CUresult CUDA_ERROR_NOT_FOUND = 500;
constexpr CUresult CUDA_ERROR_LAUNCH_FAILED = 719;
constexpr CUresult CUDA_ERROR_NOT_SUPPORTED = 801;
// A call that is not allowed while a stream captures (a synchronous copy, a synchronize):
// it fails, and the capture is invalidated (cuStreamEndCapture then fails too).
constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED = 900;
constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901;
constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_UNMATCHED = 903;
constexpr CUresult CUDA_ERROR_STREAM_CAPTURE_IMPLICIT = 906;

// cuStreamCreate flags: 0 = CU_STREAM_DEFAULT, a blocking stream (it orders with the legacy
// NULL stream, so synchronous copies still see its work).
constexpr unsigned CU_STREAM_DEFAULT = 0;
// CUstreamCaptureMode: global forbids unsafe calls (synchronous copies, ...) from any thread.
constexpr int CU_STREAM_CAPTURE_MODE_GLOBAL = 0;
// cuEventCreate flags.
constexpr unsigned CU_EVENT_DEFAULT = 0;

// CUdevice_attribute values.
constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
// CUfunction_attribute values.
constexpr int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

// Tensor maps (CUDA 12.0+, sm_90): CUtensorMap is 128 opaque bytes, 64-byte aligned.
struct alignas(64) CUtensorMap {
  unsigned long long opaque[16];
};
// CUtensorMapDataType, CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
// CUtensorMapFloatOOBfill values tidarc uses.
constexpr int CU_TENSOR_MAP_DATA_TYPE_FLOAT16 = 6;
constexpr int CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9;
constexpr int CU_TENSOR_MAP_INTERLEAVE_NONE = 0;
constexpr int CU_TENSOR_MAP_SWIZZLE_NONE = 0;
constexpr int CU_TENSOR_MAP_SWIZZLE_32B = 1;
constexpr int CU_TENSOR_MAP_SWIZZLE_64B = 2;
constexpr int CU_TENSOR_MAP_SWIZZLE_128B = 3;
constexpr int CU_TENSOR_MAP_L2_PROMOTION_L2_128B = 2;
constexpr int CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0;  // elements outside the tensor read as zero

// Extensible launches (cuLaunchKernelEx, CUDA 12.0+), laid out as cuda.h declares them (checked
// against the toolkit's cuda.h where the build has one: test/runtime/cuda/launch-ex-layout.test.ts).
// CUlaunchAttributeID values tidarc uses:
// PROGRAMMATIC_STREAM_SERIALIZATION lets the kernel be scheduled before its predecessor on the
// stream has finished (programmatic dependent launch, sm_90+; its griddepcontrol.wait orders
// the memory); a stream capture records it as a programmatic edge.
constexpr int CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;

// CUlaunchAttributeValue: a union padded to 64 bytes; tidarc sets only the int member.
union alignas(8) CUlaunchAttributeValue {  // 8-aligned: cuda.h's members hold pointers
  char pad[64];
  int programmaticStreamSerializationAllowed;
};
// CUlaunchAttribute: the id (an enum: 4 bytes), 4 bytes of padding, then the value.
struct CUlaunchAttribute {
  int id;
  char pad[8 - sizeof(int)];
  CUlaunchAttributeValue value;
};
struct CUlaunchConfig {
  unsigned gridDimX, gridDimY, gridDimZ;
  unsigned blockDimX, blockDimY, blockDimZ;
  unsigned sharedMemBytes;
  CUstream hStream;
  CUlaunchAttribute* attrs;
  unsigned numAttrs;
};
static_assert(sizeof(CUlaunchAttributeValue) == 64 && alignof(CUlaunchAttributeValue) == 8, "CUlaunchAttributeValue is 64 bytes, 8-aligned in cuda.h");
static_assert(sizeof(CUlaunchAttribute) == 72 && offsetof(CUlaunchAttribute, value) == 8, "CUlaunchAttribute: id at 0, value at 8, 72 bytes (cuda.h)");
static_assert(offsetof(CUlaunchConfig, sharedMemBytes) == 24 && offsetof(CUlaunchConfig, hStream) == 32 && offsetof(CUlaunchConfig, attrs) == 40 &&
                  offsetof(CUlaunchConfig, numAttrs) == 48 && sizeof(CUlaunchConfig) == 56,
              "CUlaunchConfig: the LP64 layout of cuda.h (stream at 32, attrs at 40, numAttrs at 48, 56 bytes)");

/* X(symbol, return, parameters): every driver function the runtime resolves. */
#define TIDARC_CUDA_DRIVER_FUNCTIONS(X)                                                          \
  X(cuInit, CUresult, (unsigned flags))                                                          \
  X(cuDriverGetVersion, CUresult, (int* version))                                                \
  X(cuDeviceGetCount, CUresult, (int* count))                                                    \
  X(cuDeviceGet, CUresult, (CUdevice* device, int ordinal))                                      \
  X(cuDeviceGetName, CUresult, (char* name, int len, CUdevice device))                           \
  X(cuDeviceGetAttribute, CUresult, (int* value, int attribute, CUdevice device))                \
  X(cuDeviceTotalMem_v2, CUresult, (size_t* bytes, CUdevice device))                            \
  X(cuDevicePrimaryCtxRetain, CUresult, (CUcontext* ctx, CUdevice device))                       \
  X(cuDevicePrimaryCtxRelease_v2, CUresult, (CUdevice device))                                   \
  X(cuDevicePrimaryCtxGetState, CUresult, (CUdevice device, unsigned* flags, int* active))        \
  X(cuCtxSetCurrent, CUresult, (CUcontext ctx))                                                  \
  X(cuCtxSynchronize, CUresult, ())                                                              \
  X(cuModuleLoad, CUresult, (CUmodule* module, const char* path))                                \
  X(cuModuleUnload, CUresult, (CUmodule module))                                                 \
  X(cuModuleGetFunction, CUresult, (CUfunction* fn, CUmodule module, const char* name))          \
  X(cuFuncSetAttribute, CUresult, (CUfunction fn, int attribute, int value))                     \
  X(cuLaunchKernel, CUresult,                                                                    \
    (CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, \
     unsigned shared_bytes, CUstream stream, void** params, void** extra))                       \
  X(cuMemAlloc_v2, CUresult, (CUdeviceptr* ptr, size_t bytes))                                   \
  X(cuMemFree_v2, CUresult, (CUdeviceptr ptr))                                                   \
  X(cuMemGetInfo_v2, CUresult, (size_t* free_bytes, size_t* total_bytes))                         \
  X(cuMemcpyHtoD_v2, CUresult, (CUdeviceptr dst, const void* src, size_t bytes))                 \
  X(cuMemcpyDtoH_v2, CUresult, (void* dst, CUdeviceptr src, size_t bytes))                       \
  X(cuMemcpyDtoD_v2, CUresult, (CUdeviceptr dst, CUdeviceptr src, size_t bytes))                 \
  X(cuMemsetD8_v2, CUresult, (CUdeviceptr dst, unsigned char value, size_t bytes))               \
  X(cuMemcpyDtoDAsync_v2, CUresult, (CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream)) \
  X(cuMemsetD8Async, CUresult, (CUdeviceptr dst, unsigned char value, size_t bytes, CUstream stream)) \
  X(cuMemHostAlloc, CUresult, (void** ptr, size_t bytes, unsigned flags))                        \
  X(cuMemFreeHost, CUresult, (void* ptr))                                                        \
  X(cuMemcpyHtoDAsync_v2, CUresult, (CUdeviceptr dst, const void* src, size_t bytes, CUstream stream)) \
  X(cuMemcpyDtoHAsync_v2, CUresult, (void* dst, CUdeviceptr src, size_t bytes, CUstream stream)) \
  X(cuStreamCreate, CUresult, (CUstream* stream, unsigned flags))                                \
  X(cuStreamDestroy_v2, CUresult, (CUstream stream))                                             \
  X(cuStreamSynchronize, CUresult, (CUstream stream))                                            \
  X(cuStreamBeginCapture_v2, CUresult, (CUstream stream, int mode))                              \
  X(cuStreamEndCapture, CUresult, (CUstream stream, CUgraph* graph))                             \
  X(cuGraphInstantiateWithFlags, CUresult, (CUgraphExec* exec, CUgraph graph, unsigned long long flags)) \
  X(cuGraphLaunch, CUresult, (CUgraphExec exec, CUstream stream))                                \
  X(cuGraphExecDestroy, CUresult, (CUgraphExec exec))                                            \
  X(cuGraphDestroy, CUresult, (CUgraph graph))                                                   \
  X(cuEventCreate, CUresult, (CUevent* event, unsigned flags))                                   \
  X(cuEventRecord, CUresult, (CUevent event, CUstream stream))                                   \
  X(cuEventSynchronize, CUresult, (CUevent event))                                               \
  X(cuEventElapsedTime, CUresult, (float* ms, CUevent start, CUevent end))                       \
  X(cuEventDestroy_v2, CUresult, (CUevent event))                                                \
  X(cuGetErrorName, CUresult, (CUresult error, const char** name))                               \
  X(cuGetErrorString, CUresult, (CUresult error, const char** text))

/* Functions resolved when the driver has them: a driver without one still runs everything
   else, and the call that needs it says what is missing. */
#define TIDARC_CUDA_OPTIONAL_FUNCTIONS(X)                                                         \
  X(cuTensorMapEncodeTiled, CUresult,                                                            \
    (CUtensorMap * map, int data_type, unsigned rank, void* address, const unsigned long long* dims, \
     const unsigned long long* strides, const unsigned* box, const unsigned* element_strides, int interleave, \
     int swizzle, int l2_promotion, int oob_fill))                                                 \
  X(cuLaunchKernelEx, CUresult, (const CUlaunchConfig* config, CUfunction fn, void** params, void** extra))

}  // namespace tidarc_cuda
