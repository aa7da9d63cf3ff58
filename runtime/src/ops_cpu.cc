// CPU operators of a transformer layer (see ops_cpu.h for the contracts). Plain C++ that GCC
// auto-vectorises (-O3 -march=native, set for this file in CMakeLists.txt), no intrinsics.
// Built with -ffp-contract=off: every fma is an explicit std::fma, so the scalar tails and the
// vector bodies round identically, and the elementwise formulas round like PyTorch's.
#include "ops_cpu.h"

#include "napi_guard.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tidarc {
namespace ops {
namespace {

// ---- thread pool ---------------------------------------------------------------------------

// Created on first use and reused by every call; never destroyed (joining idle workers during
// process exit could hang, and the OS reclaims them). One Run at a time: calls from several JS
// threads queue on run_mu_. The calling thread takes tasks too, so `threads` counts it.
// A helper joins a run only while it is open: once the caller has drained the tasks it closes
// the run and waits for the helpers that joined, never for one still waking up (a futex wake
// costs tens of microseconds on a VM: waiting for it made small calls slower on 2 threads than
// on 1).
class ThreadPool {
 public:
  static ThreadPool& Instance() {
    static ThreadPool* pool = new ThreadPool();
    return *pool;
  }

  int Size() const { return static_cast<int>(workers_.size()) + 1; }

