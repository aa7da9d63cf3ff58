/*! tidarc device primitives on the SIMT emulator: the same names and signatures as the
    PTX versions in tidarc_device.cuh, implemented as collectives over the emulated warp.
    Each returns to every lane exactly what the hardware gives that lane (PTX ISA layouts). */
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace tidarc_emu {
enum class MmaType { bf16, fp16 };
void mma_m16n8k16(MmaType type, float d[4], const uint32_t a[4], const uint32_t b[2]);
/** ldmatrix.m8n8.x{count}[.trans].b16: lanes 8i..8i+7 give the row addresses of matrix i. */
void ldmatrix(int count, bool trans, uint32_t* r, const void* row);
void cp_async_16(void* dst, const void* src, bool valid);
void cp_async_commit();
void cp_async_wait(int pending_groups);
/** st.shared.v4.b32: 16 bytes into shared memory, bounds- and race-checked like a cp.async. */
void st_shared_16(void* dst, const uint32_t v[4]);
float fast_exp2(float x);
uint32_t shared_offset(const void* p);
/** Global stores and loads of words other CTAs of the launch read: tracked for the fence check. */
void st_global(void* p, const void* v, size_t n);
void ld_global(void* dst, const void* p, size_t n);
/** ld.acquire.gpu of a counter other CTAs count up: an acquire of the atomics on that word so far;
 *  a poll that re-reads one unchanged word kSpinPolls times is a "spin" finding (emu_global.cpp). */
int ld_acquire_i32(const int* p);
/** discard.global.L2 of the 128-byte line at p (128-byte aligned): its bytes become undefined
 *  (poisoned), and a later read of them in the launch is a "discard" finding (emu_global.cpp). */
void discard_l2(const void* p);

/** griddepcontrol.wait: the thread may touch global memory from now on, also in a programmatic
 *  launch (one made with the PDL attribute), where any earlier access to a device allocation is
 *  a "pdl" finding (emu_global.cpp). */
void grid_dependency_wait();
/** griddepcontrol.launch_dependents: legal anywhere in a kernel; the emulator records nothing. */
void grid_dependents_launch();
/** prefetch.global.L2: a hint (the line holding p into L2), legal before the wait; p must lie
 *  inside a device allocation ("out-of-bounds"). */
void prefetch_l2_line(const void* p);

// ---- Hopper (sm_90a): runtime/emu/emu_hopper_*.cpp; kernels use them through tidarc_hopper.cuh ----
/** The emulated CUtensorMap of a tiled tensor (what cuTensorMapEncodeTiled encodes), built on the
 *  host by encode_tensor_map (emu_hopper.h). Dimension 0 is the innermost. */
struct alignas(64) TensorMap {
  const void* base;
  uint32_t rank, elem_bytes, swizzle_bytes;  // swizzle: 0 (none), 32, 64 or 128
  uint32_t magic;                            // kTensorMapMagic once encoded
  uint64_t dims[5], strides[5];              // strides in bytes; strides[0] = elem_bytes
  uint32_t box[5];
};
constexpr uint32_t kTensorMapMagic = 0x544d4150;
// CUtensorMap's size and alignment: kernel argument structs holding one lay out alike on both sides.
static_assert(sizeof(TensorMap) == 128 && alignof(TensorMap) == 64, "TensorMap must match CUtensorMap");
void mbarrier_init(uint64_t* bar, uint32_t count);
void mbarrier_arrive(uint64_t* bar, uint32_t tx_bytes);  // tx_bytes > 0: arrive.expect_tx
bool mbarrier_try_wait(uint64_t* bar, uint32_t parity);
void tma_load(void* dst, const TensorMap* map, const int32_t* coords, int rank, uint64_t* bar);
void fence_proxy_async();
/** A wgmma matrix descriptor is built from smem_addr(p); this checks p (16-byte aligned, dynamic shared). */
void check_descriptor_address(const void* p);
/** wgmma.mma_async.m64nNk16: A from shared memory (desc_a) or registers (a != nullptr). */
void wgmma(MmaType type, int n, float* d, const uint32_t* a, uint64_t desc_a, uint64_t desc_b, bool trans_a, bool trans_b, bool accumulate);
void wgmma_fence();
void wgmma_commit();
void wgmma_wait(int pending_groups);
}  // namespace tidarc_emu

