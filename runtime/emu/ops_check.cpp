/*! tidarc GPU operators on the SIMT emulator: every kernel of templates/cuda/tidarc_ops.cu,
    launched with the geometry tidarc_ops_abi.h states, on small odd shapes (tails of every
    tile, rows past a block, both 16-bit formats and float32) against a plain C++ reference
    written here (the 16-bit formats from their definition, not ops_cpu.cc's bit tricks).
    Prints one JSON line per check {"op","case","maxError","ok"}, then the emulator's findings;
    exits 1 when a check failed or the emulator found anything. Built with the kernels by
    test/runtime/cuda/ops-kernels.test.ts. `ops_check --programmatic` launches every kernel as a
    programmatic dependent launch (PDL: a global access before a thread's grid_dependency_wait is
    a "pdl" finding). */
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "emu_runtime.h"
#include "tidarc_ops_abi.h"

extern "C" void tidarc_op_embed(TidarcEmbedArgs a);
extern "C" void tidarc_op_rmsnorm(TidarcRmsNormArgs a);
extern "C" void tidarc_op_matmul(TidarcMatmulArgs a);
extern "C" void tidarc_op_silu_mul(TidarcSiluMulArgs a);
extern "C" void tidarc_op_gelu(TidarcGeluArgs a);
extern "C" void tidarc_op_rope_pack(TidarcRopePackArgs a);
extern "C" void tidarc_op_to_float(TidarcToFloatArgs a);
extern "C" void tidarc_op_kv_commit(TidarcKvCommitArgs a);
extern "C" void tidarc_op_row_stats(TidarcRowStatsArgs a);

namespace {

using tidarc_emu::dim3;
using std::vector;

constexpr double kTolerance = 1e-5;  // rmsnorm, silu, lse: relative, against float64
int g_failures = 0;
bool g_programmatic = false;  // --programmatic: every launch a programmatic dependent launch

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  return buf;
}

void report(const char* op, const std::string& name, double max_error, bool ok, const std::string& extra = "") {
  if (!std::isfinite(max_error)) max_error = 1e30;  // JSON has no inf / NaN
  std::printf("{\"op\":\"%s\",\"case\":\"%s\",\"maxError\":%.6g,\"ok\":%s%s}\n", op, name.c_str(), max_error, ok ? "true" : "false", extra.c_str());
  if (!ok) g_failures++;
}

// ---- launching ---------------------------------------------------------------------------

template <class A, void (*Kernel)(A)>
void entry(void* p) { Kernel(*static_cast<A*>(p)); }

template <class A, void (*Kernel)(A)>
void run(const char* name, dim3 grid, dim3 block, A args) {
  if (!tidarc_emu::launch(name, grid, block, 0, entry<A, Kernel>, &args, g_programmatic)) report(name, "launch", 1, false);
}
#define RUN(kernel, grid, block, args) run<decltype(args), kernel>(#kernel, grid, block, args)

// A global buffer of exactly n elements (guard pages right after it), poisoned with 0xff
// bytes (NaN) so elements a kernel never writes show.
template <class T>
T* device(const char* name, size_t n) {
  void* p = tidarc_emu::alloc_global(name, std::max<size_t>(n, 1) * sizeof(T));
  std::memset(p, 0xff, std::max<size_t>(n, 1) * sizeof(T));
  return static_cast<T*>(p);
}
template <class T>
T* upload(const char* name, const vector<T>& v) {
  T* p = device<T>(name, v.size());
  std::memcpy(p, v.data(), v.size() * sizeof(T));
  return p;
}

// ---- data ---------------------------------------------------------------------------------

struct Rng {  // splitmix64
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(static_cast<double>(next() >> 40) * 0x1p-24); }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  vector<float> floats(size_t n, float lo, float hi) {
    vector<float> v(n);
    for (float& x : v) x = uniform(lo, hi);
    return v;
  }
};

