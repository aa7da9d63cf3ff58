// tidarc_cpu::exp2_poly (templates/cpu/tidarc_cpu_attention.h) against std::exp2 on every float
// in [-126, 128), plus the edge cases the online softmax relies on. Standalone (no vitest: it
// needs only g++), built with the CPU backend's flags:
//   g++ -O3 -march=native -std=c++17 -I templates/common -I templates/cpu
//       test/codegen/cpu-exp2-sweep.cpp -o /tmp/cpu-exp2-sweep && /tmp/cpu-exp2-sweep
// (also with -march=x86-64-v3 and -march=x86-64: the same bound must hold without AVX-512/FMA).
// Exit status 0 when the largest relative error is below 1e-6 and every edge case holds.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "tidarc_cpu_attention.h"

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Worst {
  double vs_std = 0, vs_exact = 0;  // relative error against std::exp2(float) and exp2(double)
  float at_std = 0, at_exact = 0;
};

// Evaluates exp2_poly the way the kernel does (a vectorised loop over a row), then compares.
void sweep(uint32_t first, uint32_t last, Worst& w, uint64_t& count) {
  constexpr uint32_t kChunk = 1 << 16;
  std::vector<float> x(kChunk), y(kChunk);
  for (uint64_t b0 = first; b0 <= last; b0 += kChunk) {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kChunk, last - b0 + 1));
    for (uint32_t k = 0; k < n; ++k) x[k] = from_bits(static_cast<uint32_t>(b0 + k));
    float* __restrict yp = y.data();
    const float* __restrict xp = x.data();
    for (uint32_t k = 0; k < n; ++k) yp[k] = tidarc_cpu::exp2_poly(xp[k]);
    for (uint32_t k = 0; k < n; ++k) {
      const float ref = std::exp2(x[k]);
      const double exact = std::exp2(static_cast<double>(x[k]));
      if (ref < std::numeric_limits<float>::min() || std::isinf(ref)) continue;  // subnormal/overflow: edge cases
      const double e_std = std::fabs(static_cast<double>(y[k]) - ref) / ref;
      const double e_exact = std::fabs(static_cast<double>(y[k]) - exact) / exact;
      if (!(e_std <= w.vs_std)) w.vs_std = e_std, w.at_std = x[k];  // NaN counts as worst
      if (!(e_exact <= w.vs_exact)) w.vs_exact = e_exact, w.at_exact = x[k];
    }
    count += n;
  }
}

int failures = 0;
void expect(bool ok, const char* what, float x, float got) {
  if (!ok) {
    std::printf("FAIL: %s (x = %.9g, exp2_poly = %.9g)\n", what, x, got);
    ++failures;
  }
}

}  // namespace

int main() {
  using tidarc_cpu::exp2_poly;
  const float inf = std::numeric_limits<float>::infinity();
  Worst w;
  uint64_t count = 0;
  sweep(0x80000000u, 0xC2FC0000u, w, count);  // -0 .. -126: the softmax's domain (x = s - max <= 0)
  sweep(0x00000000u, 0x42FFFFFFu, w, count);  // +0 .. just below 128
  std::printf("exp2_poly vs std::exp2 over %llu floats in [-126, 128): max relative error %.3g (x = %.9g); "
              "vs exp2 in double %.3g (x = %.9g)\n",
              static_cast<unsigned long long>(count), w.vs_std, w.at_std, w.vs_exact, w.at_exact);
  if (!(w.vs_std < 1e-6)) {
    std::printf("FAIL: relative error %.3g >= 1e-6\n", w.vs_std);
    ++failures;
  }

  expect(exp2_poly(-inf) == 0.f && !std::signbit(exp2_poly(-inf)), "exp2(-inf) is +0", -inf, exp2_poly(-inf));
  for (float x : {-126.0001f, -127.f, -149.f, -1e6f, -3.4e38f})
    expect(exp2_poly(x) == 0.f, "exp2(x < -126) is 0", x, exp2_poly(x));
  expect(exp2_poly(0.f) == 1.f && exp2_poly(-0.f) == 1.f, "exp2(0) is 1", 0.f, exp2_poly(0.f));
  for (int i = -126; i <= 127; ++i)
    expect(exp2_poly(static_cast<float>(i)) == std::ldexp(1.f, i), "exp2(integer) is exact", static_cast<float>(i),
           exp2_poly(static_cast<float>(i)));
  expect(std::isnan(exp2_poly(std::numeric_limits<float>::quiet_NaN())), "exp2(NaN) is NaN", NAN,
         exp2_poly(std::numeric_limits<float>::quiet_NaN()));
  for (float x : {128.f, 1000.f, 3.4e38f, inf}) expect(exp2_poly(x) == inf, "exp2(x >= 128) is +inf", x, exp2_poly(x));
  expect(std::isfinite(exp2_poly(127.99f)), "exp2(127.99) is finite", 127.99f, exp2_poly(127.99f));
  std::printf(failures ? "%d check(s) failed\n" : "all edge cases hold\n", failures);
  return failures ? 1 : 0;
}