  // fn(task) for task in [0, tasks), dynamically scheduled. The first exception thrown by a
  // task stops the handing out of new tasks and is rethrown here after all threads stopped.
  void Run(int64_t tasks, int threads, const std::function<void(int64_t)>& fn) {
    if (tasks <= 0) return;
    int use = static_cast<int>(std::min<int64_t>(std::min(threads, Size()), tasks));
    if (use <= 1) {
      for (int64_t t = 0; t < tasks; t++) fn(t);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      helpers_ = use - 1;
      active_ = 0;
      open_ = true;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    Drain();
    std::unique_lock<std::mutex> lock(mu_);
    open_ = false;
    done_.wait(lock, [this] { return active_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  ThreadPool() {
    unsigned hw = std::thread::hardware_concurrency();
    for (unsigned i = 1; i < std::max(hw, 1u); i++) workers_.emplace_back([this, i] { Loop(i - 1); });
  }

  void Drain() {
    for (;;) {
      int64_t t = next_.fetch_add(1);
      if (t >= tasks_) return;
      try {
        (*fn_)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(tasks_);
      }
    }
  }

  void Loop(unsigned index) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (!open_ || static_cast<int>(index) >= helpers_) continue;
        ++active_;
      }
      Drain();
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;
  int helpers_ = 0;
  int active_ = 0;  // helpers inside the open run
  bool open_ = false;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

// ---- element formats -----------------------------------------------------------------------

inline float BitsToFloat(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint32_t FloatToBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

struct F32Elem {
  using Elem = float;
  static float Get(float v) { return v; }
};
struct Bf16Elem {
  using Elem = uint16_t;
  static float Get(uint16_t h) { return BitsToFloat(static_cast<uint32_t>(h) << 16); }
};
struct Fp16Elem {
  using Elem = uint16_t;
  // Exact: the magnitude bits shifted into float32 position and scaled by 2^112 re-bias the
  // exponent (subnormals included); exponent 31 maps to inf/NaN with the payload kept.
  static float Get(uint16_t h) {
    uint32_t mag = static_cast<uint32_t>(h & 0x7fff) << 13;
    uint32_t b = FloatToBits(BitsToFloat(mag) * 0x1p112f);
    if ((h & 0x7c00) == 0x7c00) b = mag | 0x7f800000u;
    return BitsToFloat(b | (static_cast<uint32_t>(h & 0x8000) << 16));
  }
};

inline uint16_t F32ToBf16(float f) {
  uint32_t b = FloatToBits(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((b >> 16) & 0x8000) | 0x7fc0);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1)) >> 16);
}

inline uint16_t F32ToFp16(float f) {
  uint32_t b = FloatToBits(f);
  uint32_t sign = (b >> 16) & 0x8000;
  uint32_t a = b & 0x7fffffffu;
  uint32_t h;
  if (a > 0x7f800000u) {
    h = 0x7e00;                                  // NaN: canonical quiet NaN
  } else if (a >= 0x477ff000u) {
    h = 0x7c00;                                  // >= 65520 rounds to infinity
  } else if (a < 0x38800000u) {
    // Below 2^-14 (fp16 subnormal quantum 2^-24): adding 0.5 makes the FPU round to a
    // multiple of 2^-24 with ties to even; the low bits are then the fp16 pattern.
    h = FloatToBits(BitsToFloat(a) + 0.5f) - 0x3f000000u;
  } else {
    h = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1)) >> 13;  // re-bias, round to nearest even
  }
  return static_cast<uint16_t>(sign | h);
}

// ---- matmul ------------------------------------------------------------------------------

constexpr int kLanes = 16;   // summation lanes (the order contract of ops_cpu.h)
constexpr int kTileT = 5;    // token rows of a register tile
constexpr int kTileN = 5;    // weight rows of a register tile: 25 accumulators + operands
constexpr int kBlockN = 20;  // weight rows per task (a multiple of kTileN)
static_assert(kBlockN % kTileN == 0, "tile shapes");

// The fixed reduction of the 16 lanes.
inline float LaneTree(float* a) {
  for (int s = kLanes / 2; s >= 1; s /= 2) {
    for (int l = 0; l < s; l++) a[l] = a[l] + a[l + s];
  }
  return a[0];
}

// One register tile: RT token rows times RN weight rows over the whole K. The weights are
// decoded to fp32 in the loop, right before use: measured here (Zen 5, K = N = 4096, T = 272,
// one thread) 1.5x faster than decoding a block of rows to an fp32 buffer once and reusing it
// for all token tiles, because the bf16 rows halve the bytes each tile streams from L2.
template <class W, int RT, int RN>
inline void Tile(const float* __restrict x, int64_t K, const typename W::Elem* __restrict w,
                 const float* bias, float* __restrict dst, int64_t ldd) {
  float acc[RT][RN][kLanes] = {};
  const int64_t k16 = K - K % kLanes;
  for (int64_t k = 0; k < k16; k += kLanes) {
    float xv[RT][kLanes];
    float wv[RN][kLanes];
#pragma GCC unroll 8
    for (int i = 0; i < RT; i++)
#pragma GCC unroll 16
      for (int l = 0; l < kLanes; l++) xv[i][l] = x[i * K + k + l];
#pragma GCC unroll 8
    for (int j = 0; j < RN; j++)
#pragma GCC unroll 16
      for (int l = 0; l < kLanes; l++) wv[j][l] = W::Get(w[j * K + k + l]);
#pragma GCC unroll 8
    for (int i = 0; i < RT; i++)
#pragma GCC unroll 8
      for (int j = 0; j < RN; j++)
#pragma GCC unroll 16
        for (int l = 0; l < kLanes; l++) acc[i][j][l] = std::fma(xv[i][l], wv[j][l], acc[i][j][l]);
  }
  // K % 16 tail: lane l takes k16 + l, exactly as a full step would.
  for (int i = 0; i < RT; i++)
    for (int j = 0; j < RN; j++)
      for (int64_t l = 0; l < K - k16; l++)
        acc[i][j][l] = std::fma(x[i * K + k16 + l], W::Get(w[j * K + k16 + l]), acc[i][j][l]);
  for (int i = 0; i < RT; i++) {
    for (int j = 0; j < RN; j++) {
      float v = LaneTree(acc[i][j]);
      if (bias != nullptr) v += bias[j];
      dst[i * ldd + j] = v;
    }
  }
}

// RT token rows times nb weight rows: whole 5-row tiles, then single rows (same sums).
template <class W, int RT>
void TileRow(const float* x, int64_t K, const typename W::Elem* w, int nb, const float* bias,
             float* dst, int64_t ldd) {
  int j = 0;
  for (; j + kTileN <= nb; j += kTileN)
    Tile<W, RT, kTileN>(x, K, w + j * K, bias ? bias + j : nullptr, dst + j, ldd);
  for (; j < nb; j++) Tile<W, RT, 1>(x, K, w + j * K, bias ? bias + j : nullptr, dst + j, ldd);
}

// x W^T for all T token rows and a block of weight rows; shared by matmul and lmHead.
class MatMulPlan {
 public:
  MatMulPlan(const float* x, int64_t T, const WeightView& w, const float* bias)
      : x_(x), T_(T), K_(w.cols), w_(w), bias_(bias) {}

  // dst[t * ldd + j] = row t of x times weight row n0 + j (+ bias), t < T, j < nb <= kBlockN.
  // The 5-row token tiles run over the same weight rows, which stay in L2 between them.
  void Block(int64_t n0, int nb, float* dst, int64_t ldd) const {
    switch (w_.type) {
      case WeightType::kF32: return BlockOf<F32Elem>(n0, nb, dst, ldd);
      case WeightType::kBF16: return BlockOf<Bf16Elem>(n0, nb, dst, ldd);
      case WeightType::kFP16: return BlockOf<Fp16Elem>(n0, nb, dst, ldd);
    }
  }