float bits_float(uint32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
uint32_t float_bits(float f) { uint32_t b; std::memcpy(&b, &f, 4); return b; }

// ---- the 16-bit formats from their definition ------------------------------------------------

struct Format {
  const char* name;
  int32_t dtype;
  int exp_bits, man_bits;
  uint16_t quiet_nan;  // what a float NaN becomes (ops_cpu.cc's canonical NaN)
  int bias() const { return (1 << (exp_bits - 1)) - 1; }
  uint16_t inf() const { return static_cast<uint16_t>(((1 << exp_bits) - 1) << man_bits); }
};
const Format kBf16{"bf16", TIDARC_DTYPE_BF16, 8, 7, 0x7fc0};
const Format kFp16{"fp16", TIDARC_DTYPE_FP16, 5, 10, 0x7e00};

// Magnitude of a sign-less finite pattern; the infinity pattern stands for 2^(bias + 1), the
// value an exponent one past the largest would have (where rounding overflows).
double magnitude(uint16_t p, const Format& f) {
  const int e = p >> f.man_bits, m = p & ((1 << f.man_bits) - 1);
  if (e == 0) return std::ldexp(m, 1 - f.bias() - f.man_bits);
  return std::ldexp(m + (1 << f.man_bits), e - f.bias() - f.man_bits);
}

float decode(uint16_t h, const Format& f) {
  const uint16_t p = h & 0x7fff;
  const uint32_t sign = static_cast<uint32_t>(h >> 15) << 31;
  if (p >= f.inf()) return bits_float(sign | 0x7f800000u | (static_cast<uint32_t>(p & ((1 << f.man_bits) - 1)) << (23 - f.man_bits)));
  const float v = static_cast<float>(magnitude(p, f));
  return sign ? -v : v;
}

// Nearest pattern, ties to the even one, overflow to infinity.
uint16_t encode(float x, const Format& f) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return sign | f.quiet_nan;
  const double a = std::fabs(static_cast<double>(x));
  uint16_t lo = 0, hi = f.inf();  // largest p with magnitude(p) <= a, by bisection
  if (a >= magnitude(hi, f)) return sign | f.inf();
  while (hi - lo > 1) {
    const uint16_t mid = static_cast<uint16_t>((lo + hi) / 2);
    (magnitude(mid, f) <= a ? lo : hi) = mid;
  }
  const double below = a - magnitude(lo, f), above = magnitude(lo + 1, f) - a;
  const uint16_t p = below < above || (below == above && lo % 2 == 0) ? lo : static_cast<uint16_t>(lo + 1);
  return sign | p;
}

vector<uint16_t> encode_all(const vector<float>& v, const Format& f) {
  vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = encode(v[i], f);
  return out;
}

// ---- errors ------------------------------------------------------------------------------

// 0 when the bits agree; otherwise the relative difference, or 1 where there is none (NaN
// payloads, signed zeros, infinities).
double bit_error(float got, float want) {
  if (float_bits(got) == float_bits(want)) return 0;
  if (!std::isfinite(got) || !std::isfinite(want) || want == 0) return 1;
  return std::fabs(static_cast<double>(got) - want) / std::fabs(static_cast<double>(want));
}

double rel_error(float got, double want, double floor = 1e-6) {
  if (std::isnan(want)) return std::isnan(got) ? 0 : 1;
  if (std::isinf(want)) return got == want ? 0 : 1;
  return std::fabs(got - want) / std::max(std::fabs(want), floor);
}

// A weight buffer in one format: the values the kernel sees (decoded) and the bytes it reads.
struct Weights {
  vector<float> values;
  vector<uint16_t> bits;
  const void* upload_to(const char* name) const { return bits.empty() ? static_cast<const void*>(upload(name, values)) : upload(name, bits); }
};
Weights weights(Rng& rng, size_t n, int32_t dtype, float lo = -1, float hi = 1) {
  Weights w{rng.floats(n, lo, hi), {}};
  if (dtype == TIDARC_DTYPE_F32) return w;
  const Format& f = dtype == TIDARC_DTYPE_BF16 ? kBf16 : kFp16;
  w.bits = encode_all(w.values, f);
  for (size_t i = 0; i < n; i++) w.values[i] = decode(w.bits[i], f);
  return w;
}
const char* dtype_name(int32_t dtype) { return dtype == TIDARC_DTYPE_BF16 ? "bf16" : dtype == TIDARC_DTYPE_FP16 ? "fp16" : "f32"; }

// ---- checks ------------------------------------------------------------------------------

