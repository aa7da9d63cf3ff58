/*! tidarc device primitives: the ONLY inline PTX in generated kernels. Every warp- or
    block-level operation a kernel uses goes through this header, so that a CPU
    emulator can stand in for it by providing the same names. */
#pragma once
#ifdef TIDARC_EMULATOR
#include "tidarc_emu_device.h"  // runtime/emu: the same primitives on the CPU SIMT emulator
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace tidarc {

// ---- element types --------------------------------------------------------------
template <typename T> struct Elem;
template <> struct Elem<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};
template <> struct Elem<__half> {
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
};

// ---- tensor cores: D = A(16x16, row) * B(16x8, col) + D, fp32 accumulate -----------
// Fragment layouts (PTX ISA, mma.m16n8k16): with g = lane / 4 and t = lane % 4,
//   a[0]: (g, 2t..2t+1)  a[1]: (g+8, 2t..)  a[2]: (g, 2t+8..)  a[3]: (g+8, 2t+8..)
//   b[0]: (k = 2t..2t+1, n = g)  b[1]: (k = 2t+8.., n = g)
//   d[0..1]: (g, 2t..2t+1)  d[2..3]: (g+8, 2t..2t+1)
template <typename T> __device__ __forceinline__ void mma_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2]);

template <> __device__ __forceinline__ void mma_m16n8k16<__nv_bfloat16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma_m16n8k16<__half>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// ---- shared -> registers: lanes 8i..8i+7 give the 8 row addresses of matrix i ------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void ldmatrix_x1(uint32_t r[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t r[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(row)));
}

// ---- global -> shared, asynchronous, 16 bytes; zero-fills when !valid ---------------
// Zero fill matters: a masked key still multiplies its V row by p = 0, and 0 * NaN
// from stale memory would poison the output.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
               :: "r"(smem_addr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int Pending> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" :: "n"(Pending));
}

// ---- registers -> shared, 16 bytes (data a kernel converts on its way in, e.g. fp32 -> 16-bit);
// a primitive, not a plain store, so the emulator checks it for races like a cp.async.
__device__ __forceinline__ void st_shared_16(void* dst, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  asm volatile("st.shared.v4.b32 [%0], {%1,%2,%3,%4};\n" :: "r"(smem_addr(dst)), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}

// ---- global words another CTA of the launch reads (split-KV partials) ------------------
// Plain stores, and loads through L2 (ld.global.cg: never a stale L1 line); primitives so that
// the emulator checks the fences and atomics between the CTAs (runtime/emu/emu_global.cpp).
__device__ __forceinline__ void st_global_f32(float* p, float x) { *p = x; }
__device__ __forceinline__ void st_global_f32x2(float* p, float x, float y) { *reinterpret_cast<float2*>(p) = make_float2(x, y); }
__device__ __forceinline__ float ld_global_cg_f32(const float* p) { return __ldcg(p); }
__device__ __forceinline__ float4 ld_global_cg_f32x4(const float* p) { return __ldcg(reinterpret_cast<const float4*>(p)); }
// Drops a 128-byte line (128-byte aligned) from L2 without writing it back: its contents become
// undefined (discard.global.L2, sm_80+). For scratch no one reads again: the merge's consumed
// split partials, which would otherwise cost HBM bandwidth when later launches evict them.
__device__ __forceinline__ void discard_l2_line(const void* p) { asm volatile("discard.global.L2 [%0], 128;\n" :: "l"(p) : "memory"); }
// A counter another CTA counts up (the split merge's wait): ld.acquire.gpu orders this thread's
// later loads after the counts it observes, so one load per poll and no fence after it.
__device__ __forceinline__ int ld_acquire_gpu_i32(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// ---- programmatic dependent launch (PDL) and an L2 line prefetch, sm_90+ ----------------------
// griddepcontrol (PTX ISA): wait blocks the thread until every prerequisite grid has completed and
// its memory is visible; launch_dependents lets the next kernel of the stream be scheduled once every
// CTA of this grid issued it or exited. Both are no-ops in a launch without the PDL attribute, and
// compile to nothing below sm_90 (so such a binary must never be launched with the attribute).
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_dependents_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// A hint: the 128-byte L2 line holding p into L2 (prefetch.global.L2); never changes a result and
// needs no alignment. One thread, one line: unlike cp.async.bulk.prefetch.L2 (uniform operands:
// ptxas wraps a per-thread address in an R2UR loop, one pass per distinct address of a warp), its
// address stays in the thread's registers, so a warp issues 32 lines in one instruction.
// Under the same guard as the PDL primitives (sm_90+): below sm_90 there is no wait to hide it
// behind (a kernel's own cp.async prologue starts its weight stream at once), so it is empty there
// and the sm_80/86/89 code is unchanged.
__device__ __forceinline__ void prefetch_l2_line(const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("prefetch.global.L2 [%0];\n" :: "l"(p) : "memory");
#else
  (void)p;
#endif
}

// ---- warp shuffles and math -----------------------------------------------------------
__device__ __forceinline__ float shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace tidarc
#endif  // TIDARC_EMULATOR