 private:
  template <class W>
  void BlockOf(int64_t n0, int nb, float* dst, int64_t ldd) const {
    const auto* w = static_cast<const typename W::Elem*>(w_.data) + n0 * K_;
    const float* bias = bias_ != nullptr ? bias_ + n0 : nullptr;
    int64_t t = 0;
    for (; t + kTileT <= T_; t += kTileT) TileRow<W, kTileT>(x_ + t * K_, K_, w, nb, bias, dst + t * ldd, ldd);
    const float* x = x_ + t * K_;
    float* d = dst + t * ldd;
    switch (T_ - t) {
      case 1: return TileRow<W, 1>(x, K_, w, nb, bias, d, ldd);
      case 2: return TileRow<W, 2>(x, K_, w, nb, bias, d, ldd);
      case 3: return TileRow<W, 3>(x, K_, w, nb, bias, d, ldd);
      case 4: return TileRow<W, 4>(x, K_, w, nb, bias, d, ldd);
      default: return;
    }
  }

  const float* x_;
  int64_t T_;
  int64_t K_;
  WeightView w_;
  const float* bias_;
};

// Per-thread buffers, grown on demand and kept: no allocation in the steady state.
float* Grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

template <class F>
void ForWeightType(WeightType type, F&& f) {
  switch (type) {
    case WeightType::kF32: return f(F32Elem{});
    case WeightType::kBF16: return f(Bf16Elem{});
    case WeightType::kFP16: return f(Fp16Elem{});
  }
}

}  // namespace

int ResolveThreads(int threads) {
  int size = ThreadPool::Instance().Size();
  return threads <= 0 ? size : std::min(threads, size);
}

void MatMul(const float* x, int64_t T, const WeightView& w, const float* bias, float* out,
            int threads) {
  if (T <= 0 || w.rows <= 0) return;
  MatMulPlan plan(x, T, w, bias);
  const int64_t N = w.rows;
  ThreadPool::Instance().Run((N + kBlockN - 1) / kBlockN, ResolveThreads(threads), [&](int64_t b) {
    const int64_t n0 = b * kBlockN;
    plan.Block(n0, static_cast<int>(std::min<int64_t>(kBlockN, N - n0)), out + n0, N);
  });
}

// ---- lm_head ------------------------------------------------------------------------------

namespace {
// Vocabulary rows per lmHead task; a fixed multiple of kBlockN, so the per-block partial
// maxima and sums (and thus lse) do not depend on the thread count or the other rows.
constexpr int kLmBlock = 12 * kBlockN;

struct Partial {
  float max;
  int32_t argmax;
  double sum;  // sum of exp(logit - max) over the block
};

// a beats b: larger, or NaN over a number (torch.argmax treats NaN as the maximum); ties keep b.
inline bool Beats(float a, float b) { return a > b || (std::isnan(a) && !std::isnan(b)); }
}  // namespace

void LmHead(const float* x, int64_t T, const WeightView& w, const int32_t* rows, int64_t R,
            const LmHeadOut& out, int threads) {
  const int64_t V = w.rows;
  const int64_t H = w.cols;
  if (R <= 0 || V <= 0) return;
  thread_local std::vector<float> gathered;
  float* xr = Grow(gathered, static_cast<size_t>(R * H));
  for (int64_t r = 0; r < R; r++) {
    if (rows[r] < 0 || rows[r] >= T) throw std::out_of_range("lmHead: row index out of range");
    std::memcpy(xr + r * H, x + static_cast<int64_t>(rows[r]) * H, H * sizeof(float));
  }
  MatMulPlan plan(xr, R, w, nullptr);
  const int64_t blocks = (V + kLmBlock - 1) / kLmBlock;
  std::vector<Partial> parts(static_cast<size_t>(blocks * R));
  ThreadPool::Instance().Run(blocks, ResolveThreads(threads), [&](int64_t b) {
    const int64_t v0 = b * kLmBlock;
    const int vn = static_cast<int>(std::min<int64_t>(kLmBlock, V - v0));
    float* dst;
    int64_t ldd;
    if (out.logits != nullptr) {
      dst = out.logits + v0;
      ldd = V;
    } else {
      thread_local std::vector<float> tile;
      dst = Grow(tile, static_cast<size_t>(R) * kLmBlock);
      ldd = kLmBlock;
    }
    for (int j = 0; j < vn; j += kBlockN) plan.Block(v0 + j, std::min(kBlockN, vn - j), dst + j, ldd);
    for (int64_t r = 0; r < R; r++) {
      const float* row = dst + r * ldd;
      Partial p{row[0], static_cast<int32_t>(v0), 0.0};
      for (int j = 1; j < vn; j++) {
        if (Beats(row[j], p.max)) {
          p.max = row[j];
          p.argmax = static_cast<int32_t>(v0 + j);
        }
      }
      if (std::isfinite(p.max)) {
        for (int j = 0; j < vn; j++) p.sum += std::exp(row[j] - p.max);
      }
      parts[b * R + r] = p;
    }
  });
  for (int64_t r = 0; r < R; r++) {
    Partial best = parts[r];
    for (int64_t b = 1; b < blocks; b++) {
      if (Beats(parts[b * R + r].max, best.max)) best = parts[b * R + r];
    }
    float lse = best.max;  // NaN, +inf, or -inf when every logit is -inf
    if (std::isfinite(best.max)) {
      double s = 0.0;
      for (int64_t b = 0; b < blocks; b++) {
        const Partial& p = parts[b * R + r];
        if (std::isfinite(p.max)) s += p.sum * std::exp(static_cast<double>(p.max) - best.max);
      }
      lse = static_cast<float>(best.max + std::log(s));
    }
    out.argmax[r] = best.argmax;
    out.max_logit[r] = best.max;
    out.lse[r] = lse;
  }
}

// ---- norms, rope, elementwise -------------------------------------------------------------

namespace {
template <class W>
void RmsNormRows(const float* x, int64_t rows, int64_t H, const typename W::Elem* w, float eps,
                 float* out) {
  for (int64_t t = 0; t < rows; t++) {
    const float* xr = x + t * H;
    // Sum of squares in float64 over 8 fixed lanes: accurate and vectorisable.
    double lane[8] = {};
    const int64_t h8 = H - H % 8;
    for (int64_t h = 0; h < h8; h += 8)
      for (int l = 0; l < 8; l++) lane[l] += static_cast<double>(xr[h + l]) * xr[h + l];
    for (int64_t h = h8; h < H; h++) lane[h - h8] += static_cast<double>(xr[h]) * xr[h];
    const double ss = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(H) + eps));
    float* o = out + t * H;
    for (int64_t h = 0; h < H; h++) o[h] = W::Get(w[h]) * (xr[h] * inv);  // HF: weight * (x * rsqrt)
  }
}
}  // namespace