void check_to_float() {
  for (const Format* f : {&kBf16, &kFp16}) {
    vector<uint16_t> all(65536);
    for (size_t i = 0; i < all.size(); i++) all[i] = static_cast<uint16_t>(i);
    TidarcToFloatArgs a{upload("x", all), device<float>("out", all.size()), static_cast<int64_t>(all.size()), f->dtype, 0};
    RUN(tidarc_op_to_float, dim3((all.size() + 255) / 256), dim3(256), a);
    double err = 0;
    for (size_t i = 0; i < all.size(); i++) err = std::max(err, bit_error(a.out[i], decode(all[i], *f)));
    report("to_float", fmt("every %s pattern", f->name), err, err == 0);
    tidarc_emu::free_globals();
  }
}

// Float32 values at the edges of the 16-bit formats: ties, overflow, subnormals, NaNs.
vector<float> conversion_edges() {
  vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 1 + 0x1p-8f, 1 + 3 * 0x1p-8f, 1 + 0x1p-11f, 1 + 3 * 0x1p-11f, -(1 + 3 * 0x1p-9f),
                     65504.0f, 65519.0f, 65520.0f, -65520.0f, 65536.0f, 1e5f, 0x1p-14f, 0x1p-24f, 0x1p-25f, 3 * 0x1p-25f,
                     -5 * 0x1p-25f, 0x1p-26f, 1.5f * 0x1p-24f, 1e-40f, -1e-45f, 0x1p-126f, 3.14159265f, -2.71828183f};
  for (uint32_t b : {0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffc12345u, 0x7f7fffffu, 0x7f7f7fffu, 0x7f7f8000u,
                     0x7f7e8000u, 0x477fefffu, 0x477ff000u, 0x38800000u, 0x387fffffu, 0x33000000u, 0x33000001u})
    v.push_back(bits_float(b));
  return v;
}

void check_rope_pack() {
  struct Case { int rows, q_heads, kv_heads, head_dim; const Format* out; float theta; };
  const Case cases[] = {{3, 3, 1, 10, &kBf16, 10000}, {17, 2, 2, 64, &kFp16, 1e6f}, {2, 1, 1, 258, &kBf16, 10000}, {1, 4, 2, 128, &kFp16, 5e5f}};
  Rng rng{7};
  for (const Case& c : cases) {
    const int half = c.head_dim / 2;
    vector<float> q = rng.floats(static_cast<size_t>(c.rows) * c.q_heads * c.head_dim, -2, 2);
    vector<float> k = rng.floats(static_cast<size_t>(c.rows) * c.kv_heads * c.head_dim, -2, 2);
    vector<float> v = rng.floats(static_cast<size_t>(c.rows) * c.kv_heads * c.head_dim, -70000, 70000);
    const vector<float> edges = conversion_edges();
    for (size_t i = 0; i < v.size(); i++) v[i] = i < edges.size() ? edges[i] : (i % 3 == 0 ? v[i] * 1e-9f : v[i]);
    vector<int32_t> pos(c.rows);
    for (int t = 0; t < c.rows; t++) pos[t] = t == 0 ? 0 : t == 1 ? 131071 : rng.below(40000);
    vector<float> inv(half);
    for (int i = 0; i < half; i++) inv[i] = static_cast<float>(1.0 / std::pow(static_cast<double>(c.theta), 2.0 * i / c.head_dim));
    TidarcRopePackArgs a{upload("q", q), upload("k", k), upload("v", v), upload("positions", pos), upload("inv_freq", inv),
                         device<uint16_t>("q_out", q.size()), device<uint16_t>("k_out", k.size()), device<uint16_t>("v_out", v.size()),
                         c.rows, c.q_heads, c.kv_heads, c.head_dim, c.out->dtype, 0};
    RUN(tidarc_op_rope_pack, dim3(c.rows), dim3(128), a);
    // ops_cpu.cc's Rope then its 16-bit rounding: the angle a float32 product, cos and sin of
    // it rounded once, every product rounded before the add.
    double err = 0;
    auto rotated = [&](const vector<float>& x, const uint16_t* got, int heads) {
      for (int t = 0; t < c.rows; t++)
        for (int h = 0; h < heads; h++)
          for (int i = 0; i < half; i++) {
            const size_t at = (static_cast<size_t>(t) * heads + h) * c.head_dim;
            const double angle = static_cast<double>(static_cast<float>(pos[t]) * inv[i]);
            const float cs = static_cast<float>(std::cos(angle)), sn = static_cast<float>(std::sin(angle));
            const float x1 = x[at + i], x2 = x[at + i + half];
            const float r1 = __fmul_rn(x1, cs) - __fmul_rn(x2, sn), r2 = __fmul_rn(x2, cs) + __fmul_rn(x1, sn);
            err = std::max(err, bit_error(decode(got[at + i], *c.out), decode(encode(r1, *c.out), *c.out)));
            err = std::max(err, bit_error(decode(got[at + i + half], *c.out), decode(encode(r2, *c.out), *c.out)));
          }
    };
    rotated(q, a.q_out, c.q_heads);
    rotated(k, a.k_out, c.kv_heads);
    const std::string shape = fmt("rows %d, heads %d+%d, head_dim %d, %s", c.rows, c.q_heads, c.kv_heads, c.head_dim, c.out->name);
    report("rope_pack", "q, k: " + shape, err, err == 0);
    double verr = 0;
    for (size_t i = 0; i < v.size(); i++) verr = std::max(verr, bit_error(decode(a.v_out[i], *c.out), decode(encode(v[i], *c.out), *c.out)));
    report("rope_pack", "v (rounding edges, NaN, inf, subnormals): " + shape, verr, verr == 0);
    tidarc_emu::free_globals();
  }
}

