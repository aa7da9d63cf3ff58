/*! tidarc Hopper primitives on the SIMT emulator: the names and signatures of tidarc_hopper.cuh's
    PTX versions (included from there under TIDARC_EMULATOR), forwarding to emu_hopper_*.cpp. */
#pragma once
#include "tidarc_emu_device.h"

#ifndef __grid_constant__
#define __grid_constant__
#endif

namespace tidarc {

using TensorMap = tidarc_emu::TensorMap;

inline void mbarrier_init(uint64_t* bar, uint32_t count) { tidarc_emu::mbarrier_init(bar, count); }
inline void fence_barrier_init() {}
inline void mbarrier_arrive(uint64_t* bar) { tidarc_emu::mbarrier_arrive(bar, 0); }
inline void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) { tidarc_emu::mbarrier_arrive(bar, bytes); }
inline bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) { return tidarc_emu::mbarrier_try_wait(bar, parity); }

inline void tma_load_2d(void* dst, const TensorMap* map, int32_t c0, int32_t c1, uint64_t* bar) {
  const int32_t c[2] = {c0, c1};
  tidarc_emu::tma_load(dst, map, c, 2, bar);
}
inline void tma_load_3d(void* dst, const TensorMap* map, int32_t c0, int32_t c1, int32_t c2, uint64_t* bar) {
  const int32_t c[3] = {c0, c1, c2};
  tidarc_emu::tma_load(dst, map, c, 3, bar);
}
inline void fence_proxy_async() { tidarc_emu::fence_proxy_async(); }
inline void check_descriptor_address(const void* p) { tidarc_emu::check_descriptor_address(p); }

/** Register reallocation between warpgroups: the emulator has no register file, so nothing to do. */
template <int Registers> inline void setmaxnreg_inc() {}
template <int Registers> inline void setmaxnreg_dec() {}

// The caller's file and line (defaults evaluated at the call): bar.sync / bar.arrive are .aligned,
// so every lane of a warp must arrive through the same one (emu_runtime.cpp named_barrier).
inline void named_barrier_sync(uint32_t id, uint32_t threads, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  tidarc_emu::named_barrier(static_cast<int>(id), static_cast<int>(threads), true, "bar.sync", file, line);
}
inline void named_barrier_arrive(uint32_t id, uint32_t threads, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  tidarc_emu::named_barrier(static_cast<int>(id), static_cast<int>(threads), false, "bar.arrive", file, line);
}
// The kernels' form (tidarc_hopper.cuh: the id and count are immediates on the device).
template <uint32_t Id, uint32_t Threads> inline void named_barrier_sync(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  named_barrier_sync(Id, Threads, file, line);
}
template <uint32_t Id, uint32_t Threads> inline void named_barrier_arrive(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  named_barrier_arrive(Id, Threads, file, line);
}

inline void wgmma_fence() { tidarc_emu::wgmma_fence(); }
inline void wgmma_commit() { tidarc_emu::wgmma_commit(); }
template <int Pending> inline void wgmma_wait() { tidarc_emu::wgmma_wait(Pending); }
/** The emulator's accumulators are memory written at the wait (a call the compiler cannot move reads across): nothing to pin. */
template <int N> inline void wgmma_fence_operand(float (&)[N]) {}

template <typename T> constexpr tidarc_emu::MmaType kMmaType = tidarc_emu::MmaType::bf16;
template <> constexpr tidarc_emu::MmaType kMmaType<__half> = tidarc_emu::MmaType::fp16;

template <typename T, int N, bool TransA, bool TransB>
inline void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  tidarc_emu::wgmma(kMmaType<T>, N, d, nullptr, desc_a, desc_b, TransA, TransB, accumulate);
}
template <typename T, int N, bool TransB>
inline void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
  tidarc_emu::wgmma(kMmaType<T>, N, d, a, 0, desc_b, false, TransB, accumulate);
}

}  // namespace tidarc