void RmsNorm(const float* x, int64_t T, const WeightView& w, float eps, float* out) {
  const int64_t H = w.rows * w.cols;
  if (H <= 0) return;
  ForWeightType(w.type, [&](auto tag) {
    using W = decltype(tag);
    RmsNormRows<W>(x, T, H, static_cast<const typename W::Elem*>(w.data), eps, out);
  });
}

void RopeInvFreq(const RopeParams& p, float* inv_freq) {
  const int64_t half = p.head_dim / 2;
  const double kTwoPi = 6.283185307179586;
  for (int64_t i = 0; i < half; i++) {
    double f = 1.0 / std::pow(p.theta, static_cast<double>(2 * i) / static_cast<double>(p.head_dim));
    if (p.scaling == RopeScaling::kLinear) {
      f /= p.factor;
    } else if (p.scaling == RopeScaling::kLlama3) {
      // transformers' _compute_llama3_parameters: keep high frequencies, divide low ones by
      // factor, interpolate in between.
      const double low_wavelen = p.original_max_positions / p.low_freq_factor;
      const double high_wavelen = p.original_max_positions / p.high_freq_factor;
      const double wavelen = kTwoPi / f;
      if (wavelen > low_wavelen) {
        f = f / p.factor;
      } else if (!(wavelen < high_wavelen)) {
        const double smooth = (p.original_max_positions / wavelen - p.low_freq_factor) /
                              (p.high_freq_factor - p.low_freq_factor);
        f = (1 - smooth) * f / p.factor + smooth * f;
      }
    }
    inv_freq[i] = static_cast<float>(f);
  }
}

void Rope(float* x, int64_t T, int64_t heads, const int32_t* positions, const RopeParams& p) {
  const int64_t D = p.head_dim;
  const int64_t half = D / 2;
  thread_local std::vector<float> table;
  float* inv = Grow(table, static_cast<size_t>(half * 3));
  float* cs = inv + half;
  float* sn = cs + half;
  RopeInvFreq(p, inv);
  for (int64_t t = 0; t < T; t++) {
    // Like HF: the angle is a float32 product; cos/sin of it are rounded once to float32.
    const float pos = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; i++) {
      const double angle = static_cast<double>(pos * inv[i]);
      cs[i] = static_cast<float>(std::cos(angle));
      sn[i] = static_cast<float>(std::sin(angle));
    }
    for (int64_t h = 0; h < heads; h++) {
      float* v = x + (t * heads + h) * D;
      for (int64_t i = 0; i < half; i++) {
        const float a = v[i];
        const float b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];         // x * cos + rotate_half(x) * sin, first half
        v[i + half] = b * cs[i] + a * sn[i];  // second half
      }
    }
  }
}