void check_embed() {
  struct Case { int rows, cols; int32_t dtype; };
  const Case cases[] = {{3, 65, TIDARC_DTYPE_BF16}, {17, 130, TIDARC_DTYPE_FP16}, {1, 64, TIDARC_DTYPE_F32}, {5, 300, TIDARC_DTYPE_BF16}};
  Rng rng{11};
  const int vocab = 11;
  for (const Case& c : cases) {
    const Weights table = weights(rng, static_cast<size_t>(vocab) * c.cols, c.dtype, -3, 3);
    vector<int32_t> ids(c.rows);
    for (int t = 0; t < c.rows; t++) ids[t] = t == 1 ? -1 : t == 2 ? vocab : rng.below(vocab);  // ids outside the vocabulary give zeros
    TidarcEmbedArgs a{upload("ids", ids), table.upload_to("table"), device<float>("out", static_cast<size_t>(c.rows) * c.cols), c.rows, c.cols, vocab, c.dtype};
    RUN(tidarc_op_embed, dim3(c.rows), dim3(256), a);
    double err = 0;
    for (int t = 0; t < c.rows; t++)
      for (int j = 0; j < c.cols; j++) {
        const bool known = ids[t] >= 0 && ids[t] < vocab;
        err = std::max(err, bit_error(a.out[static_cast<size_t>(t) * c.cols + j], known ? table.values[static_cast<size_t>(ids[t]) * c.cols + j] : 0.0f));
      }
    report("embed", fmt("rows %d, cols %d, %s, ids -1 and vocab", c.rows, c.cols, dtype_name(c.dtype)), err, err == 0);
    tidarc_emu::free_globals();
  }
}

void check_rmsnorm() {
  Rng rng{13};
  const int32_t dtypes[] = {TIDARC_DTYPE_BF16, TIDARC_DTYPE_FP16, TIDARC_DTYPE_F32};
  int n = 0;
  for (int rows : {1, 3, 17})
    for (int cols : {64, 65, 130, 300}) {
      const int32_t dtype = dtypes[n % 3];
      const bool in_place = n++ % 2 == 1;
      const vector<float> x = rng.floats(static_cast<size_t>(rows) * cols, -4, 4);
      const Weights w = weights(rng, cols, dtype, 0.5f, 1.5f);
      const float eps = 1e-6f;
      float* xd = upload("x", x);
      TidarcRmsNormArgs a{xd, w.upload_to("w"), in_place ? xd : device<float>("out", x.size()), rows, cols, eps, dtype, TIDARC_DTYPE_F32, 0};
      RUN(tidarc_op_rmsnorm, dim3(rows), dim3(256), a);
      const float* out = static_cast<const float*>(a.out);
      double err = 0;
      for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int j = 0; j < cols; j++) ss += static_cast<double>(x[r * cols + j]) * x[r * cols + j];
        const double inv = 1.0 / std::sqrt(ss / cols + eps);
        for (int j = 0; j < cols; j++) err = std::max(err, rel_error(out[r * cols + j], w.values[j] * (x[r * cols + j] * inv)));
      }
      report("rmsnorm", fmt("rows %d, cols %d, %s%s", rows, cols, dtype_name(dtype), in_place ? ", in place" : ""), err, err <= kTolerance);
      tidarc_emu::free_globals();
    }
}

