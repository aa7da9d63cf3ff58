/*! tidarc emulator stand-in for <cuda_fp16.h>: the storage type and round-to-nearest-even
    conversions the kernels use (subnormals and infinities exact). */
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

struct __half { uint16_t bits; };
struct __half2 { __half x, y; };

inline float __half2float(__half h) {
  const uint32_t sign = (h.bits & 0x8000u) << 16, exp = (h.bits >> 10) & 0x1fu, man = h.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0x1f) u = sign | 0x7f800000u | (man << 13);
  else if (exp != 0) u = sign | ((exp + 112) << 23) | (man << 13);
  else if (man == 0) u = sign;
  else { float f = static_cast<float>(man) * 5.9604644775390625e-8f; return sign ? -f : f; }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __half __float2half_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return {static_cast<uint16_t>(sign | 0x7e00u)};
  if (abs >= 0x477ff000u) return {static_cast<uint16_t>(sign | 0x7c00u)};
  if (abs < 0x38800000u) return {static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(std::fabs(f) * 16777216.0f)))};
  uint32_t v = abs - 0x38000000u;
  v += 0xfffu + ((v >> 13) & 1u);
  return {static_cast<uint16_t>(sign | (v >> 13))};
}
inline __half2 __floats2half2_rn(float lo, float hi) { return {__float2half_rn(lo), __float2half_rn(hi)}; }