void SiluMul(const float* gate, const float* up, float* out, int64_t n, int threads) {
  constexpr int64_t kChunk = 1 << 15;
  auto run = [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];  // torch: silu(g) = g / (1 + exp(-g))
    }
  };
  if (n < 2 * kChunk) return run(0, n);
  ThreadPool::Instance().Run((n + kChunk - 1) / kChunk, ResolveThreads(threads), [&](int64_t c) {
    run(c * kChunk, std::min(n, (c + 1) * kChunk));
  });
}

void ToBf16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = F32ToBf16(x[i]);
}

void ToFp16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = F32ToFp16(x[i]);
}

// ---- Node-API bindings --------------------------------------------------------------------
// The typed wrappers in src/runtime/ops.ts check every size first and name the argument;
// these checks repeat the ones that guard memory, so that a direct call can never read or
// write out of bounds. Every failure is a JS exception.

namespace {

[[noreturn]] void Fail(Napi::Env env, const std::string& op, const std::string& msg) {
  throw Napi::RangeError::New(env, op + ": " + msg);
}

template <class T>
struct Span {
  T* data;
  int64_t size;
};

template <class T>
Span<T> Typed(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name,
              napi_typedarray_type type, const char* type_name) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": " + name + " must be " + type_name);
  }
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return {a.Data(), static_cast<int64_t>(a.ElementLength())};
}

Span<float> F32Arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  return Typed<float>(info, i, op, name, napi_float32_array, "a Float32Array");
}
Span<int32_t> I32Arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  return Typed<int32_t>(info, i, op, name, napi_int32_array, "an Int32Array");
}
Span<uint16_t> U16Arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  return Typed<uint16_t>(info, i, op, name, napi_uint16_array, "a Uint16Array");
}
bool IsNullish(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(op) + ": " + name + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name,
               int64_t lo, int64_t hi) {
  double d = NumberArg(info, i, op, name);
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || std::floor(d) != d) {
    Fail(info.Env(), op, std::string(name) + " must be an integer from " + std::to_string(lo) +
                             " to " + std::to_string(hi) + ", got " + std::to_string(d));
  }
  return static_cast<int64_t>(d);
}

// rows * cols of any weight then fits in int64 (and typed arrays are shorter anyway).
constexpr int64_t kMaxDim = int64_t{1} << 31;

// Byte ranges, to refuse outputs that overlap inputs they are computed from.
template <class A>
Span<const void> Bytes(const Span<A>& s) {
  return {s.data, s.size * static_cast<int64_t>(sizeof(A))};
}
bool OverlapBytes(const Span<const void>& a, const Span<const void>& b) {
  const char* a0 = static_cast<const char*>(a.data);
  const char* b0 = static_cast<const char*>(b.data);
  return a.size > 0 && b.size > 0 && a0 < b0 + b.size && b0 < a0 + a.size;
}


// Weight: data (Float32Array or Uint16Array), dtype string, rows, cols at info[i..i+3].
WeightView WeightArg(const Napi::CallbackInfo& info, size_t i, const char* op, Span<const void>* span) {
  Napi::Env env = info.Env();
  if (!info[i + 1].IsString()) throw Napi::TypeError::New(env, std::string(op) + ": dtype must be a string");
  const std::string dtype = info[i + 1].As<Napi::String>().Utf8Value();
  WeightView w{};
  w.rows = IntArg(info, i + 2, op, "rows", 0, kMaxDim);
  w.cols = IntArg(info, i + 3, op, "cols", 0, kMaxDim);
  int64_t length;
  if (dtype == "f32") {
    auto s = F32Arg(info, i, op, "weight data (dtype f32)");
    w.data = s.data;
    w.type = WeightType::kF32;
    length = s.size;
    *span = Bytes(s);
  } else if (dtype == "bf16" || dtype == "fp16") {
    auto s = U16Arg(info, i, op, "weight data (dtype bf16/fp16)");
    w.data = s.data;
    w.type = dtype == "bf16" ? WeightType::kBF16 : WeightType::kFP16;
    length = s.size;
    *span = Bytes(s);
  } else {
    throw Napi::TypeError::New(env, std::string(op) + ": dtype must be 'bf16', 'fp16' or 'f32', got '" + dtype + "'");
  }
  if (length != w.rows * w.cols) {
    Fail(env, op, "weight has " + std::to_string(length) + " elements, expected rows * cols = " +
                      std::to_string(w.rows * w.cols));
  }
  return w;
}

void RequireLength(Napi::Env env, const char* op, const char* name, int64_t got, int64_t want,
                   const std::string& what) {
  if (got != want) {
    Fail(env, op, std::string(name) + " has " + std::to_string(got) + " elements, expected " + what +
                      " = " + std::to_string(want));
  }
}