void check_silu_mul() {
  Rng rng{17};
  for (int64_t count : {1, 255, 256, 257, 1000}) {
    const bool in_place = count == 257;
    const vector<float> gate = rng.floats(count, -12, 12), up = rng.floats(count, -3, 3);
    float* g = upload("gate", gate);
    TidarcSiluMulArgs a{g, upload("up", up), in_place ? g : device<float>("out", count), count, TIDARC_DTYPE_F32, 0};
    RUN(tidarc_op_silu_mul, dim3((count + 255) / 256), dim3(256), a);
    const float* out = static_cast<const float*>(a.out);
    double err = 0;
    for (int64_t i = 0; i < count; i++) err = std::max(err, rel_error(out[i], gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i]));
    report("silu_mul", fmt("count %lld%s", static_cast<long long>(count), in_place ? ", in place" : ""), err, err <= kTolerance);
    tidarc_emu::free_globals();
  }
}

void check_gelu() {
  Rng rng{19};
  for (int64_t count : {1, 255, 256, 257, 1000}) {
    const bool in_place = count == 257;
    const vector<float> x = rng.floats(count, -8, 8);
    float* in = upload("x", x);
    TidarcGeluArgs a{in, in_place ? in : device<float>("out", count), count, TIDARC_DTYPE_F32, 0};
    RUN(tidarc_op_gelu, dim3((count + 255) / 256), dim3(256), a);
    const float* out = static_cast<const float*>(a.out);
    // Relative to |x|: 0.5 x (1 + tanh) cancels for x << 0, where tanhf's ulp of 1 is all that is left.
    double err = 0;
    for (int64_t i = 0; i < count; i++) {
      const double v = x[i], want = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
      err = std::max(err, std::fabs(out[i] - want) / std::max(std::fabs(v), 1e-6));
    }
    report("gelu", fmt("count %lld%s", static_cast<long long>(count), in_place ? ", in place" : ""), err, err <= kTolerance);
    tidarc_emu::free_globals();
  }
}

void check_kv_commit() {
  struct Case { int step_rows, from, count, slot, kv_heads, capacity, head_dim; };
  const Case cases[] = {{9, 2, 5, 7, 2, 40, 65}, {1, 0, 1, 0, 1, 3, 128}, {17, 16, 1, 39, 3, 40, 8}};
  Rng rng{19};
  for (const Case& c : cases) {
    const size_t step = static_cast<size_t>(c.step_rows) * c.kv_heads * c.head_dim, cache = static_cast<size_t>(c.kv_heads) * c.capacity * c.head_dim;
    vector<uint16_t> ks(step), vs(step), kc(cache), vc(cache);
    for (auto* v : {&ks, &vs, &kc, &vc})
      for (uint16_t& e : *v) e = static_cast<uint16_t>(rng.next());
    TidarcKvCommitArgs a{upload("k_step", ks), upload("v_step", vs), upload("k_cache", kc), upload("v_cache", vc),
                         c.from, c.count, c.slot, c.kv_heads, c.capacity, c.head_dim};
    RUN(tidarc_op_kv_commit, dim3(c.count, c.kv_heads), dim3(64), a);
    size_t wrong = 0;
    for (int h = 0; h < c.kv_heads; h++)
      for (int s = 0; s < c.capacity; s++)
        for (int d = 0; d < c.head_dim; d++) {
          const size_t at = (static_cast<size_t>(h) * c.capacity + s) * c.head_dim + d;
          const bool committed = s >= c.slot && s < c.slot + c.count;
          const size_t from = (static_cast<size_t>(c.from + s - c.slot) * c.kv_heads + h) * c.head_dim + d;
          wrong += a.k_cache[at] != (committed ? ks[from] : kc[at]);
          wrong += a.v_cache[at] != (committed ? vs[from] : vc[at]);
        }
    report("kv_commit", fmt("rows [%d, %d) to slot %d, kv_heads %d, capacity %d, head_dim %d", c.from, c.from + c.count, c.slot, c.kv_heads, c.capacity, c.head_dim),
           static_cast<double>(wrong), wrong == 0);
    tidarc_emu::free_globals();
  }
}