namespace tidarc {

template <typename T> struct Elem;
template <> struct Elem<__nv_bfloat16> {
  static inline uint32_t pack2(float lo, float hi) {
    return __float2bfloat16_rn(lo).bits | (static_cast<uint32_t>(__float2bfloat16_rn(hi).bits) << 16);
  }
  static inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static inline __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};
template <> struct Elem<__half> {
  static inline uint32_t pack2(float lo, float hi) {
    return __float2half_rn(lo).bits | (static_cast<uint32_t>(__float2half_rn(hi).bits) << 16);
  }
  static inline float to_float(__half x) { return __half2float(x); }
  static inline __half from_float(float x) { return __float2half_rn(x); }
};

template <typename T> inline void mma_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2]);
template <> inline void mma_m16n8k16<__nv_bfloat16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  tidarc_emu::mma_m16n8k16(tidarc_emu::MmaType::bf16, d, a, b);
}
template <> inline void mma_m16n8k16<__half>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  tidarc_emu::mma_m16n8k16(tidarc_emu::MmaType::fp16, d, a, b);
}

inline uint32_t smem_addr(const void* p) { return tidarc_emu::shared_offset(p); }
inline void ldmatrix_x1(uint32_t r[1], const void* row) { tidarc_emu::ldmatrix(1, false, r, row); }
inline void ldmatrix_x2(uint32_t r[2], const void* row) { tidarc_emu::ldmatrix(2, false, r, row); }
inline void ldmatrix_x4(uint32_t r[4], const void* row) { tidarc_emu::ldmatrix(4, false, r, row); }
inline void ldmatrix_x1_trans(uint32_t r[1], const void* row) { tidarc_emu::ldmatrix(1, true, r, row); }
inline void ldmatrix_x2_trans(uint32_t r[2], const void* row) { tidarc_emu::ldmatrix(2, true, r, row); }
inline void ldmatrix_x4_trans(uint32_t r[4], const void* row) { tidarc_emu::ldmatrix(4, true, r, row); }

inline void cp_async_16(void* dst, const void* src, bool valid) { tidarc_emu::cp_async_16(dst, src, valid); }
inline void cp_async_commit() { tidarc_emu::cp_async_commit(); }
template <int Pending> inline void cp_async_wait() { tidarc_emu::cp_async_wait(Pending); }
inline void st_shared_16(void* dst, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  const uint32_t v[4] = {a, b, c, d};
  tidarc_emu::st_shared_16(dst, v);
}

inline void st_global_f32(float* p, float x) { tidarc_emu::st_global(p, &x, 4); }
inline void st_global_f32x2(float* p, float x, float y) {
  const float v[2] = {x, y};
  tidarc_emu::st_global(p, v, 8);
}
inline float ld_global_cg_f32(const float* p) {
  float x;
  tidarc_emu::ld_global(&x, p, 4);
  return x;
}
inline int ld_acquire_gpu_i32(const int* p) { return tidarc_emu::ld_acquire_i32(p); }
inline void discard_l2_line(const void* p) { tidarc_emu::discard_l2(p); }
inline float4 ld_global_cg_f32x4(const float* p) {
  float4 v;
  tidarc_emu::ld_global(&v, p, 16);
  return v;
}

inline void grid_dependency_wait() { tidarc_emu::grid_dependency_wait(); }
inline void grid_dependents_launch() { tidarc_emu::grid_dependents_launch(); }
inline void prefetch_l2_line(const void* p) { tidarc_emu::prefetch_l2_line(p); }

inline float shfl_xor(float v, int mask) { return tidarc_emu::shfl_xor_f32(v, mask, "shfl_xor"); }
inline float fast_exp2(float x) { return tidarc_emu::fast_exp2(x); }

}  // namespace tidarc