int ThreadsArg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (info.Length() <= i || info[i].IsUndefined()) return 0;
  return static_cast<int>(IntArg(info, i, op, "threads", 0, 1 << 16));
}

// matmul(x, wData, dtype, rows, cols, bias | null, out, threads)
Napi::Value MatMulJs(const Napi::CallbackInfo& info) {
  const char* op = "matmul";
  Napi::Env env = info.Env();
  auto x = F32Arg(info, 0, op, "x");
  Span<const void> wb{};
  WeightView w = WeightArg(info, 1, op, &wb);
  Span<float> bias{nullptr, 0};
  if (!IsNullish(info[5])) bias = F32Arg(info, 5, op, "bias");
  auto out = F32Arg(info, 6, op, "out");
  int threads = ThreadsArg(info, 7, op);
  if (w.cols == 0) Fail(env, op, "cols (K) must be at least 1");
  if (x.size % w.cols != 0) Fail(env, op, "x has " + std::to_string(x.size) + " elements, not a multiple of cols = " + std::to_string(w.cols));
  const int64_t T = x.size / w.cols;
  if (bias.data != nullptr) RequireLength(env, op, "bias", bias.size, w.rows, "rows");
  RequireLength(env, op, "out", out.size, T * w.rows, "T * rows");
  if (OverlapBytes(Bytes(out), Bytes(x)) || OverlapBytes(Bytes(out), wb) || OverlapBytes(Bytes(out), Bytes(bias))) {
    Fail(env, op, "out must not overlap x, the weight or bias");
  }
  MatMul(x.data, T, w, bias.data, out.data, threads);
  return env.Undefined();
}

// rmsnorm(x, wData, dtype, eps, out) and rmsnormHeads(x, wData, dtype, eps): rows of the
// weight's length (H, or head_dim for the per-head QK-norm); the latter writes x in place.
Napi::Value RmsNormCall(const Napi::CallbackInfo& info, const char* op, bool in_place) {
  Napi::Env env = info.Env();
  auto x = F32Arg(info, 0, op, "x");
  if (!info[2].IsString()) throw Napi::TypeError::New(env, std::string(op) + ": dtype must be a string");
  const std::string dtype = info[2].As<Napi::String>().Utf8Value();
  WeightView w{};
  Span<const void> wb{};
  if (dtype == "f32") {
    auto s = F32Arg(info, 1, op, "weight data (dtype f32)");
    w = {s.data, WeightType::kF32, 1, s.size};
    wb = Bytes(s);
  } else if (dtype == "bf16" || dtype == "fp16") {
    auto s = U16Arg(info, 1, op, "weight data (dtype bf16/fp16)");
    w = {s.data, dtype == "bf16" ? WeightType::kBF16 : WeightType::kFP16, 1, s.size};
    wb = Bytes(s);
  } else {
    throw Napi::TypeError::New(env, std::string(op) + ": dtype must be 'bf16', 'fp16' or 'f32', got '" + dtype + "'");
  }
  const double eps = NumberArg(info, 3, op, "eps");
  Span<float> out = in_place ? x : F32Arg(info, 4, op, "out");
  const int64_t len = w.cols;
  if (len == 0) Fail(env, op, "the weight must not be empty");
  if (x.size % len != 0) {
    Fail(env, op, "x has " + std::to_string(x.size) + " elements, not a multiple of the weight length " + std::to_string(len));
  }
  RequireLength(env, op, "out", out.size, x.size, "x.length");
  if (OverlapBytes(Bytes(out), wb) || (out.data != x.data && OverlapBytes(Bytes(out), Bytes(x)))) {
    Fail(env, op, "out must be x itself or not overlap x, and must not overlap the weight");
  }
  RmsNorm(x.data, x.size / len, w, static_cast<float>(eps), out.data);
  return env.Undefined();
}

Napi::Value RmsNormJs(const Napi::CallbackInfo& info) { return RmsNormCall(info, "rmsnorm", false); }
Napi::Value RmsNormHeadsJs(const Napi::CallbackInfo& info) { return RmsNormCall(info, "rmsnormHeads", true); }

// RoPE parameters at info[i..i+6]: theta, headDim, scaling (0 none, 1 linear, 2 llama3),
// factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings.
RopeParams RopeParamsAt(const Napi::CallbackInfo& info, size_t i, const char* op) {
  RopeParams p{};
  p.theta = NumberArg(info, i, op, "theta");
  p.head_dim = IntArg(info, i + 1, op, "headDim", 2, 1 << 20);
  const int64_t kind = IntArg(info, i + 2, op, "scaling", 0, 2);
  p.scaling = kind == 0 ? RopeScaling::kNone : kind == 1 ? RopeScaling::kLinear : RopeScaling::kLlama3;
  p.factor = NumberArg(info, i + 3, op, "factor");
  p.low_freq_factor = NumberArg(info, i + 4, op, "lowFreqFactor");
  p.high_freq_factor = NumberArg(info, i + 5, op, "highFreqFactor");
  p.original_max_positions = NumberArg(info, i + 6, op, "originalMaxPositionEmbeddings");
  if (p.head_dim % 2 != 0) Fail(info.Env(), op, "headDim must be even");
  return p;
}