void check_row_stats() {
  Rng rng{23};
  const float inf = INFINITY, nan = NAN;
  for (int cols : {1, 65, 300, 1000}) {
    // Rows: random; a repeated maximum; two NaNs; +inf; all -inf; -inf mixed in; huge values.
    const int rows = 7;
    vector<float> x = rng.floats(static_cast<size_t>(rows) * cols, -20, 20);
    auto row = [&](int r) { return x.data() + static_cast<size_t>(r) * cols; };
    row(1)[cols / 3] = 50, row(1)[cols - 1] = 50;
    row(2)[cols / 2] = nan, row(2)[cols - 1] = bits_float(0xffc00001u);
    row(3)[cols - 1] = inf;
    std::fill(row(4), row(4) + cols, -inf);
    for (int j = 0; j < cols; j += 2) row(5)[j] = -inf;
    for (int j = 0; j < cols; j++) row(6)[j] = row(6)[j] * 1e36f;
    TidarcRowStatsArgs a{upload("logits", x), device<int32_t>("argmax", rows), device<float>("max_logit", rows), device<float>("lse", rows), rows, cols};
    RUN(tidarc_op_row_stats, dim3(rows), dim3(256), a);
    double err = 0;
    size_t wrong = 0;
    for (int r = 0; r < rows; r++) {
      const float* v = row(r);
      int best = 0;  // first maximum; a NaN beats every number, the first NaN every later one
      for (int j = 1; j < cols; j++)
        if (v[j] > v[best] || (std::isnan(v[j]) && !std::isnan(v[best]))) best = j;
      const double m = v[best];
      double lse = m;
      if (std::isfinite(m)) {
        double s = 0;
        for (int j = 0; j < cols; j++) s += std::exp(static_cast<double>(v[j]) - m);
        lse = m + std::log(s);
      }
      wrong += a.argmax[r] != best || float_bits(a.max_logit[r]) != float_bits(v[best]);
      err = std::max(err, rel_error(a.lse[r], lse, 1.0));
    }
    report("row_stats", fmt("cols %d: ties, NaN, inf, all -inf, 1e36 scale", cols), err, wrong == 0 && err <= kTolerance,
           fmt(",\"argmaxOrMaxWrong\":%zu", wrong));
    tidarc_emu::free_globals();
  }
}

// ---- matmul ------------------------------------------------------------------------------

struct MatmulCase { int rows, n, k; int32_t dtype; bool bias, row_ids, accumulate; };

struct MatmulData {
  vector<float> x, bias, old;
  Weights w;
  vector<int32_t> ids;
  int x_rows;
};

MatmulData matmul_data(Rng& rng, const MatmulCase& c) {
  MatmulData d;
  d.x_rows = c.rows + 3;  // row_ids gather from more rows than they name
  d.x = rng.floats(static_cast<size_t>(d.x_rows) * c.k, -1, 1);
  d.w = weights(rng, static_cast<size_t>(c.n) * c.k, c.dtype);
  d.bias = rng.floats(c.n, -1, 1);
  d.old = rng.floats(static_cast<size_t>(c.rows) * c.n, -1, 1);
  for (int r = 0; r < c.rows; r++) d.ids.push_back(c.row_ids ? (r * 7 + 2) % d.x_rows : r);
  return d;
}

float* launch_matmul(const MatmulCase& c, const MatmulData& d, const float* x) {
  TidarcMatmulArgs a{x, d.w.upload_to("w"), c.bias ? upload("bias", d.bias) : nullptr, c.row_ids ? upload("row_ids", d.ids) : nullptr,
                     c.accumulate ? upload("out", d.old) : device<float>("out", static_cast<size_t>(c.rows) * c.n),
                     c.rows, c.n, c.k, c.dtype, c.accumulate, TIDARC_DTYPE_F32};
  RUN(tidarc_op_matmul, dim3((c.n + 63) / 64, (c.rows + 15) / 16), dim3(256), a);
  return a.out;
}

