/*! tidarc SIMT emulator: force-included (g++ -include tidarc_emu.h) before a generated .cu
    so that g++ compiles the UNCHANGED kernel source for the CPU. Each CUDA thread of a
    block runs as a fiber; blocks run one after another. Warp collectives and
    __syncthreads are rendezvous points between fibers; device primitives come from
    tidarc_emu_device.h (selected by TIDARC_EMULATOR inside tidarc_device.cuh). */
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#define TIDARC_EMULATOR 1

// ---- CUDA keywords ---------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __constant__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Every fiber of a block runs on one OS thread, so thread_local storage is per block:
// `extern __shared__ T smem_raw[]` names the emulator's dynamic shared memory, and a
// static `__shared__ T x[N]` inside a kernel becomes one array shared by the block.
#define __shared__ thread_local

namespace tidarc_emu {

struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3() = default;
  constexpr dim3(unsigned x_, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

/** The fiber that runs now: its thread index inside the block. */
const uint3& current_thread_idx();
const uint3& current_block_idx();
const dim3& current_block_dim();
const dim3& current_grid_dim();

/** Block-wide barrier; `site` names the call for findings. */
void syncthreads(const char* site);
/** bar.sync (wait) or bar.arrive (!wait) on named barrier `id` (1..15) of `count` threads;
 *  `file`:`line` is the kernel's call (what the .aligned check compares between lanes). */
void named_barrier(int id, int count, bool wait, const char* site, const char* file = "", int line = 0);
/** Warp shuffle (xor lanes); a collective over the 32 lanes of the calling warp. */
float shfl_xor_f32(float v, int lane_mask, const char* site);
/** __threadfence: orders the thread's earlier st_global_* stores before its later accesses (device scope). */
void threadfence();
/** atomicAdd on a global int; the fence check's synchronisation point between CTAs (emu_global.cpp). */
int atomic_add_i32(int* p, int v);

}  // namespace tidarc_emu

#define threadIdx (::tidarc_emu::current_thread_idx())
#define blockIdx (::tidarc_emu::current_block_idx())
#define blockDim (::tidarc_emu::current_block_dim())
#define gridDim (::tidarc_emu::current_grid_dim())
#define TIDARC_EMU_STR2(x) #x
#define TIDARC_EMU_STR(x) TIDARC_EMU_STR2(x)
#define TIDARC_EMU_SITE __FILE__ ":" TIDARC_EMU_STR(__LINE__)
#define __syncthreads() ::tidarc_emu::syncthreads(TIDARC_EMU_SITE)
#define __shfl_xor_sync(mask, v, lane_mask) ::tidarc_emu::shfl_xor_f32((v), (lane_mask), TIDARC_EMU_SITE)
#define __threadfence() ::tidarc_emu::threadfence()
inline int atomicAdd(int* p, int v) { return ::tidarc_emu::atomic_add_i32(p, v); }

// ---- device math the kernels use ---------------------------------------------------------
template <class T> inline T min(T a, T b) { return b < a ? b : a; }
template <class T> inline T max(T a, T b) { return a < b ? b : a; }
using std::fmaxf;
using std::fminf;
inline float __log2f(float x) { return std::log2(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline uint32_t __float_as_uint(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }
// A product rounded to float that no compiler contracts into an fma with a following add
// (g++ contracts by default where the target has fma, e.g. aarch64); the store does that.
inline float __fmul_rn(float a, float b) { volatile float p = a * b; return p; }
struct float2 { float x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
struct __align__(16) float4 { float x, y, z, w; };