// rope(x, positions, theta, headDim, scaling, factor, low, high, origMax)
Napi::Value RopeJs(const Napi::CallbackInfo& info) {
  const char* op = "rope";
  Napi::Env env = info.Env();
  auto x = F32Arg(info, 0, op, "x");
  auto pos = I32Arg(info, 1, op, "positions");
  const RopeParams p = RopeParamsAt(info, 2, op);
  const int64_t T = pos.size;
  if (T == 0) {
    RequireLength(env, op, "x", x.size, 0, "positions.length * heads * headDim");
    return env.Undefined();
  }
  if (x.size % (T * p.head_dim) != 0) {
    Fail(env, op, "x has " + std::to_string(x.size) + " elements, not a multiple of positions.length * headDim = " +
                      std::to_string(T * p.head_dim));
  }
  Rope(x.data, T, x.size / (T * p.head_dim), pos.data, p);
  return env.Undefined();
}

// ropeInvFreq(out, theta, headDim, scaling, factor, low, high, origMax): the float32 inverse
// frequencies Rope uses, for backends that apply RoPE elsewhere (the GPU operators).
Napi::Value RopeInvFreqJs(const Napi::CallbackInfo& info) {
  const char* op = "ropeInvFreq";
  Napi::Env env = info.Env();
  auto out = F32Arg(info, 0, op, "out");
  const RopeParams p = RopeParamsAt(info, 1, op);
  RequireLength(env, op, "out", out.size, p.head_dim / 2, "headDim / 2");
  RopeInvFreq(p, out.data);
  return env.Undefined();
}

// siluMul(gate, up, out, threads)
Napi::Value SiluMulJs(const Napi::CallbackInfo& info) {
  const char* op = "siluMul";
  Napi::Env env = info.Env();
  auto gate = F32Arg(info, 0, op, "gate");
  auto up = F32Arg(info, 1, op, "up");
  auto out = F32Arg(info, 2, op, "out");
  int threads = ThreadsArg(info, 3, op);
  RequireLength(env, op, "up", up.size, gate.size, "gate.length");
  RequireLength(env, op, "out", out.size, gate.size, "gate.length");
  SiluMul(gate.data, up.data, out.data, gate.size, threads);
  return env.Undefined();
}

// addInPlace(x, y): x += y
Napi::Value AddInPlaceJs(const Napi::CallbackInfo& info) {
  const char* op = "addInPlace";
  Napi::Env env = info.Env();
  auto x = F32Arg(info, 0, op, "x");
  auto y = F32Arg(info, 1, op, "y");
  RequireLength(env, op, "y", y.size, x.size, "x.length");
  for (int64_t i = 0; i < x.size; i++) x.data[i] += y.data[i];
  return env.Undefined();
}

// embed(ids, tableData, dtype, rows (V), cols (H), out)
Napi::Value EmbedJs(const Napi::CallbackInfo& info) {
  const char* op = "embed";
  Napi::Env env = info.Env();
  auto ids = I32Arg(info, 0, op, "ids");
  Span<const void> tb{};
  WeightView w = WeightArg(info, 1, op, &tb);
  auto out = F32Arg(info, 5, op, "out");
  RequireLength(env, op, "out", out.size, ids.size * w.cols, "ids.length * cols");
  if (OverlapBytes(Bytes(out), tb) || OverlapBytes(Bytes(out), Bytes(ids))) {
    Fail(env, op, "out must not overlap the table or ids");
  }
  for (int64_t t = 0; t < ids.size; t++) {
    if (ids.data[t] < 0 || ids.data[t] >= w.rows) {
      Fail(env, op, "ids[" + std::to_string(t) + "] = " + std::to_string(ids.data[t]) +
                        " is outside the vocabulary [0, " + std::to_string(w.rows) + ")");
    }
  }
  const int64_t H = w.cols;
  ForWeightType(w.type, [&](auto tag) {
    using W = decltype(tag);
    const auto* table = static_cast<const typename W::Elem*>(w.data);
    for (int64_t t = 0; t < ids.size; t++) {
      const auto* row = table + static_cast<int64_t>(ids.data[t]) * H;
      float* o = out.data + t * H;
      for (int64_t h = 0; h < H; h++) o[h] = W::Get(row[h]);
    }
  });
  return env.Undefined();
}