void check_matmul_case(Rng& rng, const MatmulCase& c) {
  const MatmulData d = matmul_data(rng, c);
  const float* out = launch_matmul(c, d, upload("x", d.x));
  double err = 0;
  size_t mismatches = 0;
  for (int r = 0; r < c.rows; r++) {
    const float* x = d.x.data() + static_cast<size_t>(d.ids[r]) * c.k;
    for (int n = 0; n < c.n; n++) {
      const float* w = d.w.values.data() + static_cast<size_t>(n) * c.k;
      float chain = 0.0f;  // the header's order: one fma chain in k, then bias, then the old out
      double exact = 0, scale = 0;
      for (int j = 0; j < c.k; j++) {
        chain = std::fma(x[j], w[j], chain);
        exact += static_cast<double>(x[j]) * w[j];
        scale += std::fabs(static_cast<double>(x[j]) * w[j]);
      }
      if (c.bias) chain += d.bias[n], exact += d.bias[n], scale += std::fabs(d.bias[n]);
      const float old = d.old[static_cast<size_t>(r) * c.n + n];
      if (c.accumulate) chain += old, exact += old, scale += std::fabs(old);
      const float got = out[static_cast<size_t>(r) * c.n + n];
      mismatches += float_bits(got) != float_bits(chain);
      err = std::max(err, std::fabs(got - exact) / std::max(scale, 1e-30));
    }
  }
  const std::string name = fmt("rows %d, n %d, k %d, %s%s%s%s", c.rows, c.n, c.k, dtype_name(c.dtype), c.bias ? ", bias" : "",
                               c.row_ids ? ", row_ids" : "", c.accumulate ? ", accumulate" : "");
  report("matmul", name, err, mismatches == 0 && err <= kTolerance, fmt(",\"mismatches\":%zu", mismatches));
  tidarc_emu::free_globals();
}

// A row's result must not depend on `rows` (greedy TiDAR == AR): row r computed alone
// equals row r of a 17-row launch, bit for bit.
void check_matmul_row_independence(Rng& rng, int32_t dtype, int k) {
  const MatmulCase all{17, 70, k, dtype, true, false, false};
  const MatmulData d = matmul_data(rng, all);
  const float* x = upload("x", d.x);
  const float* together = launch_matmul(all, d, x);
  size_t mismatches = 0;
  double err = 0;
  for (int r : {0, 1, 8, 15, 16}) {
    const float* alone = launch_matmul({1, all.n, k, dtype, true, false, false}, d, x + static_cast<size_t>(r) * k);
    for (int n = 0; n < all.n; n++) {
      const float a = alone[n], b = together[static_cast<size_t>(r) * all.n + n];
      mismatches += float_bits(a) != float_bits(b);
      err = std::max(err, bit_error(a, b));
    }
  }
  report("matmul", fmt("row-independence: rows 0,1,8,15,16 alone == inside rows 17, n 70, k %d, %s", k, dtype_name(dtype)), err,
         mismatches == 0, fmt(",\"mismatches\":%zu", mismatches));
  tidarc_emu::free_globals();
}

// 16-bit activations (x_dtype bf16 / fp16, what the cuda step graph stores for a linear's
// input): bitwise the float32 launch over the same values widened.
void check_matmul_x16(Rng& rng, const Format& f) {
  const MatmulCase c{17, 70, 130, f.dtype, true, true, false};
  MatmulData d = matmul_data(rng, c);
  const vector<uint16_t> bits = encode_all(d.x, f);
  for (size_t i = 0; i < bits.size(); i++) d.x[i] = decode(bits[i], f);
  const float* wide = launch_matmul(c, d, upload("x", d.x));
  TidarcMatmulArgs a{upload("x16", bits), d.w.upload_to("w16"), upload("bias16", d.bias), upload("row_ids16", d.ids),
                     device<float>("out16", static_cast<size_t>(c.rows) * c.n), c.rows, c.n, c.k, c.dtype, 0, f.dtype};
  RUN(tidarc_op_matmul, dim3((c.n + 63) / 64, (c.rows + 15) / 16), dim3(256), a);
  size_t mismatches = 0;
  for (size_t i = 0; i < static_cast<size_t>(c.rows) * c.n; i++) mismatches += float_bits(a.out[i]) != float_bits(wide[i]);
  report("matmul", fmt("x %s == x float32 of the same values, rows 17, n 70, k 130, bias, row_ids", f.name), mismatches, mismatches == 0, fmt(",\"mismatches\":%zu", mismatches));
  tidarc_emu::free_globals();
}

// An op storing its output 16-bit (out_dtype) writes exactly the rounding (nearest even) of
// what it writes as float32: `launch(out_dtype)` returns the output buffer.
template <class Launch>
void check_out16(const char* op, const std::string& name, size_t count, Launch launch) {
  for (const Format* f : {&kBf16, &kFp16}) {
    const float* wide = static_cast<const float*>(launch(TIDARC_DTYPE_F32));
    const uint16_t* narrow = static_cast<const uint16_t*>(launch(f->dtype));
    size_t mismatches = 0;
    for (size_t i = 0; i < count; i++) mismatches += narrow[i] != encode(wide[i], *f);
    report(op, fmt("%s, out %s == round(out float32)", name.c_str(), f->name), mismatches, mismatches == 0, fmt(",\"mismatches\":%zu", mismatches));
  }
  tidarc_emu::free_globals();
}

void check_out16_ops() {
  Rng rng{31};
  const int rows = 3, cols = 130;
  const vector<float> x = rng.floats(static_cast<size_t>(rows) * cols, -4, 4);
  const Weights w = weights(rng, cols, TIDARC_DTYPE_BF16, 0.5f, 1.5f);
  check_out16("rmsnorm", "rows 3, cols 130, bf16 weight", x.size(), [&](int32_t out_dtype) {
    TidarcRmsNormArgs a{upload("x", x), w.upload_to("w"), device<float>("out", x.size()), rows, cols, 1e-6f, TIDARC_DTYPE_BF16, out_dtype, 0};
    RUN(tidarc_op_rmsnorm, dim3(rows), dim3(256), a);
    return a.out;
  });
  const int64_t count = 1000;
  const vector<float> gate = rng.floats(count, -12, 12), up = rng.floats(count, -3, 3);
  check_out16("silu_mul", "count 1000", count, [&](int32_t out_dtype) {
    TidarcSiluMulArgs a{upload("gate", gate), upload("up", up), device<float>("out", count), count, out_dtype, 0};
    RUN(tidarc_op_silu_mul, dim3((count + 255) / 256), dim3(256), a);
    return a.out;
  });
  check_out16("gelu", "count 1000", count, [&](int32_t out_dtype) {
    TidarcGeluArgs a{upload("x", gate), device<float>("out", count), count, out_dtype, 0};
    RUN(tidarc_op_gelu, dim3((count + 255) / 256), dim3(256), a);
    return a.out;
  });
}

void check_matmul() {
  Rng rng{29};
  for (int32_t dtype : {TIDARC_DTYPE_BF16, TIDARC_DTYPE_FP16, TIDARC_DTYPE_F32})
    for (int k : {33, 130})
      for (int rows : {1, 3, 17}) {
        check_matmul_case(rng, {rows, 70, k, dtype, false, false, false});
        check_matmul_case(rng, {rows, 70, k, dtype, true, false, false});
        check_matmul_case(rng, {rows, 70, k, dtype, false, true, false});
        check_matmul_case(rng, {rows, 70, k, dtype, true, true, true});
      }
  check_matmul_case(rng, {40, 130, 200, TIDARC_DTYPE_BF16, true, true, true});  // 3 x 3 blocks, 4 k-chunks
  check_matmul_case(rng, {16, 64, 64, TIDARC_DTYPE_FP16, false, false, false});  // exactly one tile and chunk
  for (int32_t dtype : {TIDARC_DTYPE_BF16, TIDARC_DTYPE_F32})
    for (int k : {33, 130}) check_matmul_row_independence(rng, dtype, k);
  check_matmul_x16(rng, kBf16);
  check_matmul_x16(rng, kFp16);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--programmatic") == 0) {
      g_programmatic = true;
    } else {
      std::fprintf(stderr, "ops_check: unknown option %s\nusage: ops_check [--programmatic]\n", argv[i]);
      return 2;
    }
  }
  check_to_float();
  check_rope_pack();
  check_embed();
  check_rmsnorm();
  check_silu_mul();
  check_gelu();
  check_kv_commit();
  check_row_stats();
  check_matmul();
  check_out16_ops();
  tidarc_emu::write_findings_json(stdout);
  return g_failures > 0 || !tidarc_emu::finding_counts().empty() ? 1 : 0;
}