// toBf16(x, out) / toFp16(x, out)
template <void (*Convert)(const float*, uint16_t*, int64_t)>
Napi::Value To16Js(const Napi::CallbackInfo& info) {
  const char* op = Convert == &ToBf16 ? "toBf16" : "toFp16";
  auto x = F32Arg(info, 0, op, "x");
  auto out = U16Arg(info, 1, op, "out");
  RequireLength(info.Env(), op, "out", out.size, x.size, "x.length");
  if (OverlapBytes(Bytes(out), Bytes(x))) Fail(info.Env(), op, "out must not overlap x");
  Convert(x.data, out.data, x.size);
  return info.Env().Undefined();
}

// lmHead(x, wData, dtype, rows (V), cols (H), rowIds, argmax, maxLogit, lse, logits | null, threads)
Napi::Value LmHeadJs(const Napi::CallbackInfo& info) {
  const char* op = "lmHead";
  Napi::Env env = info.Env();
  auto x = F32Arg(info, 0, op, "x");
  Span<const void> wb{};
  WeightView w = WeightArg(info, 1, op, &wb);
  auto rows = I32Arg(info, 5, op, "rows");
  auto argmax = I32Arg(info, 6, op, "argmax");
  auto max_logit = F32Arg(info, 7, op, "maxLogit");
  auto lse = F32Arg(info, 8, op, "lse");
  Span<float> logits{nullptr, 0};
  if (!IsNullish(info[9])) logits = F32Arg(info, 9, op, "logits");
  int threads = ThreadsArg(info, 10, op);
  if (w.cols == 0 || w.rows == 0) Fail(env, op, "the weight must have at least one row and one column");
  if (x.size % w.cols != 0) Fail(env, op, "x has " + std::to_string(x.size) + " elements, not a multiple of cols = " + std::to_string(w.cols));
  const int64_t T = x.size / w.cols;
  const int64_t R = rows.size;
  RequireLength(env, op, "argmax", argmax.size, R, "rows.length");
  RequireLength(env, op, "maxLogit", max_logit.size, R, "rows.length");
  RequireLength(env, op, "lse", lse.size, R, "rows.length");
  if (logits.data != nullptr) {
    RequireLength(env, op, "logits", logits.size, R * w.rows, "rows.length * vocab");
    if (OverlapBytes(Bytes(logits), Bytes(x)) || OverlapBytes(Bytes(logits), wb)) {
      Fail(env, op, "logits must not overlap x or the weight");
    }
  }
  for (int64_t r = 0; r < R; r++) {
    if (rows.data[r] < 0 || rows.data[r] >= T) {
      Fail(env, op, "rows[" + std::to_string(r) + "] = " + std::to_string(rows.data[r]) +
                        " is outside the token rows [0, " + std::to_string(T) + ")");
    }
  }
  LmHead(x.data, T, w, rows.data, R, {argmax.data, max_logit.data, lse.data, logits.data}, threads);
  return env.Undefined();
}

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  return tidarc::GuardedCall<F>(info, "tidarc cpu ops");
}

Napi::Value HardwareThreadsJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ThreadPool::Instance().Size());
}

}  // namespace

void RegisterCpuOps(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("matmul", Napi::Function::New(env, Guarded<MatMulJs>, "matmul"));
  o.Set("rmsnorm", Napi::Function::New(env, Guarded<RmsNormJs>, "rmsnorm"));
  o.Set("rmsnormHeads", Napi::Function::New(env, Guarded<RmsNormHeadsJs>, "rmsnormHeads"));
  o.Set("rope", Napi::Function::New(env, Guarded<RopeJs>, "rope"));
  o.Set("ropeInvFreq", Napi::Function::New(env, Guarded<RopeInvFreqJs>, "ropeInvFreq"));
  o.Set("siluMul", Napi::Function::New(env, Guarded<SiluMulJs>, "siluMul"));
  o.Set("addInPlace", Napi::Function::New(env, Guarded<AddInPlaceJs>, "addInPlace"));
  o.Set("embed", Napi::Function::New(env, Guarded<EmbedJs>, "embed"));
  o.Set("toBf16", Napi::Function::New(env, Guarded<To16Js<ToBf16>>, "toBf16"));
  o.Set("toFp16", Napi::Function::New(env, Guarded<To16Js<ToFp16>>, "toFp16"));
  o.Set("lmHead", Napi::Function::New(env, Guarded<LmHeadJs>, "lmHead"));
  o.Set("threadCount", Napi::Function::New(env, Guarded<HardwareThreadsJs>, "threadCount"));
  exports.Set("cpuOps", o);
}

}  // namespace ops
}  // namespace tidarc
